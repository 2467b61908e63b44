import { closeSync, constants, ftruncateSync, fstatSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { StasisError } from '../errors.ts';
import { writeAll } from '../host/chunks.ts';
import type { Hasher } from '../host/digest.ts';
import { DELTA_CHUNK, type BaseSums } from './delta.ts';
import { MAGIC, MAGIC_FOLLOW, chainEnd, chainHash, type FileHead } from './pagestream.ts';

// The destination's side of a page section (pagestream.ts: its format): the
// changed pages written into this host's copy of the pre-copy as they arrive.
// What arrives is input from elsewhere: every run is checked against the
// file and the limit before it is written, and a section that fails leaves
// no file it wrote into.

const MAX_LINE = 64 * 1024;
/** The most files a version 2 section may have open at once (a container's processes: one page image each). */
const MAX_OPEN_FILES = 4096;

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
      writeAll(fd, chunk.subarray(0, len), position);
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
    if (magic !== MAGIC && magic !== MAGIC_FOLLOW) throw badPages(reader.any ? 'it does not start with the page section' : 'the input is empty');
    const section = { base, sums, maxBytes, files, newSums, chain, grown: 0 };
    if (magic === MAGIC) await receiveFiles(reader, section);
    else await receiveRecords(reader, section);
    return { files, sums: newSums, bytes: reader.used, rest: reader.rest() };
  } catch (err) {
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

/** Counts what a file grows by against the section's limit. */
function grow(section: Section, bytes: number, path: string): void {
  section.grown += Math.max(0, bytes);
  if (section.grown > section.maxBytes) throw badPages(`${path} would grow the checkpoint past ${section.maxBytes} bytes`);
}

/** A file's head checked against this side's pre-copy (its path and base), and the file opened for writing. */
function openHead(section: Section, line: string | null): { head: Partial<FileHead>; path: string; fd: number } {
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
  return { head, path, fd };
}

/** Version 1: one file after the other, each with its size first. */
async function receiveFiles(reader: StreamReader, section: Section): Promise<void> {
  for (;;) {
    const line = await reader.line();
    if (line === '') return;
    const { head, path, fd } = openHead(section, line);
    try {
      const size = head.size;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw badPages(`a bad size for ${path}`);
      grow(section, size - fstatSync(fd).size, path);
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
async function receiveRecords(reader: StreamReader, section: Section): Promise<void> {
  // By file number; null once ended (closed).
  const files: (OpenFile | null)[] = [];
  let open = 0;
  const need = async (n: number, what: string): Promise<Buffer> => {
    const bytes = await reader.exactly(n);
    if (bytes === null) throw badPages(`it ends early, in ${what}`);
    return bytes;
  };
  const file = (no: number, what: string): OpenFile => {
    const f = files[no];
    if (f === undefined) throw badPages(`${what} of file ${no}, which was not opened`);
    if (f === null) throw badPages(`${what} of file ${no}, which has ended`);
    return f;
  };
  try {
    for (;;) {
      const tag = String.fromCharCode((await need(1, 'a record'))[0]);
      if (tag === 'Z') break;
      if (tag === 'F') {
        if (open >= MAX_OPEN_FILES) throw badPages(`more than ${MAX_OPEN_FILES} files open at once`);
        const { path, fd } = openHead(section, await reader.line());
        files.push({ path, fd, before: fstatSync(fd).size, end: 0, next: 0, chained: section.chain ? chainHash(section.sums![path]) : null });
        open++;
      } else if (tag === 'R') {
        const head = await need(12, 'a run');
        const f = file(head.readUInt32LE(0), 'pages');
        const index = head.readUInt32LE(4);
        const count = head.readUInt32LE(8);
        if (count === 0 || index < f.next) throw badPages(`${f.path}: pages ${index}+${count} are not increasing pages of the file`);
        const end = (index + count) * DELTA_CHUNK;
        // What the file grows by counts as it is written: the size at its end may only cut it.
        grow(section, end - Math.max(f.before, f.end), f.path);
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
        grow(section, size - Math.max(f.before, f.end), f.path);
        ftruncateSync(f.fd, size);
        if (f.chained !== null) section.newSums[f.path] = chainEnd(f.chained, size);
        closeSync(f.fd);
        files[no] = null;
        open--;
      } else throw badPages(`an unknown record ${JSON.stringify(tag)}`);
    }
    files.forEach((f, no) => {
      if (f !== null) throw badPages(`${f.path} (file ${no}) has no end`);
    });
  } catch (err) {
    for (const f of files) if (f !== null) closeSync(f.fd);
    throw err;
  }
}
