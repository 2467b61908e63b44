import type { Argv } from 'yargs';
import { usageError } from '../errors.ts';
import { validateId } from '../state/ids.ts';

// Flag groups shared by several commands (as ctr keeps its shared flags in one place).

/**
 * Repeatable flags are plain string options collected into an array: a yargs
 * array option would swallow the positional ID that follows it.
 */
export function toArray(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

export function createOptions<T>(y: Argv<T>, opts: { checkpoint?: boolean } = {}) {
  const withCheckpoint = opts.checkpoint ?? true;
  const base = y
    .option('bundle', { type: 'string', describe: 'use this OCI bundle (config.json + rootfs) as runc would; its rootfs is written in place', group: 'Create options:' })
    .option('rootfs', { type: 'string', describe: 'read-only rootfs image; the container writes to its own overlay layer (default: the built-in busybox rootfs)', group: 'Create options:' })
    .option('tty', { alias: 't', type: 'boolean', describe: 'give the container a terminal', group: 'Create options:' })
    .option('env', { alias: 'e', type: 'string', coerce: toArray, describe: 'set an environment variable K=V (repeatable)', group: 'Create options:' })
    .option('cwd', { type: 'string', describe: 'working directory inside the container', group: 'Create options:' })
    .option('label', { type: 'string', coerce: toArray, describe: 'attach a label K=V (repeatable)', group: 'Create options:' })
    .option('memory', { type: 'string', describe: 'memory limit in bytes (k, m, g suffixes)', group: 'Create options:' })
    .option('pids-limit', { type: 'string', describe: 'maximum number of processes', group: 'Create options:' })
    .option('stdin', { type: 'string', describe: "connect the container's stdin to FILE", group: 'Create options:' })
    .option('stdout', { type: 'string', describe: "write the container's stdout to FILE (default: captured for logs)", group: 'Create options:' })
    .option('stderr', { type: 'string', describe: "write the container's stderr to FILE (default: captured for logs)", group: 'Create options:' })
    .option('rootfs-mount', { type: 'string', coerce: toArray, describe: 'mount type=T,source=S,options=O1:O2 on the rootfs before create, unmounted on delete (repeatable)', group: 'Create options:' });
  return withCheckpoint
    ? base.option('checkpoint', { type: 'string', describe: 'restore from this checkpoint folder or exported archive (as `stasis restore`)', group: 'Create options:' })
    : base;
}

export interface CreateFlags {
  bundle?: string;
  rootfs?: string;
  tty?: boolean;
  env?: string[];
  cwd?: string;
  label?: string[];
  memory?: string;
  pidsLimit?: string;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  rootfsMount?: string[];
  checkpoint?: string;
}

export function parseKeyValues(flag: string, values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values ?? []) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw usageError(`--${flag} ${JSON.stringify(value)}: expected K=V`);
    out[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return out;
}

export function parseEnv(values: string[] | undefined): string[] {
  for (const value of values ?? []) {
    if (value.indexOf('=') <= 0) throw usageError(`--env ${JSON.stringify(value)}: expected K=V`);
  }
  return values ?? [];
}

const SIZE_SUFFIX: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

export function parseBytes(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)([bkmg]?)$/i.exec(value.trim());
  if (!match) throw usageError(`--${flag} ${JSON.stringify(value)}: expected a number of bytes with an optional k, m or g suffix`);
  const bytes = Number(match[1]) * SIZE_SUFFIX[match[2].toLowerCase()];
  if (bytes < 6 * 1024 * 1024 && flag === 'memory') throw usageError(`--memory ${value}: at least 6m is needed to start a container`);
  return bytes;
}

export function parsePositiveInt(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw usageError(`--${flag} ${JSON.stringify(value)}: expected a whole number of at least 1`);
  return Number(value);
}

/** The container command: positional words after the ID plus everything after `--`. */
export function commandWords(argv: { cmd?: unknown; '--'?: unknown }): string[] {
  const words = [...((argv.cmd as string[] | undefined) ?? []), ...((argv['--'] as string[] | undefined) ?? [])];
  return words.map(String);
}

export function idArg(value: unknown): string {
  return validateId(value === undefined ? '' : String(value));
}

/** Maps the create flags to the runtime's typed options. */
export function createOptionsFrom(argv: CreateFlags, args: string[], extra: { autoRemove?: boolean; inheritStdio?: 'none' | 'output' | 'all' } = {}) {
  return {
    bundle: argv.bundle,
    rootfs: argv.rootfs,
    args,
    env: parseEnv(toArray(argv.env)),
    cwd: argv.cwd,
    tty: argv.tty,
    labels: parseKeyValues('label', toArray(argv.label)),
    memoryBytes: parseBytes('memory', argv.memory),
    pidsLimit: parsePositiveInt('pids-limit', argv.pidsLimit),
    stdin: argv.stdin,
    stdout: argv.stdout,
    stderr: argv.stderr,
    rootfsMounts: toArray(argv.rootfsMount),
    autoRemove: extra.autoRemove ?? false,
    inheritStdio: extra.inheritStdio ?? ('none' as const),
  };
}
