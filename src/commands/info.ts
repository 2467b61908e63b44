import type { CommandModule } from 'yargs';
import { printJson } from '../output/print.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { id: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'info <id>',
  describe: 'print everything known about a container, as JSON',
  builder: (y) => y.positional('id', { type: 'string', describe: 'container ID' }) as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    const info = await runtime.container(id).state();
    printJson({ ...info, stateDir: runtime.store.containerDir(id) });
  },
};
