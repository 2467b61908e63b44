import { StasisError, EXIT_TOOL, usageError } from '../errors.ts';
import { forwardSignals } from '../host/signals.ts';
import { canAttachStdin, feedStdin } from '../runtime/attach.ts';
import { classifyExecFailure } from '../runtime/exec-errors.ts';
import { followLog } from '../runtime/logs.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { Container } from '../runtime/types.ts';
import { printLine } from '../output/print.ts';
import { guardStreams, writeErr } from '../host/stdio.ts';
import { runtimeFrom } from './context.ts';
import { CMD_POSITIONAL, ID_POSITIONAL, defineCommand } from './define.ts';
import { IMAGE_FLAGS, addImageBase, CREATE_FLAGS, VOLUME_FLAGS, IDENTITY_FLAGS, commandWords, createOptionsFrom, idArg, planFromFlags } from './flags.ts';
import { bestEffort } from '../log.ts';

export const command = defineCommand({
  command: 'run <id> [cmd..]',
  describe: 'create and start a container; attached, stream its output and exit with its status',
  positionals: { ...ID_POSITIONAL, ...CMD_POSITIONAL },
  options: {
    ...CREATE_FLAGS,
    ...IMAGE_FLAGS,
    ...VOLUME_FLAGS,
    ...IDENTITY_FLAGS,
    detach: { alias: 'd', type: 'boolean', describe: 'start it and return at once' },
    rm: { type: 'boolean', describe: 'delete the container when it exits' },
    interactive: { alias: 'i', type: 'boolean', describe: "attached: connect stasis's own stdin (and terminal with -t) to the container" },
  },
  examples: [
    ['$0 run --rm t1 --bundle ./b', "run to completion, exit with the container's status"],
    ['$0 run -d web --rootfs /srv/web -- httpd -f', 'start in the background'],
  ],
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
    await addImageBase(argv, options);
    const plan = planFromFlags(id, options);
    // Attached with captured output: stdin goes to the container through the monitor.
    const attachStdin = !argv.detach && inherit === 'none' && argv.stdin === undefined && canAttachStdin();
    plan.stdio.attachStdin = attachStdin;
    let container;
    try {
      container = await runtime.create(id, plan);
    } catch (err) {
      throw classifyExecFailure(err);
    }
    try {
      await container.start();
    } catch (err) {
      await bestEffort(`deleting ${id} after its failed start`, runtime.delete(container, { force: true }));
      throw classifyExecFailure(err);
    }
    if (argv.detach) {
      printLine(id);
      return;
    }
    process.exitCode = await attach(runtime, container, inherit === 'none', argv.rm === true, attachStdin);
  },
});

/** Streams the container's log until it exits, forwarding stasis's signals to it. */
async function attach(runtime: Runtime, container: Container, streamLog: boolean, remove: boolean, attachStdin: boolean): Promise<number> {
  const { id } = container;
  const stdinFeeder = attachStdin ? feedStdin(runtime.store, id) : null;
  const stopForwarding = forwardSignals((signal) => {
    void bestEffort(`passing ${signal} to ${id}`, container.kill(signal, { all: false }));
  });
  try {
    if (streamLog) {
      guardStreams();
      for await (const record of followLog(runtime.store.logPath(id), { fromOffset: 0, finished: () => runtime.hasExited(id) })) {
        (record.stream === 'stdout' ? process.stdout : process.stderr).write(record.text);
      }
    }
    const exit = await runtime.waitExit(id);
    if (remove) await bestEffort(`run --rm: delete ${id}`, runtime.delete(container, { force: true }));
    if (exit === null || exit === 'removed') {
      throw new StasisError(`container ${id}: the monitor went away before reporting the exit status`, { exitCode: EXIT_TOOL });
    }
    if (exit === 'checkpointed') {
      writeErr(`stasis: container ${id} was checkpointed; restore it with \`stasis restore ${id}\`\n`);
      return 0;
    }
    if (exit.status === null) throw new StasisError(`container ${id} exited, but its exit status is unknown`, { exitCode: EXIT_TOOL });
    return exit.status;
  } finally {
    stopForwarding();
    // The container is gone: whatever socat still waits to read from our stdin has nowhere to go.
    stdinFeeder?.kill();
  }
}
