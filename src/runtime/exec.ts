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
  const announce = () => {
    if (announced || !existsSync(pidFile)) return;
    announced = true;
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8'), 10);
    ctx.journal.append('/tasks/exec-started', id, { execId, pid });
  };
  const poll = setInterval(announce, 10);
  child.stderr!.on('data', (chunk: Buffer) => {
    // runc's own errors are logrus lines; the process's stderr passes through untouched.
    const text = chunk.toString('utf8');
    if (!announced && /level=(error|fatal)/.test(text)) stderr += text;
    else opts.stderr.write(chunk);
  });
  const stopForwarding = forwardSignals((signal) => child.kill(signal));
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
    stopForwarding();
    rmSync(pidFile, { force: true });
    timens?.cleanup();
  }
}
