import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage, encodeVarint, readImageEntries, splitImageEntries, type ProtoMessage } from './images.ts';

// What a restore must know from CRIU's images before CRIU runs: the mode the
// container's "/" had, and which CRIU options the dump was evidently taken
// with. Read through the one bounded decoder (images.ts); field numbers are
// those of CRIU's images/*.proto.

/** pstree.img's first entry is the container's init: PstreeEntry { pid = 1, ppid = 2, ... }. */
export function rootTaskPid(imagesDir: string): number | null {
  const file = join(imagesDir, 'pstree.img');
  const [first] = readImageEntries(file, 'pstree');
  return first ? (decodeMessage(first, file, 'pstree_entry').uint32(1) ?? null) : null;
}

const FD_TYPE_REG = 1;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

interface RegFile {
  id: number;
  name: string;
  mode: number | undefined;
  /** The RegFileEntry, whose raw bytes are a view into files.img: its mode (field 10) can be rewritten in place. */
  entry: ProtoMessage;
}

/** files.img: FileEntry { type = 1, id = 2, reg = 3: RegFileEntry { id = 1, name = 6, mode = 10 } }. */
function regFiles(filesImg: Buffer): RegFile[] {
  const files: RegFile[] = [];
  for (const bytes of splitImageEntries(filesImg, 'files', 'files.img')) {
    const top = decodeMessage(bytes, 'files.img', 'file_entry');
    const reg = top.uint32(1) === FD_TYPE_REG ? top.message(3, 'reg') : undefined;
    if (!reg) continue;
    files.push({ id: top.uint32(2) ?? -1, name: reg.string(6) ?? '', mode: reg.uint32(10), entry: reg });
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
  const fsFile = join(imagesDir, `fs-${pid}.img`);
  if (pid === null || !existsSync(fsFile)) return null;
  const [fsEntry] = readImageEntries(fsFile, 'fs');
  if (!fsEntry) return null;
  const rootId = decodeMessage(fsEntry, fsFile, 'fs_entry').uint32(2);
  if (rootId === undefined) return null;
  const root = regFiles(readFileSync(join(imagesDir, 'files.img'))).find((file) => file.id === rootId);
  return root?.mode !== undefined && (root.mode & S_IFMT) === S_IFDIR ? root.mode : null;
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
  // The entries are views into `bytes`: writing into a RegFileEntry's raw bytes writes the copy.
  for (const file of regFiles(bytes)) {
    if (file.name !== '/' || file.mode === undefined || (file.mode & S_IFMT) !== S_IFDIR) continue;
    const wanted = S_IFDIR | (mode & 0o7777);
    if (wanted === file.mode) continue;
    const range = file.entry.varintRange(10);
    const encoded = encodeVarint(wanted);
    if (!range || encoded.length !== range.end - range.start) throw new Error('files.img: the new mode does not fit in place');
    encoded.copy(file.entry.raw, range.start);
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
    return readImageEntries(join(imagesDir, file), null).length > 0;
  } catch {
    return false;
  }
}
