import type { CommandModule } from 'yargs';
import { isJson, printJson, printLine } from '../output/print.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { id: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'start <id>',
  describe: 'start a created container',
  builder: (y) => y.positional('id', { type: 'string', describe: 'container ID' }) as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const info = await runtimeFrom(argv).container(id).start();
    if (isJson()) printJson(info);
    else printLine(info.id);
  },
};
