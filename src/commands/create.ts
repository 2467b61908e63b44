import type { CommandModule } from 'yargs';
import { planCreate } from '../runtime/create-plan.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { commandWords, createOptions, createOptionsFrom, idArg, type CreateFlags } from './flags.ts';

type Args = GlobalArgs & CreateFlags & { id: string; cmd?: string[] };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'create <id> [cmd..]',
  describe: 'create a container from a rootfs, a bundle or a checkpoint (then `stasis start`)',
  builder: (y) =>
    createOptions(y)
      .positional('id', { type: 'string', describe: 'container ID' })
      .positional('cmd', { type: 'string', array: true, describe: 'command and arguments (put them after --)' })
      .example('$0 create web --rootfs /srv/web -- httpd -f', 'a container on a read-only rootfs image')
      .example('$0 create web --bundle ./bundle', 'an existing OCI bundle')
      .example('$0 create web2 --checkpoint web.tar.zst', 'restore from an exported checkpoint') as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    if (argv.checkpoint !== undefined) {
      const { restoreFromFlags } = await import('./restore.ts');
      await restoreFromFlags(runtime, id, argv);
      return;
    }
    const plan = planCreate(id, createOptionsFrom(argv, commandWords(argv)));
    const info = await runtime.createInfo(id, plan);
    if (isJson()) printJson(info);
    else printLine(info.id);
  },
};
