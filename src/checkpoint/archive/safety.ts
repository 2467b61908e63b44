// What an untrusted archive may leave on disk, checked after GNU tar has
// extracted it into a fresh folder. GNU tar has kept every write inside that
// folder (see gnu-tar.ts); what is left to refuse is what stasis must not read
// or keep: links, device nodes, FIFOs. Looking at the result rather than at
// the archive's headers means there is no second reading of the headers that
// could disagree with GNU tar's, and no second pass over the data.

import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

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
 * also a symlink, a hard link or a FIFO.
 */
export async function checkExtractedTree(root: string, opts: SafetyOptions = {}): Promise<void> {
  // withFileTypes: the type comes with the directory entry, so only regular
  // files of a checkpoint archive need an lstat (for their link count).
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    const name = path.relative(root, full);
    const refuse = (why: string) => new Error(`unsafe archive entry "${name}": ${why}`);
    if (entry.isDirectory()) continue;
    if (entry.isFile()) {
      if (!opts.rootfsLayer && (await lstat(full)).nlink > 1) throw refuse('a hard link (a checkpoint archive has none)');
      continue;
    }
    if (entry.isSymbolicLink()) {
      if (!opts.rootfsLayer) throw refuse(`a symlink to "${await readlink(full)}" (a checkpoint archive has none)`);
      continue;
    }
    if (entry.isFIFO()) {
      if (!opts.rootfsLayer) throw refuse('fifo not allowed here');
      continue;
    }
    if (entry.isCharacterDevice()) throw refuse('char device not allowed');
    if (entry.isBlockDevice()) throw refuse('block device not allowed');
    throw refuse('unsupported file type');
  }
}
