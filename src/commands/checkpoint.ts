import { StasisError, errorMessage, usageError } from '../errors.ts';
import { exportTarget } from '../checkpoint/archive/export.ts';
import { COMPRESSIONS, type Compression } from '../checkpoint/archive/tar.ts';
import { parseImageRef } from '../checkpoint/oci/layout.ts';
import { criuStatsLines } from '../checkpoint/criu/stats.ts';
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
    'leave-running': { alias: 'R', type: 'boolean', describe: 'keep the container running after the dump' },
    export: { alias: 'e', type: 'string', requiresArg: true, describe: 'also write the checkpoint as one archive: FILE (.tar, .tar.gz, .tar.zst; other names zstd), a folder (checkpoint-ID-TIME.tar.zst in it), or - (stdout)' },
    compress: { alias: 'c', type: 'string', requiresArg: true, choices: COMPRESSIONS as readonly string[], describe: "the archive's compression: zstd, gzip or none (default: as the name says; else zstd)" },
    'ignore-rootfs': { type: 'boolean', describe: 'leave the rootfs changes out of the archive and the image (the folder keeps them)' },
    'ignore-volumes': { type: 'boolean', describe: "leave the volumes' contents out of the archive and the image (a restore then uses the host folders as they are)" },
    'create-image': { type: 'string', requiresArg: true, describe: 'also write an OCI checkpoint image: oci:DIR[:NAME] or oci-archive:FILE[:NAME]' },
    'podman-image': { type: 'string', requiresArg: true, describe: "with --create-image: the podman image NAME[@ID] of the container's base, so `podman container restore` takes the image" },
    'print-stats': { type: 'boolean', describe: "print CRIU's dump statistics on stderr (with --json: in the JSON only)" },
    keep: { type: 'boolean', describe: "keep CRIU's dump log and statistics (stasis always does; accepted for podman's sake)" },
    'tcp-established': { type: 'boolean', describe: 'CRIU: checkpoint established TCP connections', group: CRIU_GROUP },
    'ext-unix-sk': { type: 'boolean', describe: 'CRIU: allow external unix sockets', group: CRIU_GROUP },
    'shell-job': { type: 'boolean', describe: 'CRIU: allow a shell job (a process attached to a session outside)', group: CRIU_GROUP },
    'file-locks': { type: 'boolean', describe: 'CRIU: checkpoint file locks', group: CRIU_GROUP },
    'pre-dump': { type: 'boolean', describe: 'CRIU: dump memory only, leave the container running (needs soft-dirty tracking)', group: CRIU_GROUP },
    'parent-path': { type: 'string', requiresArg: true, describe: 'CRIU: an earlier (pre-)dump to take only the changes since (a path relative to here, or absolute)', group: CRIU_GROUP },
  },
  examples: [
    ['$0 checkpoint web --export web.tar.zst', 'dump web, stop it, write a portable archive'],
    ['$0 checkpoint web -R --image-path /srv/cp/web1', 'a snapshot; web keeps running'],
    ['$0 checkpoint web --export - | ssh other stasis restore web --checkpoint - --rootfs /srv/web', 'move web through a pipe'],
    ['$0 checkpoint web --create-image oci-archive:web.oci.tar --podman-image localhost/web', 'an image podman load + podman container restore take'],
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
    const toStdout = argv.export === '-';
    const opts: CheckpointOptions = {
      imagePath: argv.imagePath,
      leaveRunning: argv.leaveRunning === true,
      exportPath: toStdout ? undefined : argv.export,
      exportStream: toStdout ? process.stdout : undefined,
      compression: argv.compress as Compression | undefined,
      ignoreRootfs: argv.ignoreRootfs === true,
      ignoreVolumes: argv.ignoreVolumes === true,
      createImage: argv.createImage,
      podmanImage: argv.podmanImage === undefined ? undefined : parsePodmanImage(argv.podmanImage),
      tcpEstablished: argv.tcpEstablished === true,
      extUnixSk: argv.extUnixSk === true,
      shellJob: argv.shellJob === true,
      fileLocks: argv.fileLocks === true,
      preDump: argv.preDump === true,
      parentPath: argv.parentPath,
    };
    checkFlags(opts, argv.export);
    const runtime = runtimeFrom(argv);
    const progress = await spinner(`checkpointing ${id}`);
    // The archive is stdout: a reader that goes away before the end makes the command fail (the folder is kept).
    const readerGone = () => {
      process.stderr.write(`stasis: checkpoint ${id}: the archive's reader went away before it was complete; the checkpoint folder is kept (stasis info ${id})\n`);
    };
    if (toStdout) {
      process.exitCode = 1;
      process.stdout.prependListener('error', readerGone);
    }
    try {
      const result = await runtime
        .container(id)
        .checkpoint(opts, (step) => progress.step(`${id}: ${step}`))
        .catch(reword({
          'no-soft-dirty': () => ({ message: `${opts.preDump ? '--pre-dump' : '--parent-path'} needs memory change tracking (soft-dirty bits), which this kernel does not provide`, hint: 'take a full checkpoint without --pre-dump; `stasis doctor` shows what the kernel supports' }),
          'bad-parent': () => ({ message: `--parent-path ${opts.parentPath}: not a checkpoint folder` }),
          'image-path-not-empty': (err) => ({ message: `--image-path ${err.message}` }),
          // Checked again by the library once the container is locked (a folder may have gone meanwhile).
          'export-compression-conflict': (err) => ({ message: `--export ${err.message}`, exitCode: 2 }),
          'export-format': (err) => ({ message: `--export ${err.message}`, exitCode: 2 }),
          'export-folder-missing': (err) => ({ message: `--export ${err.message}`, exitCode: 2 }),
          'bad-image-target': (err) => ({ message: `--create-image ${err.message}`, exitCode: 2 }),
          tty: () => ({ hint: 'run the container without -t to be able to checkpoint it' }),
          'stdio-passthrough': () => ({ hint: 'run it without --stdin/--stdout/--stderr, -i or -t, so its output goes to pipes the monitor holds' }),
        }));
      if (toStdout) {
        process.stdout.off('error', readerGone);
        process.exitCode = 0; // (Bun keeps 1 when it is set to undefined)
      }
      progress.stop();
      if (argv.printStats && !isJson()) process.stderr.write(criuStatsLines('dump', result.criu, result.timingsMs.total).map((line) => `${line}\n`).join(''));
      // With the archive on stdout, the report goes to stderr (as errors do under --json).
      if (isJson()) {
        if (toStdout) process.stderr.write(`${JSON.stringify(result)}\n`);
        else printJson(result);
      } else if (!toStdout) printLine(result.image ?? result.exported ?? result.path);
    } finally {
      progress.stop();
    }
  },
});

/** `--podman-image NAME[@ID]`: an ID is hex (12 to 64 digits); a digest reference (NAME@sha256:...) is a name. */
function parsePodmanImage(value: string): { name: string; id?: string } {
  const match = /^(.+)@([0-9a-f]{12,64})$/.exec(value);
  if (match) return { name: match[1], id: match[2] };
  if (value === '' || value.startsWith('@')) throw usageError(`--podman-image ${JSON.stringify(value)}: expected NAME or NAME@ID`);
  return { name: value };
}

/** Flag combinations, refused before the container is touched. */
function checkFlags(opts: CheckpointOptions, exportFlag: string | undefined): void {
  const exporting = exportFlag !== undefined;
  if (opts.preDump && (exporting || opts.createImage !== undefined)) {
    throw usageError(`--pre-dump cannot be combined with ${exporting ? '--export' : '--create-image'}: a pre-dump is not restorable on its own`);
  }
  // The archive would lack the parent's pages, and CRIU's link to them leaves the archive.
  if (opts.parentPath !== undefined && (exporting || opts.createImage !== undefined)) {
    throw usageError(`--parent-path cannot be combined with ${exporting ? '--export' : '--create-image'}: the archive would not hold the parent's memory`, 'export a full checkpoint instead');
  }
  if (opts.exportStream !== undefined && process.stdout.isTTY) {
    throw usageError('--export -: stdout is a terminal; the archive is binary', 'pipe or redirect it: stasis checkpoint ID --export - > FILE');
  }
  if (opts.compression !== undefined && !exporting) throw usageError('-c/--compress is for the archive of --export');
  if (opts.exportPath !== undefined) {
    try {
      exportTarget(opts.exportPath, 'ID', opts.compression, new Date());
    } catch (err) {
      throw usageError(`--export ${errorMessage(err)}`, err instanceof StasisError && err.code === 'export-compression-conflict' ? 'drop -c/--compress, or name the file for it (.tar, .tar.gz, .tar.zst)' : undefined);
    }
  }
  if (opts.ignoreRootfs && !exporting && opts.createImage === undefined) {
    throw usageError('--ignore-rootfs is for --export and --create-image: the checkpoint folder always keeps the rootfs changes');
  }
  if (opts.ignoreVolumes && !exporting && opts.createImage === undefined) {
    throw usageError("--ignore-volumes is for --export and --create-image: a checkpoint folder names the volumes and never holds their contents");
  }
  if (opts.podmanImage !== undefined && opts.createImage === undefined) throw usageError('--podman-image is for --create-image');
  if (opts.createImage !== undefined && parseImageRef(opts.createImage) === null) {
    throw usageError(`--create-image ${JSON.stringify(opts.createImage)}: not an image reference`, 'use oci:DIR[:NAME] (a layout folder) or oci-archive:FILE[:NAME] (a tar of one, as podman save --format oci-archive writes)');
  }
}
