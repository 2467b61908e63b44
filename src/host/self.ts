import { realpathSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { which } from './which.ts';

// How this process runs stasis: a script (bin/stasis) under Node (or Bun as
// an interpreter), or one compiled executable (`bun build --compile`,
// dist/stasis). conmon's exit hook must start it the same way.

/**
 * True in a compiled executable: Bun is the runtime, and the code comes from
 * the executable itself (its entry is in Bun's embedded file system,
 * /$bunfs/...), not from a script given to a `bun` or `node` interpreter.
 */
export function isCompiled(): boolean {
  if (process.versions.bun === undefined) return false;
  const main = (globalThis as { Bun?: { main?: string } }).Bun?.main ?? '';
  if (main.startsWith('/$bunfs/')) return true;
  return !/^(bun|node)(-debug)?$/.test(basename(process.execPath));
}

/**
 * The command line that runs this same CLI again: `[interpreter, script]`,
 * the script's real path; or for a compiled executable `[path]`, the path it
 * was started by when that is the same file (dist/stasis, /usr/local/bin/stasis:
 * it stays valid when a rebuild or a reinstall replaces the file behind it),
 * else the executable's own path.
 */
export function selfCommand(script: string): string[] {
  if (!isCompiled()) return [process.execPath, script ? realpathSync(script) : resolve('bin/stasis')];
  const invoked = process.argv0.includes('/') ? resolve(process.argv0) : which(process.argv0);
  if (invoked !== null) {
    try {
      const a = statSync(invoked);
      const b = statSync(process.execPath);
      if (a.dev === b.dev && a.ino === b.ino) return [invoked];
    } catch {
      // not there (any more): the executable's own path
    }
  }
  return [process.execPath];
}
