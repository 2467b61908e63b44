import { mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { which } from '../host/which.ts';
import type { RuntimeContext } from './context.ts';

// CRIU restores a container into a time namespace of its own (so that its
// clocks go on from where they were). runc 1.1 knows nothing of time
// namespaces: a process it execs into a restored container stays in the
// host's, and the next restore of the container fails ("Can't restore
// sub-task in NS"). So exec into such a container runs runc under nsenter
// --time, which puts runc, and the process it starts, in the container's.
// Seen from in there, the kernel shifts process start times by the
// namespace's offset, and runc, comparing its init's start time with the one
// it recorded, would take init for gone: that runc reads a copy of its state
// with the start time as seen from inside.

export interface TimeNamespaceExec {
  /** The program to run instead of runc, and the arguments that come before runc's own. */
  file: string;
  prefix: string[];
  /** The runc root runc is to read (the copy of its state). */
  root: string;
  cleanup(): void;
}

/** How to exec into container `id`, whose init is `initPid`, so that the process joins its time namespace; null when it is the host's. */
export async function timeNamespaceExec(ctx: RuntimeContext, id: string, initPid: number, execId: string): Promise<TimeNamespaceExec | null> {
  const timeNs = `/proc/${initPid}/ns/time`;
  try {
    if (readlinkSync(timeNs) === readlinkSync('/proc/self/ns/time')) return null;
  } catch {
    return null;
  }
  const nsenter = which('nsenter');
  if (nsenter === null) {
    throw new StasisError(`container ${id} was restored into a time namespace of its own, and exec into it needs nsenter (util-linux), which is not on PATH`);
  }
  const seen = await ctx.runner.run(nsenter, [`--time=${timeNs}`, '--', 'cat', `/proc/${initPid}/stat`]);
  const stat = seen.stdout;
  const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  if (seen.exitCode !== 0 || !/^\d+$/.test(startTime ?? '')) {
    throw new StasisError(`exec in ${id}: cannot read its init's start time in its time namespace: ${seen.stderr.trim() || 'no answer'}`);
  }
  const root = join(ctx.store.containerDir(id), `exec-${execId}.root`);
  mkdirSync(join(root, id), { recursive: true, mode: 0o700 });
  const state = JSON.parse(readFileSync(join(ctx.runc.root, id, 'state.json'), 'utf8')) as Record<string, unknown>;
  state.init_process_start = typeof state.init_process_start === 'number' ? Number(startTime) : startTime;
  writeFileSync(join(root, id, 'state.json'), JSON.stringify(state), { mode: 0o600 });
  return {
    file: nsenter,
    prefix: [`--time=${timeNs}`, '--', ctx.config.runc],
    root,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
