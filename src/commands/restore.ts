import { EXIT_USAGE, usageError } from '../errors.ts';
import { restoreContainer } from '../checkpoint/restore.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { commandWords, idArg, parseKeyValues, parseMountFlag, reword, toArray, type CreateFlags } from './flags.ts';

export const command = defineCommand({
  command: 'restore <id>',
  describe: "restore a container from a checkpoint (default: ID's latest); same as create --checkpoint",
  positionals: { id: { type: 'string', demandOption: true, describe: 'container ID (a container a checkpoint stopped is restored in place)' } },
  options: {
    checkpoint: { type: 'string', requiresArg: true, describe: 'checkpoint folder or exported archive (default: the latest checkpoint of ID)' },
    rootfs: { type: 'string', requiresArg: true, describe: "restore onto this copy of the base rootfs (default: the checkpoint's)" },
    bundle: { type: 'string', requiresArg: true, describe: "restore onto this bundle's rootfs, written in place" },
    'rootfs-mount': { type: 'string', requiresArg: true, coerce: toArray, describe: "mount type=T,source=S,options=O1:O2 on the bundle's rootfs first (repeatable; in place: the container's own)" },
    label: { type: 'string', requiresArg: true, coerce: toArray, describe: "labels K=V (default: the checkpointed container's)" },
  },
  examples: [
    ['$0 restore web', 'bring back the container a checkpoint stopped'],
    ['$0 restore web2 --checkpoint web.tar.zst --rootfs /srv/web', 'restore an archive under another ID'],
  ],
  handler: async (argv) => {
    await restoreFromFlags(runtimeFrom(argv), idArg(argv.id), argv);
  },
});

/** Shared by `restore` and `create --checkpoint`: create's other options do not apply to a restore. */
export async function restoreFromFlags(runtime: Runtime, id: string, argv: CreateFlags & { cmd?: string[]; '--'?: string[] }): Promise<void> {
  const ignored = (['tty', 'env', 'cwd', 'memory', 'pidsLimit', 'stdin', 'stdout', 'stderr'] as const).filter((key) => argv[key] !== undefined);
  const command = commandWords(argv).length > 0;
  if (ignored.length > 0 || command) {
    const names = ignored.map((key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    throw usageError(`${[...names, ...(command ? ['a command'] : [])].join(', ')} cannot be used with a restore: the checkpoint's own spec is restored`);
  }
  if (argv.rootfs !== undefined && argv.bundle !== undefined) throw usageError('--bundle and --rootfs cannot be used together');
  const base = argv.rootfs !== undefined ? { kind: 'overlay' as const, dir: argv.rootfs } : argv.bundle !== undefined ? { kind: 'bundle' as const, dir: argv.bundle } : undefined;
  // yargs applies coerce to a dashed option's own key, not to its camel-case copy.
  const rootfsMounts = toArray(argv.rootfsMount).map(parseMountFlag);
  const progress = await spinner(`restoring ${id}`);
  try {
    const result = await restoreContainer(
      runtime,
      id,
      { checkpoint: argv.checkpoint, base, rootfsMounts, labels: argv.label ? parseKeyValues('label', argv.label) : undefined },
      (step) => progress.step(`${id}: ${step}`),
    ).catch(reword({
      'no-checkpoint': () => ({ hint: 'name one with --checkpoint PATH' }),
      'base-kind-bundle': () => ({
        message: 'this checkpoint is of a --bundle container: restore it onto a bundle with --bundle DIR',
        hint: 'its rootfs changes were written in place, so the checkpoint does not carry them',
      }),
      'base-kind-overlay': () => ({
        message: 'this checkpoint is of a --rootfs container: restore it onto a copy of its base with --rootfs DIR',
        hint: 'the checkpoint carries its writable layer, which goes on top of that base',
      }),
      'base-missing-overlay': () => ({ hint: 'copy it here, or name a copy with --rootfs DIR' }),
      'base-missing-bundle': () => ({ hint: 'copy it here, or name a copy with --rootfs DIR or --bundle DIR' }),
      'mounts-need-bundle': () => ({
        message: "--rootfs-mount mounts onto a bundle's rootfs: this checkpoint is of a --rootfs container",
        hint: 'its writable layer is carried in the checkpoint and restored into a layer of its own',
        exitCode: EXIT_USAGE,
      }),
      'base-differs': () => ({ hint: 'restore onto the image the container ran on, or an exact copy of it (--rootfs DIR)' }),
    }));
    progress.stop();
    if (isJson()) printJson({ ...result.container, checkpoint: result.checkpoint, inPlace: result.inPlace, timingsMs: result.timingsMs, criu: result.criu });
    else printLine(result.container.id);
  } finally {
    progress.stop();
  }
}
