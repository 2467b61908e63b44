// What an untrusted archive may leave on disk, checked after GNU tar has
// extracted it into a fresh folder. GNU tar has kept every write inside that
// folder (see gnu-tar.ts); what is left to refuse is what stasis must not read
// or keep: links, device nodes, FIFOs. Looking at the result rather than at
// the archive's headers means there is no second reading of the headers that
// could disagree with GNU tar's, and no second pass over the data.

import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { walkTree, WalkError } from '../../host/walk.ts';
import { IMAGES_DIR } from '../format/layout.ts';

export interface SafetyOptions {
  /**
   * The archive is a container's writable layer: its symlinks point into the
   * container's root, not ours, so their targets are free, hard links are
   * ordinary, and so are FIFOs. Device nodes stay refused.
   */
  rootfsLayer?: boolean;
}

/**
 * Throws, naming the first offending entry, unless everything under root is a
 * directory or a regular file with one link (a checkpoint archive: stasis
 * reads those files, so nothing may point elsewhere), or, for a rootfs layer,
 * also a symlink, a hard link or a FIFO. Links are looked at, never followed
 * (src/host/walk.ts): a layer's `srv/root -> /` is data, not a way onto the host.
 */
export async function checkExtractedTree(root: string, opts: SafetyOptions = {}): Promise<void> {
  checkTree(root, { rootfsLayer: opts.rootfsLayer === true, what: 'archive', parentLink: null });
}

/** CRIU's link from a checkpoint's images to its parent's (runc checkpoint --parent-path): the one link a checkpoint folder may hold. */
export const PARENT_LINK = 'parent';

/** How many parents deep a chain of pre-dumps may go. */
const MAX_PARENTS = 32;
/** More entries than any checkpoint holds (CRIU writes a few files per process). */
const MAX_FOLDER_ENTRIES = 1_000_000;

/**
 * A checkpoint folder given by the user (or an OCI layout folder) is as
 * untrusted as an archive and gets the same checks, in place, before anything
 * reads it: folders and regular files with one link only, no devices, FIFOs
 * or sockets, at most `maxBytes` of files. The one link allowed is CRIU's
 * `checkpoint/parent` (a checkpoint taken on top of a pre-dump): the folder it
 * names must itself pass the same checks as an images folder, and so on up
 * the chain. Throws naming the entry; a link's own text is shown, nothing it
 * leads to is read.
 */
export function checkCheckpointFolder(root: string, opts: { maxBytes?: number } = {}): void {
  const bytes = checkTree(root, { rootfsLayer: false, what: 'checkpoint', parentLink: `${IMAGES_DIR}/${PARENT_LINK}` });
  if (opts.maxBytes !== undefined && bytes > opts.maxBytes) throw new Error(`its files hold ${bytes} bytes, more than the ${opts.maxBytes} a checkpoint may`);
  let images = join(root, IMAGES_DIR);
  for (let depth = 1; lstatSync(join(images, PARENT_LINK), { throwIfNoEntry: false })?.isSymbolicLink(); depth++) {
    const shown = `${IMAGES_DIR}/${Array(depth).fill(PARENT_LINK).join('/')}`;
    if (depth > MAX_PARENTS) throw new Error(`unsafe checkpoint entry "${shown}": more than ${MAX_PARENTS} parents`);
    let parent: string;
    try {
      parent = realpathSync(join(images, PARENT_LINK));
    } catch (err) {
      throw new Error(`unsafe checkpoint entry "${shown}": the parent checkpoint it names cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (!lstatSync(parent).isDirectory()) throw new Error(`unsafe checkpoint entry "${shown}": it does not name a folder`);
    try {
      checkTree(parent, { rootfsLayer: false, what: 'checkpoint', parentLink: PARENT_LINK });
    } catch (err) {
      throw new Error(`the parent checkpoint (${shown}): ${(err as Error).message}`);
    }
    images = parent;
  }
}

/** Checks every entry (see the callers); returns the bytes of its regular files. */
function checkTree(root: string, opts: { rootfsLayer: boolean; what: 'archive' | 'checkpoint'; parentLink: string | null }): number {
  const holds = opts.what === 'archive' ? 'a checkpoint archive has none' : 'a checkpoint folder holds none';
  let bytes = 0;
  const walk = walkTree(root, opts.what === 'checkpoint' ? { maxEntries: MAX_FOLDER_ENTRIES } : {});
  try {
    for (const entry of walk) {
      const refuse = (why: string) => new Error(`unsafe ${opts.what} entry "${entry.path}": ${why}`);
      switch (entry.kind) {
        case 'dir':
          continue;
        case 'file':
          if (!opts.rootfsLayer && entry.stat.nlink > 1) throw refuse(`a hard link (${holds})`);
          bytes += entry.stat.size;
          continue;
        case 'symlink':
          if (entry.path === opts.parentLink) continue;
          if (!opts.rootfsLayer) throw refuse(`a symlink to "${readlinkSync(entry.full)}" (${holds}${opts.parentLink ? ` but ${opts.parentLink}` : ''})`);
          continue;
        case 'fifo':
          if (!opts.rootfsLayer) throw refuse('fifo not allowed here');
          continue;
        case 'char':
          throw refuse('char device not allowed');
        case 'block':
          throw refuse('block device not allowed');
        default:
          throw refuse('unsupported file type');
      }
    }
  } catch (err) {
    if (err instanceof WalkError) throw new Error(`unsafe ${opts.what}: ${err.message}`);
    throw err;
  }
  return bytes;
}
