import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StasisError, errorMessage } from '../errors.ts';
import { ownedTempDir, sweepOwnedTempDirs } from '../host/scratch.ts';
import { writeChunkedTree } from './store/transfer.ts';
import type { CheckpointOptions, Progress } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import { ROOTFS_FILES, exportToFile, exportToStream, type ExportTarget } from './archive/export.ts';
import { baseImageOf, engineImageName, type Provenance } from './format/layout.ts';
import { writeCheckpointImage } from './oci/image.ts';

// What a checkpoint writes for leaving the host, once its folder is whole:
// an archive (checkpoint --export) and an OCI checkpoint image (--create-image).

/** Scratch folders of an export with --have, beside the checkpoint folder (a killed one's is removed by the next). */
const EXPORT_PREFIX = '.export-chunks-';

/** An export with --have: the big files sent as chunks (0: none had a chunk in the list; the archive is a plain one), and the bytes left to the receiver's store. */
export interface ExportChunks {
  files: number;
  fromStore: number;
}

/** The archive (--export) and the checkpoint image (--create-image), from the checkpoint's folder. */
export async function writeOutputs(record: ContainerRecord, opts: CheckpointOptions, work: { id: string; finalPath: string; exportTo: ExportTarget | null; now: Date }, versions: Provenance | null, progress: Progress): Promise<{ exported: string | null; image: string | null; archiveMs: number | null; exportChunks: ExportChunks | null }> {
  const { id, finalPath, exportTo, now } = work;
  let exported: string | null = null;
  let archiveMs: number | null = null;
  const exclude = opts.ignoreRootfs ? ROOTFS_FILES : [];
  let exportChunks: ExportChunks | null = null;
  if (exportTo !== null || opts.exportStream !== undefined) {
    progress(`writing ${exportTo?.file ?? 'the archive'}`);
    const archiveStarted = Date.now();
    let scratch: string | null = null;
    try {
      let from = finalPath;
      if (opts.haveChunks !== undefined) {
        // What the receiver's store holds stays out of the archive (store/transfer.ts); the folder is not changed.
        sweepOwnedTempDirs(dirname(finalPath), [EXPORT_PREFIX]);
        scratch = ownedTempDir(dirname(finalPath), EXPORT_PREFIX);
        const written = writeChunkedTree(finalPath, join(scratch, 'tree'), opts.haveChunks, exclude);
        exportChunks = { files: written.summary.files.length, fromStore: written.reused };
        if (written.summary.files.length > 0) from = join(scratch, 'tree');
      }
      if (exportTo !== null) {
        await exportToFile(from, exportTo, exclude);
        exported = exportTo.file;
      } else {
        await exportToStream(from, opts.exportStream!, opts.compression ?? 'zstd', exclude);
        exported = '-';
      }
    } catch (err) {
      throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but exporting it failed: ${errorMessage(err)}`);
    } finally {
      if (scratch !== null) rmSync(scratch, { recursive: true, force: true });
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
  return { exported, image, archiveMs, exportChunks };
}

