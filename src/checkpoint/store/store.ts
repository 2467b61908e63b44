import { lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { StasisError } from '../../errors.ts';
import { copyTree } from '../../host/walk.ts';
import { CHUNK_BYTES } from '../../host/chunks.ts';
import { acquireLock } from '../../state/lock.ts';
import { FILES, META_FILE } from '../format/layout.ts';
import { listChunks, makeStoreDirs, readChunk, removeChunk, storePaths, sweepLeftovers, STORE_DIR, type StorePaths } from './chunks.ts';
import { storeStep } from './faults.ts';
import { MANIFEST_FILE, indexFolder, readManifest, writeManifest } from './manifest.ts';
import { heldByMaterialised, packCheckpoint, readHeld, rebuildFiles, removeBigFiles, type Indexed } from './pack.ts';

// The checkpoint store: the checkpoints kept under the checkpoint directory
// (<dir>/<id>/<name>/), the newest of each container materialised, the older
// ones packed into chunk files (chunks.ts) holding only what no other
// checkpoint holds. Every command takes the store's lock, then first finishes
// or undoes what a killed one left (recover), then does its work.

/** A checkpoint kept under the checkpoint directory. */
export interface Kept {
  container: string;
  name: string;
  path: string;
}

export interface Store {
  checkpointDir: string;
  paths: StorePaths;
}

/** The kept checkpoints, by container, oldest first (their folder names are their times). */
export function keptCheckpoints(checkpointDir: string): Kept[] {
  const kept: Kept[] = [];
  const isDir = (path: string) => lstatSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
  if (!isDir(checkpointDir)) return kept;
  for (const container of readdirSync(checkpointDir).sort()) {
    if (container.startsWith('.') || !isDir(join(checkpointDir, container))) continue;
    for (const name of readdirSync(join(checkpointDir, container)).sort()) {
      const path = join(checkpointDir, container, name);
      if (!name.startsWith('.') && isDir(path) && isDir(join(path, FILES.images))) kept.push({ container, name, path });
    }
  }
  return kept;
}

/** Runs `work` holding the store's lock, after the leftovers of a killed command are dealt with. */
export async function withStore<T>(checkpointDir: string, work: (store: Store) => T | Promise<T>): Promise<T> {
  mkdirSync(checkpointDir, { recursive: true, mode: 0o700 });
  const real = realpathSync(checkpointDir);
  const lock = await acquireLock(real, 'checkpoint-store', { what: `the checkpoint store in ${real}` });
  try {
    const store = { checkpointDir: real, paths: storePaths(real) };
    makeStoreDirs(store.paths);
    recover(store);
    return await work(store);
  } finally {
    await lock.release();
  }
}

/** Finishes the packs and undoes the re-materialisations a kill interrupted; removes temporary chunks and the trash. */
function recover(store: Store): void {
  sweepLeftovers(store.paths);
  const known: Indexed[] = [];
  let damaged = false;
  for (const kept of keptCheckpoints(store.checkpointDir)) {
    let manifest;
    try {
      manifest = readManifest(kept.path);
    } catch {
      damaged = true;
      continue;
    }
    if (manifest?.state === 'packed') removeBigFiles(kept.path, manifest);
    if (manifest) known.push({ path: kept.path, manifest });
  }
  // What a killed pack wrote before recording it, or a killed removal did not collect: no packed checkpoint needs it.
  if (!damaged) collectGarbage(store, known);
}

/** A checkpoint's manifest, indexing (hashing) it first if it has none. */
export function indexed(kept: Kept): Indexed {
  let manifest = readManifest(kept.path);
  if (manifest === null) {
    manifest = indexFolder(kept.path);
    writeManifest(kept.path, manifest);
  }
  return { path: kept.path, manifest };
}

/** Why a checkpoint must stay as CRIU wrote it, or null: a pre-dump, one on a parent, or another's parent. */
export function unpackable(kept: Kept, all: Kept[]): string | null {
  const images = join(kept.path, FILES.images);
  if (lstatSync(join(images, 'parent'), { throwIfNoEntry: false }) !== undefined) return 'it was taken on top of a parent';
  try {
    if ((JSON.parse(readFileSync(join(kept.path, META_FILE), 'utf8')) as { preDump?: unknown }).preDump === true) return 'it is a pre-dump';
  } catch {
    return 'its stasis.json cannot be read';
  }
  const child = all.find((other) => other.path !== kept.path && parentOf(other) === realpathSync(images));
  return child ? `${child.path} was taken on top of it` : null;
}

export function parentOf(kept: Kept): string | null {
  try {
    return realpathSync(join(kept.path, FILES.images, 'parent'));
  } catch {
    return null;
  }
}

/** The newest checkpoint of each container, among `kept`. */
export function newestOf(kept: Kept[]): Set<string> {
  const newest = new Map<string, string>();
  for (const k of kept) newest.set(k.container, k.path);
  return new Set(newest.values());
}

export interface KeepResult {
  /** Time spent hashing the new checkpoint's big files. */
  hashMs: number;
  /** The older checkpoints packed. */
  packed: string[];
  /** Bytes of chunk files written. */
  chunkBytes: number;
}

/**
 * A new checkpoint kept under the checkpoint directory: it is indexed, and
 * every older checkpoint of the same container that is still materialised is packed.
 */
export async function keepCheckpoint(checkpointDir: string, path: string): Promise<KeepResult> {
  return withStore(checkpointDir, (store) => {
    const kept = keptCheckpoints(store.checkpointDir);
    const self = kept.find((k) => k.path === resolve(store.checkpointDir, relative(checkpointDir, path)));
    if (self === undefined) return { hashMs: 0, packed: [], chunkBytes: 0 };
    const started = Date.now();
    indexed(self);
    const hashMs = Date.now() - started;
    const all = kept.map(indexed);
    const newest = newestOf(kept);
    const result: KeepResult = { hashMs, packed: [], chunkBytes: 0 };
    for (const [at, k] of kept.entries()) {
      if (k.container !== self.container || newest.has(k.path) || all[at].manifest.state === 'packed' || unpackable(k, kept) !== null) continue;
      result.chunkBytes += packCheckpoint(store.paths, all[at], all);
      result.packed.push(k.path);
    }
    return result;
  });
}

/** Chunk files that no packed checkpoint needs are removed. Nothing is removed when a manifest cannot be read. */
export function collectGarbage(store: Store, all: Indexed[]): number {
  const needed = new Set<string>();
  for (const c of all) if (c.manifest.state === 'packed') for (const file of c.manifest.files) for (const hash of file.chunks) needed.add(hash);
  let freed = 0;
  for (const [hash, size] of listChunks(store.paths)) {
    if (needed.has(hash)) continue;
    removeChunk(store.paths, hash);
    freed += size;
    storeStep('gc-chunk-removed');
  }
  return freed;
}

/**
 * Materialises a packed checkpoint folder into `into` (made; must not
 * exist): its files copied, its big files rebuilt from the store and checked.
 * Throws, naming the checkpoint and the chunk, on a missing or damaged chunk.
 */
export async function materialiseCopy(checkpointDir: string, dir: string, into: string, shown: string): Promise<void> {
  await withStore(checkpointDir, (store) => {
    const manifest = readManifest(dir);
    if (manifest === null || manifest.state !== 'packed') throw new StasisError(`checkpoint ${shown} is not packed`);
    const all = keptCheckpoints(store.checkpointDir).flatMap((k) => {
      const m = readManifest(k.path);
      return m === null ? [] : [{ path: k.path, manifest: m }];
    });
    copyTree(dir, into);
    rmSync(join(into, MANIFEST_FILE), { force: true });
    rebuildFiles(store.paths, { path: dir, manifest }, into, heldByMaterialised(all, dir), shown);
  });
}

/** Whether `dir` is a packed checkpoint of the store in `checkpointDir` (else it is read as it is). */
export function isPacked(dir: string): boolean {
  try {
    return readManifest(dir)?.state === 'packed';
  } catch {
    return false;
  }
}

/** The kept checkpoint `path` is (a folder, not a link, directly in a container's folder of the checkpoint directory), or null. */
export function keptPath(checkpointDir: string, path: string): Kept | null {
  let real: string;
  let root: string;
  try {
    // The folder itself, never what a link names: removing a link's target by the link's name would surprise.
    if (!lstatSync(path, { throwIfNoEntry: false })?.isDirectory()) return null;
    real = join(realpathSync(dirname(resolve(path))), basename(resolve(path)));
    root = realpathSync(checkpointDir);
  } catch {
    return null;
  }
  const rel = relative(root, real).split('/');
  if (rel.length !== 2 || rel[0].startsWith('.') || rel[1].startsWith('.') || rel[0] === '..' || rel[0] === STORE_DIR) return null;
  return keptCheckpoints(root).find((k) => k.path === real) ?? null;
}

/** A chunk's bytes from the store, checked (length and SHA-256), or null when the store does not hold it. */
export type ChunkReader = (hash: string, length: number) => Buffer | null;

/**
 * Runs `work` with what the store in `checkpointDir` holds (the hashes of its
 * chunk files and of its materialised checkpoints' indexed files) and a
 * reader of those chunks, under the store's lock. A checkpoint directory that
 * does not exist holds nothing (and is not made).
 */
export async function withChunkReader<T>(checkpointDir: string, work: (held: Set<string>, read: ChunkReader) => T): Promise<T> {
  if (!lstatSync(checkpointDir, { throwIfNoEntry: false })?.isDirectory()) return work(new Set(), () => null);
  return withStore(checkpointDir, (store) => {
    // Not indexed yet (a checkpoint kept by migrate --keep): indexed now, as any store command does.
    const all = keptCheckpoints(store.checkpointDir).map(indexed);
    const inFiles = heldByMaterialised(all, null);
    const held = new Set([...listChunks(store.paths).keys(), ...inFiles.keys()]);
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    return work(held, (hash, length) => {
      const fromFile = readChunk(store.paths, hash, length);
      if (typeof fromFile !== 'string') return fromFile;
      const at = inFiles.get(hash);
      const data = at === undefined || at.length !== length ? null : readHeld(at, hash, buffer);
      return data === null || typeof data === 'string' ? null : Buffer.from(data);
    });
  });
}
