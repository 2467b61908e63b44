import { parseSignal } from '../host/signals.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'kill <id>',
  describe: 'send a signal to a container (default SIGTERM)',
  positionals: ID_POSITIONAL,
  options: {
    signal: { alias: 's', type: 'string', requiresArg: true, default: 'SIGTERM', describe: 'signal name or number' },
    all: { alias: 'a', type: 'boolean', describe: 'signal every process in the container, not just its init' },
  },
  handler: async (argv) => {
    const id = idArg(argv.id);
    const signal = parseSignal(argv.signal);
    await runtimeFrom(argv).container(id).kill(signal.name, { all: argv.all === true });
  },
});
