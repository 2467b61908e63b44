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
    // With what stasis mounted for it (the overlay of a --rootfs container,
    // --rootfs-mount ones), so an admin can see what delete will unmount.
    const { info, mounts } = await runtime.inspect(id);
    printJson({ ...info, mounts, stateDir: runtime.store.containerDir(id) });
  },
};
