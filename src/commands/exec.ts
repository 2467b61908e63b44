import { EXIT_TOOL, StasisError, usageError } from '../errors.ts';
import { guardStreams, isTerminal } from '../host/stdio.ts';
import { runtimeFrom } from './context.ts';
import { CMD_POSITIONAL, ID_POSITIONAL, defineCommand } from './define.ts';
import { commandWords, idArg, parseEnv, toArray } from './flags.ts';

export const command = defineCommand({
  command: 'exec <id> [cmd..]',
  describe: 'run a process inside a running container and exit with its status',
  positionals: { ...ID_POSITIONAL, cmd: { ...CMD_POSITIONAL.cmd, describe: "command and arguments, after the ID (-- before them is optional; every word after the command's first is the command's)" } },
  options: {
    tty: { alias: 't', type: 'boolean', describe: 'give the process a terminal' },
    interactive: { alias: 'i', type: 'boolean', describe: "accepted for podman's sake: the process always gets stasis's stdin" },
    env: { alias: 'e', type: 'string', requiresArg: true, coerce: toArray, describe: 'set an environment variable K=V (repeatable)' },
    cwd: { type: 'string', requiresArg: true, describe: 'working directory inside the container' },
  },
  examples: [['$0 exec web ps aux', 'options after the command\'s first word are the command\'s'], ['$0 exec -e K=V web -- sh -c \'echo $K\'', '']],
  commandAfterId: true,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const args = commandWords(argv);
    if (args.length === 0) throw usageError('exec needs a command: stasis exec ID [--] CMD [ARG...]');
    if (argv.tty && !isTerminal(0)) {
      // runc would fail opening /dev/tty with a bare "no such device or address".
      throw new StasisError('exec -t needs stasis to run in a terminal', { exitCode: EXIT_TOOL, hint: 'run it from a terminal, or drop -t' });
    }
    const runtime = runtimeFrom(argv);
    guardStreams();
    process.exitCode = await runtime.container(id).exec({ args, env: parseEnv(argv.env), cwd: argv.cwd, tty: argv.tty === true, stderr: process.stderr });
  },
});
