import { StasisError, usageError } from '../errors.ts';
import type { MountRecord } from '../state/store.ts';
import { run } from './proc.ts';

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

export async function isMountPoint(target: string): Promise<boolean> {
  return (await mountTargets()).includes(target);
}

/**
 * Lazily unmounts everything mounted at or below `dir`, deepest first: what a
 * killed CRIU or runc may leave behind (cgroup yards, its view of the rootfs).
 */
export async function unmountUnder(dir: string): Promise<void> {
  const targets = (await mountTargets()).filter((t) => t === dir || t.startsWith(`${dir}/`));
  for (const target of [...new Set(targets)].sort((a, b) => b.length - a.length)) {
    await run('umount', ['-l', target]);
  }
}

/** Unmounts, falling back to a lazy unmount when something still holds the mount busy. */
export async function unmount(target: string): Promise<void> {
  if (!(await isMountPoint(target))) return;
  let result = await run('umount', [target]);
  if (result.exitCode !== 0) result = await run('umount', ['-l', target]);
  if (result.exitCode !== 0) {
    throw new StasisError(`unmount ${target}: ${result.stderr.trim()}`);
  }
}

export function overlayMount(lower: string, upper: string, work: string, target: string): MountRecord {
  return { type: 'overlay', source: 'overlay', target, options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] };
}
