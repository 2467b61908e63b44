import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'resume <id>',
  aliases: ['unpause'],
  describe: 'thaw a paused container',
  positionals: ID_POSITIONAL,
  handler: async (argv) => {
    await runtimeFrom(argv).container(idArg(argv.id)).resume();
  },
});
