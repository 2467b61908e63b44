import { closeSync, lstatSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StasisError } from '../../errors.ts';
import { CHUNK_BYTES, chunkLength, readAt, sha256Hex, writeAll } from '../../host/chunks.ts';
import { hasChunk, readChunk, writeChunk, type StorePaths } from './chunks.ts';
import { storeStep } from './faults.ts';
import { readManifest, writeManifest, type ManifestFile, type StoreManifest } from './manifest.ts';

// Packing a checkpoint (its big files become chunks the store holds) and
// materialising one (its big files rebuilt from them). A chunk is held by the
// store when its chunk file exists, or when a materialised checkpoint's files
// hold it (its manifest says where): packing writes only the chunks held
// nowhere else, and the state "packed" is recorded only once every one is there.

/** A checkpoint the store knows: its folder and its manifest. */
export interface Indexed {
  path: string;
  manifest: StoreManifest;
}

/** Where a chunk's bytes are in a materialised checkpoint: file and offset. */
export interface HeldAt {
  file: string;
  offset: number;
  length: number;
}

/** The chunks the materialised checkpoints' files hold (all but `except`). */
export function heldByMaterialised(checkpoints: Indexed[], except: string | null): Map<string, HeldAt> {
  const held = new Map<string, HeldAt>();
  for (const c of checkpoints) {
    if (c.path === except || c.manifest.state !== 'materialised') continue;
    for (const file of c.manifest.files) {
      file.chunks.forEach((hash, index) => {
        if (!held.has(hash)) held.set(hash, { file: join(c.path, file.path), offset: index * CHUNK_BYTES, length: chunkLength(file.size, index) });
      });
    }
  }
  return held;
}

/** One chunk read from a file and checked; why not, as a string. */
export function readHeld(at: HeldAt, hash: string, buffer: Buffer): Buffer | string {
  let fd: number;
  try {
    fd = openSync(at.file, 'r');
  } catch {
    return `${at.file} is missing`;
  }
  try {
    const n = readAt(fd, buffer.subarray(0, at.length), at.offset);
    const data = buffer.subarray(0, n);
    if (n !== at.length || sha256Hex(data) !== hash) return `${at.file} changed since it was indexed`;
    return data;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the chunk files for the chunks of `files` (found in `dir`) that
 * `needed` says to write and that the store does not hold otherwise: no chunk
 * file, and not in `held`. Returns the bytes written.
 */
export function writeMissingChunks(paths: StorePaths, dir: string, files: ManifestFile[], held: Map<string, HeldAt>, needed: (hash: string) => boolean): number {
  let written = 0;
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  for (const file of files) {
    const full = join(dir, file.path);
    let fd: number | null = null;
    try {
      for (const [index, hash] of file.chunks.entries()) {
        if (!needed(hash) || held.has(hash) || hasChunk(paths, hash)) continue;
        fd ??= openSync(full, 'r');
        const length = chunkLength(file.size, index);
        const n = readAt(fd, buffer.subarray(0, length), index * CHUNK_BYTES);
        const data = buffer.subarray(0, n);
        if (n !== length || sha256Hex(data) !== hash) {
          throw new StasisError(`checkpoint ${dir}: ${file.path} changed since the store indexed it (chunk ${index}); nothing was packed or removed`, { code: 'damaged' });
        }
        written += writeChunk(paths, hash, data);
        storeStep('pack-chunk-written');
      }
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }
  return written;
}

/**
 * Packs a materialised checkpoint: the chunks held nowhere else are written,
 * then "packed" is recorded, then its big files go. A kill before the record
 * leaves it materialised (and some unneeded chunk files, which GC removes);
 * after it, recoverPacked removes the files that are left.
 */
export function packCheckpoint(paths: StorePaths, target: Indexed, all: Indexed[]): number {
  if (target.manifest.state === 'packed') return 0;
  const held = heldByMaterialised(all, target.path);
  const written = writeMissingChunks(paths, target.path, target.manifest.files, held, () => true);
  storeStep('pack-chunks-written');
  target.manifest = { ...target.manifest, state: 'packed' };
  writeManifest(target.path, target.manifest);
  storeStep('pack-recorded');
  removeBigFiles(target.path, target.manifest);
  return written;
}

/** Removes the big files of a packed checkpoint (and half-rebuilt ones): finishing a pack. */
export function removeBigFiles(dir: string, manifest: StoreManifest): void {
  for (const file of manifest.files) {
    rmSync(rebuildPath(join(dir, file.path)), { force: true });
    if (lstatSync(join(dir, file.path), { throwIfNoEntry: false }) === undefined) continue;
    rmSync(join(dir, file.path), { force: true });
    storeStep('pack-file-removed');
  }
}

function rebuildPath(full: string): string {
  return join(dirname(full), `.${full.split('/').pop()}.rebuild`);
}

/**
 * Rebuilds the big files of the packed checkpoint `source` into `targetDir`
 * (which holds its other files already), each chunk's length and SHA-256
 * checked before it is written; each file is written beside its name and
 * renamed. `shown` names the checkpoint in errors.
 */
export function rebuildFiles(paths: StorePaths, source: Indexed, targetDir: string, held: Map<string, HeldAt>, shown: string, onFile: () => void = () => undefined): void {
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  for (const file of source.manifest.files) {
    const full = join(targetDir, file.path);
    const temp = rebuildPath(full);
    const fd = openSync(temp, 'w', file.mode);
    try {
      for (const [index, hash] of file.chunks.entries()) {
        const length = chunkLength(file.size, index);
        let data = readChunk(paths, hash, length);
        if (typeof data === 'string' && held.has(hash)) {
          const again = readHeld(held.get(hash)!, hash, buffer);
          if (typeof again !== 'string') data = again;
        }
        if (typeof data === 'string') {
          throw new StasisError(`checkpoint ${shown}: chunk ${hash} of ${file.path} (bytes ${index * CHUNK_BYTES}-${index * CHUNK_BYTES + length - 1}) is ${data === 'missing' ? 'missing from the store' : `damaged in the store: ${data}`}`, {
            code: 'damaged',
            hint: 'the checkpoint cannot be rebuilt; remove it with `stasis checkpoint rm`',
          });
        }
        writeAll(fd, data, index * CHUNK_BYTES);
      }
    } catch (err) {
      closeSync(fd);
      rmSync(temp, { force: true });
      throw err;
    }
    closeSync(fd);
    renameSync(temp, full);
    onFile();
  }
}

/** The manifest of a kept folder, or null (not indexed yet). */
export function manifestOf(dir: string): StoreManifest | null {
  return readManifest(dir);
}
