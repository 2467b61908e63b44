import type { CommandModule } from 'yargs';
import { parseSignal } from '../runtime/signals.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { id: string; signal: string; all?: boolean };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'kill <id>',
  describe: 'send a signal to a container (default SIGTERM)',
  builder: (y) =>
    y
      .positional('id', { type: 'string', describe: 'container ID' })
      .option('signal', { alias: 's', type: 'string', default: 'SIGTERM', describe: 'signal name or number' })
      .option('all', { alias: 'a', type: 'boolean', describe: 'signal every process in the container, not just its init' }) as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const signal = parseSignal(argv.signal);
    await runtimeFrom(argv).container(id).kill(signal.name, { all: argv.all === true });
  },
};
