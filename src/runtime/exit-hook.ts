import { processRunning } from '../host/procfs.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { noteExit } from './exit.ts';
import { removeLocked } from './remove.ts';
import { readExitFile } from './view.ts';

/** conmon's exit command: records the exit (and an OOM kill) while no other command may be running. */
export async function recordExit(ctx: RuntimeContext, id: string, instance: string): Promise<void> {
  const { store } = ctx;
  if (!store.exists(id)) return;
  const lock = await store.lock(id, 600_000);
  try {
    const record = store.read(id);
    if (record === null || record.instance !== instance) return;
    // A checkpoint stops the container through CRIU; that is not an exit.
    if (record.checkpointing || record.checkpointedStop) return;
    const exited = readExitFile(store, id);
    // conmon also runs its exit command when it could not report to a create
    // that died (its sync pipe closed): the container may run on. Only a real
    // exit is recorded; the next command finishes that create instead.
    if (exited === null && processRunning(containerPid(ctx, record))) return;
    if (record.exit === null) {
      if (store.readContainerFile(id, 'oom') !== null) ctx.journal.append('/tasks/oom', id);
      noteExit(ctx, record, exited);
    }
    if (record.autoRemove) await removeLocked(ctx, record);
  } finally {
    await lock.release();
  }
}

/** The container's init: the record's, or (for a create that died before writing it) the one conmon wrote. */
function containerPid(ctx: RuntimeContext, record: ContainerRecord): number | null {
  if (record.pid !== null) return record.pid;
  const file = ctx.store.readContainerFile(record.id, 'pid');
  return file === null ? null : Number.parseInt(file.text, 10);
}
