import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { EXIT_TOOL, StasisError, signalExitCode } from '../errors.ts';
import { classifyExecFailure } from './exec-errors.ts';
import { runcMessage } from './runc.ts';
import { showCommand, spawn } from '../host/spawn.ts';
import { debugLog } from '../log.ts';
import type { Runtime } from './runtime.ts';
import { viewOf } from './view.ts';
import { constants } from 'node:os';

export interface ExecOptions {
  args: string[];
  env: string[];
  cwd?: string;
  tty: boolean;
}

/**
 * Runs a process in a running container with stasis's own stdio (runc exec in
 * the foreground) and returns its exit status. A process runc could not start
 * is told apart from one that ran and failed by the pid file runc writes only
 * once the process exists.
 */
export async function execInContainer(runtime: Runtime, id: string, opts: ExecOptions): Promise<number> {
  const record = runtime.record(id);
  const info = viewOf(runtime.store, record);
  if (info.status !== 'running') {
    throw new StasisError(`cannot exec in container ${id}: it is ${info.status}`, { exitCode: EXIT_TOOL });
  }
  if (opts.tty && !process.stdin.isTTY) {
    // runc would fail opening /dev/tty with a bare "no such device or address".
    throw new StasisError('exec -t needs stasis to run in a terminal', { exitCode: EXIT_TOOL, hint: 'run it from a terminal, or drop -t' });
  }
  const execId = randomUUID().slice(0, 12);
  const pidFile = join(runtime.store.containerDir(id), `exec-${execId}.pid`);
  const args = [...runtime.runc.globalArgs(), 'exec', '--pid-file', pidFile];
  if (opts.tty) args.push('--tty');
  for (const entry of opts.env) args.push('--env', entry);
  if (opts.cwd !== undefined) args.push('--cwd', opts.cwd);
  args.push(id, ...opts.args);
  debugLog(showCommand(runtime.config.runc, args));
  const child = spawn(runtime.config.runc, args, { stdio: ['inherit', 'inherit', 'pipe'] });
  let stderr = '';
  let announced = false;
  const announce = () => {
    if (announced || !existsSync(pidFile)) return;
    announced = true;
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8'), 10);
    runtime.journal.append('/tasks/exec-started', id, { execId, pid });
  };
  const poll = setInterval(announce, 10);
  child.stderr!.on('data', (chunk: Buffer) => {
    // runc's own errors are logrus lines; the process's stderr passes through untouched.
    const text = chunk.toString('utf8');
    if (!announced && /level=(error|fatal)/.test(text)) stderr += text;
    else process.stderr.write(chunk);
  });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const signal of signals) process.on(signal, forward);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve([c, s]));
    });
    announce();
    if (!announced) {
      const message = stderr.trim() === '' ? `runc exec exited ${code}` : runcMessage(stderr);
      throw classifyExecFailure(new StasisError(`exec in ${id}: ${message}`, { exitCode: EXIT_TOOL }));
    }
    if (signal) return signalExitCode((constants.signals as Record<string, number>)[signal] ?? 0);
    return code ?? EXIT_TOOL;
  } finally {
    clearInterval(poll);
    for (const signal of signals) process.off(signal, forward);
    rmSync(pidFile, { force: true });
  }
}
