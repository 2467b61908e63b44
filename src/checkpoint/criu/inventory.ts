import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// Just enough of CRIU's image format to answer what a restore must know before
// CRIU runs: the mode the container's "/" had, and which CRIU options the dump
// was taken with. Layout (criu/image.c, criu/include/magic.h): every image but
// inventory.img starts with IMG_COMMON_MAGIC (or IMG_SERVICE_MAGIC for stats)
// and its own magic, then entries, each a little-endian u32 size and a protobuf
// message (images/*.proto).

const IMG_COMMON_MAGIC = 0x54564319;
const IMG_SERVICE_MAGIC = 0x55105940;

/** Field number → values in order (protobuf allows repeats; the last one wins for scalars). */
export type ProtoFields = Map<number, Array<number | Buffer>>;

export interface ProtoField {
  field: number;
  wire: number;
  /** Where the value (after the key) starts and ends in the message. */
  start: number;
  end: number;
  value: number | Buffer;
}

/** Decodes a protobuf message into its fields, with their byte ranges; throws on damage. */
export function protoFields(message: Buffer): ProtoField[] {
  const fields: ProtoField[] = [];
  let offset = 0;
  const varint = (): number => {
    let result = 0;
    for (let shift = 0; ; shift += 7) {
      if (offset >= message.length) throw new Error('truncated varint');
      if (shift > 63) throw new Error('varint too long');
      const byte = message[offset++];
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
    }
  };
  while (offset < message.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    const start = offset;
    let value: number | Buffer;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const length = varint();
      if (offset + length > message.length) throw new Error('truncated field');
      value = message.subarray(offset, offset + length);
      offset += length;
    } else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4;
      if (offset + size > message.length) throw new Error('truncated field');
      value = message.subarray(offset, offset + size);
      offset += size;
    } else throw new Error(`unsupported wire type ${wire}`);
    fields.push({ field, wire, start, end: offset, value });
  }
  return fields;
}

export function protoMap(message: Buffer): ProtoFields {
  const map: ProtoFields = new Map();
  for (const { field, value } of protoFields(message)) {
    const list = map.get(field) ?? [];
    list.push(value);
    map.set(field, list);
  }
  return map;
}

function lastNumber(fields: ProtoFields, field: number): number | undefined {
  const values = fields.get(field);
  const value = values?.[values.length - 1];
  return typeof value === 'number' ? value : undefined;
}

export interface ImageEntry {
  /** Offset of the entry's message in the file (after its size word). */
  offset: number;
  message: Buffer;
}

/** The entries of a CRIU image file (inventory.img has one magic word, the others two). */
export function imageEntries(bytes: Buffer, name: string): ImageEntry[] {
  if (bytes.length < 4) throw new Error(`${name}: too short for a CRIU image`);
  const first = bytes.readUInt32LE(0);
  let offset = first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC ? 8 : 4;
  const entries: ImageEntry[] = [];
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new Error(`${name}: truncated entry size at byte ${offset}`);
    const size = bytes.readUInt32LE(offset);
    offset += 4;
    if (offset + size > bytes.length) throw new Error(`${name}: truncated entry at byte ${offset}`);
    entries.push({ offset, message: bytes.subarray(offset, offset + size) });
    offset += size;
  }
  return entries;
}

function readEntries(imagesDir: string, file: string): ImageEntry[] {
  return imageEntries(readFileSync(join(imagesDir, file)), file);
}

/** pstree.img's first entry is the container's init: PstreeEntry { pid = 1, ppid = 2, ... }. */
export function rootTaskPid(imagesDir: string): number | null {
  const [first] = readEntries(imagesDir, 'pstree.img');
  return first ? (lastNumber(protoMap(first.message), 1) ?? null) : null;
}

const FD_TYPE_REG = 1;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

interface RegFile {
  id: number;
  name: string;
  mode: number | undefined;
  /** Where, in files.img, the mode's varint lies. */
  modeAt: { start: number; end: number } | undefined;
}

/** files.img: FileEntry { type = 1, id = 2, reg = 3: RegFileEntry { id = 1, name = 6, mode = 10 } }. */
function regFiles(filesImg: Buffer): RegFile[] {
  const files: RegFile[] = [];
  for (const entry of imageEntries(filesImg, 'files.img')) {
    const top = protoFields(entry.message);
    const type = top.find((f) => f.field === 1)?.value;
    const reg = top.find((f) => f.field === 3 && f.wire === 2);
    if (type !== FD_TYPE_REG || !reg || !(reg.value instanceof Buffer)) continue;
    const inner = protoFields(reg.value);
    const name = inner.find((f) => f.field === 6)?.value;
    const id = top.find((f) => f.field === 2)?.value;
    const modeField = inner.find((f) => f.field === 10 && f.wire === 0);
    // Offsets are relative to their message: RegFileEntry's bytes end where the reg field ends.
    const base = entry.offset + reg.end - reg.value.length;
    files.push({
      id: typeof id === 'number' ? id : -1,
      name: name instanceof Buffer ? name.toString('utf8') : '',
      mode: typeof modeField?.value === 'number' ? modeField.value : undefined,
      modeAt: modeField ? { start: base + modeField.start, end: base + modeField.end } : undefined,
    });
  }
  return files;
}

/**
 * The mode of the container's root directory when it was dumped, as CRIU
 * recorded it: fs-<pid>.img of the init task names its root (FsEntry.root_id),
 * a file of files.img, whose RegFileEntry.mode CRIU checks against the restored
 * root ("File . has bad mode 040555 (expect 040755)"). Null when the images do
 * not say (older CRIU wrote no mode).
 */
export function rootDirMode(imagesDir: string): number | null {
  const pid = rootTaskPid(imagesDir);
  if (pid === null || !existsSync(join(imagesDir, `fs-${pid}.img`))) return null;
  const [fsEntry] = readEntries(imagesDir, `fs-${pid}.img`);
  if (!fsEntry) return null;
  const rootId = lastNumber(protoMap(fsEntry.message), 2);
  if (rootId === undefined) return null;
  const root = regFiles(readFileSync(join(imagesDir, 'files.img'))).find((file) => file.id === rootId);
  return root?.mode !== undefined && (root.mode & S_IFMT) === S_IFDIR ? root.mode : null;
}

function encodeVarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0);
  return Buffer.from(bytes);
}

/**
 * A copy of files.img in which every directory entry named "/" has the mode
 * `mode` (permission bits; the type stays a directory). Only the varint is
 * rewritten, so the new one must have the same length, which holds for any
 * two directory modes (040000..0177777 all take three bytes); otherwise this
 * throws rather than re-encode the entries.
 */
export function withRootDirMode(filesImg: Buffer, mode: number): { bytes: Buffer; changed: number } {
  const bytes = Buffer.from(filesImg);
  let changed = 0;
  for (const file of regFiles(filesImg)) {
    if (file.name !== '/' || file.mode === undefined || !file.modeAt || (file.mode & S_IFMT) !== S_IFDIR) continue;
    const wanted = S_IFDIR | (mode & 0o7777);
    if (wanted === file.mode) continue;
    const encoded = encodeVarint(wanted);
    if (encoded.length !== file.modeAt.end - file.modeAt.start) throw new Error('files.img: the new mode does not fit in place');
    encoded.copy(bytes, file.modeAt.start);
    changed++;
  }
  return { bytes, changed };
}

/**
 * The CRIU options a dump was evidently taken with, from the images it wrote:
 * tcp-stream-*.img exist only for established connections dumped with
 * --tcp-established, filelocks.img only when --file-locks found locks, and
 * tty-info.img only for a task with a terminal (runc's --shell-job case).
 * Other options (--ext-unix-sk) leave no trace; an engine that does not record
 * them (podman, CRI-O, containerd) makes the user give them again.
 */
export function criuOptionsFromImages(imagesDir: string): string[] {
  const names = existsSync(imagesDir) ? readdirSync(imagesDir) : [];
  const options: string[] = [];
  if (names.some((name) => /^tcp-stream-[0-9a-f]+\.img$/.test(name))) options.push('tcp-established');
  if (names.includes('filelocks.img') && hasEntries(imagesDir, 'filelocks.img')) options.push('file-locks');
  if (names.includes('tty-info.img') && hasEntries(imagesDir, 'tty-info.img')) options.push('shell-job');
  return options;
}

function hasEntries(imagesDir: string, file: string): boolean {
  try {
    return readEntries(imagesDir, file).length > 0;
  } catch {
    return false;
  }
}
