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
