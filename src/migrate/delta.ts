import { closeSync, copyFileSync, fstatSync, ftruncateSync, lstatSync, openSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { randomBytes, sha256, type PageHash } from '../host/digest.ts';
import { dirname, join } from 'node:path';
import { StasisError } from '../errors.ts';
import { walkTree, writeSendTree, type DeltaStats } from '../host/walk.ts';
import { readAt, writeAll } from '../host/chunks.ts';

// migrate --precopy: the checkpoint taken at the freeze is sent as what
// differs from the one sent while the container ran. A file of the second
// that the first holds too (CRIU's page images, the layer's diff, a volume's
// tar) travels as FILE.stasis-delta: a header line (JSON: the file's size,
// the chunk size, the indices of the chunks that differ, and a SHA-256) and
// those chunks' bytes. The receiving side rebuilds the file from its copy of
// the first checkpoint; anything else is refused. Every other file travels whole.
// The SHA-256 is either that of the first checkpoint's file ("base"), which
// both sides hashed while the container ran (hashBase), so that the rebuild at
// the freeze writes the changed pages into that copy in place and reads
// nothing else; or, from and to a stasis before that, the whole second file's
// ("sha256"), rebuilt into a copy and hashed again at the freeze.

export const DELTA_SUFFIX = '.stasis-delta';
/**
 * A page: memory that changes at random pages (a heap, a cache) changes most of the store's
 * 64 KiB chunks within seconds, while the pages changed stay a small part (measured: 834 of
 * 1074 MB sent for 1 GiB with 64 KiB units, bench/README.md). The files are compared a block at a time.
 */
export const DELTA_CHUNK = 4096;
/** The unit a stasis before pages used (and the only one it reads): an older receiver gets it. */
export const DELTA_CHUNK_OLD = 64 * 1024;
/** The units a receiver reads (its check reply says so: CheckReply.deltaUnits). */
export const DELTA_UNITS: readonly number[] = [DELTA_CHUNK, DELTA_CHUNK_OLD];
export const COMPARE_BLOCK = 256 * 1024;
/** Smaller files travel whole: a delta would save next to nothing. */
export const DELTA_MIN = 16 * DELTA_CHUNK;
const MAX_HEADER = 16 * 1024 * 1024;

interface DeltaHeader {
  size: number;
  chunk: number;
  /** The SHA-256 of the rebuilt file (a delta from an older stasis, or to one). */
  sha256?: string;
  /** The SHA-256 of the first checkpoint's file that the chunks are written into. */
  base?: string;
  chunks: number[];
}

/** The SHA-256 of each file of a pre-copy that a delta may be taken against, by its path in the folder. */
export type BaseSums = Record<string, string>;

/**
 * A pre-copy's large files as one 64-bit fingerprint per page (a hash seeded
 * afresh for each move), which the sender keeps in place of the files: it
 * removes its copy before the freeze, so that the dump at the freeze reuses
 * that memory (on a VM fresh memory costs more than the hashing, measured in
 * bench/README.md), and compares the new dump's pages with the prints.
 */
export interface PagePrints {
  hash: PageHash;
  seed: bigint;
  /** By path in the folder: the fingerprint of each DELTA_CHUNK page, the last one as long as the file. */
  files: Record<string, BigUint64Array>;
  /**
   * By path: the fingerprint of each whole PRINT_BLOCK of the file. A block whose print is
   * unchanged has no changed page, which one hash call for 16 pages tells (follow.ts): the
   * call, not the bytes, is most of what a page's print costs (bench/README.md).
   */
  blocks: Record<string, BigUint64Array>;
}

/** The bytes of a block print: 16 pages. */
export const PRINT_BLOCK = 16 * DELTA_CHUNK;
const PAGES_PER_BLOCK = PRINT_BLOCK / DELTA_CHUNK;

/** The pages of the files `sums` names in `dir`, fingerprinted (read through the thread pool: tar reads them meanwhile); with a new seed unless given. */
export async function printPages(dir: string, sums: BaseSums, hash: PageHash, seed = randomBytes(8).readBigUInt64LE()): Promise<PagePrints> {
  const files: Record<string, BigUint64Array> = {};
  const blocks: Record<string, BigUint64Array> = {};
  const block = Buffer.alloc(4 * COMPARE_BLOCK);
  for (const path of Object.keys(sums)) {
    const file = await open(join(dir, path), 'r');
    try {
      const size = (await file.stat()).size;
      const prints = new BigUint64Array(Math.ceil(size / DELTA_CHUNK));
      const blockPrints = new BigUint64Array(Math.floor(size / PRINT_BLOCK));
      for (let at = 0; at < size; ) {
        // Whole blocks (the file does not change under us: a short read is its end).
        let filled = 0;
        while (filled < block.length && at + filled < size) {
          const { bytesRead } = await file.read(block, filled, block.length - filled, at + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        if (filled === 0) break;
        for (let page = 0; page < filled; page += DELTA_CHUNK) prints[(at + page) / DELTA_CHUNK] = hash(block.subarray(page, Math.min(filled, page + DELTA_CHUNK)), seed);
        // The block is a multiple of PRINT_BLOCK: blocks never straddle two reads.
        for (let from = 0; from + PRINT_BLOCK <= filled; from += PRINT_BLOCK) blockPrints[(at + from) / PRINT_BLOCK] = hash(block.subarray(from, from + PRINT_BLOCK), seed);
        at += filled;
      }
      files[path] = prints;
      blocks[path] = blockPrints;
    } finally {
      await file.close();
    }
  }
  return { hash, seed, files, blocks };
}

/**
 * The pre-copy's sums, taken on both sides while the container runs; its
 * files are flushed to disk on the way, so that the freeze's dump (a second
 * copy of the memory) is not throttled behind the first's writeback where
 * two copies pass the kernel's dirty limits. Without `hash` (a receiver that
 * reads no deltas against sums) the files are only flushed, and null returned.
 */
export async function hashBase(dir: string, hash = true): Promise<BaseSums | null> {
  const sums: BaseSums = {};
  // Read through the thread pool: on the source, tar sends the same files meanwhile.
  const block = Buffer.alloc(4 * COMPARE_BLOCK);
  for (const entry of walkTree(dir)) {
    if (entry.kind !== 'file' || entry.stat.size < DELTA_MIN) continue;
    const file = await open(entry.full, 'r');
    try {
      if (hash) {
        const hasher = sha256();
        for (let at = 0; ; ) {
          const { bytesRead } = await file.read(block, 0, block.length, at);
          if (bytesRead === 0) break;
          hasher.update(block.subarray(0, bytesRead));
          at += bytesRead;
        }
        sums[entry.path] = hasher.digest('hex');
      }
      await file.datasync();
    } finally {
      await file.close();
    }
  }
  return hash ? sums : null;
}

/**
 * Writes into `out` (made; must not exist) the folder `next` as a delta
 * against `base`: links (or copies) of the files that travel whole, and a
 * FILE.stasis-delta for each large file `base` holds too. With `sums` (the
 * receiver hashed its copy of `base` too), deltas are against those sums, and
 * a file without one travels whole.
 */
export function writeDelta(base: string, next: string, out: string, unit: number = DELTA_CHUNK, sums: BaseSums | null = null, prints: PagePrints | null = null): DeltaStats {
  return writeSendTree(next, out, (entry, target) => {
    if (entry.stat.size < DELTA_MIN) return null;
    const baseSum = sums === null ? null : (sums[entry.path] ?? '');
    if (baseSum === '') return null;
    // A file kept as its pages' prints (its copy here removed): compared with them, in pages.
    const printed = prints?.files[entry.path];
    if (printed !== undefined && baseSum !== null && unit === DELTA_CHUNK) {
      return writeFileDelta({ prints: printed, hash: prints!.hash, seed: prints!.seed, blocks: prints!.blocks[entry.path] }, entry.full, `${target}${DELTA_SUFFIX}`, entry.stat.size, unit, baseSum);
    }
    const old = lstatSync(join(base, entry.path), { throwIfNoEntry: false });
    if (!old?.isFile()) return null;
    return writeFileDelta(join(base, entry.path), entry.full, `${target}${DELTA_SUFFIX}`, entry.stat.size, unit, baseSum);
  });
}

/** What a new file's pages are compared with: the old file (an open descriptor) or its pages' prints. */
export type OldPages = { fd: number } | { prints: BigUint64Array; hash: PageHash; seed: bigint; blocks?: BigUint64Array };

/** The new file's page and block prints, as changedPages takes them (a catch-up round's next base). */
export interface NewPrints {
  pages: bigint[];
  blocks: bigint[];
}

/** The page numbers in `changed` (increasing) as runs of neighbours: [first, count]. */
export function* pageRuns(changed: readonly number[]): Generator<[number, number]> {
  for (let i = 0; i < changed.length; ) {
    let j = i + 1;
    while (j < changed.length && changed[j] === changed[j - 1] + 1) j++;
    yield [changed[i], j - i];
    i = j;
  }
}

/** A COMPARE_BLOCK-sized buffer for changedPages to read the old file into. */
export function compareBuffer(): Buffer {
  return Buffer.alloc(COMPARE_BLOCK);
}

/**
 * Adds to `out` the indices of the pages of `b` (its first n bytes: the new
 * file from offset `at`, a multiple of `unit`) that differ from the old side.
 * A page past the old file's end, or one the old file held only part of,
 * differs. `scratch` (compareBuffer) receives the old file's bytes. Against
 * prints with block prints, a whole PRINT_BLOCK (at a multiple of it) whose
 * print is unchanged is passed over with one hash call. With `printed`, the
 * new prints are added to it (from a multiple of PRINT_BLOCK, block by block).
 */
export function changedPages(old: OldPages, b: Buffer, n: number, at: number, unit: number, scratch: Buffer, out: number[], printed: NewPrints | null = null): void {
  if ('prints' in old) {
    const blocks = unit === DELTA_CHUNK && at % PRINT_BLOCK === 0 && (old.blocks !== undefined || printed !== null);
    for (let from = 0; from < n; from += PRINT_BLOCK) {
      const end = Math.min(n, from + PRINT_BLOCK);
      if (blocks && end - from === PRINT_BLOCK) {
        const blockIndex = (at + from) / PRINT_BLOCK;
        const print = old.hash(b.subarray(from, end), old.seed);
        printed?.blocks.push(print);
        if (old.blocks !== undefined && blockIndex < old.blocks.length && print === old.blocks[blockIndex]) {
          // Unchanged: its pages are the old file's, prints and all.
          if (printed !== null) printed.pages.push(...old.prints.subarray(blockIndex * PAGES_PER_BLOCK, (blockIndex + 1) * PAGES_PER_BLOCK));
          continue;
        }
      }
      for (let page = from; page < end; page += unit) {
        const index = (at + page) / unit;
        const print = old.hash(b.subarray(page, Math.min(end, page + unit)), old.seed);
        printed?.pages.push(print);
        if (index >= old.prints.length || print !== old.prints[index]) out.push(index);
      }
    }
    return;
  }
  const m = readAt(old.fd, scratch.subarray(0, n), at);
  for (let page = 0; page < n; page += unit) {
    const end = Math.min(n, page + unit);
    if (end > m || scratch.compare(b, page, end, page, end) !== 0) out.push((at + page) / unit);
  }
}

/**
 * One file's delta against the old file (its path) or its pages' prints; returns its size, or null when
 * most of it changed (it then travels whole).
 */
function writeFileDelta(old: string | Exclude<OldPages, { fd: number }>, newPath: string, deltaPath: string, size: number, unit: number, baseSum: string | null): number | null {
  const oldFd = typeof old === 'string' ? openSync(old, 'r') : null;
  const newFd = openSync(newPath, 'r');
  const against: OldPages = oldFd !== null ? { fd: oldFd } : (old as Exclude<OldPages, { fd: number }>);
  const a = Buffer.alloc(COMPARE_BLOCK);
  const b = Buffer.alloc(COMPARE_BLOCK);
  const hash = sha256();
  const changed: number[] = [];
  try {
    for (let at = 0; at < size; at += COMPARE_BLOCK) {
      const n = readAt(newFd, b, at);
      // Against the base's sum, the second file needs no hash of its own: only the comparison is done at the freeze.
      if (baseSum === null) hash.update(b.subarray(0, n));
      changedPages(against, b, n, at, unit, a, changed);
    }
    // Past half, a delta saves less than its header and the receiver's rebuild cost.
    if (changed.length * unit > size / 2) return null;
    const header: DeltaHeader = baseSum === null ? { size, chunk: unit, sha256: hash.digest('hex'), chunks: changed } : { size, chunk: unit, base: baseSum, chunks: changed };
    const out = openSync(deltaPath, 'wx', 0o600);
    try {
      const line = Buffer.from(`${JSON.stringify(header)}\n`);
      writeAll(out, line);
      let written = line.length;
      for (const index of changed) {
        const n = readAt(newFd, b.subarray(0, unit), index * unit);
        writeAll(out, b.subarray(0, n));
        written += n;
      }
      return written;
    } finally {
      closeSync(out);
    }
  } finally {
    if (oldFd !== null) closeSync(oldFd);
    closeSync(newFd);
  }
}

function badDelta(name: string, why: string): StasisError {
  return new StasisError(`the delta ${name} is not usable: ${why}`, { code: 'bad-delta' });
}

/** The header line of a delta file, checked. */
function readHeader(fd: number, name: string, fileSize: number): { header: DeltaHeader; bodyAt: number } {
  const probe = Buffer.alloc(Math.min(MAX_HEADER, fileSize));
  const n = readAt(fd, probe, 0);
  const end = probe.subarray(0, n).indexOf(0x0a);
  if (end < 0) throw badDelta(name, 'no header line');
  let raw: unknown;
  try {
    raw = JSON.parse(probe.subarray(0, end).toString('utf8'));
  } catch {
    throw badDelta(name, 'its header is not JSON');
  }
  const h = raw as Partial<DeltaHeader>;
  if (typeof h.chunk !== 'number' || !DELTA_UNITS.includes(h.chunk)) throw badDelta(name, `chunk size ${String(h.chunk)} (expected ${DELTA_UNITS.join(' or ')})`);
  if (typeof h.size !== 'number' || !Number.isSafeInteger(h.size) || h.size < 0) throw badDelta(name, 'a bad size');
  const hex = (value: unknown) => typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
  if (hex(h.sha256) === hex(h.base) || (h.sha256 !== undefined && h.base !== undefined)) throw badDelta(name, 'not one hash, of the file or of its base');
  const count = Math.ceil(h.size / h.chunk);
  if (!Array.isArray(h.chunks) || h.chunks.some((c, i) => !Number.isSafeInteger(c) || c < 0 || c >= count || (i > 0 && c <= h.chunks![i - 1]))) {
    throw badDelta(name, 'its chunk list is not increasing chunk numbers of the file');
  }
  return { header: h as DeltaHeader, bodyAt: end + 1 };
}

/**
 * Rebuilds, in `dir` (an unpacked delta folder), every FILE.stasis-delta
 * into FILE from the same file in `base`. A delta against the base's sum is
 * checked against `sums` (this side's hashBase of `base`) and written into
 * the base's file in place, which then moves into `dir`: `base` is used up.
 * One with the whole file's sum is rebuilt into a copy and hashed. Throws on
 * any mismatch; `dir` (and `base`) are then the caller's to remove.
 */
export function applyDeltas(base: string, dir: string, sums: BaseSums | null = null): number {
  let rebuilt = 0;
  const deltas = [...walkTree(dir)].filter((e) => e.kind === 'file' && e.path.endsWith(DELTA_SUFFIX));
  for (const entry of deltas) {
    const rel = entry.path.slice(0, -DELTA_SUFFIX.length);
    const target = join(dir, rel);
    if (lstatSync(target, { throwIfNoEntry: false }) !== undefined) throw badDelta(entry.path, `${rel} is there whole too`);
    const old = lstatSync(join(base, rel), { throwIfNoEntry: false });
    if (!old?.isFile()) throw badDelta(entry.path, `the first checkpoint has no file ${rel}`);
    const fd = openSync(entry.full, 'r');
    let temp: string | null = null;
    try {
      const { header, bodyAt } = readHeader(fd, entry.path, fstatSync(fd).size);
      const unit = header.chunk;
      const chunkBytes = (index: number) => Math.min(unit, header.size - index * unit);
      const body = header.chunks.reduce((sum, index) => sum + chunkBytes(index), 0);
      if (fstatSync(fd).size !== bodyAt + body) throw badDelta(entry.path, `it holds ${fstatSync(fd).size - bodyAt} bytes of chunks, not ${body}`);
      if (header.base !== undefined) {
        if (sums?.[rel] !== header.base) throw badDelta(entry.path, `the first checkpoint's ${rel} here is not the one the sender compared against`);
        temp = join(base, rel);
      } else {
        temp = join(dirname(target), `.${rel.split('/').pop()}.rebuild`);
        copyFileSync(join(base, rel), temp);
      }
      const out = openSync(temp, 'r+');
      try {
        const buffer = Buffer.alloc(unit);
        let at = bodyAt;
        for (const index of header.chunks) {
          const n = chunkBytes(index);
          if (readAt(fd, buffer.subarray(0, n), at) !== n) throw badDelta(entry.path, 'it ends early');
          writeAll(out, buffer.subarray(0, n), index * unit);
          at += n;
        }
        ftruncateSync(out, header.size);
        if (header.sha256 !== undefined) {
          const hash = sha256();
          const block = Buffer.alloc(COMPARE_BLOCK);
          for (let pos = 0; pos < header.size; pos += COMPARE_BLOCK) hash.update(block.subarray(0, readAt(out, block, pos)));
          if (hash.digest('hex') !== header.sha256) throw badDelta(entry.path, `${rel} rebuilt does not have the hash the sender computed`);
        }
      } finally {
        closeSync(out);
      }
      renameSync(temp, target);
      temp = null;
      rmSync(entry.full);
      rebuilt++;
    } catch (err) {
      // A base file half written goes too: nothing may take it for the first checkpoint's.
      if (temp !== null) rmSync(temp, { force: true });
      throw err;
    } finally {
      closeSync(fd);
    }
  }
  return rebuilt;
}
