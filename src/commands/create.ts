import { isJson, printJson, printLine } from '../output/print.ts';
import { runtimeFrom } from './context.ts';
import { CMD_POSITIONAL, ID_POSITIONAL, defineCommand } from './define.ts';
import { CHECKPOINT_FLAG, IMAGE_FLAGS, addImageBase, CREATE_FLAGS, VOLUME_FLAGS, IDENTITY_FLAGS, commandWords, createOptionsFrom, idArg, planFromFlags } from './flags.ts';

export const command = defineCommand({
  command: 'create <id> [cmd..]',
  describe: 'create a container from a rootfs, a bundle or a checkpoint (then `stasis start`)',
  positionals: { ...ID_POSITIONAL, ...CMD_POSITIONAL },
  options: { ...CREATE_FLAGS, ...IMAGE_FLAGS, ...VOLUME_FLAGS, ...IDENTITY_FLAGS, ...CHECKPOINT_FLAG },
  examples: [
    ['$0 create web --rootfs /srv/web -- httpd -f', 'a container on a read-only rootfs image'],
    ['$0 create web --bundle ./bundle', 'an existing OCI bundle'],
    ['$0 create web2 --checkpoint web.tar.zst', 'restore from an exported checkpoint'],
    ['$0 create db --rootfs /srv/debian -v /srv/db:/var/lib/postgresql -- postgres', 'a database whose data is a host folder'],
  ],
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    if (argv.checkpoint !== undefined) {
      const { restoreFromFlags } = await import('./restore.ts');
      await restoreFromFlags(runtime, id, argv);
      return;
    }
    const options = createOptionsFrom(argv, commandWords(argv));
    await addImageBase(argv, options);
    const plan = planFromFlags(id, options);
    const info = await runtime.createInfo(id, plan);
    if (isJson()) printJson(info);
    else printLine(info.id);
  },
});
