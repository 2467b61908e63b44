import { closeSync, constants, existsSync, lstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { sha256 } from '../host/digest.ts';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { walkTree } from '../host/walk.ts';
import { createListedToFile } from './archive/gnu-tar.ts';
import { DELETED_FILES, DIFF_TAR, type BaseFile } from './format/layout.ts';

// The writable layer a checkpoint carries, in the layout podman and CRI-O use:
// rootfs-diff.tar holds files added or changed (the overlay upper layer minus
// its whiteouts) and deleted.files lists, as a JSON array, the paths the
// container deleted from the read-only base.


/** Walks the upper layer: every entry to archive, and every deleted path. Links are entries, never followed. */
function walkUpper(upperDir: string): { entries: string[]; deleted: string[] } {
  const entries: string[] = [];
  const deleted: string[] = [];
  for (const entry of walkTree(upperDir)) {
    // overlayfs marks a deleted lower file with a 0:0 character device.
    if (entry.kind === 'char' && entry.stat.rdev === 0) deleted.push(entry.path);
    else entries.push(entry.path);
  }
  return { entries, deleted };
}

/** Writes rootfs-diff.tar and deleted.files into `outDir` from an overlay upper layer. */
export async function captureOverlayDiff(upperDir: string, outDir: string): Promise<{ files: number; deleted: number }> {
  const { entries, deleted } = walkUpper(upperDir);
  const problem = await createListedToFile(upperDir, entries, join(outDir, DIFF_TAR));
  if (problem) throw new StasisError(`archiving the rootfs changes: ${problem}`);
  writeFileSync(join(outDir, DELETED_FILES), `${JSON.stringify(deleted.map((p) => `/${p}`))}\n`);
  return { files: entries.length, deleted: deleted.length };
}

/**
 * Removes the recorded deletions from a mounted overlay rootfs (overlayfs then
 * writes the whiteouts). Paths come from an untrusted checkpoint: no `..`, and
 * no component may be a symlink, so nothing outside the rootfs is touched.
 */
export function applyDeletions(rootfsDir: string, deletedPaths: unknown): number {
  if (!Array.isArray(deletedPaths)) throw new StasisError(`${DELETED_FILES} is not a JSON array of paths`);
  let removed = 0;
  for (const raw of deletedPaths) {
    if (typeof raw !== 'string') throw new StasisError(`${DELETED_FILES}: ${JSON.stringify(raw)} is not a path`);
    const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.length === 0 || parts.includes('..')) throw new StasisError(`${DELETED_FILES}: refusing unsafe path ${JSON.stringify(raw)}`);
    let current = rootfsDir;
    let present = true;
    for (const [index, part] of parts.entries()) {
      current = join(current, part);
      let stat;
      try {
        stat = lstatSync(current);
      } catch {
        present = false;
        break;
      }
      if (index < parts.length - 1 && !stat.isDirectory()) {
        // A symlink (or file) where a folder should be: never follow it.
        present = false;
        break;
      }
    }
    if (!present) continue;
    rmSync(current, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/**
 * A cheap fingerprint of a base rootfs: the names, types and sizes of its
 * entries two levels deep. A copy (cp -a, rsync) matches; another image does not.
 */
export async function rootfsFingerprint(rootfsDir: string): Promise<string> {
  return fingerprintOf(rootfsManifest(rootfsDir));
}

/** The fingerprint of a manifest (rootfsManifest's lines). */
export function fingerprintOf(manifest: readonly string[]): string {
  return `sha256:${sha256().update(manifest.join('\n')).digest('hex')}`;
}

/**
 * Entries a base is sent without: device nodes and sockets. No receiving side
 * makes a device node from what it is sent (an archive's devices are refused),
 * a container never sees the base's /dev (runc mounts a tmpfs there), and a
 * socket is bound by a process, not copied. The manifest leaves them out too,
 * so a base and the copy sent of it agree.
 */
const NOT_SENT: ReadonlySet<string> = new Set(['char', 'block', 'socket']);

/** The paths in a base (relative, '/'-separated) that sending it leaves out. */
export function baseEntriesNotSent(rootfsDir: string): string[] {
  const paths: string[] = [];
  for (const entry of walkTree(rootfsDir, { onUnreadable: 'skip' })) {
    if (NOT_SENT.has(entry.kind)) paths.push(entry.path);
  }
  return paths;
}

/** What the fingerprint is made of: `path TAB type TAB size` of the top two levels, sorted (empty when the folder cannot be read). */
export function rootfsManifest(rootfsDir: string): string[] {
  const lines: string[] = [];
  try {
    for (const entry of walkTree(rootfsDir, { maxDepth: 2, onUnreadable: 'skip' })) {
      if (NOT_SENT.has(entry.kind)) continue;
      const type = entry.kind === 'dir' ? 'd' : entry.kind === 'symlink' ? 'l' : entry.kind === 'file' ? 'f' : 'o';
      lines.push(`${entry.path}\t${type}\t${type === 'd' ? 0 : entry.stat.size}`);
    }
  } catch {
    // The base itself cannot be read: an empty manifest, as before.
  }
  return lines;
}


/** The device number as /proc/PID/maps writes it (hex major:minor). */
function mapsDevice(dev: number): string {
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;
}

/**
 * The paths (inside the container) of the files on the container's rootfs
 * that its processes map or hold open and that come from the read-only base
 * (not the writable layer, which the checkpoint carries): what must be the
 * same, byte for byte, wherever the checkpoint is restored. Read while the
 * container is frozen.
 */
export function baseFilesInUse(pids: readonly number[], rootfsDir: string, upperDir: string): string[] {
  let rootDev: number;
  try {
    rootDev = statSync(rootfsDir).dev;
  } catch {
    return [];
  }
  const device = mapsDevice(rootDev);
  const paths = new Set<string>();
  for (const pid of pids) {
    let maps = '';
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch {
      continue;
    }
    for (const line of maps.split('\n')) {
      // address perms offset dev inode path
      const fields = line.split(/\s+/);
      if (fields.length >= 6 && fields[3] === device && fields[5].startsWith('/')) paths.add(fields.slice(5).join(' ').replace(/ \(deleted\)$/, ''));
    }
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const stat = statSync(`/proc/${pid}/fd/${fd}`);
        if (stat.isFile() && stat.dev === rootDev) paths.add(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
  }
  // Seen from the host, a path inside the container's own mount namespace is
  // given from that namespace's root; one through the host's mount of the
  // rootfs has the rootfs folder in front.
  const inside = [...paths].map((path) => (path.startsWith(`${rootfsDir}/`) ? path.slice(rootfsDir.length) : path));
  return [...new Set(inside)].filter((path) => !existsSync(join(upperDir, path))).sort();
}

/** Sizes and SHA-256 of those files in the base folder. */
export function hashBaseFiles(baseDir: string, paths: readonly string[]): BaseFile[] {
  const files: BaseFile[] = [];
  for (const path of paths) {
    try {
      files.push({ path, ...hashFile(join(baseDir, path), constants.O_RDONLY) });
    } catch {
      continue;
    }
  }
  return files;
}

let hashBuffer: Buffer | null = null;

/**
 * A file's size and SHA-256, read in 256 KiB pieces into one buffer: a
 * restore checks the binaries its processes had mapped (busybox, 1.9 MB),
 * and readFileSync took 7-9 ms for it here (a fresh buffer, each page
 * faulted in), the pieces 1.5 ms with the hash.
 */
function hashFile(path: string, flags: number): { size: number; sha256: string } {
  hashBuffer ??= Buffer.allocUnsafe(256 * 1024);
  const fd = openSync(path, flags);
  try {
    const hash = sha256();
    let size = 0;
    for (let n = readSync(fd, hashBuffer, 0, hashBuffer.length, null); n > 0; n = readSync(fd, hashBuffer, 0, hashBuffer.length, null)) {
      hash.update(hashBuffer.subarray(0, n));
      size += n;
    }
    return { size, sha256: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

/** The recorded files that are missing from `baseDir` or differ from what was recorded. */
export function changedBaseFiles(baseDir: string, files: readonly BaseFile[]): string[] {
  const changed: string[] = [];
  for (const file of files) {
    const path = join(baseDir, file.path);
    try {
      const stat = lstatSync(path);
      if (!stat.isFile() || stat.size !== file.size) {
        changed.push(file.path);
        continue;
      }
      // Not through a link put there since the lstat.
      const now = hashFile(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      if (now.size !== file.size || now.sha256 !== file.sha256) changed.push(file.path);
    } catch {
      changed.push(file.path);
    }
  }
  return changed;
}
