import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { copyTree } from '../../host/walk.ts';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { withRootDirMode } from '../criu/inventory.ts';
import {
  LAYER_COMPRESSION,
  MEDIA,
  REF_NAME,
  blobPath,
  checkpointAnnotations,
  fileDigest,
  formatImageRef,
  goArch,
  hostFacts,
  parseImageRef,
  sha256,
  verifiedBlob,
  verifiedJson,
  type CheckpointFacts,
  type Descriptor,
  type ImageRef,
} from './layout.ts';
import { createToFile } from '../archive/gnu-tar.ts';
import { createTar, extractTar } from '../archive/tar.ts';

// A checkpoint as an OCI image: one layer whose root holds the checkpoint
// folder's files (checkpoint/, spec.dump, config.dump, ...), which is what
// podman's `checkpoint --create-image` commits (libpod
// container_internal_common.go, createCheckpointImage: buildah "scratch" +
// the export tar, squashed), what CRI-O and containerd mount and read, and
// what `checkpointctl build` makes. Written as an OCI layout (oci:DIR) or a
// tar of one (oci-archive:FILE), the forms `podman save`/`podman load` and
// skopeo use.

export interface WriteImageOptions {
  facts: CheckpointFacts;
  /** The layer's compression; podman's own images carry gzip layers. */
  compression?: 'gzip' | 'none';
  /**
   * For `podman container restore IMAGE`: podman creates the container from
   * the image config.dump names (rootfsImageName and rootfsImageID, both
   * required) and CRIU checks "/" against the mode it had. podman's overlay
   * storage makes every root 0555 (containers/storage drivers/overlay
   * defaultPerms), stasis's layer is 0755, so the layer's copy of files.img
   * says rootMode (default 0o555).
   */
  podman?: { imageName: string; imageId?: string; rootMode?: number };
  /**
   * For a CRI restore (containerd 2.1's CreateContainer with the image;
   * internal/cri/server/container_checkpoint_linux.go, CRImportCheckpoint):
   * containerd pulls config.dump's rootfsImageRef, checks rootfsImageName is
   * a reference, and reads status.dump (the CRI ContainerStatus as JSON: the
   * container's image and its annotations, a map it writes into). `image` is
   * the base image's registry reference (HOST/NAME[:TAG|@DIGEST]).
   */
  cri?: { image: string; containerName: string };
  /** The image's name in the layout when the reference gives none; default localhost/checkpoint-<container>:latest. */
  defaultReference?: string;
  /** Top-level names of the folder left out of the layer (rootfs-diff.tar, deleted.files for --ignore-rootfs). */
  exclude?: readonly string[];
  created?: Date;
}

export interface WrittenImage {
  ref: string;
  reference: string;
  manifestDigest: string;
  layer: Descriptor;
  annotations: Record<string, string>;
}

export interface ReadImage {
  ref: string;
  refName: string | null;
  manifestDigest: string;
  layerMediaType: string;
  /** index.json's, the descriptor's and the manifest's annotations, the latter winning. */
  annotations: Record<string, string>;
}

/** Media types of containerd's `ctr checkpoint` index (core/images/mediatypes.go). */
const CONTAINERD_CHECKPOINT = 'application/vnd.containerd.container.';

interface Index {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

function refOf(target: string | ImageRef): ImageRef {
  const ref = typeof target === 'string' ? parseImageRef(target) : target;
  if (!ref) throw new Error(`${String(target)} is not an image reference: use oci:DIR or oci-archive:FILE`);
  return { ...ref, path: resolve(ref.path) };
}

function writeJsonBlob(layoutDir: string, value: unknown, mediaType: string, annotations?: Record<string, string>): Descriptor {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = sha256(bytes);
  writeFileSync(blobPath(layoutDir, digest), bytes);
  return { mediaType, digest, size: bytes.length, ...(annotations ? { annotations } : {}) };
}

/** The files podman and a CRI runtime need to take the image (see WriteImageOptions.podman and .cri), in a copy of the folder. */
function stageForEngines(checkpointDir: string, stagingDir: string, opts: Pick<WriteImageOptions, 'podman' | 'cri'>): void {
  copyTree(checkpointDir, stagingDir);
  const configPath = join(stagingDir, 'config.dump');
  const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>) : {};
  const { podman, cri } = opts;
  if (cri) {
    config.rootfsImage = cri.image;
    config.rootfsImageName = cri.image;
    config.rootfsImageRef = cri.image;
    const statusPath = join(stagingDir, 'status.dump');
    if (!existsSync(statusPath)) writeFileSync(statusPath, `${JSON.stringify(criStatus(cri, config))}\n`);
  }
  if (podman) {
    config.rootfsImageName = podman.imageName;
    // podman 4.3 looks the image up by this too; a name resolves (measured), an ID is what podman itself writes.
    config.rootfsImageID = podman.imageId ?? podman.imageName;
    config.RawImageName = podman.imageName;
    const filesImg = join(stagingDir, 'checkpoint', 'files.img');
    if (existsSync(filesImg)) writeFileSync(filesImg, withRootDirMode(readFileSync(filesImg), podman.rootMode ?? 0o555).bytes);
  }
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * status.dump as containerd writes it: the CRI ContainerStatus in protobuf's
 * JSON names (metadata, image, image_ref, labels, annotations). containerd's
 * restore adds to the annotations map, so it is always present.
 */
function criStatus(cri: NonNullable<WriteImageOptions['cri']>, config: Record<string, unknown>): Record<string, unknown> {
  return {
    id: typeof config.id === 'string' ? config.id : cri.containerName,
    metadata: { name: cri.containerName },
    state: 1,
    image: { image: cri.image },
    image_ref: cri.image,
    labels: {},
    annotations: {},
  };
}

async function gzipFile(from: string, to: string): Promise<void> {
  await pipeline(createReadStream(from), createGzip(), createWriteStream(to));
}

/** Adds the image to an OCI layout (made if missing; another image of the same name is replaced) or writes an oci-archive. */
export async function writeCheckpointImage(checkpointDir: string, target: string | ImageRef, opts: WriteImageOptions): Promise<WrittenImage> {
  const ref = refOf(target);
  const reference = ref.reference ?? opts.defaultReference ?? `localhost/checkpoint-${opts.facts.containerName.toLowerCase()}:latest`;
  const parent = dirname(ref.path);
  mkdirSync(parent, { recursive: true });
  const work = mkdtempSync(join(parent, `.${basename(ref.path)}.image-`));
  try {
    const layoutDir = ref.transport === 'oci' ? ref.path : join(work, 'layout');
    checkLayoutTarget(layoutDir);
    mkdirSync(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
    let source = checkpointDir;
    if (opts.podman || opts.cri) {
      source = join(work, 'content');
      stageForEngines(checkpointDir, source, opts);
    }
    const layerTar = join(work, 'layer.tar');
    const exclude = new Set(opts.exclude ?? []);
    const problem = await createToFile(source, readdirSync(source).filter((name) => !exclude.has(name)).sort(), layerTar, 'none');
    if (problem) throw new Error(`cannot write the image's layer: ${problem}`);
    const diffId = await fileDigest(layerTar);
    const gzip = (opts.compression ?? 'gzip') === 'gzip';
    const layerFile = gzip ? `${layerTar}.gz` : layerTar;
    if (gzip) await gzipFile(layerTar, layerFile);
    const layerDigest = gzip ? await fileDigest(layerFile) : diffId;
    const layer: Descriptor = { mediaType: gzip ? MEDIA.layerGzip : MEDIA.layer, digest: layerDigest, size: statSync(layerFile).size };
    renameSync(layerFile, blobPath(layoutDir, layerDigest));

    const created = (opts.created ?? new Date()).toISOString();
    const host = hostFacts();
    const config = {
      created,
      architecture: goArch(),
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created, created_by: `stasis checkpoint ${opts.facts.containerName}` }],
    };
    const configDesc = writeJsonBlob(layoutDir, config, MEDIA.config);
    const sets = checkpointAnnotations(opts.facts, host);
    // Every engine reads the manifest's (containerd: the blob an image points
    // at, which import makes the manifest); the org.criu ones go on the index too.
    const annotations = { ...sets.podman, ...sets.crio, ...sets.criu, 'org.opencontainers.image.created': created };
    const manifest: Manifest = { schemaVersion: 2, mediaType: MEDIA.manifest, config: configDesc, layers: [layer], annotations };
    const manifestDesc = writeJsonBlob(layoutDir, manifest, MEDIA.manifest, { [REF_NAME]: reference });
    manifestDesc.platform = { os: 'linux', architecture: goArch() };
    writeIndex(layoutDir, manifestDesc, reference, sets.criu);
    writeFileSync(join(layoutDir, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);

    if (ref.transport === 'oci-archive') {
      const archive = join(work, 'image.tar');
      await createTar(layoutDir, archive);
      renameSync(archive, ref.path);
    }
    return { ref: formatImageRef(ref), reference, manifestDigest: manifestDesc.digest, layer, annotations };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Throws (saying why) when `target` is not an image reference, or names something an image cannot be written to. */
export function checkImageTarget(target: string | ImageRef): void {
  const ref = refOf(target);
  if (ref.transport === 'oci') checkLayoutTarget(ref.path);
  else if (statSync(ref.path, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`${formatImageRef(ref)}: ${ref.path} is a folder; an oci-archive is a file (oci:DIR writes a layout folder)`);
}

/** An existing folder is only written into when it is empty or already an OCI layout. */
function checkLayoutTarget(layoutDir: string): void {
  if (!existsSync(layoutDir)) return;
  if (!statSync(layoutDir).isDirectory()) throw new Error(`${layoutDir} exists and is not a folder`);
  const names = readdirSync(layoutDir);
  if (names.length > 0 && !names.includes('oci-layout')) throw new Error(`${layoutDir} is neither empty nor an OCI image layout (no oci-layout file)`);
}

function writeIndex(layoutDir: string, manifest: Descriptor, reference: string, annotations: Record<string, string>): void {
  const indexPath = join(layoutDir, 'index.json');
  let index: Index = { schemaVersion: 2, mediaType: MEDIA.index, manifests: [] };
  if (existsSync(indexPath)) index = JSON.parse(readFileSync(indexPath, 'utf8')) as Index;
  index.manifests = [...(index.manifests ?? []).filter((desc) => desc.annotations?.[REF_NAME] !== reference), manifest];
  index.annotations = { ...index.annotations, ...annotations };
  const temp = `${indexPath}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(index, null, 2)}\n`);
  renameSync(temp, indexPath);
}

/**
 * Unpacks a checkpoint image into destDir (made; must not hold anything):
 * index.json → manifest → the one layer, each blob checked against its size
 * and sha256 and the layer against the config's diff_id, then extracted with
 * the archive checks of tar.ts. An oci-archive is unpacked beside destDir
 * first (checked the same way) and removed afterwards.
 */
export async function readCheckpointImage(source: string | ImageRef, destDir: string, opts: { maxBytes?: number } = {}): Promise<ReadImage> {
  const ref = refOf(source);
  const shown = formatImageRef(ref);
  if (existsSync(destDir) && readdirSync(destDir).length > 0) throw new Error(`${destDir} is not empty`);
  let unpacked: string | null = null;
  try {
    let layoutDir = ref.path;
    if (ref.transport === 'oci-archive') {
      if (!statSync(ref.path, { throwIfNoEntry: false })?.isFile()) throw new Error(`${shown}: ${ref.path} is not a file`);
      unpacked = mkdtempSync(join(dirname(resolve(destDir)), `.${basename(destDir)}.oci-`));
      await extractTar(ref.path, unpacked, { maxBytes: opts.maxBytes });
      layoutDir = unpacked;
    }
    const found = await findManifest(layoutDir, ref);
    const manifest = await verifiedJson<Manifest>(layoutDir, found.desc, 'manifest');
    if (manifest.mediaType !== undefined && manifest.mediaType !== MEDIA.manifest) {
      throw new Error(`${shown}: the manifest's media type is ${manifest.mediaType}, not an OCI image manifest`);
    }
    if (manifest.config?.mediaType !== MEDIA.config) throw new Error(`${shown}: the image config's media type is ${String(manifest.config?.mediaType)}, not ${MEDIA.config}`);
    const config = await verifiedJson<{ rootfs?: { diff_ids?: string[] } }>(layoutDir, manifest.config, 'config');
    const layers = Array.isArray(manifest.layers) ? manifest.layers : [];
    if (layers.length !== 1) throw new Error(`${shown}: a checkpoint image has one layer, this one has ${layers.length}`);
    const [layer] = layers;
    const compression = LAYER_COMPRESSION[layer.mediaType];
    if (compression === undefined) throw new Error(`${shown}: unsupported layer media type ${layer.mediaType}`);
    const layerPath = await verifiedBlob(layoutDir, layer, 'layer');
    const diffId = config.rootfs?.diff_ids?.[0];
    if (diffId !== undefined) {
      const actual = await fileDigest(layerPath, compression);
      if (actual !== diffId) throw new Error(`${shown}: the layer does not match the config's diff_id: expected ${diffId}, got ${actual}`);
    }
    await extractTar(layerPath, destDir, { maxBytes: opts.maxBytes });
    return {
      ref: shown,
      refName: found.desc.annotations?.[REF_NAME] ?? null,
      manifestDigest: found.desc.digest,
      layerMediaType: layer.mediaType,
      annotations: { ...found.indexAnnotations, ...found.desc.annotations, ...manifest.annotations },
    };
  } catch (err) {
    const message = (err as Error).message;
    throw new Error(message.startsWith(shown) ? message : `${shown}: ${message}`, { cause: err });
  } finally {
    if (unpacked !== null) rmSync(unpacked, { recursive: true, force: true });
  }
}

function refuseContainerdCheckpoint(index: Index): void {
  if ((index.manifests ?? []).some((m) => typeof m.mediaType === 'string' && m.mediaType.startsWith(CONTAINERD_CHECKPOINT))) {
    throw new Error("it is containerd's own checkpoint (ctr checkpoint: CRIU images and a protobuf container config in an index), which stasis does not restore");
  }
}

export async function findManifest(layoutDir: string, ref: ImageRef): Promise<{ desc: Descriptor; indexAnnotations: Record<string, string> }> {
  const indexPath = join(layoutDir, 'index.json');
  if (!existsSync(indexPath)) {
    throw new Error(existsSync(join(layoutDir, 'manifest.json')) ? 'this is a docker-archive, not an OCI image: save it with --format oci-archive' : 'no index.json: not an OCI image layout');
  }
  let index: Index;
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8')) as Index;
  } catch (err) {
    throw new Error(`index.json is not JSON: ${(err as Error).message}`);
  }
  refuseContainerdCheckpoint(index);
  const indexAnnotations = index.annotations ?? {};
  let candidates = Array.isArray(index.manifests) ? index.manifests : [];
  if (ref.reference !== null) candidates = candidates.filter((desc) => desc.annotations?.[REF_NAME] === ref.reference);
  if (candidates.length === 0) {
    const names = (index.manifests ?? []).map((desc) => desc.annotations?.[REF_NAME]).filter(Boolean);
    throw new Error(ref.reference !== null ? `no image named ${ref.reference} in it${names.length ? ` (it has ${names.join(', ')})` : ''}` : 'its index.json lists no image');
  }
  if (candidates.length > 1) {
    const names = candidates.map((desc) => desc.annotations?.[REF_NAME] ?? desc.digest);
    throw new Error(`it holds ${candidates.length} images (${names.join(', ')}): name one, as ${ref.transport}:${ref.path}:NAME`);
  }
  const [desc] = candidates;
  if (desc.mediaType === MEDIA.index) {
    // A multi-platform index: take this host's platform.
    const nested = await verifiedJson<Index>(layoutDir, desc, 'index');
    refuseContainerdCheckpoint(nested);
    const mine = (nested.manifests ?? []).filter((m) => !m.platform || (m.platform.os === 'linux' && m.platform.architecture === goArch()));
    if (mine.length !== 1) throw new Error(`its index has ${mine.length} images for linux/${goArch()}`);
    return { desc: { ...mine[0], annotations: { ...desc.annotations, ...mine[0].annotations } }, indexAnnotations: { ...indexAnnotations, ...nested.annotations } };
  }
  if (desc.mediaType === MEDIA.dockerManifest) throw new Error('its manifest is a Docker schema 2 manifest; stasis reads OCI manifests (podman save --format oci-archive writes one)');
  return { desc, indexAnnotations };
}
