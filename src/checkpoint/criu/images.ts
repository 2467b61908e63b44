import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { StasisError } from '../../errors.ts';

// CRIU's image files, read as untrusted input. Layout (criu/image.c, criu/include/magic.h):
// a u32 IMG_COMMON_MAGIC (every image but inventory.img), a u32 magic of the image's kind,
// then entries, each a u32 little-endian length followed by one protobuf message of that length.
// Everything here is bounded and checked: a damaged or hostile image gives a
// CriuImageError naming the file and what is wrong with it, never a crash.

export const IMG_COMMON_MAGIC = 0x54564319;
/** The first word of the images that describe the dump rather than the tasks (stats-dump, stats-restore). */
export const IMG_SERVICE_MAGIC = 0x55105940;

/** Magic numbers of the images stasis reads (criu/include/magic.h). */
export const IMAGE_MAGIC = {
  inventory: 0x58313116,
  pstree: 0x50273030,
  core: 0x55053847,
  creds: 0x54023547,
  mountpoints: 0x55563928,
  ids: 0x54432030,
  pagemap: 0x56084025,
  fs: 0x51403912,
  files: 0x56303138,
  mm: 0x57492820,
} as const;

export type ImageKind = keyof typeof IMAGE_MAGIC;

/** Larger than any core, creds, pstree or mountpoints image a real container produces. */
const MAX_IMAGE_BYTES = 64 * 1024 * 1024;
const MAX_NESTING = 16;

export class CriuImageError extends StasisError {
  readonly file: string;
  readonly detail: string;
  constructor(file: string, detail: string) {
    super(`CRIU image ${file} is damaged or not a CRIU image: ${detail}`, {
      hint: 'take the checkpoint again; an image that does not decode cannot be checked, so it is not restored',
    });
    this.name = 'CriuImageError';
    this.file = file;
    this.detail = detail;
  }
}

/** Reads a file of at most MAX_IMAGE_BYTES without following it past that size. */
export function readBounded(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new CriuImageError(path, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new CriuImageError(path, 'not a regular file');
    if (stat.size > MAX_IMAGE_BYTES) throw new CriuImageError(path, `${stat.size} bytes, more than the ${MAX_IMAGE_BYTES} an image of this kind can need`);
    const buffer = Buffer.alloc(stat.size);
    let done = 0;
    while (done < buffer.length) {
      const n = readSync(fd, buffer, done, buffer.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return buffer.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/**
 * The protobuf entries of one image file, after its magic numbers are checked.
 * `kind` null takes any image of the task or service families without checking
 * its own magic (for images stasis only counts or copies).
 */
export function readImageEntries(path: string, kind: ImageKind | null): Buffer[] {
  return splitImageEntries(readBounded(path), kind, path);
}

/**
 * The entries of an image already in memory. Each entry is a view into
 * `bytes` (not a copy), so a caller may rewrite a value in place.
 */
export function splitImageEntries(bytes: Buffer, kind: ImageKind | null, file: string): Buffer[] {
  let offset = 0;
  const u32 = (what: string): number => {
    if (offset + 4 > bytes.length) throw new CriuImageError(file, `ends inside the ${what}`);
    const value = bytes.readUInt32LE(offset);
    offset += 4;
    return value;
  };
  if (kind !== 'inventory') {
    const common = u32('image header');
    const family = kind === null ? [IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC] : [IMG_COMMON_MAGIC];
    if (!family.includes(common)) throw new CriuImageError(file, `header magic 0x${common.toString(16)} is not CRIU's 0x${IMG_COMMON_MAGIC.toString(16)}`);
  }
  const magic = u32('image header');
  if (kind !== null && magic !== IMAGE_MAGIC[kind]) {
    throw new CriuImageError(file, `magic 0x${magic.toString(16)} is not that of a ${kind} image (0x${IMAGE_MAGIC[kind].toString(16)})`);
  }
  const entries: Buffer[] = [];
  while (offset < bytes.length) {
    const size = u32('size of an entry');
    if (offset + size > bytes.length) throw new CriuImageError(file, `an entry of ${size} bytes at offset ${offset - 4} runs past the end (${bytes.length} bytes)`);
    entries.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return entries;
}

/** One varint at cursor.offset (advanced past it), as an unsigned 64-bit value. */
function readVarint(bytes: Buffer, cursor: { offset: number }, fail: (what: string) => never): bigint {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (cursor.offset >= bytes.length) fail('ends inside a varint');
    const byte = bytes[cursor.offset++];
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return result & 0xffff_ffff_ffff_ffffn;
    shift += 7n;
  }
  return fail('a varint longer than 10 bytes');
}

/** A field's value, with where it lies (after its key) in its message's bytes. */
type WireValue = ({ wire: 0; value: bigint } | { wire: 1 | 2 | 5; bytes: Buffer }) & { start: number; end: number };

/**
 * One decoded protobuf message (proto2 wire format): every occurrence of every
 * field is kept, so repeated fields (packed or not) and "last one wins"
 * scalars are both read correctly. Accessors throw CriuImageError when a field
 * has the wrong wire type or an out-of-range value.
 */
export class ProtoMessage {
  readonly fields = new Map<number, WireValue[]>();
  /** The message's own bytes: a view into the image it came from. */
  readonly raw: Buffer;
  readonly file: string;
  readonly path: string;
  private readonly depth: number;

  constructor(bytes: Buffer, file: string, path: string, depth = 0) {
    this.raw = bytes;
    this.file = file;
    this.path = path;
    this.depth = depth;
    if (depth > MAX_NESTING) throw new CriuImageError(file, `${path}: messages nested more than ${MAX_NESTING} deep`);
    const cursor = { offset: 0 };
    const varint = (): bigint => readVarint(bytes, cursor, (what) => {
      throw new CriuImageError(file, `${path}: ${what}`);
    });
    const take = (length: number): Buffer => {
      if (cursor.offset + length > bytes.length) throw new CriuImageError(file, `${path}: a field of ${length} bytes runs past the end of its message`);
      const slice = bytes.subarray(cursor.offset, cursor.offset + length);
      cursor.offset += length;
      return slice;
    };
    while (cursor.offset < bytes.length) {
      const key = varint();
      const field = Number(key >> 3n);
      const wire = Number(key & 7n);
      if (field === 0 || field > 536_870_911) throw new CriuImageError(file, `${path}: field number ${field} is not valid`);
      const start = cursor.offset;
      let value: WireValue;
      if (wire === 0) value = { wire, value: varint(), start, end: 0 };
      else if (wire === 1) value = { wire, bytes: take(8), start, end: 0 };
      else if (wire === 5) value = { wire, bytes: take(4), start, end: 0 };
      else if (wire === 2) {
        const length = varint();
        if (length > BigInt(bytes.length)) throw new CriuImageError(file, `${path}: a field of ${length} bytes runs past the end of its message`);
        value = { wire, bytes: take(Number(length)), start, end: 0 };
      } else throw new CriuImageError(file, `${path}: wire type ${wire} of field ${field} is not one protobuf has (or a group, which CRIU never writes)`);
      value.end = cursor.offset;
      const list = this.fields.get(field);
      if (list) list.push(value);
      else this.fields.set(field, [value]);
    }
  }

  has(field: number): boolean {
    return this.fields.has(field);
  }

  /** Where the last value of a varint field lies in raw (to rewrite it in place), or undefined. */
  varintRange(field: number): { start: number; end: number } | undefined {
    const list = this.fields.get(field);
    const last = list?.[list.length - 1];
    if (!last) return undefined;
    if (last.wire !== 0) this.fail(field, `wire type ${last.wire} where a varint was expected`);
    return { start: last.start, end: last.end };
  }

  private fail(field: number, what: string): never {
    throw new CriuImageError(this.file, `${this.path}.${field}: ${what}`);
  }

  /** Every value of a repeated varint field, packed or not. */
  uint64s(field: number): bigint[] {
    const values: bigint[] = [];
    for (const entry of this.fields.get(field) ?? []) {
      if (entry.wire === 0) values.push(entry.value);
      else if (entry.wire === 2) {
        // Packed: a run of varints.
        const cursor = { offset: 0 };
        while (cursor.offset < entry.bytes.length) values.push(readVarint(entry.bytes, cursor, (what) => this.fail(field, `packed: ${what}`)));
      } else this.fail(field, `wire type ${entry.wire} where a varint was expected`);
    }
    return values;
  }

  uint32s(field: number): number[] {
    return this.uint64s(field).map((value) => {
      if (value > 0xffff_ffffn) this.fail(field, `${value} does not fit in 32 bits`);
      return Number(value);
    });
  }

  uint64(field: number): bigint | undefined {
    const values = this.uint64s(field);
    return values.length === 0 ? undefined : values[values.length - 1];
  }

  uint32(field: number): number | undefined {
    const values = this.uint32s(field);
    return values.length === 0 ? undefined : values[values.length - 1];
  }

  /** A required uint32: missing is damage. */
  needUint32(field: number, name: string): number {
    const value = this.uint32(field);
    if (value === undefined) throw new CriuImageError(this.file, `${this.path}.${name} (field ${field}) is missing`);
    return value;
  }

  /** proto2 int32/sint32 are told apart by the caller; this is sint32 (zigzag). */
  sint32(field: number): number | undefined {
    const value = this.uint64(field);
    if (value === undefined) return undefined;
    const n = Number(value & 0xffff_ffffn);
    return (n >>> 1) ^ -(n & 1);
  }

  /** proto2 int32: negative values are written as 64-bit two's complement. */
  int32(field: number): number | undefined {
    const value = this.uint64(field);
    if (value === undefined) return undefined;
    return Number(BigInt.asIntN(32, value));
  }

  bool(field: number): boolean | undefined {
    const value = this.uint64(field);
    return value === undefined ? undefined : value !== 0n;
  }

  bytes(field: number): Buffer | undefined {
    const list = this.fields.get(field);
    if (!list) return undefined;
    const last = list[list.length - 1];
    if (last.wire !== 2) this.fail(field, `wire type ${last.wire} where bytes were expected`);
    return last.bytes;
  }

  string(field: number): string | undefined {
    const bytes = this.bytes(field);
    return bytes === undefined ? undefined : bytes.toString('utf8');
  }

  message(field: number, name: string): ProtoMessage | undefined {
    const messages = this.messages(field, name);
    // proto2 merges repeated occurrences of an embedded message; CRIU writes one.
    if (messages.length > 1) this.fail(field, `${name} appears ${messages.length} times`);
    return messages[0];
  }

  messages(field: number, name: string): ProtoMessage[] {
    return (this.fields.get(field) ?? []).map((entry) => {
      if (entry.wire !== 2) this.fail(field, `wire type ${entry.wire} where the ${name} message was expected`);
      return new ProtoMessage(entry.bytes, this.file, `${this.path}.${name}`, this.depth + 1);
    });
  }
}

/**
 * A protobuf varint (wire type 0): the one encoder, for the images stasis
 * rewrites (userns maps, a root folder's mode). A negative number is sent as
 * its 64-bit two's complement, as int64 fields are.
 */
export function encodeVarint(value: number | bigint): Buffer {
  let rest = BigInt(value);
  if (rest < 0n) rest = BigInt.asUintN(64, rest);
  const bytes: number[] = [];
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest !== 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest !== 0n);
  return Buffer.from(bytes);
}

export function decodeMessage(bytes: Buffer, file: string, name: string): ProtoMessage {
  return new ProtoMessage(bytes, file, name);
}

/** Image files of one kind in a folder, with the number in their names: core-12.img → 12. */
export function numberedImages(names: readonly string[], prefix: string): { name: string; id: number }[] {
  const pattern = new RegExp(`^${prefix}-(\\d{1,10})\\.img$`);
  return names
    .map((name) => ({ name, match: pattern.exec(basename(name)) }))
    .filter((entry): entry is { name: string; match: RegExpExecArray } => entry.match !== null)
    .map(({ name, match }) => ({ name, id: Number(match[1]) }))
    .sort((a, b) => a.id - b.id);
}
