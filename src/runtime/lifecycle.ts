import { StasisError } from '../errors.ts';
import type { Topic } from '../state/events.ts';
import type { RecordStatus } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { withContainer } from './records.ts';
import type { ContainerInfo, Status } from './types.ts';
import { viewOf } from './view.ts';

// start, pause and resume share one shape: check the state, call runc, write
// the new state, record the event.

interface Transition {
  verb: string;
  from: Status;
  to: RecordStatus;
  topic: Topic;
  call: (id: string) => Promise<void>;
  /** Why the container is in the wrong state, when the plain "it is X" says too little. */
  explain?: (status: Status) => string | undefined;
  hint?: (status: Status) => string | undefined;
}

async function transition(ctx: RuntimeContext, id: string, step: Transition): Promise<ContainerInfo> {
  return withContainer(ctx, id, async (record) => {
    const { status } = viewOf(ctx.store, record);
    if (status !== step.from) {
      throw new StasisError(`cannot ${step.verb} container ${id}: ${step.explain?.(status) ?? `it is ${status}`}`, { hint: step.hint?.(status) });
    }
    // The new state is written first: when it cannot be (a full disk), runc
    // is not called and nothing changes; when runc fails, the old one is put back.
    const previous = record.status;
    const move = record.migrating;
    record.status = step.to;
    // Resuming a container whose move was cut off at the switch is the admin's answer: it stays here.
    if (step.verb === 'resume') record.migrating = null;
    ctx.store.write(record);
    try {
      await step.call(id);
    } catch (err) {
      record.status = previous;
      record.migrating = move;
      ctx.store.write(record);
      throw err;
    }
    ctx.journal.append(step.topic, id, step.topic === '/tasks/start' ? { pid: record.pid } : {});
    return viewOf(ctx.store, record);
  });
}

export function start(ctx: RuntimeContext, id: string): Promise<ContainerInfo> {
  return transition(ctx, id, {
    verb: 'start', from: 'created', to: 'running', topic: '/tasks/start',
    call: (cid) => ctx.runc.start(cid),
    hint: (status) => (status === 'stopped' ? 'a stopped container cannot be started again; create a new one' : undefined),
  });
}

export async function pause(ctx: RuntimeContext, id: string): Promise<void> {
  await transition(ctx, id, { verb: 'pause', from: 'running', to: 'paused', topic: '/tasks/paused', call: (cid) => ctx.runc.pause(cid) });
}

export async function resume(ctx: RuntimeContext, id: string): Promise<void> {
  await transition(ctx, id, {
    verb: 'resume', from: 'paused', to: 'running', topic: '/tasks/resumed',
    call: (cid) => ctx.runc.resume(cid),
    explain: (status) => `it is ${status}, not paused`,
  });
}

export async function kill(ctx: RuntimeContext, id: string, signal: string, all: boolean): Promise<void> {
  await withContainer(ctx, id, async (record) => {
    if (viewOf(ctx.store, record).status === 'stopped') throw new StasisError(`cannot kill container ${id}: it is not running`);
    await ctx.runc.kill(id, signal, all);
  });
}
