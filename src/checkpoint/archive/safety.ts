// What an untrusted archive may leave on disk, checked after GNU tar has
// extracted it into a fresh folder. GNU tar has kept every write inside that
// folder (see gnu-tar.ts); what is left to refuse is what stasis must not read
// or keep: links, device nodes, FIFOs. Looking at the result rather than at
// the archive's headers means there is no second reading of the headers that
// could disagree with GNU tar's, and no second pass over the data.

import { readlinkSync } from 'node:fs';
import { walkTree } from '../../host/walk.ts';

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
  for (const entry of walkTree(root)) {
    const refuse = (why: string) => new Error(`unsafe archive entry "${entry.path}": ${why}`);
    switch (entry.kind) {
      case 'dir':
        continue;
      case 'file':
        if (!opts.rootfsLayer && entry.stat.nlink > 1) throw refuse('a hard link (a checkpoint archive has none)');
        continue;
      case 'symlink':
        if (!opts.rootfsLayer) throw refuse(`a symlink to "${readlinkSync(entry.full)}" (a checkpoint archive has none)`);
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
}
