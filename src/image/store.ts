import { chmodSync, existsSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { StasisError, errorMessage, type ErrorCode } from '../errors.ts';
import { extractTar, readTarEntries } from '../checkpoint/archive/tar.ts';
import { LAYER_COMPRESSION, MEDIA, fileDigest, verifiedBlob, verifiedJson } from '../checkpoint/oci/layout.ts';
import { findManifest, type Manifest } from '../checkpoint/oci/image.ts';
import { imageProcess, type ImageProcess } from './config.ts';
import { formatSourceRef, parseSourceRef, type SourceRef } from './ref.ts';
import { pullToLayout, type RegistryOptions } from './skopeo.ts';

// stasis's image store: each image unpacked once per manifest digest into
// <store>/<hex>/rootfs, beside <store>/<hex>/image.json (what `images` lists
// and what a container or a restore takes from the image). The rootfs is a
// container's read-only base, like --rootfs. Layers are untrusted archives:
// each is checked against its digest, listed (absolute names, "..", device
// nodes refused, naming the entry), extracted with the archive checks of
// checkpoint/archive, then its whiteouts and files applied in order.

export const DEFAULT_IMAGE_DIR = '/var/lib/stasis/images';
const RECORD = 'image.json';
const ROOTFS = 'rootfs';
const MAX_LAYERS = 128;
/** The most one image may unpack to (the free space of the store is a limit too). */
const UNPACK_LIMIT_BYTES = 64 * 1024 ** 3;
const HEX = /^[0-9a-f]{64}$/;

export function defaultImageDir(): string {
  return process.env.STASIS_IMAGE_DIR || DEFAULT_IMAGE_DIR;
}

export interface ImageRecord {
  format: 1;
  /** The manifest's digest: the image's identity in the store. */
  digest: string;
  /** The config's digest (the "image ID" podman and CRI-O record). */
  configDigest: string;
  /** The references it was pulled or read as, newest last (docker://…, oci:DIR:TAG, oci-archive:FILE:TAG). */
  names: string[];
  created: string | null;
  pulledAt: string;
  /** Bytes of the unpacked tree. */
  size: number;
  layers: number;
  process: ImageProcess;
}

export interface StoredImage extends ImageRecord {
  dir: string;
  rootfs: string;
}

export interface PullOptions extends RegistryOptions {
  /** missing (default): a docker:// name already in the store is used as it is; always: copied again. */
  pull?: 'missing' | 'always';
  progress?: (message: string) => void;
}

function imageError(message: string, code: ErrorCode = 'bad-image'): StasisError {
  return new StasisError(message, { code });
}

/** The record of the image whose rootfs a container ran on, or null when `rootfs` is not an image of a store. */
export function imageOfRootfs(rootfs: string): StoredImage | null {
  if (basename(rootfs) !== ROOTFS) return null;
  const dir = dirname(rootfs);
  const record = readRecord(dir);
  return record && `sha256:${basename(dir)}` === record.digest ? record : null;
}

function readRecord(dir: string): StoredImage | null {
  try {
    const record = JSON.parse(readFileSync(join(dir, RECORD), 'utf8')) as ImageRecord;
    if (record.format !== 1 || typeof record.digest !== 'string' || !Array.isArray(record.names)) return null;
    return { ...record, dir, rootfs: join(dir, ROOTFS) };
  } catch {
    return null;
  }
}

function writeRecord(dir: string, record: ImageRecord): void {
  const temp = join(dir, `.${RECORD}.${process.pid}.tmp`);
  writeFileSync(temp, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(temp, join(dir, RECORD));
}

function strip<T extends StoredImage>(image: T): ImageRecord {
  const { dir: _dir, rootfs: _rootfs, ...record } = image;
  return record;
}

/** A name as the user may type it: docker:// is optional for registry names. */
function nameMatches(name: string, text: string): boolean {
  return name === text || (name.startsWith('docker://') && name.slice('docker://'.length) === text) || (name.startsWith('docker://') && !text.includes(':') && name === `docker://${text}:latest`);
}

export class ImageStore {
  readonly root: string;
  constructor(root: string = defaultImageDir()) {
    this.root = root;
  }

  dirOf(digest: string): string {
    const hex = digest.replace(/^sha256:/, '');
    if (!HEX.test(hex)) throw imageError(`${JSON.stringify(digest)} is not a sha256 digest`);
    return join(this.root, hex);
  }

  list(): StoredImage[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root)
      .filter((name) => HEX.test(name))
      .map((name) => readRecord(join(this.root, name)))
      .filter((image): image is StoredImage => image !== null)
      .sort((a, b) => b.pulledAt.localeCompare(a.pulledAt));
  }

  /** The image a name, a digest (manifest or config, with or without sha256:) or a unique digest prefix (4+ hex digits) names. */
  find(text: string): StoredImage | null {
    const images = this.list();
    const byName = images.filter((image) => image.names.some((name) => nameMatches(name, text)));
    if (byName.length > 0) return byName[0];
    const hex = text.replace(/^sha256:/, '');
    if (!/^[0-9a-f]{4,64}$/.test(hex)) return null;
    const byDigest = images.filter((image) => image.digest.slice(7).startsWith(hex) || image.configDigest.slice(7).startsWith(hex));
    if (byDigest.length > 1) throw imageError(`${text} names ${byDigest.length} images: give more of the digest`, 'ambiguous-image');
    return byDigest[0] ?? null;
  }

  /**
   * The image a reference names, in the store: a local layout is always read
   * (cheap: only a new digest is unpacked); a docker:// one is copied with
   * skopeo unless the store has it already (by digest, or by name under the
   * "missing" policy); anything else is looked up in the store.
   */
  async pull(text: string, opts: PullOptions = {}): Promise<StoredImage> {
    let ref: SourceRef | null;
    try {
      ref = parseSourceRef(text);
    } catch (err) {
      throw new StasisError(errorMessage(err), { code: 'bad-reference' });
    }
    if (ref === null) {
      const found = this.find(text);
      if (found) return found;
      throw imageError(`no image ${text} in ${this.root}`, 'image-unknown');
    }
    const shown = formatSourceRef(ref);
    if (ref.transport === 'docker' && (opts.pull ?? 'missing') === 'missing') {
      const found = ref.digest !== null ? this.list().find((image) => image.digest === ref.digest) : this.find(shown);
      if (found) return found;
    }
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const temp = mkdtempSync(join(this.root, '.pull-'));
    try {
      let layoutDir: string;
      let reference: string | null;
      if (ref.transport === 'docker') {
        layoutDir = join(temp, 'layout');
        reference = 'image';
        opts.progress?.(`pulling ${shown}`);
        await pullToLayout(ref, layoutDir, reference, opts);
      } else if (ref.transport === 'oci-archive') {
        if (!statSync(ref.path, { throwIfNoEntry: false })?.isFile()) throw imageError(`${shown}: ${ref.path} is not a file`);
        layoutDir = join(temp, 'layout');
        reference = ref.reference;
        await extractTar(ref.path, layoutDir, { maxBytes: UNPACK_LIMIT_BYTES }).catch((err: unknown) => {
          throw imageError(`${shown}: ${errorMessage(err)}`);
        });
      } else {
        if (!statSync(ref.path, { throwIfNoEntry: false })?.isDirectory()) throw imageError(`${shown}: ${ref.path} is not a folder`);
        layoutDir = ref.path;
        reference = ref.reference;
      }
      return await this.unpackLayout(layoutDir, reference, shown, temp, opts);
    } finally {
      rmSync(temp, { recursive: true, force: true });
    }
  }

  private async unpackLayout(layoutDir: string, reference: string | null, shown: string, temp: string, opts: PullOptions): Promise<StoredImage> {
    const fail = (err: unknown): never => {
      if (err instanceof StasisError) throw err;
      const message = errorMessage(err);
      throw imageError(message.startsWith(shown) ? message : `${shown}: ${message}`);
    };
    const found = await findManifest(layoutDir, { transport: 'oci', path: layoutDir, reference }).catch(fail);
    const digest = found.desc.digest;
    const existing = readRecord(this.dirOf(digest));
    if (existing) return this.addName(existing, shown);
    opts.progress?.(`unpacking ${shown}`);
    const work = join(temp, 'image');
    const rootfs = join(work, ROOTFS);
    mkdirSync(rootfs, { recursive: true, mode: 0o700 });
    chmodSync(rootfs, 0o755);
    let record: ImageRecord;
    try {
      const manifest = await verifiedJson<Manifest>(layoutDir, found.desc, 'manifest');
      if (manifest.mediaType !== undefined && manifest.mediaType !== MEDIA.manifest) throw new Error(`the manifest's media type is ${manifest.mediaType}, not an OCI image manifest`);
      if (manifest.config?.mediaType !== MEDIA.config) throw new Error(`the image config's media type is ${String(manifest.config?.mediaType)}, not ${MEDIA.config}`);
      const config = await verifiedJson<{ created?: unknown; rootfs?: { diff_ids?: unknown } }>(layoutDir, manifest.config, 'config');
      const process = imageProcess(config);
      const layers = Array.isArray(manifest.layers) ? manifest.layers : [];
      if (layers.length === 0 || layers.length > MAX_LAYERS) throw new Error(`the image has ${layers.length} layers (1 to ${MAX_LAYERS} are read)`);
      const diffIds = Array.isArray(config.rootfs?.diff_ids) ? (config.rootfs.diff_ids as unknown[]) : [];
      if (diffIds.length !== layers.length) throw new Error(`the config lists ${diffIds.length} diff_ids for ${layers.length} layers`);
      for (const [index, layer] of layers.entries()) {
        const what = `layer ${index + 1} (${layer.digest})`;
        const compression = LAYER_COMPRESSION[layer.mediaType];
        if (compression === undefined) throw new Error(`${what}: unsupported media type ${layer.mediaType}`);
        const blob = await verifiedBlob(layoutDir, layer, `layer ${index + 1}`);
        const diffId = await fileDigest(blob, compression);
        if (diffId !== diffIds[index]) throw new Error(`${what} does not match the config's diff_id: expected ${String(diffIds[index])}, got ${diffId}`);
        await checkLayerEntries(blob, what);
        const layerDir = join(temp, `layer-${index}`);
        await extractTar(blob, layerDir, { rootfsLayer: true, maxBytes: UNPACK_LIMIT_BYTES }).catch((err: unknown) => {
          throw new Error(`${what}: ${errorMessage(err).replace(/^cannot extract \S+: /, '')}`);
        });
        applyWhiteouts(layerDir, rootfs);
        mergeInto(layerDir, rootfs);
        rmSync(layerDir, { recursive: true, force: true });
      }
      record = {
        format: 1,
        digest,
        configDigest: manifest.config.digest,
        names: [shown],
        created: typeof config.created === 'string' && config.created.length <= 64 ? config.created : null,
        pulledAt: new Date().toISOString(),
        size: treeSize(rootfs),
        layers: layers.length,
        process,
      };
    } catch (err) {
      return fail(err);
    }
    writeRecord(work, record);
    const final = this.dirOf(digest);
    try {
      renameSync(work, final);
    } catch (err) {
      // Another stasis unpacked the same image meanwhile: theirs is as good.
      const theirs = readRecord(final);
      if (theirs) return this.addName(theirs, shown);
      throw err;
    }
    this.dropNameElsewhere(shown, digest);
    return { ...record, dir: final, rootfs: join(final, ROOTFS) };
  }

  /** The name now points at this image (a tag that moved): added here, taken off any other. */
  private addName(image: StoredImage, name: string): StoredImage {
    if (image.names[image.names.length - 1] !== name) {
      image.names = [...image.names.filter((other) => other !== name), name];
      writeRecord(image.dir, strip(image));
    }
    this.dropNameElsewhere(name, image.digest);
    return image;
  }

  private dropNameElsewhere(name: string, digest: string): void {
    for (const other of this.list()) {
      if (other.digest === digest || !other.names.includes(name)) continue;
      other.names = other.names.filter((n) => n !== name);
      writeRecord(other.dir, strip(other));
    }
  }

  /** Removes an image's folder (the caller has checked that nothing uses it). */
  remove(image: StoredImage): void {
    const doomed = join(this.root, `.rm-${basename(image.dir)}-${process.pid}`);
    renameSync(image.dir, doomed);
    rmSync(doomed, { recursive: true, force: true });
  }
}

/**
 * Refuses a layer whose entries a root filesystem layer never needs and
 * GNU tar would quietly change: an absolute name (tar strips the "/"), a
 * ".." anywhere, a hard link leaving the layer, a device node. Named, whole,
 * before anything is extracted.
 */
async function checkLayerEntries(blob: string, what: string): Promise<void> {
  for (const entry of await readTarEntries(blob)) {
    const refuse = (why: string) => new Error(`${what}: unsafe archive entry "${entry.name}": ${why}`);
    if (entry.name.startsWith('/')) throw refuse('an absolute path');
    if (entry.name.split('/').includes('..')) throw refuse('path contains ".."');
    if (entry.type === 'char' || entry.type === 'block') throw refuse(`a ${entry.type} device (an image never brings device nodes)`);
    if (entry.type === 'hardlink' && (entry.linkName.startsWith('/') || entry.linkName.split('/').includes('..'))) throw refuse(`a hard link to "${entry.linkName}" outside the layer`);
  }
}

/** The parts of a folder path inside `root`, when every one is a real folder (no link is followed); null otherwise. */
function realFolder(root: string, parts: string[]): string | null {
  let current = root;
  for (const part of parts) {
    current = join(current, part);
    if (!lstatSync(current, { throwIfNoEntry: false })?.isDirectory()) return null;
  }
  return current;
}

/** Every ".wh." entry of an extracted layer, as [folder parts, name], without following links. */
function whiteoutsIn(dir: string, parts: string[] = [], found: [string[], string][] = []): [string[], string][] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.wh.')) found.push([parts, entry.name]);
    else if (entry.isDirectory()) whiteoutsIn(join(dir, entry.name), [...parts, entry.name], found);
  }
  return found;
}

/**
 * A layer's whiteouts (image-spec layer.md) applied to the layers below:
 * ".wh.NAME" deletes NAME, ".wh..wh..opq" empties the folder; the markers
 * themselves are then removed from the layer.
 */
function applyWhiteouts(layerDir: string, rootfs: string): void {
  for (const [parts, marker] of whiteoutsIn(layerDir)) {
    const folder = realFolder(rootfs, parts);
    if (folder !== null) {
      if (marker === '.wh..wh..opq') {
        for (const name of readdirSync(folder)) rmSync(join(folder, name), { recursive: true, force: true });
      } else {
        const name = marker.slice('.wh.'.length);
        if (name !== '' && name !== '.' && name !== '..') rmSync(join(folder, name), { recursive: true, force: true });
      }
    }
    rmSync(join(layerDir, ...parts, marker), { recursive: true, force: true });
  }
}

/** Moves a layer's entries over the tree below it: a folder in both is merged (the layer's mode and owner win), anything else replaces. */
function mergeInto(from: string, to: string): void {
  for (const name of readdirSync(from)) {
    const source = join(from, name);
    const target = join(to, name);
    const sourceStat = lstatSync(source);
    const targetStat = lstatSync(target, { throwIfNoEntry: false });
    if (sourceStat.isDirectory() && targetStat?.isDirectory()) {
      mergeInto(source, target);
      lchownSync(target, sourceStat.uid, sourceStat.gid);
      chmodSync(target, sourceStat.mode & 0o7777);
      continue;
    }
    if (targetStat) rmSync(target, { recursive: true, force: true });
    renameSync(source, target);
  }
}

function treeSize(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += treeSize(path);
    else total += lstatSync(path).size;
  }
  return total;
}
