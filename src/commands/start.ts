import { isJson, printJson, printLine } from '../output/print.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'start <id>',
  describe: 'start a created container',
  positionals: ID_POSITIONAL,
  handler: async (argv) => {
    const info = await runtimeFrom(argv).container(idArg(argv.id)).start();
    if (isJson()) printJson(info);
    else printLine(info.id);
  },
});
