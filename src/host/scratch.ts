import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from './digest.ts';
import { join } from 'node:path';
import { processesWithArg, readProcStat, sameProcessRuns } from './procfs.ts';
import { debugLog } from '../log.ts';

// Scratch folders a command makes in the state directory (a restore's unpacked archive) carry
// their maker in their name: `PREFIX-PID-START-XXXXXX`, PID and start time (/proc/PID/stat) of the
// stasis that made it. One left by a command that was killed is then known as such by a fact
// (that process no longer runs), and removed by the next command that sweeps.

/** The prefix of a restore's unpack folders (checkpoint/source.ts makes them; ps and delete sweep them too). */
export const UNPACK_PREFIX = '.restore-';

/** This process as a folder name tells it: PID-START. */
function ownerTag(): string {
  return `${process.pid}-${readProcStat(process.pid)?.startTime ?? 0}`;
}

/** A fresh folder in `dir` whose name says this process made it. */
export function ownedTempDir(dir: string, prefix: string): string {
  return mkdtempSync(join(dir, `${prefix}${ownerTag()}-`));
}

/** A fresh file name in `dir` that says this process made it: PREFIX-PID-START-XXXXXX.tmp (not created). */
export function ownedTempPath(dir: string, prefix: string): string {
  return join(dir, `${prefix}${ownerTag()}-${randomBytes(6).toString('hex')}.tmp`);
}

/** Mount points at or below `dir` (this process's mount table). */
function mountedBelow(dir: string): boolean {
  let table = '';
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return true;
  }
  return table.split('\n').some((line) => {
    const target = line.split(' ')[4];
    return target !== undefined && (target === dir || target.startsWith(`${dir}/`));
  });
}

/**
 * Removes the folders of `dir` named by ownedTempDir with one of `prefixes`
 * whose maker no longer runs (gone, a zombie, or its PID reused), unless
 * something is mounted in them or a process still names them in its arguments. Returns the removed paths. Folders named
 * otherwise (an older stasis's) are left alone: nothing tells whose they are.
 */
export function sweepOwnedTempDirs(dir: string, prefixes: readonly string[]): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const prefix = prefixes.find((p) => name.startsWith(p));
    const owner = prefix === undefined ? null : /^(\d+)-(\d+)-[^/]+$/.exec(name.slice(prefix.length));
    if (!owner) continue;
    if (sameProcessRuns({ pid: Number(owner[1]), startTime: Number(owner[2]) })) continue;
    const path = join(dir, name);
    // The tar the killed command started (tar -C PATH) ends once its input closes: left to the next sweep till then.
    if (mountedBelow(path) || processesWithArg(path).length > 0) continue;
    try {
      rmSync(path, { recursive: true, force: true });
      removed.push(path);
    } catch (err) {
      // A tar the killed command started may still write into it (ENOTEMPTY): the next sweep takes it.
      debugLog(`leaving ${path} for the next sweep: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return removed;
}
