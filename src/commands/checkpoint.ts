import type { CommandModule } from 'yargs';
import { StasisError } from '../errors.ts';
import type { GlobalArgs } from './context.ts';

export const command: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'checkpoint <id>',
  describe: 'dump a container to disk with CRIU',
  builder: (y) => y,
  handler: async () => {
    throw new StasisError('checkpoint is not implemented yet');
  },
};
