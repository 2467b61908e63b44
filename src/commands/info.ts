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
    // What stasis mounted for it (the overlay of a --rootfs container, --rootfs-mount ones), so an
    // admin can see what delete will unmount.
    const mounts = runtime.store.read(id)?.mounts ?? [];
    printJson({ ...info, mounts, stateDir: runtime.store.containerDir(id) });
  },
};
