import { lstatSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { createListedToFile } from './gnu-tar.ts';

// The writable layer a checkpoint carries, in the layout podman and CRI-O use:
// rootfs-diff.tar holds files added or changed (the overlay upper layer minus
// its whiteouts) and deleted.files lists, as a JSON array, the paths the
// container deleted from the read-only base.

export const DIFF_TAR = 'rootfs-diff.tar';
export const DELETED_FILES = 'deleted.files';

/** Walks the upper layer: every entry to archive, and every deleted path. */
function walkUpper(upperDir: string): { entries: string[]; deleted: string[] } {
  const entries: string[] = [];
  const deleted: string[] = [];
  const visit = (relative: string) => {
    for (const name of readdirSync(join(upperDir, relative)).sort()) {
      const child = relative === '' ? name : `${relative}/${name}`;
      const stat = lstatSync(join(upperDir, child));
      // overlayfs marks a deleted lower file with a 0:0 character device.
      if (stat.isCharacterDevice() && stat.rdev === 0) {
        deleted.push(child);
        continue;
      }
      entries.push(child);
      if (stat.isDirectory()) visit(child);
    }
  };
  visit('');
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
  const lines: string[] = [];
  const visit = (relative: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(join(rootfsDir, relative)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const child = relative === '' ? name : `${relative}/${name}`;
      const stat = lstatSync(join(rootfsDir, child));
      const type = stat.isDirectory() ? 'd' : stat.isSymbolicLink() ? 'l' : stat.isFile() ? 'f' : 'o';
      lines.push(`${child}\t${type}\t${type === 'd' ? 0 : stat.size}`);
      if (type === 'd' && depth < 2) visit(child, depth + 1);
    }
  };
  visit('', 1);
  return `sha256:${createHash('sha256').update(lines.join('\n')).digest('hex')}`;
}
