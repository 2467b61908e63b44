import { readFileSync } from 'node:fs';
import { StasisError } from '../errors.ts';
import { showCommand, spawn } from '../host/spawn.ts';
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
 * runc's error, as one JSON line on the sync pipe.
 */
export function startMonitor(opts: MonitorOptions): Promise<number> {
  const args = monitorArgs(opts);
  debugLog(showCommand(opts.conmon, args));
  return new Promise((resolve, reject) => {
    const child = spawn(opts.conmon, args, {
      stdio: [opts.stdio[0], opts.stdio[1], opts.stdio[2], 'pipe'],
      env: { ...process.env, _OCI_SYNCPIPE: '3' },
      detached: true,
    });
    let reply = '';
    let settled = false;
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
      syncPipe.destroy();
      if (err) reject(err);
      else resolve(pid!);
    };
    child.on('error', (err) => {
      finish(new StasisError(`cannot start the monitor ${opts.conmon}: ${err.message}`, {
        hint: 'install conmon (see `stasis doctor`)',
      }));
    });
    child.unref();
    const syncPipe = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    syncPipe.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
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
    });
    syncPipe.on('end', () => {
      finish(new StasisError('the monitor exited without reporting the container (see `stasis doctor`)'));
    });
  });
}
