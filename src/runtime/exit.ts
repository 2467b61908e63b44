import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { childrenOf, commandLineHas, processRunning } from '../host/procfs.ts';
import type { ContainerRecord, ExitRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import type { WaitOutcome } from './types.ts';
import { readExitFile } from './view.ts';

// A container's exit: waiting for it, learning it from conmon's files, and
// recording it once in the record and the journal.

/** Waits for conmon's exit file; returns the exit, or null when it never came (monitor gone). */
export async function waitExit(
  ctx: RuntimeContext,
  id: string,
  opts: { timeoutMs?: number; signal?: AbortSignal; maxPollMs?: number } = {},
): Promise<WaitOutcome> {
  const { store } = ctx;
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  const maxDelay = opts.maxPollMs ?? 100;
  // From 1 ms: after a SIGKILL conmon writes the exit file within a few (delete -f waits for it).
  let delay = 1;
  for (;;) {
    if (!store.exists(id)) return 'removed';
    const record = store.read(id);
    if (record !== null) {
      if (record.checkpointedStop && !record.checkpointing) return 'checkpointed';
      if (record.exit !== null && record.status === 'stopped') return record.exit;
      if (!record.checkpointing) {
        const exited = readExitFile(store, id);
        if (exited !== null) return exited;
        // Both gone: the monitor may have written the file just before it went (after the read above).
        if (record.status !== 'creating' && !processRunning(record.pid) && !monitorAlive(ctx, id)) return readExitFile(store, id);
      }
    }
    if (Date.now() > deadline || opts.signal?.aborted) return null;
    await sleep(delay);
    delay = Math.min(delay * 2, maxDelay);
  }
}

/**
 * For a container whose process is gone (a zombie until its monitor reaps it) but whose
 * monitor has not yet written the exit file: waits until it has, or is gone. conmon writes
 * that file into the container's folder, so removing the folder before would race it (and
 * lose the status). The monitor writes it before it starts the exit hook, so a command that
 * holds the container's lock does not wait on the hook.
 */
export async function monitorDone(ctx: RuntimeContext, id: string, timeoutMs = 10_000): Promise<ExitRecord | null> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    const exited = readExitFile(ctx.store, id);
    if (exited !== null || Date.now() > deadline) return exited;
    // Gone: it may have written the file and exited between the read above and this look, so it is read once more.
    if (!monitorAlive(ctx, id)) return readExitFile(ctx.store, id);
    await sleep(delay);
    delay = Math.min(delay * 2, 10);
  }
}

/** True once the container's process is gone for good: removed, exit file written, or monitor dead. */
export function hasExited(ctx: RuntimeContext, id: string): boolean {
  return !ctx.store.exists(id) || readExitFile(ctx.store, id) !== null || !monitorAlive(ctx, id);
}

/**
 * The PID in conmon.pid, if that process is still this container's monitor:
 * a stale file may name a PID the kernel has since given to another process,
 * so the command line must name the container's folder as conmon's persist dir.
 */
export function monitorPid(ctx: RuntimeContext, id: string): number | null {
  const file = ctx.store.readContainerFile(id, 'conmon.pid');
  if (file === null) return null;
  const pid = Number.parseInt(file.text, 10);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const at = argv.indexOf('--persist-dir');
    return at >= 0 && argv[at + 1] === ctx.store.containerDir(id) ? pid : null;
  } catch {
    return null;
  }
}

export function monitorAlive(ctx: RuntimeContext, id: string): boolean {
  return processRunning(monitorPid(ctx, id));
}

/**
 * Whether the monitor has started the exit hook (`stasis __exit`, under flock): the runtime
 * it ran is then done with the container, whatever the hook has yet to record. The hook
 * waits for the container's lock, so a command holding that lock must not wait for the monitor.
 */
export function monitorInExitHook(ctx: RuntimeContext, id: string): boolean {
  const pid = monitorPid(ctx, id);
  return pid !== null && childrenOf(pid).some((child) => commandLineHas(child, '__exit'));
}

/** For a create that died half way: its monitor may still be there. */
export function killMonitor(ctx: RuntimeContext, id: string): void {
  const pid = monitorPid(ctx, id);
  if (pid === null) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Records the exit in the record and the journal (unknown: status null, now).
 * The record is written first, so that a reader who sees the event finds the
 * record saying the same.
 */
export function noteExit(ctx: RuntimeContext, record: ContainerRecord, exited: ExitRecord | null): void {
  record.exit = exited ?? { status: null, exitedAt: new Date().toISOString() };
  record.status = 'stopped';
  ctx.store.write(record);
  ctx.journal.append('/tasks/exit', record.id, { pid: record.pid, status: record.exit.status, exitedAt: record.exit.exitedAt });
}
