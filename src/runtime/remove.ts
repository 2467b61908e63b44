import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError, notFound } from '../errors.ts';
import { cgroupDirs, killCgroup } from '../host/cgroups.ts';
import { UNPACK_PREFIX, sweepOwnedTempDirs } from '../host/scratch.ts';
import { DamagedRecordError, type ContainerRecord, type ExitRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { clearLeftovers } from './cleanup.ts';
import { killMonitor, monitorDone, noteExit, waitExit } from './exit.ts';
import { recovered } from './recover.ts';
import { mountTargets, unmountAll } from './mounts.ts';
import type { DeleteResult, Status, WaitOutcome } from './types.ts';
import { orphanView, readExitFile, viewOf } from './view.ts';

// Removing a container: killing it first when forced, recording its exit if
// nobody did, unmounting what stasis mounted, removing runc's state and the
// container's folder.

/** Deletes one container; with force a running one is killed first. */
export async function deleteContainer(ctx: RuntimeContext, id: string, force: boolean): Promise<DeleteResult> {
  const { store } = ctx;
  // What restores that were killed left (their unpack folders: see checkpoint/source.ts).
  sweepOwnedTempDirs(store.paths.root, [UNPACK_PREFIX]);
  if (!store.exists(id)) throw notFound(id);
  const lock = await store.lock(id);
  try {
    return await deleteHeld(ctx, id, force);
  } finally {
    await lock.release();
  }
}

/** deleteContainer for a caller that holds the container's lock (migrate, once the destination has it). */
export async function deleteHeld(ctx: RuntimeContext, id: string, force: boolean): Promise<DeleteResult> {
  const { store } = ctx;
  {
    let record: ContainerRecord | null;
    try {
      // read() throws notFound when it was removed while we waited.
      record = store.read(id);
    } catch (err) {
      if (err instanceof DamagedRecordError) return await removeOrphan(ctx, id, force, err.problem);
      throw err;
    }
    if (record === null) return await removeOrphan(ctx, id, force);
    record = await recovered(ctx, record);
    // We hold the lock, so a record still 'creating' belongs to a create that died.
    const info = viewOf(store, record);
    if (info.status !== 'stopped' && info.status !== 'created' && !force) {
      throw new StasisError(`cannot delete container ${id}: it is ${info.status}`, {
        hint: `stop it with \`stasis kill ${id}\`, or use \`stasis delete -f ${id}\``,
      });
    }
    let exited = info.exit;
    if (info.status !== 'stopped') {
      const killed = await killNow(ctx, id, info.status);
      exited = typeof killed === 'object' ? killed : null;
    }
    // Its process is gone (or was just killed), but its monitor may be still to write the exit
    // into the folder: the folder is removed after that.
    if (record.exit === null && readExitFile(store, id) === null) exited = (await monitorDone(ctx, id)) ?? exited;
    // Its exit command has not run yet (or could not), or we just killed it:
    // record the exit now. A checkpoint's stop is not an exit.
    if (record.exit === null && !record.checkpointedStop) noteExit(ctx, record, exited);
    return await removeLocked(ctx, record, info.status !== 'stopped');
  }
}

/**
 * Kills a running or created container and waits for its monitor to see it
 * exit, then removes runc's state. `runc delete --force` alone does the
 * same but waits in steps of 100 ms; SIGKILL and a 5-10 ms poll of the exit
 * file usually take a tenth of that. The SIGKILL goes to the init directly
 * when runc's state names it (as `runc kill` would send it), else through
 * `runc kill`. A paused container (a SIGKILL stays pending while frozen), a
 * failed kill or a process that will not die are left to `runc delete --force`.
 */
async function killNow(ctx: RuntimeContext, id: string, status: Status): Promise<WaitOutcome> {
  if (status === 'running' || status === 'created') {
    const killed = ctx.runc.signalInit(id, 'SIGKILL') || (await ctx.runc.tryKill(id, 'KILL')).exitCode === 0;
    if (killed) {
      const exited = await waitExit(ctx, id, { timeoutMs: 5_000, maxPollMs: 10 });
      if (exited !== null) {
        await deleteFromRunc(ctx, id);
        return exited;
      }
    }
  }
  const deleted = await ctx.runc.forceDelete(id);
  // A create that died before conmon started (recovery found no container): no monitor will write an exit.
  if (status === 'creating') return null;
  // runc could not do it (its state is damaged or gone): what runs in the
  // container's cgroup is the container's, and goes the same way.
  if (deleted.exitCode !== 0) await killCgroup(cgroupDirs(ctx.store.cgroupPath(id)));
  return waitExit(ctx, id, { timeoutMs: 10_000 });
}

/**
 * Removes runc's container of a container that has exited: without runc
 * where that is all `runc delete --force` would do (Runc.destroyGone: its
 * cgroups empty and removable, no poststop hooks), else with runc.
 */
async function deleteFromRunc(ctx: RuntimeContext, id: string): Promise<void> {
  const config = ctx.store.readContainerFile(id, 'config.json');
  let spec = null;
  try {
    spec = config === null ? null : JSON.parse(config.text);
  } catch {
    // unreadable: runc decides
  }
  if (ctx.runc.destroyGone(id, spec)) return;
  await ctx.runc.forceDelete(id);
}

/** `table` less one entry for each of `gone` (a mount point can hold several mounts). */
function withoutOnce(table: readonly string[], gone: readonly string[]): string[] {
  const left = [...table];
  for (const target of gone) {
    const at = left.indexOf(target);
    if (at >= 0) left.splice(at, 1);
  }
  return left;
}

function unknownExit(): ExitRecord {
  return { status: null, exitedAt: new Date().toISOString() };
}

/** Removes a stopped container whose lock the caller holds. */
export async function removeLocked(ctx: RuntimeContext, record: ContainerRecord, runcDeleted = false): Promise<DeleteResult> {
  const { store, journal } = ctx;
  const id = record.id;
  if (!runcDeleted) await deleteFromRunc(ctx, id);
  // One read of the mount table for both: what is mounted in the container's folders (its rootfs
  // too), then its other mounts (a bundle's rootfs).
  const table = await mountTargets();
  const unmounted = await clearLeftovers(ctx, id, table);
  await unmountAll(ctx.runner, record.mounts, withoutOnce(table, unmounted));
  store.remove(id);
  rmSync(join(store.paths.sockets, id), { recursive: true, force: true });
  if (record.exit === null && record.checkpointedStop && record.lastCheckpoint) {
    const { path, at } = record.lastCheckpoint;
    journal.append('/tasks/delete', id, { pid: record.pid, checkpoint: path, exitedAt: at });
    journal.append('/containers/delete', id);
    return { id, status: null, exitedAt: at, checkpoint: path };
  }
  const exit = record.exit ?? unknownExit();
  journal.append('/tasks/delete', id, { pid: record.pid, exitStatus: exit.status, exitedAt: exit.exitedAt });
  journal.append('/containers/delete', id);
  return { id, status: exit.status, exitedAt: exit.exitedAt };
}

/**
 * A folder without a usable record: whatever a killed create left, or a
 * record that was damaged. runc's state, conmon's files and the mount table
 * still say what to undo.
 */
async function removeOrphan(ctx: RuntimeContext, id: string, force: boolean, damaged?: string): Promise<DeleteResult> {
  const { store } = ctx;
  const orphan = orphanView(store, id, { creating: false, damaged });
  if (orphan.status !== 'stopped' && !force) {
    throw new StasisError(`cannot delete container ${id}: it is ${orphan.status}`, { hint: `use \`stasis delete -f ${id}\`` });
  }
  await ctx.runc.forceDelete(id);
  killMonitor(ctx, id);
  await clearLeftovers(ctx, id);
  const exit = readExitFile(store, id) ?? unknownExit();
  store.remove(id);
  ctx.journal.append('/containers/delete', id);
  return { id, ...exit };
}
