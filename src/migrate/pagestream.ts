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

const MAGIC = 'STASIS-PAGES 1';
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
class Batches {
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
function chainHash(base: string): Hasher {
  return sha256().update(Buffer.from(`${base}\n`));
}

function chainEnd(hash: Hasher, size: number): string {
  const tail = Buffer.alloc(8);
  tail.writeBigUInt64LE(BigInt(size));
  return hash.update(tail).digest('hex');
}

function runHead(index: number, count: number): Buffer {
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
  try {
    const magic = await reader.line();
    if (magic !== MAGIC) throw badPages(reader.any ? 'it does not start with the page section' : 'the input is empty');
    let grown = 0;
    for (;;) {
      const line = await reader.line();
      if (line === null) throw badPages('it ends early');
      if (line === '') break;
      let head: Partial<FileHead>;
      try {
        head = JSON.parse(line) as Partial<FileHead>;
      } catch {
        throw badPages('a file header is not JSON');
      }
      const path = head.path;
      if (typeof path !== 'string' || sums === null || !Object.hasOwn(sums, path)) throw badPages(`${JSON.stringify(path)} is not a file of the pre-copy here`);
      if (files.includes(path)) throw badPages(`${path} comes twice`);
      if (typeof head.base !== 'string' || sums[path] !== head.base) throw badPages(`the pre-copy's ${path} here is not the one the sender compared against`);
      const size = head.size;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw badPages(`a bad size for ${path}`);
      const fd = openSync(join(base, path), constants.O_RDWR | constants.O_NOFOLLOW);
      files.push(path);
      try {
        const before = fstatSync(fd).size;
        grown += Math.max(0, size - before);
        if (grown > maxBytes) throw badPages(`${path} would grow the checkpoint past ${maxBytes} bytes`);
        const pages = Math.ceil(size / DELTA_CHUNK);
        const chained = chain ? chainHash(head.base) : null;
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
        if (chained !== null) newSums[path] = chainEnd(chained, size);
      } finally {
        closeSync(fd);
      }
    }
    return { files, sums: newSums, bytes: reader.used, rest: reader.rest() };
  } catch (err) {
    // A file half written goes: nothing may take it for the pre-copy's.
    for (const path of files) rmSync(join(base, path), { force: true });
    throw err;
  }
}
