import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError, errorMessage } from '../../errors.ts';
import { CHUNK_BYTES, chunkLength, hashChunks } from '../../host/chunks.ts';
import { walkTree } from '../../host/walk.ts';
import { writeJsonAtomic } from '../../state/atomic.ts';
import { FILES } from '../format/layout.ts';

// A kept checkpoint's manifest (stasis-store.json in its folder): its big
// files (CRIU's page images, the layer's tar, the volumes' tars), each as its
// size, mode and the SHA-256 of each CHUNK_BYTES chunk; and whether those files
// are in the folder (materialised) or only in the store (packed). A folder
// without one is indexed by the next store command.

export const MANIFEST_FILE = 'stasis-store.json';

export type StoreState = 'materialised' | 'packed';

export interface ManifestFile {
  /** Relative to the checkpoint folder, '/'-separated. */
  path: string;
  size: number;
  mode: number;
  chunks: string[];
}

export interface StoreManifest {
  format: 1;
  chunkBytes: number;
  state: StoreState;
  files: ManifestFile[];
}

/** Whether `path` (relative to a checkpoint folder) is one of the files the store cuts into chunks. */
export function isBigFile(path: string): boolean {
  return /^checkpoint\/pages-[0-9]+\.img$/.test(path) || path === FILES.diff || /^volumes\/[^/]+\.tar$/.test(path);
}

/** The big files of a checkpoint folder as they are on disk now (regular files only, links never followed). */
export function bigFilesIn(dir: string): { path: string; full: string; size: number; mode: number }[] {
  const found: { path: string; full: string; size: number; mode: number }[] = [];
  for (const entry of walkTree(dir, { maxDepth: 2 })) {
    if (entry.kind === 'file' && isBigFile(entry.path)) found.push({ path: entry.path, full: entry.full, size: entry.stat.size, mode: entry.stat.mode & 0o7777 });
  }
  return found;
}

/** Hashes a materialised folder's big files into a manifest (not written). */
export function indexFolder(dir: string): StoreManifest {
  const files = bigFilesIn(dir).map((file) => {
    const hashed = hashChunks(file.full);
    return { path: file.path, size: hashed.size, mode: file.mode, chunks: hashed.chunks };
  });
  return { format: 1, chunkBytes: CHUNK_BYTES, state: 'materialised', files };
}

function damaged(dir: string, why: string): StasisError {
  return new StasisError(`checkpoint ${dir}: its store manifest ${MANIFEST_FILE} is damaged: ${why}`, {
    code: 'damaged',
    hint: `if ${dir} still holds its checkpoint/pages-*.img, remove ${MANIFEST_FILE} and the next command indexes it again; else remove the folder`,
  });
}

/** The manifest of a checkpoint folder, checked; null when it has none. */
export function readManifest(dir: string): StoreManifest | null {
  const path = join(dir, MANIFEST_FILE);
  if (!lstatSync(path, { throwIfNoEntry: false })?.isFile()) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw damaged(dir, errorMessage(err));
  }
  const m = raw as Partial<StoreManifest>;
  if (m.format !== 1) throw damaged(dir, `format ${String(m.format)}`);
  if (m.chunkBytes !== CHUNK_BYTES) throw damaged(dir, `chunk size ${String(m.chunkBytes)} (this stasis uses ${CHUNK_BYTES})`);
  if (m.state !== 'materialised' && m.state !== 'packed') throw damaged(dir, `state ${String(m.state)}`);
  if (!Array.isArray(m.files)) throw damaged(dir, 'no file list');
  for (const f of m.files as Partial<ManifestFile>[]) {
    if (typeof f.path !== 'string' || !isBigFile(f.path)) throw damaged(dir, `a file ${JSON.stringify(f.path)} the store never holds`);
    if (typeof f.size !== 'number' || !Number.isSafeInteger(f.size) || f.size < 0) throw damaged(dir, `${f.path}: a bad size`);
    if (typeof f.mode !== 'number' || !Number.isInteger(f.mode) || f.mode < 0 || f.mode > 0o7777) throw damaged(dir, `${f.path}: a bad mode`);
    if (!Array.isArray(f.chunks) || f.chunks.length !== Math.ceil(f.size / CHUNK_BYTES) || f.chunks.some((h) => typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h))) {
      throw damaged(dir, `${f.path}: its chunk list does not fit its size`);
    }
  }
  return m as StoreManifest;
}

export function writeManifest(dir: string, manifest: StoreManifest): void {
  writeJsonAtomic(join(dir, MANIFEST_FILE), manifest);
}

/** Every chunk of a manifest with its length: hash -> bytes. */
export function chunkSizes(manifest: StoreManifest): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const file of manifest.files) file.chunks.forEach((hash, index) => sizes.set(hash, chunkLength(file.size, index)));
  return sizes;
}
