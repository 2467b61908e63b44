import { StasisError, notFound } from '../errors.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { recovered } from './recover.ts';

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
