import { closeSync, read, readFileSync } from 'node:fs';
import { StasisError } from '../errors.ts';
import { libc } from '../host/libc.ts';
import { bunSpawn, showCommand, spawn } from '../host/spawn.ts';
import { debugLog } from '../log.ts';
import { runcMessage } from './runc.ts';

export interface MonitorOptions {
  conmon: string;
  runc: string;
  runcGlobalArgs: string[];
  id: string;
  containerDir: string;
  socketDir: string;
  /** null: passthrough — the container gets `stdio` directly. */
  logPath: string | null;
  stdio: [number | 'ignore', number | 'ignore', number | 'ignore'];
  terminal: boolean;
  /** The container's stdin is a pipe conmon holds, fed through its attach socket (closed when the last client leaves). */
  stdin?: boolean;
  exitCommand: string[];
  /** Restore from this CRIU image folder instead of creating. */
  restoreImage?: string;
  restoreArgs?: string[];
  /** How long runc create/restore may take before the monitor and its children are killed. */
  timeoutMs?: number;
}

export function monitorArgs(opts: MonitorOptions): string[] {
  const dir = opts.containerDir;
  const args = [
    '--api-version', '1',
    '--cid', opts.id, '--cuuid', opts.id, '--name', opts.id,
    '--runtime', opts.runc,
    '--bundle', dir,
    '--container-pidfile', `${dir}/pid`,
    '--conmon-pidfile', `${dir}/conmon.pid`,
    // conmon writes <dir>/exit (the status) and <dir>/oom there.
    '--persist-dir', dir,
    '--socket-dir-path', opts.socketDir,
    '--log-path', opts.logPath === null ? 'passthrough' : `k8s-file:${opts.logPath}`,
    '--log-level', 'error',
  ];
  for (const arg of opts.runcGlobalArgs) args.push(`--runtime-arg=${arg}`);
  if (opts.terminal) args.push('--terminal');
  if (opts.stdin) args.push('--stdin');
  const [exitCommand, ...exitArgs] = opts.exitCommand;
  args.push('--exit-command', exitCommand);
  for (const arg of exitArgs) args.push(`--exit-command-arg=${arg}`);
  if (opts.restoreImage) {
    args.push('--restore', opts.restoreImage);
    for (const arg of opts.restoreArgs ?? []) args.push(`--runtime-opt=${arg}`);
  }
  return args;
}

/**
 * Starts conmon, which double-forks into a monitor that outlives us, runs
 * `runc create` (or `runc restore`) and reports the container's pid, or
 * runc's error, as one JSON line on the sync pipe (fd 3).
 */
export function startMonitor(opts: MonitorOptions): Promise<number> {
  const args = monitorArgs(opts);
  debugLog(showCommand(opts.conmon, args));
  const spawnBun = bunSpawn();
  const pipe = spawnBun === null ? null : libc()?.pipe() ?? null;
  return new Promise((resolve, reject) => {
    const reply = monitorReply(opts, resolve, reject);
    if (spawnBun !== null && pipe !== null) {
      // Under Bun: Bun.spawn, and the sync pipe a real pipe read with fs.read
      // (no node:child_process or node:stream; see host/spawn.ts).
      const [readEnd, writeEnd] = pipe;
      let child;
      try {
        child = spawnBun([opts.conmon, ...args], {
          stdio: [opts.stdio[0], opts.stdio[1], opts.stdio[2], writeEnd],
          env: { ...process.env, _OCI_SYNCPIPE: '3' },
          detached: true,
        });
      } catch (err) {
        closeSync(readEnd);
        reply.cannotStart(err as Error);
        return;
      } finally {
        closeSync(writeEnd);
      }
      child.unref();
      const buffer = Buffer.alloc(4096);
      const next = () => read(readEnd, buffer, 0, buffer.length, null, (err, bytes) => {
        if (err || bytes === 0) {
          closeSync(readEnd);
          reply.end();
        } else {
          reply.data(buffer.toString('utf8', 0, bytes));
          if (reply.settled()) closeSync(readEnd);
          else next();
        }
      });
      next();
      return;
    }
    const child = spawn(opts.conmon, args, {
      stdio: [opts.stdio[0], opts.stdio[1], opts.stdio[2], 'pipe'],
      env: { ...process.env, _OCI_SYNCPIPE: '3' },
      detached: true,
    });
    child.on('error', (err) => reply.cannotStart(err));
    child.unref();
    const syncPipe = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    reply.onFinish(() => syncPipe.destroy());
    syncPipe.on('data', (chunk: Buffer) => reply.data(chunk.toString('utf8')));
    syncPipe.on('end', () => reply.end());
  });
}

/** What the sync pipe says, turned into the container's pid or an error; with the timeout on runc create/restore. */
function monitorReply(opts: MonitorOptions, resolve: (pid: number) => void, reject: (err: Error) => void) {
  let reply = '';
  let settled = false;
  const cleanups: (() => void)[] = [];
  const timeoutMs = opts.timeoutMs ?? 300_000;
  // CRIU can hang on a damaged image; give up and kill the monitor's whole
  // process group (conmon is a session leader; runc and CRIU run in it).
  const timer = setTimeout(() => {
    try {
      const monitorPid = Number.parseInt(readFileSync(`${opts.containerDir}/conmon.pid`, 'utf8'), 10);
      if (monitorPid > 0) process.kill(-monitorPid, 'SIGKILL');
    } catch {
      // no monitor to kill
    }
    const what = opts.restoreImage ? 'runc restore' : 'runc create';
    finish(new StasisError(`${what} did not finish within ${Math.round(timeoutMs / 1000)} s and was stopped`));
  }, timeoutMs);
  const finish = (err: Error | null, pid?: number) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    for (const cleanup of cleanups) cleanup();
    if (err) reject(err);
    else resolve(pid!);
  };
  return {
    settled: () => settled,
    onFinish: (cleanup: () => void) => cleanups.push(cleanup),
    cannotStart(err: Error) {
      finish(new StasisError(`cannot start the monitor ${opts.conmon}: ${err.message}`, {
        hint: 'install conmon (see `stasis doctor`)',
      }));
    },
    data(text: string) {
      reply += text;
      const newline = reply.indexOf('\n');
      if (newline < 0) return;
      let message: { pid?: number; data?: number; message?: string };
      try {
        message = JSON.parse(reply.slice(0, newline));
      } catch {
        finish(new StasisError(`the monitor sent an unreadable reply: ${reply.slice(0, 200)}`));
        return;
      }
      const pid = message.pid ?? message.data ?? -1;
      debugLog(`monitor reported ${reply.slice(0, newline)}`);
      if (pid > 0) finish(null, pid);
      else finish(new StasisError(runcMessage(message.message ?? '')));
    },
    end() {
      finish(new StasisError('the monitor exited without reporting the container (see `stasis doctor`)'));
    },
  };
}
