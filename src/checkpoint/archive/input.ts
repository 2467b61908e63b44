// Where the tar bytes of an archive come from: a file or a stream, plain or
// compressed. stasis decompresses in-process and hands GNU tar the plain tar
// on its stdin, counting the bytes on the way, so that an archive that
// unpacks to more than there is room for (a 160 KB .tar.zst of a 4 GiB file
// of zeros) is stopped before it fills the filesystem.

import { once } from 'node:events';
import { open, statfs } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { compressionFromMagic, decompressor, describeDecompressError, MAGIC_LENGTH, type Compression } from './format.ts';
import { TarHeaderCheck } from './headers.ts';
import { formatBytes } from '../../host/units.ts';

const CHUNK_SIZE = 1024 * 1024;

/** Returns why the archive must stop once it has produced `bytes` plain tar bytes, or null to go on. */
export type ByteGuard = (bytes: number) => Error | null | Promise<Error | null>;

/**
 * The plain tar bytes of an archive, pumped into `stream` as its consumer
 * (tar) reads them. The stream ends early, without an error, when the guard
 * or the input fails: `stoppedBy` then says why.
 */
export class TarInput {
  readonly compression: Compression;
  /** The archive's size when it is known up front (a plain tar in a regular file): its unpacked size. */
  readonly knownSize: number | null;
  readonly stream = new PassThrough({ highWaterMark: CHUNK_SIZE });
  bytes = 0;
  private readonly read: { bytes: number };
  /** The archive's own bytes read so far (compressed, if it is): what came over a pipe. */
  get archiveBytes(): number {
    return this.read.bytes;
  }
  stoppedBy: Error | null = null;
  private readonly streams: Readable[];
  private readonly plain: Readable;
  private readonly guard: ByteGuard;
  private readonly headers: TarHeaderCheck | null;
  private consumerGone = false;
  private markGone: () => void = () => undefined;
  private readonly gone = new Promise<void>((resolve) => (this.markGone = resolve));
  private readonly pumped: Promise<void>;

  constructor(source: Readable, chunks: AsyncIterable<Buffer>, compression: Compression, knownSize: number | null, guard: ByteGuard, headers: TarHeaderCheck | null = null, read: { bytes: number } = { bytes: 0 }) {
    this.read = read;
    this.compression = compression;
    this.knownSize = knownSize;
    this.guard = guard;
    this.headers = headers;
    const raw = Readable.from(chunks, { objectMode: false, highWaterMark: CHUNK_SIZE });
    const unpack = decompressor(compression);
    if (unpack) raw.on('error', (err) => unpack.destroy(err));
    this.plain = unpack ? raw.pipe(unpack) : raw;
    // The source too: a stalled stdin would otherwise keep a read pending.
    this.streams = [this.stream, this.plain, raw, source];
    this.pumped = this.pump();
  }

  /**
   * Tar has exited. After a success the rest is read (and dropped): the end
   * of a compressed stream carries its checksum, and a stream cut short in
   * the padding after the tar data is still a damaged archive.
   */
  async finish(tarSucceeded: boolean): Promise<void> {
    this.consumerGone = true;
    this.markGone();
    if (tarSucceeded) await this.pumped;
    this.close();
  }

  close(): void {
    this.consumerGone = true;
    this.markGone();
    for (const stream of this.streams) stream.destroy();
  }

  private async pump(): Promise<void> {
    try {
      for await (const chunk of this.plain as AsyncIterable<Buffer>) {
        // The headers first: a chunk holding a refused one never reaches tar.
        const problem = this.headers?.push(chunk) ?? (await this.guard(this.bytes + chunk.length));
        if (problem) {
          this.stoppedBy = problem;
          break;
        }
        this.bytes += chunk.length;
        if (this.consumerGone || this.stream.write(chunk)) continue;
        await Promise.race([once(this.stream, 'drain'), this.gone]);
      }
    } catch (err) {
      this.stoppedBy ??= describeDecompressError(err, this.compression);
    } finally {
      this.stream.end();
    }
  }
}

/** The chunks already read, then the rest, from one iterator (a second one on the same stream would compete for its data). */
async function* withHead(head: Buffer[], rest: AsyncIterator<unknown>): AsyncGenerator<Buffer> {
  try {
    yield* head;
    for (;;) {
      const next = await rest.next();
      if (next.done) return;
      yield asBuffer(next.value);
    }
  } finally {
    await rest.return?.();
  }
}

/** The chunks as they are, each one's size told first (the archive's own bytes, compressed or not). */
async function* counted(chunks: AsyncIterable<Buffer>, add: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of chunks) {
    add(chunk.length);
    yield chunk;
  }
}

function asBuffer(chunk: unknown): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
}

/** Reads the first bytes of `source` to tell its compression, then starts pumping. Throws when it cannot be read. */
export async function openTarInput(source: string | Readable, guard: ByteGuard, headers: TarHeaderCheck | null = null): Promise<TarInput> {
  let input: Readable;
  let fileSize: number | null = null;
  if (typeof source === 'string') {
    const handle = await open(source, 'r');
    try {
      const stat = await handle.stat();
      if (stat.isFile()) fileSize = stat.size;
      // /dev/zero or /dev/urandom never end: a device is never an archive.
      else if (stat.isCharacterDevice() || stat.isBlockDevice()) throw new Error(`not an archive: ${source} is a ${stat.isCharacterDevice() ? 'character' : 'block'} device`);
      else if (stat.isDirectory()) throw new Error(`not an archive: ${source} is a folder`);
    } catch (err) {
      await handle.close();
      throw err;
    }
    // Read through the descriptor opened here, so the size is that of the file read.
    input = handle.createReadStream({ highWaterMark: CHUNK_SIZE });
  } else {
    input = source;
  }
  const head: Buffer[] = [];
  try {
    // Not with for-await: leaving that loop would destroy the stream.
    const iterator = input[Symbol.asyncIterator]();
    let length = 0;
    while (length < MAGIC_LENGTH) {
      const next = await iterator.next();
      if (next.done) break;
      head.push(asBuffer(next.value));
      length += head[head.length - 1].length;
    }
    const compression = compressionFromMagic(Buffer.concat(head));
    const read = { bytes: 0 };
    return new TarInput(input, counted(withHead(head, iterator), (n) => (read.bytes += n)), compression, compression === 'none' ? fileSize : null, guard, headers, read);
  } catch (err) {
    input.destroy();
    throw err;
  }
}

// Kept free on the destination's filesystem: /run is RAM on most hosts, and
// other containers write there too. An eighth of the filesystem, between
// 1 MiB and 64 MiB: a flat 64 MiB refused a 1 MiB archive on a 16 MiB one.
export const SPARE_BYTES = 64 * 1024 * 1024;
const MIN_SPARE_BYTES = 1024 * 1024;

/** The room kept free on a filesystem of `total` bytes. */
export function spareBytes(total: number): number {
  return Math.min(SPARE_BYTES, Math.max(MIN_SPARE_BYTES, Math.floor(total / 8)));
}
// The free space is looked at again while unpacking every quarter of the
// spare room, as tiny files take more on disk than in the tar stream: a
// 1-byte file is 1 KiB of tar and a 4 KiB block, so between two looks at
// most the spare room lands.

async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

async function totalBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.blocks * fs.bsize;
}

/**
 * How much may be unpacked into destDir: at most `maxBytes`, and never so
 * much that less than spareBytes() stays free on its filesystem.
 */
export class UnpackRoom {
  private readonly destDir: string;
  private readonly limit: number;
  private readonly what: string;
  private readonly spare: number;
  private readonly recheck: number;
  private nextCheck: number;

  private constructor(destDir: string, free: number, total: number, maxBytes: number) {
    this.destDir = destDir;
    this.spare = spareBytes(total);
    this.recheck = Math.max(64 * 1024, Math.floor(this.spare / 4));
    this.nextCheck = this.recheck;
    const room = Math.max(0, free - this.spare);
    this.limit = Math.min(room, maxBytes);
    const there = `${destDir} has ${formatBytes(free)} free, of which ${formatBytes(this.spare)} is kept spare`;
    this.what = maxBytes < room ? `the limit of ${formatBytes(maxBytes)} (${there})` : `the room there is (${there})`;
  }

  static async of(destDir: string, maxBytes: number = Infinity): Promise<UnpackRoom> {
    return new UnpackRoom(destDir, await freeBytes(destDir), await totalBytes(destDir), maxBytes);
  }

  /** The error for an archive that unpacks to `bytes`, or null when they fit. */
  tooBig(bytes: number): Error | null {
    return bytes > this.limit ? new Error(`it would unpack to at least ${formatBytes(bytes)}, more than ${this.what}`) : null;
  }

  /** tooBig, and every quarter of the spare room a fresh look at the free space (others write there too). */
  readonly guard: ByteGuard = async (bytes) => {
    const error = this.tooBig(bytes);
    if (error || bytes < this.nextCheck) return error;
    this.nextCheck = bytes + this.recheck;
    const freeNow = await freeBytes(this.destDir);
    if (freeNow >= this.spare) return null;
    return new Error(`${this.destDir} ran out of room after ${formatBytes(bytes)} of it (${formatBytes(freeNow)} free, ${formatBytes(this.spare)} is kept spare)`);
  };
}
