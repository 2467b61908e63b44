import type { CommandModule } from 'yargs';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { id: string; instance: string };

// conmon runs this when a container's process exits, so the exit is recorded
// in the journal even when no stasis command is running.
export const command: CommandModule<GlobalArgs, Args> = {
  command: '__exit <id> <instance>',
  describe: false,
  builder: (y) => y.positional('id', { type: 'string' }).positional('instance', { type: 'string' }) as never,
  handler: async (argv) => {
    await runtimeFrom(argv).recordExit(idArg(argv.id), String(argv.instance));
  },
};
