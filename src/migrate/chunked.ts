import { closeSync, fstatSync, ftruncateSync, lstatSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StasisError } from '../errors.ts';
import { CHUNK_BYTES, chunkLength, readAt, sha256Hex, writeAll } from '../host/chunks.ts';
import { walkTree } from '../host/walk.ts';
import { indexFolder } from '../checkpoint/store/manifest.ts';
import { withChunkReader } from '../checkpoint/store/store.ts';
import type { Control } from './control.ts';
import { writeSendTree, type DeltaStats } from './delta.ts';

// A move to a destination whose checkpoint store holds chunks of the
// checkpoint (a container moved back to where a checkpoint of it is kept; its
// check reply says how many chunks its store holds): the source asks which of
// its chunks the destination holds (`have`: the receiver says), and sends each big file as FILE.stasis-chunks: a header
// line (JSON: size, chunk size, every chunk's hash, the indices of the
// chunks that follow) and those chunks' bytes. The destination rebuilds the
// file from them and its store, each chunk checked against its hash (the same
// proof the whole file's hash would give, read once); anything else is refused.

export const CHUNKS_SUFFIX = '.stasis-chunks';
const MAX_HEADER = 16 * 1024 * 1024;

interface ChunksHeader {
  size: number;
  chunk: number;
  hashes: string[];
  sent: number[];
}

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
  const byPath = new Map(manifest.files.map((f) => [f.path, f]));
  let reused = 0;
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  const stats = writeSendTree(dir, out, (entry, target) => {
    const file = byPath.get(entry.path);
    if (file === undefined || !file.chunks.some((h) => there.has(h))) return null;
    const sent = file.chunks.flatMap((h, i) => (there.has(h) ? [] : [i]));
    const fd = openSync(entry.full, 'r');
    const outFd = openSync(`${target}${CHUNKS_SUFFIX}`, 'wx', 0o600);
    try {
      const header: ChunksHeader = { size: file.size, chunk: CHUNK_BYTES, hashes: file.chunks, sent };
      const headerLine = Buffer.from(`${JSON.stringify(header)}\n`);
      writeAll(outFd, headerLine);
      let written = headerLine.length;
      for (const index of sent) {
        const length = chunkLength(file.size, index);
        const n = readAt(fd, buffer.subarray(0, length), index * CHUNK_BYTES);
        // The file is the one just hashed (the container is frozen, the folder ours): a change means a fault here.
        if (n !== length || sha256Hex(buffer.subarray(0, n)) !== file.chunks[index]) throw new StasisError(`${entry.full} changed while it was sent`);
        writeAll(outFd, buffer.subarray(0, n));
        written += n;
      }
      reused += file.size - sent.reduce((sum, i) => sum + chunkLength(file.size, i), 0);
      return written;
    } finally {
      closeSync(fd);
      closeSync(outFd);
    }
  });
  return { ...stats, reused };
}

function bad(name: string, why: string): StasisError {
  return new StasisError(`the chunked file ${name} is not usable: ${why}`, { code: 'bad-delta' });
}

function readHeader(fd: number, name: string): { header: ChunksHeader; bodyAt: number } {
  const probe = Buffer.alloc(Math.min(MAX_HEADER, fstatSync(fd).size));
  const n = readAt(fd, probe, 0);
  const end = probe.subarray(0, n).indexOf(0x0a);
  if (end < 0) throw bad(name, 'no header line');
  let h: Partial<ChunksHeader>;
  try {
    h = JSON.parse(probe.subarray(0, end).toString('utf8')) as Partial<ChunksHeader>;
  } catch {
    throw bad(name, 'its header is not JSON');
  }
  if (h.chunk !== CHUNK_BYTES) throw bad(name, `chunk size ${String(h.chunk)} (expected ${CHUNK_BYTES})`);
  if (typeof h.size !== 'number' || !Number.isSafeInteger(h.size) || h.size < 0) throw bad(name, 'a bad size');
  const count = Math.ceil(h.size / CHUNK_BYTES);
  if (!Array.isArray(h.hashes) || h.hashes.length !== count || h.hashes.some((x) => typeof x !== 'string' || !/^[0-9a-f]{64}$/.test(x))) throw bad(name, 'its chunk hashes do not fit its size');
  if (!Array.isArray(h.sent) || h.sent.some((c, i) => !Number.isSafeInteger(c) || c < 0 || c >= count || (i > 0 && c <= h.sent![i - 1]))) throw bad(name, 'its list of chunks sent is not increasing chunk numbers of the file');
  return { header: h as ChunksHeader, bodyAt: end + 1 };
}

/**
 * Rebuilds, in `dir` (an unpacked transfer), every FILE.stasis-chunks into
 * FILE from the chunks it carries and the store of `checkpointDir`, checking
 * each chunk and the whole file. Throws on any mismatch or missing chunk.
 */
export async function applyChunked(checkpointDir: string, dir: string): Promise<number> {
  const files = [...walkTree(dir)].filter((e) => e.kind === 'file' && e.path.endsWith(CHUNKS_SUFFIX));
  if (files.length === 0) return 0;
  return withChunkReader(checkpointDir, (_, read) => {
    for (const entry of files) {
      const rel = entry.path.slice(0, -CHUNKS_SUFFIX.length);
      const target = join(dir, rel);
      const temp = join(dirname(target), `.${rel.split('/').pop()}.rebuild`);
      if (lstatSync(target, { throwIfNoEntry: false }) !== undefined) throw bad(entry.path, `${rel} is there whole too`);
      const fd = openSync(entry.full, 'r');
      const out = openSync(temp, 'wx', 0o600);
      try {
        const { header, bodyAt } = readHeader(fd, entry.path);
        ftruncateSync(out, header.size);
        const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
        const sent = new Set(header.sent);
        let at = bodyAt;
        for (const [index, hash] of header.hashes.entries()) {
          const length = chunkLength(header.size, index);
          let data: Buffer | null;
          if (sent.has(index)) {
            data = buffer.subarray(0, readAt(fd, buffer.subarray(0, length), at));
            at += length;
            if (data.length !== length) throw bad(entry.path, 'it ends early');
            if (sha256Hex(data) !== hash) throw bad(entry.path, `chunk ${index} does not have its hash`);
          } else {
            data = read(hash, length);
            if (data === null) throw bad(entry.path, `chunk ${index} (${hash}) is not in this host's checkpoint store`);
          }
          writeAll(out, data, index * CHUNK_BYTES);
        }
        // Every chunk was checked against its hash as it was written: the file is the sender's, chunk for chunk.
        if (at !== fstatSync(fd).size) throw bad(entry.path, 'it holds more than its chunks');
      } catch (err) {
        rmSync(temp, { force: true });
        throw err;
      } finally {
        closeSync(fd);
        closeSync(out);
      }
      renameSync(temp, target);
      rmSync(entry.full);
    }
    return files.length;
  });
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
