import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { sha256 } from './digest.ts';

// Fixed-size chunks of a large file and their SHA-256: what migrate
// --precopy's deltas (src/migrate/delta.ts) and the checkpoint store
// (src/checkpoint/store/) both cut CRIU's page images and the tars into.

/** Sixteen pages: a changed page costs 64 KiB at most, and a chunk list stays small for large memory (docs/checkpoint-store.md). */
export const CHUNK_BYTES = 64 * 1024;

/** Reads into `buffer` from `position` until it is full or the file ends; the bytes read. */
export function readAt(fd: number, buffer: Buffer, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Writes all of `data`, at `position` (or where the file offset is). */
export function writeAll(fd: number, data: Buffer, position: number | null = null): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position === null ? null : position + done);
}

export function sha256Hex(data: Buffer): string {
  return sha256().update(data).digest('hex');
}

/** A file cut into CHUNK_BYTES chunks: its size and each chunk's SHA-256 (hex), in order. */
export interface ChunkedFile {
  size: number;
  chunks: string[];
}

/** The chunks of the file at `path`, read once. */
export function hashChunks(path: string, chunkBytes = CHUNK_BYTES): ChunkedFile {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const buffer = Buffer.allocUnsafe(chunkBytes);
    const chunks: string[] = [];
    for (let at = 0; at < size; at += chunkBytes) {
      const n = readAt(fd, buffer, at);
      if (n === 0) break;
      chunks.push(sha256Hex(buffer.subarray(0, n)));
    }
    return { size, chunks };
  } finally {
    closeSync(fd);
  }
}

/** The length of chunk `index` of a file of `size` bytes. */
export function chunkLength(size: number, index: number, chunkBytes = CHUNK_BYTES): number {
  return Math.max(0, Math.min(chunkBytes, size - index * chunkBytes));
}
