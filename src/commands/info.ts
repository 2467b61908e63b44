import { join } from 'node:path';
import { printJson } from '../output/print.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';
import { specUserns } from '../runtime/userns.ts';

export const command = defineCommand({
  command: 'info <id>',
  aliases: ['inspect'],
  describe: 'print everything known about a container, as JSON',
  positionals: ID_POSITIONAL,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    // With what stasis mounted for it (the overlay of a --rootfs container,
    // --rootfs-mount ones), so an admin can see what delete will unmount.
    // And its user namespace's ID maps (null: the host's), as its spec gives them to runc.
    const { info, mounts } = await runtime.inspect(id);
    const userns = specUserns(join(runtime.store.containerDir(id), 'config.json'));
    printJson({ ...info, mounts, userns, stateDir: runtime.store.containerDir(id) });
  },
});
