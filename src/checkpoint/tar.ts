// Tar archives for checkpoints: a small streaming reader that lets us inspect
// an untrusted archive *before* anything touches the disk, plus thin wrappers
// around GNU tar for the actual extraction and creation.
//
// The reader deliberately mirrors the way GNU tar interprets headers (long
// names, pax overrides, the ustar prefix), because the safety check is only as
// good as the agreement between what we inspect and what tar then extracts.
// Where the two could disagree (data attached to a symlink, a lone zero block,
// a global pax header that renames entries) we refuse the archive instead.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { run, showCommand, spawn } from '../host/spawn.ts';
import { debugLog } from '../log.ts';
import { createGunzip, createZstdDecompress } from 'node:zlib';

export type TarEntry = {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'other';
  linkName: string;
  size: number;
  mode: number;
};

export type Compression = 'none' | 'gzip' | 'zstd';

const BLOCK_SIZE = 512;
// Long names and pax headers are read into memory; nothing legitimate is this big.
const MAX_METADATA_SIZE = 1024 * 1024;

const ARCHIVE_EXTENSIONS: ReadonlyArray<[suffix: string, compression: Compression]> = [
  ['.tar', 'none'],
  ['.tar.gz', 'gzip'],
  ['.tgz', 'gzip'],
  ['.tar.zst', 'zstd'],
  ['.tar.zstd', 'zstd'],
];

// Tar type flags; '7' (contiguous file) is extracted as a regular file.
const ENTRY_TYPES: Record<string, TarEntry['type']> = {
  '0': 'file', '\0': 'file', '7': 'file',
  '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo',
};

const TAR_COMPRESSION_FLAGS: Record<Compression, string[]> = {
  none: [],
  gzip: ['-z'],
  zstd: ['--zstd'],
};

/** The compression implied by an archive file name; throws (saying which endings work) for names we do not write. */
export function compressionForPath(file: string): Compression {
  const lower = file.toLowerCase();
  for (const [suffix, compression] of ARCHIVE_EXTENSIONS) {
    if (lower.endsWith(suffix)) return compression;
  }
  const accepted = ARCHIVE_EXTENSIONS.map(([suffix]) => suffix).join(', ');
  throw new Error(`the name must end in one of ${accepted}`);
}

// ---------------------------------------------------------------------------
// Reading

export async function readTarEntries(file: string): Promise<TarEntry[]> {
  const handle = await open(file, 'r');
  try {
    return await readEntriesFromHandle(handle, await detectCompression(handle));
  } finally {
    await handle.close();
  }
}

async function detectCompression(handle: FileHandle): Promise<Compression> {
  const head = Buffer.alloc(6);
  const { bytesRead } = await handle.read(head, 0, head.length, 0);
  const magic = head.subarray(0, bytesRead);
  const startsWith = (...bytes: number[]) => bytes.every((byte, i) => magic[i] === byte);
  if (startsWith(0x1f, 0x8b)) return 'gzip';
  if (startsWith(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  // Name the formats we recognise but do not take, rather than failing on a checksum.
  if (startsWith(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) throw new Error('unsupported archive compression: xz (use none, gzip or zstd)');
  if (startsWith(0x42, 0x5a, 0x68)) throw new Error('unsupported archive compression: bzip2 (use none, gzip or zstd)');
  return 'none';
}

async function readEntriesFromHandle(handle: FileHandle, compression: Compression): Promise<TarEntry[]> {
  const raw = Readable.from(fileChunks(handle), { objectMode: false });
  let stream: Readable = raw;
  if (compression !== 'none') {
    const decompressor = compression === 'gzip' ? createGunzip() : createZstdDecompress();
    raw.on('error', (err) => decompressor.destroy(err));
    stream = raw.pipe(decompressor);
  }
  const reader = new ByteReader(stream, compression);
  try {
    return await parseEntries(reader);
  } finally {
    await reader.close();
    raw.destroy();
  }
}

/**
 * The file's bytes from the start, read at explicit positions so the same
 * handle can be read again (Node's fd-based streams may close the descriptor).
 */
async function* fileChunks(handle: FileHandle): AsyncGenerator<Buffer> {
  for (let position = 0; ; ) {
    const buffer = Buffer.allocUnsafe(256 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) return;
    position += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/** Pulls exact byte counts out of a stream, tracking the offset for error messages. */
class ByteReader {
  position = 0;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;
  private readonly chunks: AsyncIterator<Buffer>;
  private readonly compression: Compression;

  constructor(stream: Readable, compression: Compression) {
    this.chunks = stream[Symbol.asyncIterator]();
    this.compression = compression;
  }

  /** Up to n bytes; fewer only when the stream has ended. */
  async read(n: number): Promise<Buffer> {
    const parts = [this.pending];
    let total = this.pending.length;
    while (total < n) {
      const chunk = await this.nextChunk();
      if (chunk === null) break;
      parts.push(chunk);
      total += chunk.length;
    }
    const all = parts.length === 1 ? parts[0] : Buffer.concat(parts, total);
    const out = all.subarray(0, n);
    this.pending = all.subarray(out.length);
    this.position += out.length;
    return out;
  }

  async readExactly(n: number): Promise<Buffer> {
    const out = await this.read(n);
    if (out.length < n) throw truncated(this.position);
    return out;
  }

  /** Discards n bytes without buffering them (file contents can be large). */
  async skipExactly(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.pending.length === 0) {
        const chunk = await this.nextChunk();
        if (chunk === null) throw truncated(this.position);
        this.pending = chunk;
      }
      const take = Math.min(left, this.pending.length);
      this.pending = this.pending.subarray(take);
      this.position += take;
      left -= take;
    }
  }

  async close(): Promise<void> {
    await this.chunks.return?.();
  }

  private async nextChunk(): Promise<Buffer | null> {
    if (this.ended) return null;
    let result: IteratorResult<Buffer>;
    try {
      result = await this.chunks.next();
    } catch (err) {
      throw describeStreamError(err, this.compression);
    }
    if (result.done) {
      this.ended = true;
      return null;
    }
    return result.value;
  }
}

function truncated(offset: number): Error {
  return new Error(`archive is truncated (it ends inside the tar data at byte ${offset})`);
}

function describeStreamError(err: unknown, compression: Compression): Error {
  const error = err as NodeJS.ErrnoException;
  // zlib reports a compressed stream that simply stops as "unexpected end of file".
  if (error.code === 'Z_BUF_ERROR' || /unexpected end/i.test(error.message ?? '')) {
    return new Error(`archive is truncated (the ${compression} stream ends early)`);
  }
  if (compression !== 'none' && error.code?.startsWith('Z')) {
    return new Error(`archive is corrupt: bad ${compression} data (${error.message})`);
  }
  return error instanceof Error ? error : new Error(String(err));
}

type PendingMetadata = {
  longName?: string; // GNU 'L'
  longLinkName?: string; // GNU 'K'
  pax?: Map<string, string>; // pax 'x', applies to the next entry only
};

async function parseEntries(reader: ByteReader): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  let pending: PendingMetadata = {};
  for (;;) {
    const offset = reader.position;
    const header = await reader.read(BLOCK_SIZE);
    if (header.length === 0) {
      throw new Error(`archive is truncated (no end-of-archive marker after byte ${offset})`);
    }
    if (header.length < BLOCK_SIZE) throw truncated(reader.position);

    if (isZeroBlock(header)) {
      // The archive ends with two zero blocks. Some writers stop after one, so
      // end-of-file is also accepted; anything else after a lone zero block is
      // something GNU tar might read on from, so we refuse it.
      const next = await reader.read(BLOCK_SIZE);
      if (next.length === 0 || (next.length === BLOCK_SIZE && isZeroBlock(next))) return entries;
      if (next.length < BLOCK_SIZE) throw truncated(reader.position);
      throw new Error(`not a valid tar archive: data after a zero block at offset ${offset}`);
    }

    verifyChecksum(header, offset);
    const typeflag = String.fromCharCode(header[156]);
    const headerSize = parseSize(header, offset);

    if (typeflag === 'L' || typeflag === 'K' || typeflag === 'x' || typeflag === 'g') {
      if (headerSize > MAX_METADATA_SIZE) {
        throw new Error(`not a valid tar archive: ${headerSize}-byte extended header at offset ${offset}`);
      }
      const data = await reader.readExactly(headerSize);
      await reader.skipExactly(paddingFor(headerSize));
      if (typeflag === 'L') pending.longName = cString(data, 0, data.length);
      else if (typeflag === 'K') pending.longLinkName = cString(data, 0, data.length);
      else if (typeflag === 'x') pending.pax = new Map([...(pending.pax ?? []), ...parsePax(data, offset)]);
      else checkGlobalPax(parsePax(data, offset), offset);
      continue;
    }

    // A pax size overrides the header's (which may be 0 for huge files).
    const paxSize = pending.pax?.get('size');
    const size = paxSize === undefined ? headerSize : parsePaxNumber(paxSize, 'size', offset);
    const entry = buildEntry(header, typeflag, size, pending);
    pending = {};
    if (entry.type === 'file' || entry.type === 'other') {
      await reader.skipExactly(size + paddingFor(size));
    } else if (size !== 0) {
      // GNU tar skips such data for some types and not others; refuse the ambiguity.
      throw new Error(`not a valid tar archive: ${entry.type} entry "${entry.name}" carries ${size} bytes of data`);
    }
    entries.push(entry);
  }
}

function buildEntry(header: Buffer, typeflag: string, size: number, pending: PendingMetadata): TarEntry {
  const pax = pending.pax;
  const name = pax?.get('GNU.sparse.name') ?? pax?.get('path') ?? pending.longName ?? headerName(header);
  const linkName = pax?.get('linkpath') ?? pending.longLinkName ?? cString(header, 157, 100);
  let type = ENTRY_TYPES[typeflag] ?? 'other';
  // Old tars mark directories with a trailing slash on a regular entry; GNU tar honours that.
  if (type === 'file' && name.endsWith('/')) type = 'dir';
  // Sparse files have a data layout of their own; checkpoints never need them.
  if (pax && [...pax.keys()].some((key) => key.startsWith('GNU.sparse.'))) type = 'other';
  return { name, type, linkName, size: type === 'file' ? size : 0, mode: parseOctal(header, 100, 8) ?? 0 };
}

function headerName(header: Buffer): string {
  const name = cString(header, 0, 100);
  // GNU tar uses the prefix field only for POSIX ustar headers ("ustar\0");
  // old GNU headers keep other data in those bytes.
  const isUstar = header.toString('latin1', 257, 263) === 'ustar\0';
  const prefix = isUstar ? cString(header, 345, 155) : '';
  return prefix === '' ? name : `${prefix}/${name}`;
}

function cString(buffer: Buffer, start: number, length: number): string {
  const field = buffer.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.toString('utf8', 0, end === -1 ? field.length : end);
}

function isZeroBlock(block: Buffer): boolean {
  return block.every((byte) => byte === 0);
}

function paddingFor(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

/** Octal numeric field, NUL- or space-terminated; null when it is not octal. */
function parseOctal(buffer: Buffer, start: number, length: number): number | null {
  const text = buffer.toString('latin1', start, start + length).replace(/^ +/, '');
  const digits = /^[0-7]*/.exec(text)![0];
  const rest = text.slice(digits.length);
  if (digits === '' || !/^[\0 ]*$/.test(rest)) return null;
  return parseInt(digits, 8);
}

function verifyChecksum(header: Buffer, offset: number): void {
  const stored = parseOctal(header, 148, 8);
  // The checksum is computed with its own field read as spaces. Some historic
  // writers summed signed bytes, and GNU tar accepts either sum.
  let unsignedSum = 0;
  let signedSum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i];
    unsignedSum += byte;
    signedSum += byte >= 0x80 ? byte - 0x100 : byte;
  }
  if (stored === null || (stored !== unsignedSum && stored !== signedSum)) {
    throw new Error(`not a tar archive: bad header checksum at offset ${offset}`);
  }
}

function parseSize(header: Buffer, offset: number): number {
  const first = header[124];
  if (first & 0x80) {
    // GNU base-256: a big-endian number in the rest of the field (for files of 8 GiB and more).
    if (first === 0xff) throw new Error(`not a valid tar archive: negative size at offset ${offset}`);
    let value = BigInt(first & 0x7f);
    for (let i = 125; i < 136; i++) value = (value << 8n) | BigInt(header[i]);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`not a valid tar archive: size too large at offset ${offset}`);
    return Number(value);
  }
  const size = parseOctal(header, 124, 12);
  if (size === null) throw new Error(`not a valid tar archive: bad size field at offset ${offset}`);
  return size;
}

function parsePaxNumber(value: string, key: string, offset: number): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new Error(`not a valid tar archive: bad pax ${key} "${value}" at offset ${offset}`);
  }
  return Number(value);
}

/** pax records are "<length> <key>=<value>\n", the length counting the whole record in bytes. */
function parsePax(data: Buffer, offset: number): Map<string, string> {
  const records = new Map<string, string>();
  const malformed = () => new Error(`not a valid tar archive: malformed pax header at offset ${offset}`);
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // some writers pad with NULs
    const space = data.indexOf(0x20, pos);
    if (space === -1) throw malformed();
    const lengthText = data.toString('latin1', pos, space);
    if (!/^\d+$/.test(lengthText)) throw malformed();
    const end = pos + Number(lengthText);
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a) throw malformed();
    const record = data.toString('utf8', space + 1, end - 1);
    const equals = record.indexOf('=');
    if (equals <= 0) throw malformed();
    records.set(record.slice(0, equals), record.slice(equals + 1));
    pos = end;
  }
  return records;
}

function checkGlobalPax(records: Map<string, string>, offset: number): void {
  // Global headers are otherwise ignored, but GNU tar applies their path,
  // linkpath and size to every later entry, which our view would miss.
  for (const key of records.keys()) {
    if (key === 'path' || key === 'linkpath' || key === 'size' || key.startsWith('GNU.sparse.')) {
      throw new Error(`refusing archive: global pax header sets "${key}" (offset ${offset})`);
    }
  }
}

// ---------------------------------------------------------------------------
// Safety check

/**
 * Throws unless extracting the entries into an empty folder keeps everything
 * inside it: no absolute or ".." paths, no symlinks pointing out (also through
 * chains of symlinks from the same archive), nothing written through a symlink
 * that the archive itself created, and no device nodes or fifos unless allowed.
 */
export interface SafetyOptions {
  allowDevices?: boolean;
  /**
   * The archive is a container's writable layer, extracted into an empty
   * folder: its symlinks point into the container's root, not ours, so their
   * targets are free (an entry that goes *through* one is still refused), and
   * fifos are ordinary files there. Device nodes stay refused.
   */
  rootfsLayer?: boolean;
}

export function checkEntriesSafe(entries: TarEntry[], opts: SafetyOptions = {}): void {
  // What the symlinks will point to once extraction is done (last entry wins).
  const finalSymlinks = new Map<string, string>();
  for (const entry of entries) {
    const key = pathParts(entry.name).join('/');
    if (entry.type === 'symlink') finalSymlinks.set(key, entry.linkName);
    else finalSymlinks.delete(key);
  }

  const symlinksSoFar = new Set<string>();
  for (const entry of entries) {
    const refuse = (why: string) => new Error(`unsafe archive entry "${entry.name}": ${why}`);
    const parts = checkedPath(entry.name, refuse);
    if (parts.length === 0) {
      // "./" itself: harmless for a directory (tar runs with --no-overwrite-dir).
      if (entry.type === 'dir') continue;
      throw refuse('empty name');
    }
    const through = symlinkAlong(parts, symlinksSoFar);
    if (through !== null) throw refuse(`its path goes through the symlink "${through}" from the same archive`);

    switch (entry.type) {
      case 'symlink':
        if (entry.linkName === '') throw refuse('empty symlink target');
        if (!opts.rootfsLayer && !resolvesInside(parts.slice(0, -1), entry.linkName, finalSymlinks)) {
          throw refuse(`symlink target "${entry.linkName}" leaves the extraction root`);
        }
        symlinksSoFar.add(parts.join('/'));
        break;
      case 'hardlink': {
        const targetParts = checkedPath(entry.linkName, (why) => refuse(`hardlink target "${entry.linkName}": ${why}`));
        if (targetParts.length === 0) throw refuse('empty hardlink target');
        const targetThrough = symlinkAlong(targetParts, symlinksSoFar);
        if (targetThrough !== null) {
          throw refuse(`hardlink target "${entry.linkName}" goes through the symlink "${targetThrough}"`);
        }
        // A hardlinked symlink keeps its target text but moves folder, so a
        // target checked from the old folder may point outside from the new one.
        if (symlinksSoFar.has(targetParts.join('/'))) throw refuse(`hardlink to the symlink "${entry.linkName}"`);
        break;
      }
      case 'char':
      case 'block':
      case 'fifo':
        if (entry.type === 'fifo' && opts.rootfsLayer) break;
        if (!opts.allowDevices) throw refuse(`${entry.type === 'fifo' ? 'fifo' : `${entry.type} device`} not allowed here`);
        break;
      case 'other':
        throw refuse('unsupported entry type (sparse file, volume label or similar)');
      default:
        break;
    }
  }
}

/** Path components with "." and empty ones dropped; no validation. */
function pathParts(name: string): string[] {
  return name.split('/').filter((part) => part !== '' && part !== '.');
}

function checkedPath(name: string, refuse: (why: string) => Error): string[] {
  if (name.includes('\0')) throw refuse('NUL byte in path');
  if (name.startsWith('/')) throw refuse('absolute path');
  const parts = pathParts(name);
  if (parts.includes('..')) throw refuse('path contains ".."');
  return parts;
}

/** The first proper prefix of the path that is a symlink, or null. */
function symlinkAlong(parts: string[], symlinks: Set<string>): string | null {
  for (let i = 1; i < parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    if (symlinks.has(prefix)) return prefix;
  }
  return null;
}

/**
 * Resolves a symlink target inside a virtual root made of the archive's own
 * symlinks, so a chain like "d/up -> .." plus "x -> d/up/d/up/.." is caught
 * even though each target looks harmless on its own.
 */
function resolvesInside(linkFolder: string[], target: string, symlinks: Map<string, string>): boolean {
  if (target.startsWith('/')) return false;
  const resolved = [...linkFolder];
  const queue = target.split('/');
  let expansionsLeft = 40; // like the kernel's limit; loops count as unsafe
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (resolved.length === 0) return false;
      resolved.pop();
      continue;
    }
    resolved.push(part);
    const next = symlinks.get(resolved.join('/'));
    if (next === undefined) continue;
    if (next.startsWith('/') || --expansionsLeft < 0) return false;
    resolved.pop();
    queue.unshift(...next.split('/'));
  }
  return true;
}

// ---------------------------------------------------------------------------
// GNU tar wrappers

/** Runs tar with `input` on its stdin; tar stopping early (an error) is not an error of ours. */
function tarFromStream(args: string[], input: Readable): Promise<{ exitCode: number; stderr: string }> {
  debugLog(showCommand('tar', args));
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.stdin!.on('error', () => undefined);
    input.on('error', (err) => {
      child.kill('SIGKILL');
      reject(err);
    });
    input.pipe(child.stdin!);
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ exitCode: code ?? (signal ? 128 : 1), stderr }));
  });
}

/**
 * Validates the archive, then extracts it with GNU tar. destDir should be a
 * fresh folder: tar follows symlinks that already exist there.
 */
export async function extractTar(file: string, destDir: string, opts: SafetyOptions = {}): Promise<void> {
  // One open descriptor serves both the check and tar, so the file cannot be
  // swapped for another between the two.
  const handle = await open(file, 'r');
  try {
    const compression = await detectCompression(handle);
    checkEntriesSafe(await readEntriesFromHandle(handle, compression), opts);
    await mkdir(destDir, { recursive: true });
    const args = [
      '-x', '-f', '-', '-C', destDir,
      '--numeric-owner', '--same-permissions', '--no-overwrite-dir',
      '--xattrs', '--xattrs-include=*',
      ...TAR_COMPRESSION_FLAGS[compression],
    ];
    const result = await tarFromStream(args, Readable.from(fileChunks(handle)));
    if (result.exitCode !== 0) {
      throw new Error(`cannot extract ${file}: tar failed: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
    }
  } finally {
    await handle.close();
  }
}

/**
 * Archives the contents of srcDir (entries "checkpoint/", "spec.dump", … with
 * no leading folder) into file, compressed as its extension says. The archive
 * appears under its final name only once it is complete.
 */
export async function createTar(srcDir: string, file: string): Promise<void> {
  let compression: Compression;
  try {
    compression = compressionForPath(file);
  } catch (err) {
    throw new Error(`cannot tell the archive format of ${file}: ${(err as Error).message}`);
  }
  const names = (await readdir(srcDir)).sort();
  const target = path.resolve(file);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  const args = [
    '-c', '-f', temp, '--force-local', '-C', srcDir,
    '--numeric-owner', '--xattrs', '--xattrs-include=*', '--sort=name',
    ...TAR_COMPRESSION_FLAGS[compression],
    // "--" so a file named like an option stays a file; tar refuses an empty list.
    ...(names.length > 0 ? ['--', ...names] : ['-T', '/dev/null']),
  ];
  try {
    const result = await run('tar', args);
    if (result.exitCode !== 0) {
      throw new Error(`cannot create ${file}: tar failed: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
    }
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}
