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
    if (record.exit === null) {
      if (store.readContainerFile(id, 'oom') !== null) ctx.journal.append('/tasks/oom', id);
      noteExit(ctx, record, readExitFile(store, id));
      store.write(record);
    }
    if (record.autoRemove) await removeLocked(ctx, record);
  } finally {
    await lock.release();
  }
}
