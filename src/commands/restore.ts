import type { CommandModule } from 'yargs';
import { usageError } from '../errors.ts';
import { restoreContainer } from '../checkpoint/restore.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { commandWords, idArg, parseKeyValues, toArray, type CreateFlags } from './flags.ts';

type Args = GlobalArgs & CreateFlags & { id: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'restore <id>',
  describe: "restore a container from a checkpoint (default: ID's latest); same as create --checkpoint",
  builder: (y) =>
    y
      .positional('id', { type: 'string', describe: 'container ID (a container a checkpoint stopped is restored in place)' })
      .option('checkpoint', { type: 'string', describe: 'checkpoint folder or exported archive (default: the latest checkpoint of ID)' })
      .option('rootfs', { type: 'string', describe: "restore onto this copy of the base rootfs (default: the checkpoint's)" })
      .option('bundle', { type: 'string', describe: "restore onto this bundle's rootfs, written in place" })
      .option('rootfs-mount', { type: 'string', coerce: toArray, describe: "mount type=T,source=S,options=O1:O2 on the bundle's rootfs first (repeatable; in place: the container's own)" })
      .option('label', { type: 'string', coerce: toArray, describe: "labels K=V (default: the checkpointed container's)" })
      .example('$0 restore web', 'bring back the container a checkpoint stopped')
      .example('$0 restore web2 --checkpoint web.tar.zst --rootfs /srv/web', 'restore an archive under another ID') as never,
  handler: async (argv) => {
    await restoreFromFlags(runtimeFrom(argv), idArg(argv.id), argv);
  },
};

/** Shared by `restore` and `create --checkpoint`: create's other options do not apply to a restore. */
export async function restoreFromFlags(runtime: Runtime, id: string, argv: CreateFlags & { cmd?: string[]; '--'?: unknown }): Promise<void> {
  const ignored = (['tty', 'env', 'cwd', 'memory', 'pidsLimit', 'stdin', 'stdout', 'stderr'] as const).filter((key) => argv[key] !== undefined);
  const command = commandWords(argv).length > 0;
  if (ignored.length > 0 || command) {
    const names = ignored.map((key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    throw usageError(`${[...names, ...(command ? ['a command'] : [])].join(', ')} cannot be used with a restore: the checkpoint's own spec is restored`);
  }
  const progress = await spinner(`restoring ${id}`);
  try {
    const result = await restoreContainer(
      runtime,
      id,
      { checkpoint: argv.checkpoint, rootfs: argv.rootfs, bundle: argv.bundle, rootfsMounts: toArray(argv.rootfsMount), labels: argv.label ? parseKeyValues('label', toArray(argv.label)) : undefined },
      (step) => progress.step(`${id}: ${step}`),
    );
    progress.stop();
    if (isJson()) printJson({ ...result.container, checkpoint: result.checkpoint, inPlace: result.inPlace, timingsMs: result.timingsMs, criu: result.criu });
    else printLine(result.container.id);
  } finally {
    progress.stop();
  }
}
