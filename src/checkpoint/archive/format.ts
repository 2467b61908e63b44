// The archive formats stasis reads and writes: a tar, plain or compressed with
// gzip or zstd. Writing goes by the file's name; reading goes by the first
// bytes, so a misnamed file or a stream on stdin is read correctly too.

import type { Transform } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';

export type Compression = 'none' | 'gzip' | 'zstd';

export const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

const ARCHIVE_EXTENSIONS: ReadonlyArray<[suffix: string, compression: Compression]> = [
  ['.tar', 'none'],
  ['.tar.gz', 'gzip'],
  ['.tgz', 'gzip'],
  ['.tar.zst', 'zstd'],
  ['.tar.zstd', 'zstd'],
];

/** The compression implied by an archive file name; throws (saying which endings work) for names we do not write. */
export function compressionForPath(file: string): Compression {
  const lower = file.toLowerCase();
  for (const [suffix, compression] of ARCHIVE_EXTENSIONS) {
    if (lower.endsWith(suffix)) return compression;
  }
  const accepted = ARCHIVE_EXTENSIONS.map(([suffix]) => suffix).join(', ');
  throw new Error(`the name must end in one of ${accepted}`);
}

/** How many leading bytes compressionFromMagic needs to tell every format apart. */
export const MAGIC_LENGTH = 6;

/** The compression of an archive that starts with `head`; anything unrecognised is taken for a plain tar. */
export function compressionFromMagic(head: Buffer): Compression {
  const startsWith = (...bytes: number[]) => bytes.every((byte, i) => head[i] === byte);
  if (startsWith(0x1f, 0x8b)) return 'gzip';
  if (startsWith(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  // Name the formats we recognise but do not take, rather than letting tar fail on a checksum.
  if (startsWith(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) throw new Error('unsupported archive compression: xz (use none, gzip or zstd)');
  if (startsWith(0x42, 0x5a, 0x68)) throw new Error('unsupported archive compression: bzip2 (use none, gzip or zstd)');
  return 'none';
}

// Output in 1 MiB pieces: with zlib's default 16 KiB, piping into tar costs
// more than the decompression itself (measured, bench/README.md).
const CHUNK_SIZE = 1024 * 1024;

/** A stream that decompresses `compression`, or null for a plain tar. */
export function decompressor(compression: Compression): Transform | null {
  if (compression === 'gzip') return createGunzip({ chunkSize: CHUNK_SIZE });
  if (compression === 'zstd') return createZstdDecompress({ chunkSize: CHUNK_SIZE });
  return null;
}

/** A decompression error as the user should read it: truncated, or corrupt. */
export function describeDecompressError(err: unknown, compression: Compression): Error {
  const error = err as NodeJS.ErrnoException;
  // zlib reports a compressed stream that simply stops as "unexpected end of file".
  if (error.code === 'Z_BUF_ERROR' || /unexpected end/i.test(error.message ?? '')) {
    return new Error(`the archive is truncated (the ${compression} stream ends early)`);
  }
  if (compression !== 'none' && error.code?.startsWith('Z')) {
    return new Error(`the archive is corrupt: bad ${compression} data (${error.message})`);
  }
  return error instanceof Error ? error : new Error(String(err));
}
