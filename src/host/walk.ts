// The one tree walk. Every recursion over a folder in stasis goes through
// walkTree: it looks at each entry with lstat, reports a symbolic link as a
// link (with its own metadata) and never enters it, and is bounded in depth
// and in entries. `readdir(dir, { recursive: true })` is not used anywhere:
// under Bun (the shipped binary) it descends through links to folders (a
// layer holding `srv/root -> /` walked the host's own tree; `dev/fd ->
// /proc/self/fd` looped until ELOOP), under Node it does not.

import { chmodSync, copyFileSync, linkSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, symlinkSync, utimesSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';

export type EntryKind = 'dir' | 'file' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket' | 'other';

export interface TreeEntry {
  /** Relative to the root, '/'-separated. */
  path: string;
  /** The root joined with path. */
  full: string;
  /** The entry's own lstat (a link's, never its target's). */
  stat: Stats;
  kind: EntryKind;
  /** 1 for the root's own entries. */
  depth: number;
}

export interface WalkOptions {
  /** Entries deeper than this are neither listed nor entered (1: the root's own entries only). */
  maxDepth?: number;
  /** Whether to enter a folder (default: every folder within maxDepth). */
  enter?: (entry: TreeEntry) => boolean;
  /** Throws past this many entries (an unpacked archive can hold millions of empty files). */
  maxEntries?: number;
  /** A folder that cannot be read: thrown (the default), or skipped. */
  onUnreadable?: 'throw' | 'skip';
}

/** Past this depth a tree is refused: no real tree nests folders this deep (PATH_MAX is 4096). */
export const WALK_DEPTH_LIMIT = 2048;

export class WalkError extends Error {}

export function kindOf(stat: Stats): EntryKind {
  if (stat.isSymbolicLink()) return 'symlink';
  if (stat.isDirectory()) return 'dir';
  if (stat.isFile()) return 'file';
  if (stat.isFIFO()) return 'fifo';
  if (stat.isCharacterDevice()) return 'char';
  if (stat.isBlockDevice()) return 'block';
  if (stat.isSocket()) return 'socket';
  return 'other';
}

/**
 * Every entry under `root`, depth first, names sorted (so two walks of equal
 * trees agree), a folder before what it holds. The root itself is not listed;
 * it is the caller's to have resolved (it may be a link). Links are reported,
 * never followed; a folder is read only after an lstat said it is one, and is
 * checked to be the same folder after it was read (a folder swapped for a
 * link meanwhile throws instead of being trusted).
 */
export function* walkTree(root: string, opts: WalkOptions = {}): Generator<TreeEntry> {
  const maxDepth = Math.min(opts.maxDepth ?? WALK_DEPTH_LIMIT, WALK_DEPTH_LIMIT);
  const maxEntries = opts.maxEntries ?? Number.POSITIVE_INFINITY;
  let count = 0;
  // The folders being read, outermost first, each with its sorted names and the next one to look at.
  type Frame = { relative: string; depth: number; names: string[]; next: number };
  const open = (relative: string, depth: number, stat: Stats): Frame | null => {
    const folderPath = relative === '' ? root : join(root, relative);
    let names: string[];
    try {
      names = readdirSync(folderPath);
    } catch (err) {
      if (opts.onUnreadable === 'skip') return null;
      throw err;
    }
    const again = relative === '' ? statSync(folderPath, { throwIfNoEntry: false }) : lstatSync(folderPath, { throwIfNoEntry: false });
    if (!again?.isDirectory() || again.ino !== stat.ino || again.dev !== stat.dev) {
      throw new WalkError(`${relative || '.'} changed while it was read`);
    }
    return { relative, depth, names: names.sort(), next: 0 };
  };
  const first = open('', 1, statSync(root));
  const stack: Frame[] = first ? [first] : [];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1];
    if (frame.next >= frame.names.length) {
      stack.pop();
      continue;
    }
    const name = frame.names[frame.next++];
    const relative = frame.relative === '' ? name : `${frame.relative}/${name}`;
    const full = join(root, relative);
    const stat = lstatSync(full, { throwIfNoEntry: false });
    // Removed since the listing.
    if (!stat) continue;
    if (++count > maxEntries) throw new WalkError(`more than ${maxEntries} entries`);
    const entry: TreeEntry = { path: relative, full, stat, kind: kindOf(stat), depth: frame.depth };
    yield entry;
    if (entry.kind !== 'dir') continue;
    if (frame.depth >= maxDepth) {
      if (opts.maxDepth === undefined || opts.maxDepth > WALK_DEPTH_LIMIT) throw new WalkError(`${relative}: deeper than ${WALK_DEPTH_LIMIT} folders`);
      continue;
    }
    if (opts.enter && !opts.enter(entry)) continue;
    const child = open(relative, frame.depth + 1, stat);
    if (child) stack.push(child);
  }
}

/** The bytes of the regular files under `root` (links, folders and others count nothing; nothing is followed). */
export function treeBytes(root: string, opts: WalkOptions = {}): number {
  let total = 0;
  for (const entry of walkTree(root, opts)) if (entry.kind === 'file') total += entry.stat.size;
  return total;
}

/**
 * Copies the tree under `from` into `to` (made, must not exist): folders,
 * regular files (mode and times kept) and links (their text, verbatim, never
 * what they name); anything else throws. In place of cpSync, whose
 * `recursive` walk is the runtime's own (Bun's and Node's differ).
 */
export function copyTree(from: string, to: string, opts: WalkOptions = {}): void {
  const fromStat = statSync(from);
  mkdirSync(to, { mode: fromStat.mode & 0o7777 });
  const folders: Array<{ path: string; stat: Stats }> = [{ path: to, stat: fromStat }];
  for (const entry of walkTree(from, opts)) {
    const target = join(to, entry.path);
    if (entry.kind === 'dir') {
      mkdirSync(target, { mode: entry.stat.mode & 0o7777 });
      folders.push({ path: target, stat: entry.stat });
    } else if (entry.kind === 'file') {
      copyFileSync(entry.full, target);
      chmodSync(target, entry.stat.mode & 0o7777);
      utimesSync(target, entry.stat.atime, entry.stat.mtime);
    } else if (entry.kind === 'symlink') {
      symlinkSync(readlinkSync(entry.full), target);
    } else {
      throw new WalkError(`${entry.path}: a ${entry.kind} is not copied`);
    }
  }
  // Last, deepest first: making what they hold changed their times.
  for (const folder of folders.reverse()) {
    chmodSync(folder.path, folder.stat.mode & 0o7777);
    utimesSync(folder.path, folder.stat.atime, folder.stat.mtime);
  }
}

// The tree writer of moves and exports that send some files in a form of their own
// (migrate --precopy's deltas, the chunks a receiver's checkpoint store lacks).

export interface DeltaStats {
  /** Bytes of the second checkpoint. */
  total: number;
  /** Bytes written into the delta folder (what is sent). */
  sent: number;
}

/**
 * Writes into `out` (made; must not exist) the folder `dir` as it is sent: each
 * file for which `special` writes something of its own (returning the bytes it
 * wrote) travels so; every other file travels whole (linked, or copied).
 * The top-level entries named in `leaveOut` (and what they hold) are left out.
 */
export function writeSendTree(dir: string, out: string, special: (entry: TreeEntry, target: string) => number | null, leaveOut: readonly string[] = []): DeltaStats {
  mkdirSync(out, { mode: 0o700 });
  const stats: DeltaStats = { total: 0, sent: 0 };
  for (const entry of walkTree(dir)) {
    if (leaveOut.includes(entry.path.split('/')[0])) continue;
    const target = join(out, entry.path);
    if (entry.kind === 'dir') {
      mkdirSync(target, { mode: entry.stat.mode & 0o777 });
      continue;
    }
    if (entry.kind !== 'file') throw new StasisError(`${entry.full}: a ${entry.kind} in a checkpoint`);
    stats.total += entry.stat.size;
    const written = special(entry, target);
    if (written !== null) {
      stats.sent += written;
      continue;
    }
    try {
      linkSync(entry.full, target);
    } catch {
      copyFileSync(entry.full, target);
    }
    stats.sent += entry.stat.size;
  }
  return stats;
}
