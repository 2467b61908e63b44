import { StasisError, errorMessage } from '../errors.ts';
import type { CheckpointOptions, Progress } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import { ROOTFS_FILES, exportToFile, exportToStream, type ExportTarget } from './archive/export.ts';
import { baseImageOf, engineImageName, type Provenance } from './format/layout.ts';
import { writeCheckpointImage } from './oci/image.ts';

// What a checkpoint writes for leaving the host, once its folder is whole:
// an archive (checkpoint --export) and an OCI checkpoint image (--create-image).

/** The archive (--export) and the checkpoint image (--create-image), from the checkpoint's folder. */
export async function writeOutputs(record: ContainerRecord, opts: CheckpointOptions, work: { id: string; finalPath: string; exportTo: ExportTarget | null; now: Date }, versions: Provenance | null, progress: Progress): Promise<{ exported: string | null; image: string | null; archiveMs: number | null }> {
  const { id, finalPath, exportTo, now } = work;
  let exported: string | null = null;
  let archiveMs: number | null = null;
  const exclude = opts.ignoreRootfs ? ROOTFS_FILES : [];
  if (exportTo !== null || opts.exportStream !== undefined) {
    progress(`writing ${exportTo?.file ?? 'the archive'}`);
    const archiveStarted = Date.now();
    try {
      if (exportTo !== null) {
        await exportToFile(finalPath, exportTo, exclude);
        exported = exportTo.file;
      } else {
        await exportToStream(finalPath, opts.exportStream!, opts.compression ?? 'zstd', exclude);
        exported = '-';
      }
    } catch (err) {
      throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but exporting it failed: ${errorMessage(err)}`);
    }
    archiveMs = Date.now() - archiveStarted;
  }
  let image: string | null = null;
  if (opts.createImage !== undefined) {
    progress(`writing the image ${opts.createImage}`);
    const baseImage = record.rootfs.kind === 'overlay' ? baseImageOf(record.rootfs.base) : null;
    try {
      const written = await writeCheckpointImage(finalPath, opts.createImage, {
        facts: {
          containerName: id,
          rootfsImageName: opts.podmanImage?.name ?? opts.baseImage ?? (baseImage ? engineImageName(baseImage) : record.rootfs.base),
          rootfsImageId: opts.podmanImage?.id ?? baseImage?.configDigest,
          rootfsImageDigest: baseImage?.digest,
          criuVersion: versions?.criuVersion,
          runtimeVersion: versions?.runcVersion,
        },
        podman: opts.podmanImage ? { imageName: opts.podmanImage.name, imageId: opts.podmanImage.id } : undefined,
        cri: opts.baseImage ? { image: opts.baseImage, containerName: id } : undefined,
        exclude,
        created: now,
      });
      image = written.ref;
    } catch (err) {
      throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but writing the image failed: ${errorMessage(err)}`);
    }
  }
  return { exported, image, archiveMs };
}

