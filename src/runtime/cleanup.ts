import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupDirs, killCgroup } from '../host/cgroups.ts';
import { readJson } from '../state/atomic.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { killMonitor } from './exit.ts';
import { unmountAll, unmountUnder } from './mounts.ts';

// Undoing what a create, a restore or a killed runc/CRIU left: shared by
// provisioning (a failed create), removal, and recovery of an interrupted one.

/** The folder an in-place restore moves the stopped container's files into until the new one runs. */
export const ASIDE = 'previous';

/**
 * What an in-place restore moves aside (and back, if it fails); the log is kept and appended to.
 * engine-files: what a restore made for the bind mounts of another engine's container (/etc/hosts...).
 */
const SET_ASIDE = ['upper', 'work', 'exit', 'oom', 'pid', 'conmon.pid', 'restore.log', 'engine-files'];
/** The writable layer among them, which a restore onto the container's own layer keeps in place. */
const LAYER = ['upper', 'work'];

/** Moves the stopped container's files aside, with its record, so that a restore killed half way can be undone. */
export function setAside(ctx: RuntimeContext, previous: ContainerRecord, opts: { keepLayer?: boolean } = {}): void {
  const dir = ctx.store.containerDir(previous.id);
  const aside = join(dir, ASIDE);
  rmSync(aside, { recursive: true, force: true });
  mkdirSync(aside);
  for (const name of SET_ASIDE) {
    if (opts.keepLayer && LAYER.includes(name)) continue;
    if (existsSync(join(dir, name))) renameSync(join(dir, name), join(aside, name));
  }
  writeFileSync(join(aside, 'state.json'), JSON.stringify(previous));
}

/** Whether an in-place restore's set-aside files are there (with the record to put back). */
export function hasSetAside(ctx: RuntimeContext, id: string): boolean {
  return existsSync(join(ctx.store.containerDir(id), ASIDE, 'state.json'));
}

/** Puts the stopped container back as it was before an in-place restore that failed or was killed. */
export function putBack(ctx: RuntimeContext, id: string): void {
  const dir = ctx.store.containerDir(id);
  const aside = join(dir, ASIDE);
  const previous = readJson<ContainerRecord>(join(aside, 'state.json'));
  const keptLayer = !existsSync(join(aside, 'upper'));
  for (const name of SET_ASIDE) {
    if (keptLayer && LAYER.includes(name)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    if (existsSync(join(aside, name))) renameSync(join(aside, name), join(dir, name));
  }
  ctx.store.write(previous);
  rmSync(aside, { recursive: true, force: true });
}

/** Undoes a provision: stops whatever runc made, unmounts. Leaves the folder. */
export async function teardown(ctx: RuntimeContext, record: ContainerRecord): Promise<void> {
  await ctx.runc.forceDelete(record.id);
  killMonitor(ctx, record.id);
  await unmountAll(ctx.runner, record.mounts);
  record.mounts = [];
  await clearLeftovers(ctx, record.id);
}

/**
 * What a killed runc or CRIU, or a damaged runc state, can leave: processes
 * in the container's cgroup, mounts in the container's folders and a runc
 * state folder that `runc delete` no longer accepts. Called after
 * `runc delete --force`. `table`: the mount points now, when the caller has
 * just read them. Returns the mount points it unmounted.
 */
export async function clearLeftovers(ctx: RuntimeContext, id: string, table?: readonly string[]): Promise<string[]> {
  // Whatever still runs in the container's cgroup is the container's: when
  // runc's state was damaged, `runc delete --force` could not kill it.
  await killCgroup(cgroupDirs(ctx.store.cgroupPath(id)));
  const runcState = join(ctx.store.paths.runcRoot, id);
  const unmounted = await unmountUnder(ctx.runner, [ctx.store.containerDir(id), runcState], table);
  rmSync(runcState, { recursive: true, force: true });
  return unmounted;
}
