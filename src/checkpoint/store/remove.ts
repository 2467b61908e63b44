import { randomBytes } from '../../host/digest.ts';
import { readdirSync, realpathSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StasisError } from '../../errors.ts';
import { FILES } from '../format/layout.ts';
import { storeStep } from './faults.ts';
import { writeManifest } from './manifest.ts';
import { heldByMaterialised, rebuildFiles, writeMissingChunks, type Indexed } from './pack.ts';
import { collectGarbage, indexed, keptCheckpoints, newestOf, parentOf, type Kept, type Store } from './store.ts';

// Removing a kept checkpoint never breaks another: the chunks the packed ones
// need that only its files hold are written first (if it was its container's
// newest, the next newest is materialised again before that, from its files
// where it can, so `restore ID` stays a plain read); then its folder is moved
// into the store's trash (one rename) and removed; then the chunk files that
// nothing packed needs are removed.

export interface Removed {
  path: string;
  /** The checkpoint materialised again because the newest of its container was removed, or null. */
  materialised: string | null;
  /** Bytes of chunk files written so that packed checkpoints keep what they need. */
  chunkBytesWritten: number;
  /** Bytes of chunk files removed as no longer needed. */
  chunkBytesFreed: number;
}

export function removeKept(store: Store, target: Kept): Removed {
  const kept = keptCheckpoints(store.checkpointDir);
  const images = realpathSync(join(target.path, FILES.images));
  const child = kept.find((k) => k.path !== target.path && parentOf(k) === images);
  if (child) throw new StasisError(`cannot remove checkpoint ${target.path}: ${child.path} was taken on top of it (CRIU reads its memory from it)`, { hint: `remove ${child.path} first` });
  const all = kept.map(indexed);
  const self = all.find((c) => c.path === target.path)!;
  let materialised: string | null = null;
  if (newestOf(kept).has(target.path)) {
    // The next newest is rebuilt first, from this one's files where it can: no chunk is written for it.
    const next = all.filter((c) => c.path !== target.path && dirname(c.path) === dirname(target.path)).pop();
    if (next !== undefined && next.manifest.state === 'packed') {
      rematerialise(store, next, all);
      materialised = next.path;
    }
  }
  let chunkBytesWritten = 0;
  if (self.manifest.state === 'materialised') {
    const neededByPacked = new Set<string>();
    for (const c of all) if (c.path !== target.path && c.manifest.state === 'packed') for (const f of c.manifest.files) for (const h of f.chunks) neededByPacked.add(h);
    chunkBytesWritten = writeMissingChunks(store.paths, target.path, self.manifest.files, heldByMaterialised(all, target.path), (h) => neededByPacked.has(h));
  }
  storeStep('rm-chunks-written');
  const trashed = join(store.paths.trash, `${target.container}-${target.name}-${randomBytes(4).toString('hex')}`);
  renameSync(target.path, trashed);
  storeStep('rm-moved');
  rmSync(trashed, { recursive: true, force: true });
  const remaining = all.filter((c) => c.path !== target.path);
  const chunkBytesFreed = collectGarbage(store, remaining);
  try {
    if (readdirSync(dirname(target.path)).length === 0) rmdirSync(dirname(target.path));
  } catch {
    // a checkpoint being written there meanwhile, or already gone
  }
  return { path: target.path, materialised, chunkBytesWritten, chunkBytesFreed };
}

/** A packed checkpoint made materialised again, in place: its files rebuilt (checked), then the record changed. */
export function rematerialise(store: Store, target: Indexed, all: Indexed[]): void {
  rebuildFiles(store.paths, target, target.path, heldByMaterialised(all, target.path), target.path, () => storeStep('rematerialise-file'));
  storeStep('rematerialise-files');
  target.manifest = { ...target.manifest, state: 'materialised' };
  writeManifest(target.path, target.manifest);
}
