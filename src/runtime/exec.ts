import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT_TOOL, StasisError, signalExitCode } from '../errors.ts';
import { classifyExecFailure } from './exec-errors.ts';
import { runcMessage } from './runc.ts';
import { forwardSignals } from '../host/signals.ts';
import { showCommand, spawn } from '../host/spawn.ts';
import { debugLog } from '../log.ts';
import type { RuntimeContext } from './context.ts';
import { completeRecord } from './records.ts';
import { timeNamespaceExec } from './timens.ts';
import type { ExecOptions } from './types.ts';
import { viewOf } from './view.ts';
import { constants } from 'node:os';

/**
 * Runs a process in a running container with stasis's own stdio (runc exec in
 * the foreground) and returns its exit status. A process runc could not start
 * is told apart from one that ran and failed by the pid file runc writes only
 * once the process exists.
 */
export async function execInContainer(ctx: RuntimeContext, id: string, opts: ExecOptions): Promise<number> {
  const record = completeRecord(ctx, id);
  const info = viewOf(ctx.store, record);
  // runc execs into a created container too: its namespaces exist already.
  if (info.status !== 'running' && info.status !== 'created') {
    throw new StasisError(`cannot exec in container ${id}: it is ${info.status}`, { exitCode: EXIT_TOOL });
  }
  // node:crypto is loaded here, not with the module: under Bun it costs about 10 ms of every command's start-up.
  const execId = process.getBuiltinModule('node:crypto').randomUUID().slice(0, 12);
  const pidFile = join(ctx.store.containerDir(id), `exec-${execId}.pid`);
  const timens = info.pid === null ? null : await timeNamespaceExec(ctx, id, info.pid, execId);
  const runcArgs = ctx.runc.execArgs(id, { pidFile, tty: opts.tty, env: opts.env, cwd: opts.cwd, args: opts.args, root: timens?.root });
  const file = timens?.file ?? ctx.config.runc;
  const args = [...(timens?.prefix ?? []), ...runcArgs];
  debugLog(showCommand(file, args));
  const child = spawn(file, args, { stdio: ['inherit', 'inherit', 'pipe'] });
  let stderr = '';
  let announced = false;
  let execPid = 0;
  const announce = () => {
    if (announced || !existsSync(pidFile)) return;
    announced = true;
    execPid = Number.parseInt(readFileSync(pidFile, 'utf8'), 10);
    ctx.journal.append('/tasks/exec-started', id, { execId, pid: execPid });
  };
  const poll = setInterval(announce, 10);
  child.stderr!.on('data', (chunk: Buffer) => {
    // runc's own errors are logrus lines; the process's stderr passes through untouched.
    const text = chunk.toString('utf8');
    if (!announced && /level=(error|fatal)/.test(text)) stderr += text;
    else opts.stderr.write(chunk);
  });
  // runc exec without a terminal copies the process's stdio through pipes and
  // exits only once they close: a background child the process leaves
  // holding them (`sh -c 'daemon &'`) keeps runc, and so stasis, waiting. A
  // signal stasis gets is passed on (through runc) to the process; once the
  // process is gone, the signal also ends that wait: runc gets a short while
  // to report the status, and is then ended, the status being the signal's.
  let interrupted: NodeJS.Signals | undefined;
  let watching: NodeJS.Timeout | undefined;
  let endWait: ((signal: NodeJS.Signals) => void) | undefined;
  const stopForwarding = forwardSignals((signal) => {
    child.kill(signal);
    interrupted ??= signal;
    watching ??= setInterval(() => {
      announce();
      if (!announced || processAlive(execPid)) return;
      clearInterval(watching);
      setTimeout(() => endWait?.(interrupted!), 1000).unref();
    }, 50);
  });
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve([c, s]));
      endWait = (signal) => {
        child.stderr!.destroy();
        child.kill('SIGKILL');
        resolve([null, signal]);
      };
    });
    announce();
    if (!announced) {
      const message = stderr.trim() === '' ? `runc exec exited ${code}` : runcMessage(stderr);
      throw classifyExecFailure(new StasisError(`exec in ${id}: ${message}`, { exitCode: EXIT_TOOL }));
    }
    if (signal) return signalExitCode((constants.signals as Record<string, number>)[signal] ?? 0);
    return code ?? EXIT_TOOL;
  } finally {
    clearInterval(watching);
    clearInterval(poll);
    stopForwarding();
    rmSync(pidFile, { force: true });
    timens?.cleanup();
  }
}

/** Whether a process exists and has not exited (a zombie has). */
function processAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
