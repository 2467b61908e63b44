import { readFileSync } from 'node:fs';
import { run, versionOf } from '../host/spawn.ts';

// What stasis asks CRIU itself: `checkpoint` (its metadata, its --pre-dump
// check) and `doctor` ask the same questions the same way.

/** CRIU's version ("4.1.1"), or null when it cannot be run. */
export function criuVersion(criu: string): Promise<string | null> {
  return versionOf(criu, ['--version'], /Version: (\S+)/);
}

/** Whether the kernel tracks changed memory pages (soft-dirty bits), which --pre-dump and --parent-path need. */
export async function softDirtyTracking(criu: string): Promise<boolean> {
  const check = await run(criu, ['check', '--feature', 'mem_dirty_track']).catch(() => null);
  return check?.exitCode === 0;
}

/** Whether `criu check --feature NAME` passes (uffd-noncoop: post-copy; timens). */
export async function criuFeature(criu: string, feature: string): Promise<boolean> {
  const check = await run(criu, ['check', '--feature', feature]).catch(() => null);
  return check?.exitCode === 0;
}

/** The pipe size CRIU's lazy page server asks for (fcntl F_SETPIPE_SZ of 819 pages, rounded up by the kernel). */
export const LAZY_PIPE_BYTES = 4 * 1024 * 1024;
const CAP_SYS_RESOURCE = 24n;

/**
 * Why this host cannot serve pages for a post-copy move, or null: CRIU's
 * page server sizes a pipe to 4 MiB, which above fs.pipe-max-size needs
 * CAP_SYS_RESOURCE; without it CRIU fails the first page request
 * ("page-pipe: splice: -1: Bad file descriptor").
 */
export function lazyPageServerProblem(): string | null {
  let max: number;
  let capEff: bigint;
  try {
    max = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim());
    capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`);
  } catch {
    return null;
  }
  if (max >= LAZY_PIPE_BYTES || (capEff >> CAP_SYS_RESOURCE) & 1n) return null;
  return `fs.pipe-max-size is ${max} here and stasis lacks CAP_SYS_RESOURCE: CRIU's page server needs ${LAZY_PIPE_BYTES}-byte pipes (sysctl fs.pipe-max-size=${LAZY_PIPE_BYTES})`;
}
