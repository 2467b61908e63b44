import { closeSync, lstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { readAt } from '../host/chunks.ts';
import { sha256, type Hasher } from '../host/digest.ts';
import { walkTree } from '../host/walk.ts';
import { COMPARE_BLOCK, DELTA_CHUNK, DELTA_MIN, changedPages, compareBuffer, pageRuns, type BaseSums, type OldPages, type PagePrints } from './delta.ts';

// migrate --precopy at the freeze, to a stasis that reads it (CheckReply.pageStream):
// the changed pages of the large files go first on the receiver's input, as they
// are found, and the destination writes them into its copy of the pre-copy as they
// arrive (pagereceive.ts); the rest of the checkpoint follows as a tar, leaving those files out.
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

export const MAGIC = 'STASIS-PAGES 1';
export const MAGIC_FOLLOW = 'STASIS-PAGES 2';
const BATCH = 1024 * 1024;

export interface FileHead {
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
    if (printed !== undefined) old = { prints: printed, hash: prints!.hash, seed: prints!.seed, blocks: prints!.blocks[entry.path] };
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
        for (const [first, count] of pageRuns(changed)) {
          const from = first * DELTA_CHUNK - at;
          const head = runHead(first, count);
          const bytes = block.subarray(from, Math.min(n, from + count * DELTA_CHUNK));
          chained?.update(head).update(bytes);
          await batches.put(head);
          await batches.put(bytes);
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
