import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { childrenOf, processesWithArg, readProcStat } from '../host/procfs.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StasisError, errorMessage } from '../errors.ts';
import { restoreContainer, type RestoreOptions } from '../checkpoint/restore.ts';
import { showCommand, spawn } from '../host/spawn.ts';
import { debugLog } from '../log.ts';
import type { CheckpointHost } from '../runtime/types.ts';

// Post-copy (migrate --lazy), the destination's side: CRIU's lazy-pages
// daemon runs in the container's folder (runc restore's work folder, where
// the restore finds its socket), reading the checkpoint's images and pulling
// the pages from the source's page server (127.0.0.1:PORT here: the source
// itself, or ssh's forward to it); runc restore --lazy-pages then restores
// the processes without their memory, and the daemon fills each page on the
// first touch (userfaultfd), the rest in the background, and exits when every
// page is here. migrate --precopy restores so too, its daemon reading the
// pages from the images here (rebuilt from the pre-copy and the delta): the
// processes run before their memory is copied into them.

/**
 * How long a lazy restore may take before it is ended: CRIU waits for ever on
 * a daemon that went wrong, and everything but the memory takes a second or
 * two (with the 120 s this was, a test's daemon killed at a busy moment in CI
 * left a move waiting past the test's minute).
 */
const LAZY_RESTORE_TIMEOUT_MS = 30_000;

export interface LazyRestore {
  warnings: string[];
  /** Settles once every page is here (ok), or the transfer broke. */
  done: Promise<{ ok: true } | { ok: false; error: string }>;
  /** Stops the daemon (the restored processes then die at their next missing page). */
  stop(): Promise<void>;
  /** Pages pulled so far and to pull in all, from the daemon's log; null before it says. */
  pulled(): { pages: number; of: number } | null;
}

/** The daemon's count per restored task ("uffd: PID-N: UFFD transferred pages: (DONE/TOTAL)"), summed over its tasks' last lines. */
export function pulledPages(log: string): { pages: number; of: number } | null {
  const last = new Map<string, [number, number]>();
  for (const match of log.matchAll(/uffd: (\d+)-\d+: UFFD transferred pages: \((\d+)\/(\d+)\)/g)) last.set(match[1], [Number(match[2]), Number(match[3])]);
  if (last.size === 0) return null;
  let pages = 0;
  let of = 0;
  for (const [done, total] of last.values()) {
    pages += done;
    of += total;
  }
  return { pages, of };
}

interface Daemon {
  child: ChildProcess;
  /** Settles when it exits: listened for from the start, so an early exit is not missed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the lazy-pages daemon (pulling from the page server at PORT, or, with null, reading the images here); resolves once its socket is there. */
async function startDaemon(criu: string, containerDir: string, imagesDir: string, port: number | null, log: string): Promise<Daemon> {
  const args = [
    'lazy-pages', ...(port === null ? [] : ['--page-server', '--address', '127.0.0.1', '--port', String(port)]),
    '--images-dir', imagesDir, '--work-dir', containerDir, '-o', log, '-v4',
  ];
  debugLog(showCommand(criu, args));
  const out = openSync(join(containerDir, 'lazy-pages.out'), 'w', 0o600);
  // Its own session: it must outlive this command if need be, and not get the terminal's signals.
  const child = spawn(criu, args, { stdio: ['ignore', out, out], detached: true });
  closeSync(out);
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', () => resolve({ code: 127, signal: null }));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  void exited.then(() => (gone = true));
  const socket = join(containerDir, 'lazy-pages.socket');
  for (let waited = 0; !existsSync(socket); waited += 5) {
    if (gone) throw new StasisError(`criu lazy-pages exited before it was ready (its log: ${log})`);
    if (waited > 10_000) {
      child.kill('SIGKILL');
      throw new StasisError('criu lazy-pages did not start in 10 s');
    }
    await sleep(5);
  }
  return { child, exited };
}

/**
 * Ends a runc restore whose lazy-pages daemon failed: CRIU would wait for ever
 * (its restored init waits on a traced task). CRIU, runc's child, is killed;
 * runc then fails, conmon says so, and the restore is undone as any failed
 * one; the cgroup mount CRIU left in the work folder is detached first.
 */
function abortRestore(containerDir: string): void {
  let killed = false;
  for (const runc of processesWithArg(containerDir).filter((pid) => readProcStat(pid)?.name === 'runc')) {
    for (const criu of childrenOf(runc)) {
      try {
        process.kill(criu, 'SIGKILL');
        killed = true;
      } catch {
        // gone
      }
    }
  }
  // Nothing ended, nothing left by it (abortUntilDone calls this every 50 ms).
  if (!killed) return;
  let mounts = '';
  try {
    mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return;
  }
  for (const line of mounts.split('\n')) {
    const target = line.split(' ')[4];
    if (target?.startsWith(`${containerDir}/.criu.`)) spawnSync('umount', ['-l', target], { stdio: 'ignore' });
  }
}

/**
 * abortRestore until the restore is over: the daemon can die before runc
 * restore has started CRIU (a busy host), and that CRIU would then wait for
 * ever on it.
 */
async function abortUntilDone(containerDir: string, restoring: () => boolean): Promise<void> {
  while (restoring()) {
    abortRestore(containerDir);
    await sleep(50);
  }
}

/** A restore whose memory comes on demand: from the page server at 127.0.0.1:PORT, or (null) from the checkpoint's own images. */
export async function restoreLazily(host: CheckpointHost, id: string, opts: RestoreOptions, port: number | null): Promise<LazyRestore> {
  // The daemon's log is kept where failed restores keep theirs (the container's folder goes when the restore fails); removed once every page is here.
  mkdirSync(host.logsDir, { recursive: true, mode: 0o700 });
  const log = join(host.logsDir, `${id}-lazy-pages-${new Date().toISOString().replace(/[-:]/g, '')}.log`);
  let daemon: ChildProcess | null = null;
  let restoring = true;
  let exited: Promise<{ ok: true } | { ok: false; error: string }> | null = null;
  let watchdog: NodeJS.Timeout | undefined;
  const result = await restoreContainer(host, id, {
    ...opts,
    lazyPages: async (containerDir, imagesDir) => {
      const started = await startDaemon(host.criu, containerDir, imagesDir, port, log);
      daemon = started.child;
      exited = started.exited.then(({ code, signal }) => {
        // While runc restore still runs, a daemon gone wrong leaves CRIU's restore waiting for ever.
        if (code !== 0 && restoring) void abortUntilDone(containerDir, () => restoring);
        if (code === 0) rmSync(log, { force: true });
        return code === 0 ? { ok: true as const } : { ok: false as const, error: `criu lazy-pages ${signal ? `was killed by ${signal}` : `exited ${code}`} (its log: ${log})` };
      });
      // And should it hang without failing: a restore takes seconds, not minutes.
      watchdog = setTimeout(() => {
        if (!restoring) return;
        started.child.kill('SIGKILL');
        void abortUntilDone(containerDir, () => restoring);
      }, LAZY_RESTORE_TIMEOUT_MS);
    },
  }).finally(() => {
    restoring = false;
    clearTimeout(watchdog);
  }).catch(async (err: unknown) => {
    (daemon as ChildProcess | null)?.kill('SIGKILL');
    throw existsSync(log) ? new StasisError(`${errorMessage(err)}\nlazy-pages log: ${log}`, { hint: err instanceof StasisError ? err.hint : undefined }) : err;
  });
  if (daemon === null || exited === null) throw new StasisError('the lazy-pages daemon did not start');
  const child: ChildProcess = daemon;
  const done: Promise<{ ok: true } | { ok: false; error: string }> = exited;
  return {
    warnings: result.warnings,
    pulled: () => {
      try {
        return pulledPages(readFileSync(log, 'utf8'));
      } catch {
        return null;
      }
    },
    done,
    stop: async () => {
      try {
        child.kill('SIGKILL');
      } catch (err) {
        debugLog(`lazy-pages: ${errorMessage(err)}`);
      }
      await done;
    },
  };
}
