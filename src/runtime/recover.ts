import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processRunning, processesWithArg } from '../host/procfs.ts';
import type { ContainerRecord } from '../state/store.ts';
import { ASIDE, hasSetAside, putBack, teardown } from './cleanup.ts';
import type { RuntimeContext } from './context.ts';
import { monitorInExitHook, monitorPid } from './exit.ts';
import { readExitFile } from './view.ts';
import { bestEffort } from '../log.ts';

// A command killed half way (kill -9, Ctrl-C, a crash) leaves its container
// marked in the record. The next command that takes the container's lock
// (any command: a command still running would hold the lock) finishes the
// work or undoes it, so that no container stays frozen, half made or lost.

/** How long a monitor still bringing a container up (runc create, CRIU restoring) is waited for. */
const MONITOR_WAIT_MS = 300_000;

/**
 * The record once any checkpoint, create or restore interrupted by a dead
 * command is finished or undone. The caller holds the container's lock.
 */
export async function recovered(ctx: RuntimeContext, record: ContainerRecord): Promise<ContainerRecord> {
  if (record.checkpointing || moveToUndo(record)) await ctx.recoverCheckpoint(record);
  if (record.status === 'creating') return finishInterruptedCreate(ctx, record);
  return record;
}

/** A move whose command died before it asked the destination to switch: it is undone here. */
export function moveToUndo(record: ContainerRecord): boolean {
  return record.migrating != null && !record.migrating.committing;
}

/** The container's init as conmon's pid file names it, if it runs. */
function runningInit(ctx: RuntimeContext, id: string): number | null {
  const file = ctx.store.readContainerFile(id, 'pid');
  const pid = file === null ? null : Number.parseInt(file.text, 10);
  return pid !== null && processRunning(pid) && readExitFile(ctx.store, id) === null ? pid : null;
}

/**
 * A create or restore whose command died. conmon outlives it and may still
 * be running runc create or CRIU's restore: that is waited for. If the
 * container then runs, the record is completed as the command would have
 * done. If not, an in-place restore is undone (the stopped container is put
 * back, restorable again), and anything else stays as it is, for `delete -f`.
 */
async function finishInterruptedCreate(ctx: RuntimeContext, record: ContainerRecord): Promise<ContainerRecord> {
  const { store } = ctx;
  const id = record.id;
  const deadline = Date.now() + MONITOR_WAIT_MS;
  // Before conmon has written its pid file it is not known as the monitor, but it (or the runc
  // it started) names the container's folder in its arguments: still at work, waited for too.
  // A monitor that has started its exit hook is done (its runtime failed or ended), though its own
  // arguments still name the folder: the hook waits for the lock held here, so it is not waited for.
  const atWork = () => {
    const monitor = monitorPid(ctx, id);
    const done = monitor !== null && monitorInExitHook(ctx, id);
    return (processRunning(monitor) && !done) || processesWithArg(store.containerDir(id)).some((pid) => !(done && pid === monitor));
  };
  while (runningInit(ctx, id) === null && readExitFile(store, id) === null && atWork() && Date.now() < deadline) await sleep(50);
  const pid = runningInit(ctx, id);
  if (pid !== null) {
    record.pid = pid;
    record.status = record.restoredFrom !== null ? 'running' : 'created';
    store.write(record);
    // An in-place restore set the old layer aside until the new container ran: it does now.
    rmSync(join(store.containerDir(id), ASIDE), { recursive: true, force: true });
    if (record.restoredFrom !== null) ctx.journal.append('/tasks/restored', id, { pid, checkpoint: record.restoredFrom });
    else ctx.journal.append('/tasks/create', id, { pid, bundle: record.bundle, rootfs: record.mounts.map((m) => m.target) });
    return record;
  }
  if (hasSetAside(ctx, id)) {
    await bestEffort(`teardown of ${record.id} in recovery`, teardown(ctx, record));
    putBack(ctx, id);
    return store.read(id) ?? record;
  }
  return record;
}
