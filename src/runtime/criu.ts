import { readFileSync } from 'node:fs';
import { run, versionOf } from '../host/spawn.ts';

/**
 * The CRIU options a dump is taken with and a restore must repeat: CRIU's own
 * name (what a checkpoint records), the option's key in the library's options
 * and runc's flag for it (the same for runc checkpoint and runc restore).
 * tcp-close is restore-only and goes through CRIU's configuration file (see
 * checkpoint/restore.ts), so it is not here.
 */
export const CRIU_OPTIONS = {
  'tcp-established': { key: 'tcpEstablished', flag: '--tcp-established' },
  'ext-unix-sk': { key: 'extUnixSk', flag: '--ext-unix-sk' },
  'shell-job': { key: 'shellJob', flag: '--shell-job' },
  'file-locks': { key: 'fileLocks', flag: '--file-locks' },
} as const;

export type CriuOption = keyof typeof CRIU_OPTIONS;
export const CRIU_OPTION_NAMES = Object.keys(CRIU_OPTIONS) as CriuOption[];

/** The CRIU options as the library takes them: { tcpEstablished: true, ... }. */
export type CriuOptions = { [N in CriuOption as (typeof CRIU_OPTIONS)[N]['key']]?: boolean };

/** The options set in `opts`, by CRIU's names, in the table's order. */
export function criuOptionNames(opts: CriuOptions): CriuOption[] {
  return CRIU_OPTION_NAMES.filter((name) => opts[CRIU_OPTIONS[name].key] === true);
}

/** runc's flags for CRIU options given by name. */
export function runcCriuFlags(names: readonly CriuOption[]): string[] {
  return [...new Set(names)].map((name) => CRIU_OPTIONS[name].flag);
}

export function isCriuOption(name: string): name is CriuOption {
  return Object.hasOwn(CRIU_OPTIONS, name);
}

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
