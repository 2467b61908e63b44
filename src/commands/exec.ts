import type { CommandModule } from 'yargs';
import { usageError } from '../errors.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { commandWords, idArg, parseEnv, toArray } from './flags.ts';

type Args = GlobalArgs & { id: string; cmd?: string[]; tty?: boolean; env?: string[]; cwd?: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'exec <id> [cmd..]',
  describe: 'run a process inside a running container and exit with its status',
  builder: (y) =>
    y
      .positional('id', { type: 'string', describe: 'container ID' })
      .positional('cmd', { type: 'string', array: true, describe: 'command and arguments (put them after --)' })
      .option('tty', { alias: 't', type: 'boolean', describe: 'give the process a terminal' })
      .option('env', { alias: 'e', type: 'string', coerce: toArray, describe: 'set an environment variable K=V (repeatable)' })
      .option('cwd', { type: 'string', describe: 'working directory inside the container' })
      .example('$0 exec web -- ps aux', '') as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const args = commandWords(argv);
    if (args.length === 0) throw usageError('exec needs a command: stasis exec ID -- CMD [ARG...]');
    const runtime = runtimeFrom(argv);
    process.exitCode = await runtime.container(id).exec({ args, env: parseEnv(toArray(argv.env)), cwd: argv.cwd, tty: argv.tty === true });
  },
};
