import type { CommandModule } from 'yargs';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { id: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'resume <id>',
  describe: 'thaw a paused container',
  builder: (y) => y.positional('id', { type: 'string', describe: 'container ID' }) as never,
  handler: async (argv) => {
    await runtimeFrom(argv).container(idArg(argv.id)).resume();
  },
};
