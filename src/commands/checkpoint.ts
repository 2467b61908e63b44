import { usageError } from '../errors.ts';
import { compressionForPath } from '../checkpoint/tar.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import type { CheckpointOptions } from '../runtime/types.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg, reword } from './flags.ts';

const CRIU_GROUP = 'CRIU options:';

export const command = defineCommand({
  command: 'checkpoint <id> [path]',
  describe: 'dump a running container, its spec and its rootfs changes to disk with CRIU; it stops unless --leave-running (`checkpoint inspect PATH` shows what a checkpoint holds)',
  positionals: { ...ID_POSITIONAL, path: { type: 'string', describe: 'with `inspect`: the checkpoint folder or archive to inspect' } },
  options: {
    'image-path': { type: 'string', requiresArg: true, describe: 'folder for the checkpoint (default: a new folder under --checkpoint-dir)' },
    'leave-running': { type: 'boolean', describe: 'keep the container running after the dump' },
    export: { type: 'string', requiresArg: true, describe: 'also write the checkpoint as one archive FILE (.tar, .tar.gz, .tar.zst)' },
    'tcp-established': { type: 'boolean', describe: 'CRIU: checkpoint established TCP connections', group: CRIU_GROUP },
    'ext-unix-sk': { type: 'boolean', describe: 'CRIU: allow external unix sockets', group: CRIU_GROUP },
    'shell-job': { type: 'boolean', describe: 'CRIU: allow a shell job (a process attached to a session outside)', group: CRIU_GROUP },
    'file-locks': { type: 'boolean', describe: 'CRIU: checkpoint file locks', group: CRIU_GROUP },
    'pre-dump': { type: 'boolean', describe: 'CRIU: dump memory only, leave the container running (needs soft-dirty tracking)', group: CRIU_GROUP },
    'parent-path': { type: 'string', requiresArg: true, describe: 'CRIU: an earlier (pre-)dump to take only the changes since (a path relative to here, or absolute)', group: CRIU_GROUP },
  },
  examples: [
    ['$0 checkpoint web --export web.tar.zst', 'dump web, stop it, write a portable archive'],
    ['$0 checkpoint web --leave-running --image-path /srv/cp/web1', 'a snapshot; web keeps running'],
    ['$0 checkpoint inspect web.tar.zst', 'what a checkpoint holds and would ask for, before restoring it'],
  ],
  handler: async (argv) => {
    // `checkpoint inspect PATH`; a container named "inspect" is still `checkpoint inspect`.
    if (argv.id === 'inspect' && argv.path !== undefined) {
      const { inspectFromPath } = await import('./checkpoint-inspect.ts');
      return inspectFromPath(runtimeFrom(argv), argv.path);
    }
    if (argv.path !== undefined) throw usageError(`unexpected argument ${JSON.stringify(argv.path)}: checkpoint takes one container ID`, 'to look into a checkpoint: stasis checkpoint inspect PATH');
    const id = idArg(argv.id);
    const opts: CheckpointOptions = {
      imagePath: argv.imagePath,
      leaveRunning: argv.leaveRunning === true,
      exportPath: argv.export,
      tcpEstablished: argv.tcpEstablished === true,
      extUnixSk: argv.extUnixSk === true,
      shellJob: argv.shellJob === true,
      fileLocks: argv.fileLocks === true,
      preDump: argv.preDump === true,
      parentPath: argv.parentPath,
    };
    checkFlags(opts);
    const runtime = runtimeFrom(argv);
    const progress = await spinner(`checkpointing ${id}`);
    try {
      const result = await runtime
        .container(id)
        .checkpoint(opts, (step) => progress.step(`${id}: ${step}`))
        .catch(reword({
          'no-soft-dirty': () => ({ message: `${opts.preDump ? '--pre-dump' : '--parent-path'} needs memory change tracking (soft-dirty bits), which this kernel does not provide`, hint: 'take a full checkpoint without --pre-dump; `stasis doctor` shows what the kernel supports' }),
          'bad-parent': () => ({ message: `--parent-path ${opts.parentPath}: not a checkpoint folder` }),
          'image-path-not-empty': (err) => ({ message: `--image-path ${err.message}` }),
          tty: () => ({ hint: 'run the container without -t to be able to checkpoint it' }),
          'stdio-passthrough': () => ({ hint: 'run it without --stdin/--stdout/--stderr, -i or -t, so its output goes to pipes the monitor holds' }),
        }));
      progress.stop();
      if (isJson()) printJson(result);
      else printLine(result.exported ?? result.path);
    } finally {
      progress.stop();
    }
  },
});

/** Flag combinations, refused before the container is touched. */
function checkFlags(opts: CheckpointOptions): void {
  if (opts.preDump && opts.exportPath) throw usageError('--pre-dump cannot be combined with --export: a pre-dump is not restorable on its own');
  // The archive would lack the parent's pages, and CRIU's link to them leaves the archive.
  if (opts.parentPath !== undefined && opts.exportPath) {
    throw usageError('--parent-path cannot be combined with --export: the archive would not hold the parent\'s memory', 'export a full checkpoint instead');
  }
  if (opts.exportPath) {
    try {
      compressionForPath(opts.exportPath);
    } catch (err) {
      throw usageError(`--export ${opts.exportPath}: ${(err as Error).message}`);
    }
  }
}
