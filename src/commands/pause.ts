import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'pause <id>',
  describe: 'freeze every process of a running container',
  positionals: ID_POSITIONAL,
  handler: async (argv) => {
    await runtimeFrom(argv).container(idArg(argv.id)).pause();
  },
});
