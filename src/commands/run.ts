import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { usageError, StasisError, EXIT_TOOL } from '../errors.ts';
import { planCreate } from '../runtime/create-plan.ts';
import { classifyExecFailure } from '../runtime/exec-errors.ts';
import { followLog } from '../runtime/logs.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { Container } from '../runtime/interfaces.ts';
import { printLine } from '../output/print.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { commandWords, createOptions, createOptionsFrom, idArg, type CreateFlags } from './flags.ts';

type Args = GlobalArgs & CreateFlags & { id: string; cmd?: string[]; detach?: boolean; rm?: boolean; interactive?: boolean };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'run <id> [cmd..]',
  describe: 'create and start a container; attached, stream its output and exit with its status',
  builder: (y) =>
    createOptions(y, { checkpoint: false })
      .option('detach', { alias: 'd', type: 'boolean', describe: 'start it and return at once' })
      .option('rm', { type: 'boolean', describe: 'delete the container when it exits' })
      .option('interactive', { alias: 'i', type: 'boolean', describe: "attached: connect stasis's own stdin (and terminal with -t) to the container" })
      .positional('id', { type: 'string', describe: 'container ID' })
      .positional('cmd', { type: 'string', array: true, describe: 'command and arguments (put them after --)' })
      .example('$0 run --rm t1 --bundle ./b', 'run to completion, exit with the container\'s status')
      .example('$0 run -d web --rootfs /srv/web -- httpd -f', 'start in the background') as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    if (argv.detach && argv.interactive) throw usageError('--interactive needs an attached run: drop --detach or --interactive');
    const runtime = runtimeFrom(argv);
    // Attached, output that goes to no file goes straight to stasis's own stdout/stderr
    // when the container is interactive (-i, -t) or has file stdio; otherwise
    // the monitor's pipes capture it for `logs` and we stream the log.
    const fileStdio = argv.stdin !== undefined || argv.stdout !== undefined || argv.stderr !== undefined;
    const inherit = argv.detach ? 'none' : argv.interactive || argv.tty ? 'all' : fileStdio ? 'output' : 'none';
    // Detached, the monitor's exit hook removes it; attached, we do, after reading the status.
    const options = createOptionsFrom(argv, commandWords(argv), { autoRemove: argv.rm === true && argv.detach === true, inheritStdio: inherit });
    if (inherit === 'all') options.tty = false;
    const plan = planCreate(id, options);
    let container;
    try {
      container = await runtime.create(id, plan);
    } catch (err) {
      throw classifyExecFailure(err);
    }
    try {
      await container.start();
    } catch (err) {
      await runtime.delete(container, { force: true }).catch(() => undefined);
      throw classifyExecFailure(err);
    }
    if (argv.detach) {
      printLine(id);
      return;
    }
    process.exitCode = await attach(runtime, container, inherit === 'none', argv.rm === true);
  },
};

/** Streams the container's log until it exits, forwarding stasis's signals to it. */
async function attach(runtime: Runtime, container: Container, streamLog: boolean, remove: boolean): Promise<number> {
  const { id } = container;
  const forward = (signal: NodeJS.Signals) => {
    container.kill(signal, { all: false }).catch(() => undefined);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const signal of signals) process.on(signal, forward);
  try {
    if (streamLog) {
      const logPath = join(runtime.store.containerDir(id), 'ctr.log');
      const exited = () => runtime.hasExited(id);
      for await (const record of followLog(logPath, { fromOffset: 0, finished: exited })) {
        (record.stream === 'stdout' ? process.stdout : process.stderr).write(record.text);
      }
    }
    const exit = await runtime.waitExit(id);
    if (remove) await runtime.delete(container, { force: true }).catch(() => undefined);
    if (exit === null || exit === 'removed') {
      throw new StasisError(`container ${id}: the monitor went away before reporting the exit status`, { exitCode: EXIT_TOOL });
    }
    if (exit === 'checkpointed') {
      process.stderr.write(`stasis: container ${id} was checkpointed; restore it with \`stasis restore ${id}\`\n`);
      return 0;
    }
    return exit.status;
  } finally {
    for (const signal of signals) process.off(signal, forward);
  }
}
