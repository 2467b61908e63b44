import { StasisError, usageError } from '../errors.ts';
import type { MountRecord } from '../state/store.ts';
import { run } from '../host/spawn.ts';

/** Parses `type=T,source=S,options=O1:O2` (the --rootfs-mount flag). */
export function parseMountFlag(flag: string): Omit<MountRecord, 'target'> {
  const fields = new Map<string, string>();
  for (const part of flag.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw usageError(`--rootfs-mount ${JSON.stringify(flag)}: expected key=value pairs, got ${JSON.stringify(part)}`);
    const key = part.slice(0, eq);
    if (!['type', 'source', 'options'].includes(key)) {
      throw usageError(`--rootfs-mount ${JSON.stringify(flag)}: unknown key ${JSON.stringify(key)} (use type, source, options)`);
    }
    fields.set(key, part.slice(eq + 1));
  }
  const type = fields.get('type');
  if (!type) throw usageError(`--rootfs-mount ${JSON.stringify(flag)}: type= is required`);
  const options = fields.get('options');
  return { type, source: fields.get('source') ?? type, options: options ? options.split(':').filter(Boolean) : [] };
}

export async function mount(record: MountRecord): Promise<void> {
  const args = ['-t', record.type];
  if (record.options.length > 0) args.push('-o', record.options.join(','));
  args.push(record.source, record.target);
  const result = await run('mount', args);
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
export async function unmountUnder(...dirs: string[]): Promise<void> {
  const targets = (await mountTargets()).filter((t) => dirs.some((dir) => t === dir || t.startsWith(`${dir}/`)));
  for (const target of [...new Set(targets)].sort((a, b) => b.length - a.length)) {
    await run('umount', ['-l', target]);
  }
}

/** Unmounts what stasis mounted, last mounted first, skipping what is no longer mounted. */
export async function unmountAll(mounts: readonly MountRecord[]): Promise<void> {
  if (mounts.length === 0) return;
  const mounted = new Set(await mountTargets());
  for (const m of [...mounts].reverse()) {
    if (mounted.has(m.target)) await unmountTarget(m.target);
  }
}

/** Unmounts, falling back to a lazy unmount when something still holds the mount busy. */
async function unmountTarget(target: string): Promise<void> {
  let result = await run('umount', [target]);
  if (result.exitCode !== 0) result = await run('umount', ['-l', target]);
  if (result.exitCode !== 0) {
    throw new StasisError(`unmount ${target}: ${result.stderr.trim()}`);
  }
}

export function overlayMount(lower: string, upper: string, work: string, target: string): MountRecord {
  return { type: 'overlay', source: 'overlay', target, options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] };
}
