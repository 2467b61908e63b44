import { rmSync } from 'node:fs';
import { indexFolder } from '../checkpoint/store/manifest.ts';
import { withChunkReader } from '../checkpoint/store/store.ts';
import { writeChunksTree } from '../checkpoint/store/transfer.ts';
import type { Control } from './control.ts';
import type { DeltaStats } from '../host/walk.ts';

// A move to a destination whose checkpoint store holds chunks of the
// checkpoint (a container moved back to where a checkpoint of it is kept; its
// check reply says how many chunks its store holds): the source asks which of
// its chunks the destination holds (`have`: the receiver says), and sends each big file as FILE.stasis-chunks: a header
// line (JSON: size, chunk size, every chunk's hash, the indices of the
// chunks that follow) and those chunks' bytes. The destination rebuilds the
// file from them and its store, each chunk checked against its hash (the same
// proof the whole file's hash would give, read once); anything else is refused.
// The format and its reader are the store's (src/checkpoint/store/transfer.ts),
// shared with `checkpoint --export --have`.

export { CHUNKS_SUFFIX, applyChunked } from '../checkpoint/store/transfer.ts';

/** The destination's answer to `have`: how many chunks its store holds, and which of `hashes` ('1'/'0' each). */
export async function storeHas(checkpointDir: string, hashes: unknown): Promise<{ ok: true; stored: number; have: string }> {
  const wanted = Array.isArray(hashes) ? hashes.map(String) : [];
  return withChunkReader(checkpointDir, (held) => ({ ok: true, stored: held.size, have: wanted.map((h) => (held.has(h) ? '1' : '0')).join('') }));
}

/**
 * Writes into `out` (made) the checkpoint `dir` as what the destination's
 * store lacks; null when it holds none of its chunks (then send it whole).
 */
export async function writeChunked(control: Control, dir: string, out: string): Promise<(DeltaStats & { reused: number }) | null> {
  const manifest = indexFolder(dir);
  const hashes = [...new Set(manifest.files.flatMap((f) => f.chunks))];
  const answer = await control.request({ op: 'have', hashes });
  if (answer.ok !== true || typeof answer.have !== 'string' || answer.have.length !== hashes.length) return null;
  const there = new Set(hashes.filter((_, i) => (answer.have as string)[i] === '1'));
  if (there.size === 0) return null;
  const { total, sent, reused } = writeChunksTree(dir, out, there, [], manifest);
  return { total, sent, reused };
}

/**
 * Sends the checkpoint taken at the freeze as what the destination's store
 * lacks (a folder beside it, removed once sent), or whole when its store holds
 * none of it. Returns the bytes sent, the checkpoint's size and the bytes the
 * destination's store gave.
 */
export async function sendChunked(control: Control, checkpointPath: string, scratch: string, send: (dir: string) => Promise<number>, progress: (step: string) => void): Promise<{ bytes: number; checkpointBytes: number; fromStore: number }> {
  const out = `${scratch}.chunks`;
  try {
    progress('asking which chunks its checkpoint store holds');
    const chunked = await writeChunked(control, checkpointPath, out);
    if (chunked === null) return { bytes: await send(checkpointPath), checkpointBytes: 0, fromStore: 0 };
    return { bytes: await send(out), checkpointBytes: chunked.total, fromStore: chunked.reused };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
