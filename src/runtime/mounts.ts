import { StasisError } from '../errors.ts';
import type { MountRecord } from '../state/store.ts';
import type { ProcessRunner } from '../host/spawn.ts';

export async function mount(runner: ProcessRunner, record: MountRecord): Promise<void> {
  const args = ['-t', record.type];
  if (record.options.length > 0) args.push('-o', record.options.join(','));
  args.push(record.source, record.target);
  const result = await runner.run('mount', args);
  if (result.exitCode !== 0) {
    throw new StasisError(`mount ${record.type} on ${record.target}: ${result.stderr.trim() || `mount exited ${result.exitCode}`}`);
  }
}

/** Mount points from /proc/self/mountinfo, with its octal escapes (\\040 for a space) decoded. */
async function mountTargets(): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  return table
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))));
}

/**
 * Lazily unmounts everything mounted at or below each of `dirs`, deepest
 * first: what a killed CRIU or runc may leave behind (cgroup yards, its view
 * of the rootfs).
 */
export async function unmountUnder(runner: ProcessRunner, ...dirs: string[]): Promise<void> {
  const targets = (await mountTargets()).filter((t) => dirs.some((dir) => t === dir || t.startsWith(`${dir}/`)));
  for (const target of [...new Set(targets)].sort((a, b) => b.length - a.length)) {
    await runner.run('umount', ['-l', target]);
  }
}

/** Whether something is mounted on `target`. */
export async function isMounted(target: string): Promise<boolean> {
  return (await mountTargets()).includes(target);
}

/** Unmounts what stasis mounted, last mounted first, skipping what is no longer mounted. */
export async function unmountAll(runner: ProcessRunner, mounts: readonly MountRecord[]): Promise<void> {
  if (mounts.length === 0) return;
  const mounted = new Set(await mountTargets());
  for (const m of [...mounts].reverse()) {
    if (mounted.has(m.target)) await unmountTarget(runner, m.target);
  }
}

/** Unmounts, falling back to a lazy unmount when something still holds the mount busy. */
async function unmountTarget(runner: ProcessRunner, target: string): Promise<void> {
  let result = await runner.run('umount', [target]);
  if (result.exitCode !== 0) result = await runner.run('umount', ['-l', target]);
  if (result.exitCode !== 0) {
    throw new StasisError(`unmount ${target}: ${result.stderr.trim()}`);
  }
}

export function overlayMount(lower: string, upper: string, work: string, target: string): MountRecord {
  return { type: 'overlay', source: 'overlay', target, options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] };
}
