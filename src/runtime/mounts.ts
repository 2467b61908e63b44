import { readFileSync } from 'node:fs';
import { StasisError } from '../errors.ts';
import type { MountRecord } from '../state/store.ts';
import { MNT_DETACH } from '../host/mount.ts';
import type { ProcessRunner } from '../host/spawn.ts';
import { debugLog } from '../log.ts';

// Mounting: with the compiled stasis, an overlay is mounted and anything is
// unmounted with the system call itself (src/host/mount.ts); otherwise, and
// for every other kind of mount (a bind, options that are flags: `ro`,
// `nosuid`, which mount(8) turns into mount flags), with mount(8) / umount(8).

export async function mount(runner: ProcessRunner, record: MountRecord): Promise<void> {
  const calls = runner.mountCalls?.() ?? null;
  // overlay's options are all key=value data for the kernel, as mount(8) passes them.
  if (calls !== null && record.type === 'overlay' && record.options.every((o) => o.includes('='))) {
    const data = record.options.join(',');
    debugLog(`mount(2) ${record.type} ${record.source} on ${record.target} (${data})`);
    const errno = calls.mount(record.source, record.target, record.type, data);
    if (errno !== 0) throw new StasisError(`mount ${record.type} on ${record.target}: ${calls.describe(errno)}`);
    return;
  }
  const args = ['-t', record.type];
  if (record.options.length > 0) args.push('-o', record.options.join(','));
  args.push(record.source, record.target);
  const result = await runner.run('mount', args);
  if (result.exitCode !== 0) {
    throw new StasisError(`mount ${record.type} on ${record.target}: ${result.stderr.trim() || `mount exited ${result.exitCode}`}`);
  }
}

/**
 * Mount points from /proc/self/mountinfo, with its octal escapes (\\040 for a space) decoded.
 * Read at once (node:fs/promises costs about 5 ms of a compiled command's start-up).
 */
/** Every mount point in the mount table now (read once by a caller that undoes several things). */
export async function mountTargets(): Promise<string[]> {
  const table = readFileSync('/proc/self/mountinfo', 'utf8');
  return table
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))));
}

/**
 * Lazily unmounts everything mounted at or below each of `dirs`, deepest
 * first: what a killed CRIU or runc may leave behind (cgroup yards, its view
 * of the rootfs). Returns the mount points it unmounted.
 */
export async function unmountUnder(runner: ProcessRunner, dirs: readonly string[], table?: readonly string[]): Promise<string[]> {
  const targets = (table ?? (await mountTargets())).filter((t) => dirs.some((dir) => t === dir || t.startsWith(`${dir}/`)));
  for (const target of [...new Set(targets)].sort((a, b) => b.length - a.length)) {
    await umount(runner, target, true);
  }
  return targets;
}

/** Whether something is mounted on `target`. */
export async function isMounted(target: string): Promise<boolean> {
  return (await mountTargets()).includes(target);
}

/**
 * Unmounts what stasis mounted, last mounted first, skipping what is no
 * longer mounted (in `table`, when the caller has just read it).
 */
export async function unmountAll(runner: ProcessRunner, mounts: readonly MountRecord[], table?: readonly string[]): Promise<void> {
  if (mounts.length === 0) return;
  const mounted = new Set(table ?? (await mountTargets()));
  for (const m of [...mounts].reverse()) {
    if (mounted.has(m.target)) await unmountTarget(runner, m.target);
  }
}

/** Unmounts, falling back to a lazy unmount when something still holds the mount busy. */
async function unmountTarget(runner: ProcessRunner, target: string): Promise<void> {
  let result = await umount(runner, target, false);
  if (result.exitCode !== 0) result = await umount(runner, target, true);
  if (result.exitCode !== 0) {
    throw new StasisError(`unmount ${target}: ${result.stderr.trim()}`);
  }
}

/** `umount [-l] TARGET`, or umount2(2) itself where it can be called; the failure's text in stderr. */
async function umount(runner: ProcessRunner, target: string, lazy: boolean): Promise<{ exitCode: number; stderr: string }> {
  const calls = runner.mountCalls?.() ?? null;
  if (calls === null) return runner.run('umount', lazy ? ['-l', target] : [target]);
  debugLog(`umount2(2) ${target}${lazy ? ' MNT_DETACH' : ''}`);
  const errno = calls.umount(target, lazy ? MNT_DETACH : 0);
  return { exitCode: errno === 0 ? 0 : 32, stderr: errno === 0 ? '' : `umount: ${target}: ${calls.describe(errno)}` };
}

export function overlayMount(lower: string, upper: string, work: string, target: string): MountRecord {
  return { type: 'overlay', source: 'overlay', target, options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] };
}
