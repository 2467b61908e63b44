import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError, notFound } from '../errors.ts';
import { processRunning } from '../host/procfs.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { readExitFile } from './view.ts';

/** Reads a record that must exist and be complete. */
export function completeRecord(ctx: RuntimeContext, id: string): ContainerRecord {
  const record = ctx.store.read(id);
  if (record === null) {
    throw new StasisError(`container ${id} was never completely created`, { hint: `remove it with \`stasis delete -f ${id}\`` });
  }
  return record;
}

/** Runs fn on the container's complete record while holding its lock. */
export async function withContainer<T>(ctx: RuntimeContext, id: string, fn: (record: ContainerRecord) => Promise<T>): Promise<T> {
  if (!ctx.store.exists(id)) throw notFound(id);
  const lock = await ctx.store.lock(id);
  try {
    // read() throws notFound when it was removed while we waited.
    return await fn(await recovered(ctx, completeRecord(ctx, id)));
  } finally {
    await lock.release();
  }
}

/**
 * The record once any checkpoint interrupted by a dead command is finished or
 * undone. The caller holds the container's lock: a checkpoint still running
 * would hold it, so one marked in the record is one whose command died.
 */
export async function recovered(ctx: RuntimeContext, record: ContainerRecord): Promise<ContainerRecord> {
  if (record.checkpointing) await ctx.recoverCheckpoint(record);
  if (record.status === 'creating') finishInterruptedCreate(ctx, record);
  return record;
}

/**
 * A create or restore whose command died after conmon had started the
 * container: the container runs (conmon's pid file names it, and there is no
 * exit file), so the record is completed as the command would have done.
 * One that did not get that far stays as it is, for `delete -f`.
 */
function finishInterruptedCreate(ctx: RuntimeContext, record: ContainerRecord): void {
  const { store } = ctx;
  const pidFile = store.readContainerFile(record.id, 'pid');
  const pid = pidFile === null ? null : Number.parseInt(pidFile.text, 10);
  if (pid === null || !processRunning(pid) || readExitFile(store, record.id) !== null) return;
  record.pid = pid;
  record.status = record.restoredFrom !== null ? 'running' : 'created';
  store.write(record);
  // An in-place restore set the old layer aside until the new container ran: it does now.
  rmSync(join(store.containerDir(record.id), 'previous'), { recursive: true, force: true });
  if (record.restoredFrom !== null) ctx.journal.append('/tasks/restored', record.id, { pid, checkpoint: record.restoredFrom });
  else ctx.journal.append('/tasks/create', record.id, { pid, bundle: record.bundle, rootfs: record.mounts.map((m) => m.target) });
}
