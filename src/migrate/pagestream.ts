import { closeSync, constants, ftruncateSync, fstatSync, lstatSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { StasisError } from '../errors.ts';
import { readAt } from '../host/chunks.ts';
import { sha256, type Hasher } from '../host/digest.ts';
import { walkTree } from '../host/walk.ts';
import { COMPARE_BLOCK, DELTA_CHUNK, DELTA_MIN, changedPages, compareBuffer, type BaseSums, type OldPages, type PagePrints } from './delta.ts';

// migrate --precopy at the freeze, to a stasis that reads it (CheckReply.pageStream):
// the changed pages of the large files go first on the receiver's input, as they
// are found, and the destination writes them into its copy of the pre-copy as they
// arrive; the rest of the checkpoint follows as a tar, leaving those files out.
// Finding, sending and writing the pages overlap, where a delta folder (delta.ts)
// is written whole, then sent, then unpacked and applied.
//
// The section: the line "STASIS-PAGES 1"; for each file, a JSON line (its path in
// the folder, its new size, the SHA-256 of the pre-copy's file both sides took
// while the container ran) and runs of changed pages, each an 8-byte head (the
// first page's index and the count, both u32 little-endian) and the pages'
// bytes (the last page of the file as long as the file), a count of 0 ending the
// file; an empty line ends the section. Pages are DELTA_CHUNK bytes.
//
// A catch-up round before the freeze (receive --update-base) sends the same
// section alone, into the pre-copy there, which stays the base: each file is
// then named by a hash chained from its old name and the runs sent (chainHash).
//
// Version 2 (CheckReply.pageFollow; follow.ts writes it) lets the pages of files
// still being written come as they are found, several files at a time: after the
// line "STASIS-PAGES 2", records, each led by one byte: 'F' and a JSON line (path
// and base, as above) opens the next file number (0, 1, ...); 'R' and three u32
// (file number, first page, count) and count whole pages; 'E', a u32 file number
// and a u64 size ends that file (its runs must lie within it; it is cut to that
// size); 'Z' ends the section, every file opened having ended. Numbers are little-endian.

const MAGIC = 'STASIS-PAGES 1';
export const MAGIC_FOLLOW = 'STASIS-PAGES 2';
/** The most files a version 2 section may have open at once (a container's processes: one page image each). */
export const MAX_OPEN_FILES = 4096;
const MAX_LINE = 64 * 1024;
const BATCH = 1024 * 1024;

interface FileHead {
  path: string;
  size: number;
  base: string;
}

export interface PageStreamStats {
  /** The files sent as pages (paths in the folder): the tar leaves them out. */
  files: string[];
  /** With `chain`: each file's name for its new contents (chainHash), to send the next pages against. */
  sums: BaseSums;
  /** Bytes written into the stream. */
  sent: number;
  /** Bytes of the whole checkpoint they stand for. */
  total: number;
}

/** Writes into a pipe in batches, waiting while it is full; throws once the reader is gone. */
export class Batches {
  private buffer = Buffer.allocUnsafe(BATCH);
  private used = 0;
  written = 0;

  private readonly out: Writable;
  private readonly onBytes: (sent: number) => void;

  constructor(out: Writable, onBytes: (sent: number) => void) {
    this.out = out;
    this.onBytes = onBytes;
  }

  async put(data: Buffer): Promise<void> {
    for (let from = 0; from < data.length; ) {
      const n = data.copy(this.buffer, this.used, from);
      this.used += n;
      from += n;
      if (this.used === BATCH) await this.flush(false);
    }
  }

  /** Hands what is batched to the pipe; with `wait`, returns once the pipe has taken all of it (another writer may then use its descriptor). */
  async flush(wait: boolean): Promise<void> {
    const out = this.out;
    if (out.destroyed || out.writableEnded) throw new Error('the receiver went away');
    const chunk = this.buffer.subarray(0, this.used);
    this.buffer = Buffer.allocUnsafe(BATCH);
    this.written += this.used;
    this.used = 0;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => {
        out.off('close', closed);
        out.off('drain', drained);
        out.off('error', done);
        if (err) reject(err);
        else resolve();
      };
      const closed = () => done(new Error('the receiver went away'));
      const drained = () => done();
      out.once('close', closed);
      if (wait) out.write(chunk, done);
      else if (out.write(chunk)) done();
      else {
        out.once('drain', drained);
        out.once('error', done);
      }
    });
    this.onBytes(this.written);
  }
}

/**
 * A file's pages sent against a base (a catch-up round of the pre-copy,
 * written there into its copy) make its next base: it is named by the
 * SHA-256 of the old name, the runs as sent (heads and bytes) and the new
 * size, which both sides take from the stream. Equal names mean equal
 * contents, as the old ones did, without either side hashing the file again.
 */
export function chainHash(base: string): Hasher {
  return sha256().update(Buffer.from(`${base}\n`));
}

export function chainEnd(hash: Hasher, size: number): string {
  const tail = Buffer.alloc(8);
  tail.writeBigUInt64LE(BigInt(size));
  return hash.update(tail).digest('hex');
}

export function runHead(index: number, count: number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(index, 0);
  head.writeUInt32LE(count, 4);
  return head;
}

/**
 * Sends, into `out` (the receiver's stdin), the pages of `next`'s large files
 * (those with a sum in `sums`) that differ from the pre-copy: compared with
 * their prints, else with the file in `base`. Returns once the pipe holds all
 * of it; the caller then sends the rest with `files` left out.
 */
export async function sendPages(base: string, next: string, sums: BaseSums, prints: PagePrints | null, out: Writable, onBytes: (sent: number) => void, chain = false): Promise<PageStreamStats> {
  const batches = new Batches(out, onBytes);
  await batches.put(Buffer.from(`${MAGIC}\n`));
  const files: string[] = [];
  const newSums: BaseSums = {};
  let total = 0;
  const block = Buffer.alloc(COMPARE_BLOCK);
  const scratch = compareBuffer();
  for (const entry of walkTree(next)) {
    if (entry.kind !== 'file') continue;
    total += entry.stat.size;
    const sum = sums[entry.path];
    if (entry.stat.size < DELTA_MIN || sum === undefined) continue;
    const printed = prints?.files[entry.path];
    let oldFd: number | null = null;
    let old: OldPages;
    if (printed !== undefined) old = { prints: printed, hash: prints!.hash, seed: prints!.seed };
    else {
      if (lstatSync(join(base, entry.path), { throwIfNoEntry: false })?.isFile() !== true) continue;
      oldFd = openSync(join(base, entry.path), 'r');
      old = { fd: oldFd };
    }
    const newFd = openSync(entry.full, 'r');
    try {
      const size = entry.stat.size;
      files.push(entry.path);
      await batches.put(Buffer.from(`${JSON.stringify({ path: entry.path, size, base: sum } satisfies FileHead)}\n`));
      const changed: number[] = [];
      const chained = chain ? chainHash(sum) : null;
      for (let at = 0; at < size; at += COMPARE_BLOCK) {
        const n = readAt(newFd, block.subarray(0, Math.min(COMPARE_BLOCK, size - at)), at);
        changed.length = 0;
        changedPages(old, block, n, at, DELTA_CHUNK, scratch, changed);
        // Runs of neighbouring pages, each sent straight from the block read.
        for (let i = 0; i < changed.length; ) {
          let j = i + 1;
          while (j < changed.length && changed[j] === changed[j - 1] + 1) j++;
          const from = changed[i] * DELTA_CHUNK - at;
          const head = runHead(changed[i], j - i);
          const bytes = block.subarray(from, Math.min(n, from + (j - i) * DELTA_CHUNK));
          chained?.update(head).update(bytes);
          await batches.put(head);
          await batches.put(bytes);
          i = j;
        }
      }
      await batches.put(runHead(0, 0));
      if (chained !== null) newSums[entry.path] = chainEnd(chained, size);
    } finally {
      closeSync(newFd);
      if (oldFd !== null) closeSync(oldFd);
    }
  }
  await batches.put(Buffer.from('\n'));
  await batches.flush(true);
  return { files, sums: newSums, sent: batches.written, total };
}

/** Reads a stream by lines and exact byte counts, and hands on what follows. */
class StreamReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private ended = false;
  private bytes = 0;

  private readonly iterator: AsyncIterator<unknown>;

  constructor(iterator: AsyncIterator<unknown>) {
    this.iterator = iterator;
  }

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.iterator.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as string);
    this.chunks.push(chunk);
    this.length += chunk.length;
    this.bytes += chunk.length;
    return true;
  }

  /** The next n buffered bytes (n <= length), copied only where they span chunks. */
  private take(n: number): Buffer {
    this.length -= n;
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    for (let filled = 0; filled < n; ) {
      const chunk = this.chunks[0];
      const k = Math.min(n - filled, chunk.length);
      chunk.copy(out, filled, 0, k);
      filled += k;
      if (k === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(k);
    }
    return out;
  }

  /** The next line, without its newline; null at the end of the input. */
  async line(): Promise<string | null> {
    for (;;) {
      let offset = 0;
      for (const chunk of this.chunks) {
        const end = chunk.indexOf(0x0a);
        if (end >= 0) return this.take(offset + end + 1).subarray(0, offset + end).toString('utf8');
        offset += chunk.length;
      }
      if (this.length > MAX_LINE) throw new Error('a line is too long');
      if (!(await this.more())) return null;
    }
  }

  /** Whether any byte came. */
  get any(): boolean {
    return this.bytes > 0;
  }

  /** Bytes read from the input and used (not those buffered for the rest). */
  get used(): number {
    return this.bytes - this.length;
  }

  async exactly(n: number): Promise<Buffer | null> {
    while (this.length < n) if (!(await this.more())) return null;
    return this.take(n);
  }

  /** Writes the next n bytes into fd at `position`; false if the input ends first. */
  async writeTo(fd: number, n: number, position: number, hash: Hasher | null): Promise<boolean> {
    while (n > 0) {
      if (this.length === 0 && !(await this.more())) return false;
      const chunk = this.chunks[0];
      const len = Math.min(n, chunk.length);
      hash?.update(chunk.subarray(0, len));
      for (let done = 0; done < len; ) done += writeSync(fd, chunk, done, len - done, position + done);
      if (len === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(len);
      this.length -= len;
      position += len;
      n -= len;
    }
    return true;
  }

  /** What is left of the input, as a stream. */
  rest(): Readable {
    const { chunks, iterator } = this;
    this.chunks = [];
    this.length = 0;
    return Readable.from(
      (async function* () {
        yield* chunks;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value;
        }
      })(),
      { objectMode: false },
    );
  }
}

function badPages(why: string): StasisError {
  return new StasisError(`the changed pages sent are not usable: ${why}`, { code: 'bad-delta' });
}

/**
 * Reads the page section at the start of `input` and writes each file's
 * pages into the same file of `base` (the pre-copy here), in place. A file
 * is taken only where `sums` (this side's hashes of the pre-copy) has the sum
 * the sender compared against; each run must lie within the file, after the
 * one before. Returns the files written (to be moved into the unpacked
 * checkpoint), the section's bytes, and the rest of the input (the tar). On
 * any error the files it wrote into are removed from `base`.
 */
export async function receivePages(base: string, sums: BaseSums | null, input: Readable, maxBytes: number, chain = false): Promise<{ files: string[]; sums: BaseSums; bytes: number; rest: Readable }> {
  const reader = new StreamReader(input[Symbol.asyncIterator]());
  const files: string[] = [];
  const newSums: BaseSums = {};
  const open = new Map<number, number>();
  try {
    const magic = await reader.line();
    if (magic !== MAGIC && magic !== MAGIC_FOLLOW) throw badPages(reader.any ? 'it does not start with the page section' : 'the input is empty');
    const section = { base, sums, maxBytes, files, newSums, chain, grown: 0 };
    if (magic === MAGIC) await receiveFiles(reader, section);
    else await receiveRecords(reader, section, open);
    return { files, sums: newSums, bytes: reader.used, rest: reader.rest() };
  } catch (err) {
    for (const fd of open.values()) closeSync(fd);
    // A file half written goes: nothing may take it for the pre-copy's.
    for (const path of files) rmSync(join(base, path), { force: true });
    throw err;
  }
}

/** What a page section is written against, and what it wrote so far. */
interface Section {
  base: string;
  sums: BaseSums | null;
  maxBytes: number;
  /** The files written into, in order. */
  files: string[];
  newSums: BaseSums;
  chain: boolean;
  /** Bytes the files grew by, against maxBytes. */
  grown: number;
}

/** A file's head (path and base) checked against this side's pre-copy, and opened for writing. */
function openHead(section: Section, line: string | null): { path: string; fd: number } {
  if (line === null) throw badPages('it ends early');
  let head: Partial<FileHead>;
  try {
    head = JSON.parse(line) as Partial<FileHead>;
  } catch {
    throw badPages('a file header is not JSON');
  }
  const path = head.path;
  const { sums, files } = section;
  if (typeof path !== 'string' || sums === null || !Object.hasOwn(sums, path)) throw badPages(`${JSON.stringify(path)} is not a file of the pre-copy here`);
  if (files.includes(path)) throw badPages(`${path} comes twice`);
  if (typeof head.base !== 'string' || sums[path] !== head.base) throw badPages(`the pre-copy's ${path} here is not the one the sender compared against`);
  const fd = openSync(join(section.base, path), constants.O_RDWR | constants.O_NOFOLLOW);
  files.push(path);
  return { path, fd };
}

/** Version 1: one file after the other, each with its size first. */
async function receiveFiles(reader: StreamReader, section: Section): Promise<void> {
  for (;;) {
    const line = await reader.line();
    if (line === '') return;
    const { path, fd } = openHead(section, line);
    try {
      const size = (JSON.parse(line!) as Partial<FileHead>).size;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw badPages(`a bad size for ${path}`);
      const before = fstatSync(fd).size;
      section.grown += Math.max(0, size - before);
      if (section.grown > section.maxBytes) throw badPages(`${path} would grow the checkpoint past ${section.maxBytes} bytes`);
      const pages = Math.ceil(size / DELTA_CHUNK);
      const chained = section.chain ? chainHash(section.sums![path]) : null;
      for (let next = 0; ; ) {
        const run = await reader.exactly(8);
        if (run === null) throw badPages(`${path} ends early`);
        const index = run.readUInt32LE(0);
        const count = run.readUInt32LE(4);
        if (count === 0) break;
        if (index < next || index + count > pages) throw badPages(`${path}: pages ${index}+${count} are not increasing pages of the file`);
        chained?.update(run);
        const bytes = Math.min(count * DELTA_CHUNK, size - index * DELTA_CHUNK);
        if (!(await reader.writeTo(fd, bytes, index * DELTA_CHUNK, chained))) throw badPages(`${path} ends early`);
        next = index + count;
      }
      ftruncateSync(fd, size);
      if (chained !== null) section.newSums[path] = chainEnd(chained, size);
    } finally {
      closeSync(fd);
    }
  }
}

/** A file of a version 2 section, open until its 'E'. */
interface OpenFile {
  path: string;
  fd: number;
  /** Its size before the section. */
  before: number;
  /** The end of what was written into it, in bytes. */
  end: number;
  /** The next page a run may start at. */
  next: number;
  chained: Hasher | null;
}

/** Version 2: records, the files' runs interleaved, each file's size at its end. */
async function receiveRecords(reader: StreamReader, section: Section, open: Map<number, number>): Promise<void> {
  const files = new Map<number, OpenFile | null>();
  const need = async (n: number, what: string): Promise<Buffer> => {
    const bytes = await reader.exactly(n);
    if (bytes === null) throw badPages(`it ends early, in ${what}`);
    return bytes;
  };
  const file = (no: number, what: string): OpenFile => {
    const f = files.get(no);
    if (f === undefined) throw badPages(`${what} of file ${no}, which was not opened`);
    if (f === null) throw badPages(`${what} of file ${no}, which has ended`);
    return f;
  };
  for (;;) {
    const tag = String.fromCharCode((await need(1, 'a record'))[0]);
    if (tag === 'Z') break;
    if (tag === 'F') {
      if (open.size >= MAX_OPEN_FILES) throw badPages(`more than ${MAX_OPEN_FILES} files open at once`);
      const { path, fd } = openHead(section, await reader.line());
      const before = fstatSync(fd).size;
      open.set(files.size, fd);
      files.set(files.size, { path, fd, before, end: 0, next: 0, chained: section.chain ? chainHash(section.sums![path]) : null });
    } else if (tag === 'R') {
      const head = await need(12, 'a run');
      const f = file(head.readUInt32LE(0), 'pages');
      const index = head.readUInt32LE(4);
      const count = head.readUInt32LE(8);
      if (count === 0 || index < f.next) throw badPages(`${f.path}: pages ${index}+${count} are not increasing pages of the file`);
      const end = (index + count) * DELTA_CHUNK;
      // What the file grows by counts as it is written: the size at its end may only cut it.
      section.grown += Math.max(0, end - Math.max(f.before, f.end));
      if (section.grown > section.maxBytes) throw badPages(`${f.path} would grow the checkpoint past ${section.maxBytes} bytes`);
      f.chained?.update(head.subarray(4));
      if (!(await reader.writeTo(f.fd, count * DELTA_CHUNK, index * DELTA_CHUNK, f.chained))) throw badPages(`${f.path} ends early`);
      f.end = Math.max(f.end, end);
      f.next = index + count;
    } else if (tag === 'E') {
      const head = await need(12, 'a file\'s end');
      const no = head.readUInt32LE(0);
      const f = file(no, 'the end');
      const size = Number(head.readBigUInt64LE(4));
      if (!Number.isSafeInteger(size) || Math.ceil(size / DELTA_CHUNK) < f.next) throw badPages(`${f.path}: its size ${size} leaves out pages sent`);
      section.grown += Math.max(0, size - Math.max(f.before, f.end));
      if (section.grown > section.maxBytes) throw badPages(`${f.path} would grow the checkpoint past ${section.maxBytes} bytes`);
      ftruncateSync(f.fd, size);
      if (f.chained !== null) section.newSums[f.path] = chainEnd(f.chained, size);
      closeSync(f.fd);
      open.delete(no);
      files.set(no, null);
    } else throw badPages(`an unknown record ${JSON.stringify(tag)}`);
  }
  for (const [no, f] of files) if (f !== null) throw badPages(`${f.path} (file ${no}) has no end`);
}
