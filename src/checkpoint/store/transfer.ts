import { closeSync, fstatSync, ftruncateSync, lstatSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StasisError } from '../../errors.ts';
import { CHUNK_BYTES, chunkLength, readAt, sha256Hex, writeAll } from '../../host/chunks.ts';
import { walkTree, writeSendTree, type TreeEntry } from '../../host/walk.ts';
import { indexFolder, isBigFile, type ManifestFile } from './manifest.ts';
import { withChunkReader } from './store.ts';

// A big file sent to a host whose checkpoint store holds some of its chunks
// (a full migrate, an export with --have): FILE.stasis-chunks, a header line
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
      // What the store cuts into chunks, nothing else: a received spec or metadata is never built from a store.
      if (!isBigFile(rel)) throw bad(entry.path, `${rel} is not a memory image or tar of a checkpoint`);
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

// An export for a receiver whose have-list was given (checkpoint --export
// --have): the folder as sent, each big file with chunks in the list as
// FILE.stasis-chunks, and at the top CHUNKED_MARKER, which says so. Only
// stasis reads such an archive; a restore rebuilds every file first.

export const CHUNKED_MARKER = 'stasis-chunked.json';

export interface ChunkedFileSummary {
  path: string;
  size: number;
  /** Bytes, and chunks, the receiver's store must give. */
  fromStore: number;
  chunksFromStore: number;
}

export interface ChunkedSummary {
  format: 1;
  chunkBytes: number;
  files: ChunkedFileSummary[];
}

/**
 * Writes into `out` (made; must not exist) the checkpoint `dir` with each big
 * file that `there` holds chunks of as FILE.stasis-chunks (`manifest`: the
 * folder's, when the caller has it already), leaving out the top-level
 * `leaveOut`. Returns the bytes of the checkpoint, those written, those left
 * to the receiver's store, and the files sent as chunks.
 */
export function writeChunksTree(dir: string, out: string, there: ReadonlySet<string>, leaveOut: readonly string[] = [], manifest = indexFolder(dir)): { total: number; sent: number; reused: number; files: ChunkedFileSummary[] } {
  const byPath = new Map(manifest.files.map((f) => [f.path, f]));
  const files: ChunkedFileSummary[] = [];
  let reused = 0;
  const stats = writeSendTree(dir, out, (entry, target) => {
    const file = byPath.get(entry.path);
    const done = file === undefined ? null : writeChunksFile(entry, target, file, there);
    if (done === null) return null;
    reused += done.reused;
    files.push({ path: entry.path, size: file!.size, fromStore: done.reused, chunksFromStore: file!.chunks.filter((h) => there.has(h)).length });
    return done.written;
  }, leaveOut);
  return { ...stats, reused, files };
}

/**
 * Writes into `out` (made; must not exist) the checkpoint `dir` as an export
 * for a store holding `there`, leaving out the top-level `leaveOut`, with the
 * marker that says so. Returns the bytes of the checkpoint, those written,
 * and those left to the store.
 */
export function writeChunkedTree(dir: string, out: string, there: ReadonlySet<string>, leaveOut: readonly string[] = []): { total: number; sent: number; reused: number; summary: ChunkedSummary } {
  const tree = writeChunksTree(dir, out, there, [...leaveOut, CHUNKED_MARKER]);
  const summary: ChunkedSummary = { format: 1, chunkBytes: CHUNK_BYTES, files: tree.files };
  const marker = `${JSON.stringify(summary)}\n`;
  writeFileSync(join(out, CHUNKED_MARKER), marker, { mode: 0o600 });
  return { total: tree.total, sent: tree.sent + marker.length, reused: tree.reused, summary };
}

function refused(why: string): StasisError {
  return new StasisError(`a chunked archive (${CHUNKED_MARKER}) that is not usable: ${why}`, { code: 'bad-delta' });
}

/** The summary of an unpacked archive, checked; null when it is not a chunked one. */
export function readChunkedSummary(dir: string): ChunkedSummary | null {
  const path = join(dir, CHUNKED_MARKER);
  const stat = lstatSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return null;
  if (!stat.isFile() || stat.size > MAX_HEADER) throw refused(`${CHUNKED_MARKER} is not a small file`);
  let s: Partial<ChunkedSummary>;
  try {
    s = JSON.parse(readFileSync(path, 'utf8')) as Partial<ChunkedSummary>;
  } catch {
    throw refused(`${CHUNKED_MARKER} is not JSON`);
  }
  if (s === null || typeof s !== 'object' || s.format !== 1) throw refused(`${CHUNKED_MARKER}: format ${String(s?.format)} (this stasis reads 1)`);
  if (s.chunkBytes !== CHUNK_BYTES) throw refused(`chunks of ${String(s.chunkBytes)} bytes (this stasis cuts ${CHUNK_BYTES})`);
  if (!Array.isArray(s.files) || s.files.length === 0) throw refused(`${CHUNKED_MARKER} lists no file`);
  const seen = new Set<string>();
  for (const f of s.files as Partial<ChunkedFileSummary>[]) {
    if (f === null || typeof f !== 'object' || typeof f.path !== 'string' || !isBigFile(f.path) || seen.has(f.path)) throw refused(`${CHUNKED_MARKER} lists ${JSON.stringify(f?.path)}, not a memory image or tar of a checkpoint (or twice)`);
    seen.add(f.path);
    for (const key of ['size', 'fromStore', 'chunksFromStore'] as const) {
      if (typeof f[key] !== 'number' || !Number.isSafeInteger(f[key]) || f[key] < 0) throw refused(`${f.path}: a bad ${key}`);
    }
  }
  return s as ChunkedSummary;
}

/**
 * Rebuilds an unpacked archive `dir` that says it is chunked: every big file
 * from its chunks there and the store of `checkpointDir`, each chunk checked.
 * The FILE.stasis-chunks entries must be exactly the marker's files, each
 * header valid and agreeing with it, and their sizes within `room` (an error,
 * or null). An archive that does not say it is chunked may hold none. Returns
 * the summary (null: not chunked). Throws, with `dir` the caller's to remove.
 */
export async function rebuildChunkedArchive(checkpointDir: string, dir: string, room: (bytes: number) => Error | null): Promise<ChunkedSummary | null> {
  const summary = readChunkedSummary(dir);
  const entries = chunksFilesIn(dir);
  if (summary === null) {
    if (entries.length > 0) throw refused(`it holds ${entries[0].path} but no ${CHUNKED_MARKER} saying it is chunked`);
    return null;
  }
  const listed = new Map(summary.files.map((f) => [`${f.path}${CHUNKS_SUFFIX}`, f]));
  for (const entry of entries) {
    const file = listed.get(entry.path);
    if (file === undefined) throw refused(`${entry.path} is not one of the files ${CHUNKED_MARKER} lists`);
    const header = readChunksHeader(entry.full, entry.path);
    const sent = new Set(header.sent);
    const fromStore = header.hashes.reduce((sum, _, i) => sum + (sent.has(i) ? 0 : chunkLength(header.size, i)), 0);
    if (header.size !== file.size || fromStore !== file.fromStore) throw refused(`${entry.path}: its header and ${CHUNKED_MARKER} disagree`);
    listed.delete(entry.path);
  }
  if (listed.size > 0) throw refused(`${[...listed.keys()][0]} is missing`);
  const tooBig = room(summary.files.reduce((sum, f) => sum + f.size, 0));
  if (tooBig !== null) throw refused(`its files, rebuilt: ${tooBig.message}`);
  await applyChunked(checkpointDir, dir);
  rmSync(join(dir, CHUNKED_MARKER));
  return summary;
}
