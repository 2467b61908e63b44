import type { CommandModule } from 'yargs';
import { StasisError } from '../errors.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { GlobalArgs } from './context.ts';

export const command: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'restore <id>',
  describe: 'restore a container from a checkpoint',
  builder: (y) => y,
  handler: async () => {
    throw new StasisError('restore is not implemented yet');
  },
};

export async function restoreFromFlags(_runtime: Runtime, _id: string, _argv: unknown): Promise<void> {
  throw new StasisError('restore is not implemented yet');
}
