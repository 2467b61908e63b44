import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chunkLength } from '../../host/chunks.ts';
import { treeBytes } from '../../host/walk.ts';
import { META_FILE } from '../format/layout.ts';
import { bigFilesIn, type StoreState } from './manifest.ts';
import { indexed, keptCheckpoints, type Store } from './store.ts';

// `stasis checkpoint ls`: each kept checkpoint, its size as a folder, what
// only it holds (removing it frees that much) and what it shares with others.

export interface KeptReport {
  container: string;
  name: string;
  path: string;
  /** When it was taken (stasis.json), or null. */
  created: string | null;
  state: StoreState;
  /** Its files' bytes as a folder (materialised). */
  size: number;
  /** The bytes no other checkpoint holds. */
  ownBytes: number;
  /** The bytes of its chunks another checkpoint holds too. */
  sharedBytes: number;
}

function createdAt(dir: string): string | null {
  try {
    const at = (JSON.parse(readFileSync(join(dir, META_FILE), 'utf8')) as { checkpointedAt?: unknown }).checkpointedAt;
    return typeof at === 'string' ? at : null;
  } catch {
    return null;
  }
}

export function storeReport(store: Store, container: string | null): KeptReport[] {
  const kept = keptCheckpoints(store.checkpointDir);
  const all = kept.map(indexed);
  // In how many checkpoints each chunk is.
  const refs = new Map<string, number>();
  for (const c of all) for (const hash of new Set(c.manifest.files.flatMap((f) => f.chunks))) refs.set(hash, (refs.get(hash) ?? 0) + 1);
  const reports: KeptReport[] = [];
  for (const [at, k] of kept.entries()) {
    if (container !== null && k.container !== container) continue;
    const manifest = all[at].manifest;
    const present = bigFilesIn(k.path).reduce((sum, f) => sum + f.size, 0);
    const small = treeBytes(k.path) - present;
    const size = small + manifest.files.reduce((sum, f) => sum + f.size, 0);
    let own = small;
    const seen = new Set<string>();
    for (const file of manifest.files) {
      file.chunks.forEach((hash, index) => {
        if (seen.has(hash)) return;
        seen.add(hash);
        if (refs.get(hash) === 1) own += chunkLength(file.size, index);
      });
    }
    reports.push({ container: k.container, name: k.name, path: k.path, created: createdAt(k.path), state: manifest.state, size, ownBytes: own, sharedBytes: size - own });
  }
  return reports;
}
