import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { idArg } from './flags.ts';

// conmon runs this when a container's process exits, so the exit is recorded
// in the journal even when no stasis command is running.
export const command = defineCommand({
  command: '__exit <id> <instance>',
  describe: false,
  positionals: { id: { type: 'string', demandOption: true }, instance: { type: 'string', demandOption: true } },
  handler: async (argv) => {
    await runtimeFrom(argv).recordExit(idArg(argv.id), String(argv.instance));
  },
});
