import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex, writeAll } from '../../host/chunks.ts';
import { ownedTempPath, sweepOwnedTempDirs } from '../../host/scratch.ts';
import { walkTree } from '../../host/walk.ts';

// The chunk files: <checkpointDir>/.store/chunks/<first two hex digits>/<sha256>,
// each written to a temporary file named for its writer (.store/tmp) and
// renamed into place, so a chunk file that exists is whole. Removed folders
// pass through .store/trash (a rename), so a kill half way through a removal
// never leaves half a checkpoint where a checkpoint is looked for.

export const STORE_DIR = '.store';
const TEMP_PREFIX = '.chunk-';

export interface StorePaths {
  root: string;
  chunks: string;
  tmp: string;
  trash: string;
}

export function storePaths(checkpointDir: string): StorePaths {
  const root = join(checkpointDir, STORE_DIR);
  return { root, chunks: join(root, 'chunks'), tmp: join(root, 'tmp'), trash: join(root, 'trash') };
}

export function makeStoreDirs(paths: StorePaths): void {
  for (const dir of [paths.chunks, paths.tmp, paths.trash]) mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export function chunkPath(paths: StorePaths, hash: string): string {
  return join(paths.chunks, hash.slice(0, 2), hash);
}

export function hasChunk(paths: StorePaths, hash: string): boolean {
  return lstatSync(chunkPath(paths, hash), { throwIfNoEntry: false })?.isFile() === true;
}

/** Writes one chunk file (temp + rename): it exists whole or not at all. */
export function writeChunk(paths: StorePaths, hash: string, data: Buffer): number {
  const target = chunkPath(paths, hash);
  mkdirSync(join(paths.chunks, hash.slice(0, 2)), { recursive: true, mode: 0o700 });
  const temp = ownedTempPath(paths.tmp, TEMP_PREFIX);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeAll(fd, data);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(temp, target);
  return data.length;
}

/** A chunk file's bytes if it is there with the right length and hash; else why not. */
export function readChunk(paths: StorePaths, hash: string, length: number): Buffer | string {
  let data: Buffer;
  try {
    data = readFileSync(chunkPath(paths, hash));
  } catch {
    return 'missing';
  }
  if (data.length !== length) return `${data.length} bytes instead of ${length}`;
  if (sha256Hex(data) !== hash) return 'its bytes do not have its SHA-256';
  return data;
}

/** Every chunk file's hash, with its size. */
export function listChunks(paths: StorePaths): Map<string, number> {
  const found = new Map<string, number>();
  if (!lstatSync(paths.chunks, { throwIfNoEntry: false })?.isDirectory()) return found;
  for (const entry of walkTree(paths.chunks, { maxDepth: 2 })) {
    if (entry.kind === 'file' && entry.depth === 2 && /^[0-9a-f]{64}$/.test(entry.path.split('/')[1])) found.set(entry.path.split('/')[1], entry.stat.size);
  }
  return found;
}

export function removeChunk(paths: StorePaths, hash: string): void {
  rmSync(chunkPath(paths, hash), { force: true });
}

/** Temporary chunk files of killed writers, and whatever a removal left in the trash; returns how many folders the trash held. */
export function sweepLeftovers(paths: StorePaths): number {
  sweepOwnedTempDirs(paths.tmp, [TEMP_PREFIX]);
  let names: string[] = [];
  try {
    names = [...walkTree(paths.trash, { maxDepth: 1 })].map((e) => e.full);
  } catch {
    return 0;
  }
  for (const full of names) rmSync(full, { recursive: true, force: true });
  return names.length;
}
