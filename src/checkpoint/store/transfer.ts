import { closeSync, fstatSync, ftruncateSync, lstatSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StasisError } from '../../errors.ts';
import { CHUNK_BYTES, chunkLength, readAt, sha256Hex, writeAll } from '../../host/chunks.ts';
import { walkTree, type TreeEntry } from '../../host/walk.ts';
import type { ManifestFile } from './manifest.ts';
import { withChunkReader } from './store.ts';

// A big file sent to a host whose checkpoint store holds some of its chunks
// (a full migrate): FILE.stasis-chunks, a header line
// (JSON: size, chunk size, every chunk's hash, the indices of the chunks that
// follow) and those chunks' bytes. The receiver rebuilds the file from them
// and its store, each chunk checked against its hash (the same proof the
// whole file's hash would give, read once); anything else is refused.

export const CHUNKS_SUFFIX = '.stasis-chunks';
const MAX_HEADER = 16 * 1024 * 1024;

export interface ChunksHeader {
  size: number;
  chunk: number;
  hashes: string[];
  sent: number[];
}

/**
 * Writes `entry` (a big file of `file`'s manifest, as hashed) as
 * `${target}.stasis-chunks`, carrying the chunks not in `there`; null (write
 * nothing) when `there` holds none of them. Returns the bytes written and
 * the file's bytes left to the receiver's store.
 */
export function writeChunksFile(entry: TreeEntry, target: string, file: ManifestFile, there: ReadonlySet<string>): { written: number; reused: number } | null {
  if (!file.chunks.some((h) => there.has(h))) return null;
  const sent = file.chunks.flatMap((h, i) => (there.has(h) ? [] : [i]));
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
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
      // The file is the one just hashed (a finished checkpoint, or one frozen for a move): a change means a fault here.
      if (n !== length || sha256Hex(buffer.subarray(0, n)) !== file.chunks[index]) throw new StasisError(`${entry.full} changed while it was sent`);
      writeAll(outFd, buffer.subarray(0, n));
      written += n;
    }
    return { written, reused: file.size - sent.reduce((sum, i) => sum + chunkLength(file.size, i), 0) };
  } finally {
    closeSync(fd);
    closeSync(outFd);
  }
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
  if (h === null || typeof h !== 'object') throw bad(name, 'its header is not an object');
  if (h.chunk !== CHUNK_BYTES) throw bad(name, `chunk size ${String(h.chunk)} (expected ${CHUNK_BYTES})`);
  if (typeof h.size !== 'number' || !Number.isSafeInteger(h.size) || h.size < 0) throw bad(name, 'a bad size');
  const count = Math.ceil(h.size / CHUNK_BYTES);
  if (!Array.isArray(h.hashes) || h.hashes.length !== count || h.hashes.some((x) => typeof x !== 'string' || !/^[0-9a-f]{64}$/.test(x))) throw bad(name, 'its chunk hashes do not fit its size');
  if (!Array.isArray(h.sent) || h.sent.some((c, i) => !Number.isSafeInteger(c) || c < 0 || c >= count || (i > 0 && c <= h.sent![i - 1]))) throw bad(name, 'its list of chunks sent is not increasing chunk numbers of the file');
  const body = h.sent.reduce((sum, i) => sum + chunkLength(h.size!, i), 0);
  if (fstatSync(fd).size !== end + 1 + body) throw bad(name, `it holds ${fstatSync(fd).size - end - 1} bytes of chunks, not the ${body} its header lists`);
  return { header: h as ChunksHeader, bodyAt: end + 1 };
}

/** A FILE.stasis-chunks file's header, checked (its body's length too); throws naming it. */
export function readChunksHeader(path: string, name: string): ChunksHeader {
  const fd = openSync(path, 'r');
  try {
    return readHeader(fd, name).header;
  } finally {
    closeSync(fd);
  }
}

/** The FILE.stasis-chunks files under `dir`. */
export function chunksFilesIn(dir: string): TreeEntry[] {
  return [...walkTree(dir)].filter((e) => e.kind === 'file' && e.path.endsWith(CHUNKS_SUFFIX));
}

/**
 * Rebuilds, in `dir` (an unpacked transfer), every FILE.stasis-chunks into
 * FILE from the chunks it carries and the store of `checkpointDir`, checking
 * each chunk. Throws on any mismatch or missing chunk (the file being rebuilt
 * is then removed; `dir` is the caller's to remove).
 */
export async function applyChunked(checkpointDir: string, dir: string): Promise<number> {
  const files = chunksFilesIn(dir);
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
