import { StasisError, errorMessage, usageError } from '../errors.ts';
import { exportTarget } from '../checkpoint/archive/export.ts';
import { COMPRESSIONS, type Compression } from '../checkpoint/archive/tar.ts';
import { parseImageRef } from '../checkpoint/oci/layout.ts';
import { criuStatsLines } from '../checkpoint/criu/stats.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import type { CheckpointOptions, CheckpointResult } from '../runtime/types.ts';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { which } from '../host/which.ts';
import { defaultCheckpointDir, runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { allContainers, checkSelection, eachContainer, latestContainer } from './select.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { criuFlags, criuOptionsFrom, idArg, reword } from './flags.ts';

const CRIU_GROUP = 'CRIU options (dump with them; a stasis checkpoint records them for its restore):';

export const command = defineCommand({
  command: 'checkpoint [id] [path]',
  describe: 'dump a running container, its spec and its rootfs changes to disk with CRIU; it stops unless --leave-running (`stasis checkpoint-inspect PATH` shows what a checkpoint holds)',
  positionals: {
    id: { type: 'string', describe: 'container ID (or --all, --latest)' },
    path: { type: 'string', describe: 'after the word inspect: the checkpoint to inspect (as `stasis checkpoint-inspect PATH`)' },
  },
  options: {
    all: { alias: 'a', type: 'boolean', describe: 'checkpoint every running container, one after the other; each is reported, and the command fails (1) if any failed' },
    latest: { alias: 'l', type: 'boolean', describe: 'checkpoint the most recently created container' },
    'image-path': { type: 'string', requiresArg: true, describe: 'folder for the checkpoint (default: a new folder under --checkpoint-dir)' },
    'leave-running': { alias: 'R', type: 'boolean', describe: 'keep the container running after the dump' },
    export: { alias: 'e', type: 'string', requiresArg: true, describe: 'also write the checkpoint as one archive: FILE (.tar, .tar.gz, .tar.zst; other names zstd), a folder (checkpoint-ID-TIME.tar.zst in it), or - (stdout)' },
    have: { type: 'string', requiresArg: true, describe: "with --export: the receiver's have-list (`stasis checkpoint ls --chunks` there; a file, or - for stdin): the chunks its checkpoint store holds stay out of the archive, which then only stasis restores" },
    compress: { alias: 'c', type: 'string', requiresArg: true, choices: COMPRESSIONS as readonly string[], describe: "the archive's compression: zstd, gzip or none (default: as the name says; else zstd)" },
    'ignore-rootfs': { type: 'boolean', describe: 'leave the rootfs changes out of the archive and the image (the folder keeps them)' },
    'ignore-volumes': { type: 'boolean', describe: "leave the volumes' contents out of the archive and the image (a restore then uses the host folders as they are)" },
    'create-image': { type: 'string', requiresArg: true, describe: 'also write an OCI checkpoint image: oci:DIR[:NAME], oci-archive:FILE[:NAME], or docker://HOST[:PORT]/NAME[:TAG] (pushed to that registry with skopeo)' },
    'tls-verify': { type: 'boolean', describe: 'with --create-image docker://: push over TLS, checked (--tls-verify=false: plain HTTP; default: plain HTTP only for localhost and 127.0.0.0/8)' },
    'podman-image': { type: 'string', requiresArg: true, describe: "with --create-image: the podman image NAME[@ID] of the container's base, so `podman container restore` takes the image" },
    'base-image': { type: 'string', requiresArg: true, describe: "with --create-image: the registry image HOST/NAME[:TAG|@DIGEST] of the container's base, so containerd's CRI restore (CreateContainer with the image) pulls it" },
    'print-stats': { type: 'boolean', describe: "print CRIU's dump statistics on stderr (with --json: in the JSON only)" },
    keep: { type: 'boolean', describe: "keep CRIU's dump log and statistics (stasis always does; accepted for podman's sake)" },
    ...criuFlags(CRIU_GROUP),
    'pre-dump': { type: 'boolean', describe: 'CRIU: dump memory only, leave the container running (needs soft-dirty tracking)', group: CRIU_GROUP },
    'parent-path': { type: 'string', requiresArg: true, describe: 'CRIU: an earlier (pre-)dump to take only the changes since (a path relative to here, or absolute)', group: CRIU_GROUP },
  },
  examples: [
    ['$0 checkpoint web --export web.tar.zst', 'dump web, stop it, write a portable archive'],
    ['$0 checkpoint web -R --image-path /srv/cp/web1', 'a snapshot; web keeps running'],
    ['$0 checkpoint web --export - | ssh other stasis restore web --checkpoint - --rootfs /srv/web', 'move web through a pipe'],
    ['$0 checkpoint web --create-image oci-archive:web.oci.tar --podman-image localhost/web', 'an image podman load + podman container restore take'],
    ['$0 checkpoint web --create-image docker://127.0.0.1:5000/web-ckpt:1', 'push a checkpoint image to a registry (restore --checkpoint docker://… pulls it)'],
    ['$0 checkpoint web --create-image oci-archive:web.oci.tar --base-image 127.0.0.1:5000/web:1', 'an image containerd\'s CRI restores (push it to a registry first)'],
    ['$0 checkpoint --all --leave-running', 'a snapshot of every running container'],
    ['ssh other stasis checkpoint ls --chunks > have.txt; $0 checkpoint web --export web.tar.zst --have have.txt', 'an archive without the chunks the other host already holds (only stasis restores it)'],
  ],
  handler: async (argv) => {
    // `checkpoint inspect PATH` (two words: a checkpoint of a container takes one), as
    // `checkpoint-inspect PATH`; `checkpoint inspect` alone checkpoints the container named inspect.
    if (argv.id === 'inspect' && argv.path !== undefined) {
      const { inspectFromPath } = await import('./checkpoint-inspect.ts');
      return inspectFromPath(runtimeFrom(argv), argv.path);
    }
    if (argv.path !== undefined) throw usageError(`unexpected argument ${JSON.stringify(argv.path)}: checkpoint takes one container ID`, 'to look into a checkpoint: stasis checkpoint-inspect PATH');
    checkSelection('checkpoint', argv, 'a container ID, --all or --latest');
    const toStdout = argv.export === '-';
    if (argv.have !== undefined && argv.export === undefined) throw usageError('--have is for --export: it names what the archive\'s receiver already holds');
    const opts: CheckpointOptions = {
      imagePath: argv.imagePath,
      leaveRunning: argv.leaveRunning === true,
      exportPath: toStdout ? undefined : argv.export,
      exportStream: toStdout ? process.stdout : undefined,
      // Read and checked before the container is touched.
      haveChunks: argv.have === undefined ? undefined : await readHave(argv.have),
      compression: argv.compress as Compression | undefined,
      ignoreRootfs: argv.ignoreRootfs === true,
      ignoreVolumes: argv.ignoreVolumes === true,
      createImage: argv.createImage,
      podmanImage: argv.podmanImage === undefined ? undefined : parsePodmanImage(argv.podmanImage),
      ...criuOptionsFrom(argv),
      baseImage: argv.baseImage === undefined ? undefined : parseBaseImage(argv.baseImage),
      preDump: argv.preDump === true,
      parentPath: argv.parentPath,
    };
    if (argv.all) {
      const single = ([['image-path', opts.imagePath], ['export', argv.export], ['create-image', opts.createImage], ['parent-path', opts.parentPath]] as const).find(([, value]) => value !== undefined);
      if (single) throw usageError(`--all and --${single[0]} cannot be used together: --${single[0]} names one container's`, 'checkpoint them one at a time, or drop the flag (each goes into its own folder under --checkpoint-dir)');
    }
    // A registry target: the image is written as a layout in a fresh folder, then pushed with skopeo.
    const push = opts.createImage?.startsWith('docker://') ? await registryTarget(opts.createImage, argv) : null;
    if (push) opts.createImage = `oci:${push.layout}:${push.tag}`;
    else if (argv.tlsVerify !== undefined) throw usageError('--tls-verify is for --create-image docker://…');
    try {
      checkFlags(opts, argv.export);
      const runtime = runtimeFrom(argv);
      if (!argv.all) {
        const id = argv.latest ? await latestContainer(runtime) : idArg(argv.id);
        const result = await checkpointOne(runtime, id, opts, toStdout);
        if (push) result.image = await pushImage(push, id, result.path);
        return report(result, argv.printStats === true, toStdout);
      }
      const ids = await allContainers(runtime, (c) => c.status === 'running');
      const { results, failed } = await eachContainer('checkpoint', ids, async (id) => {
        const result = await checkpointOne(runtime, id, opts, false);
        if (!isJson()) report(result, argv.printStats === true, false);
        return result;
      });
      if (isJson()) printJson(results);
      if (failed) throw failed;
    } finally {
      push?.cleanup();
    }
  },
});

async function checkpointOne(runtime: Runtime, id: string, opts: CheckpointOptions, toStdout: boolean): Promise<CheckpointResult> {
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
    const { checkpointContainer } = await import('../checkpoint/dump.ts');
    const result = await checkpointContainer(runtime, id, opts, (step) => progress.step(`${id}: ${step}`))
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
    return result;
  } finally {
    progress.stop();
  }
}

/** One checkpoint's report: the image folder (or archive, or image), CRIU's statistics if asked. */
function report(result: CheckpointResult, printStats: boolean, toStdout: boolean): void {
  if (result.store?.error) process.stderr.write(`stasis: warning: checkpoint ${result.id}: the checkpoint is whole in ${result.path}, but the checkpoint store could not index it: ${result.store.error}\n`);
  if (printStats && !isJson()) process.stderr.write(criuStatsLines('dump', result.criu, result.timingsMs.total).map((line) => `${line}\n`).join(''));
  // With the archive on stdout, the report goes to stderr (as errors do under --json).
  if (isJson()) {
    if (toStdout) process.stderr.write(`${JSON.stringify(result)}\n`);
    else printJson(result);
  } else if (!toStdout) printLine(result.image ?? result.exported ?? result.path);
}

/** `--have FILE` (or - for stdin): the receiver's have-list, checked whole. */
async function readHave(path: string): Promise<ReadonlySet<string>> {
  const { readHaveList, parseHaveList, MAX_HAVE_BYTES } = await import('../checkpoint/store/have.ts');
  if (path !== '-') return readHaveList(path);
  // Read as a stream: /dev/stdin cannot be opened when it is a socket (a pipe from node or ssh can be).
  const shown = 'the standard input (--have -)';
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin) {
    total += (chunk as Buffer).length;
    if (total > MAX_HAVE_BYTES) throw new StasisError(`${shown} is not a have-list: it is larger than ${MAX_HAVE_BYTES} bytes`, { exitCode: 2 });
    parts.push(Buffer.from(chunk as Buffer));
  }
  return parseHaveList(Buffer.concat(parts).toString('latin1'), shown);
}

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

/**
 * `--create-image docker://…`: checked (the reference, and that skopeo is
 * there) before the container is touched; the layout is written in a fresh
 * folder under the checkpoint directory and removed after the push.
 */
async function registryTarget(text: string, argv: { tlsVerify?: boolean; checkpointDir?: string }) {
  const { parseDockerRef, formatSourceRef } = await import('../image/ref.ts');
  let ref;
  try {
    ref = parseDockerRef(text);
  } catch (err) {
    throw usageError(`--create-image ${errorMessage(err)}`);
  }
  if (ref.digest !== null) throw usageError(`--create-image ${text}: a pushed image is named by a tag, not a digest`);
  if (which(process.env.STASIS_SKOPEO ?? 'skopeo') === null) {
    throw new StasisError(`--create-image ${text}: skopeo is not installed, and stasis pushes images with it`, { hint: 'install it (scripts/setup/registry.sh, or apt-get install skopeo)' });
  }
  const parent = resolve(argv.checkpointDir ?? defaultCheckpointDir());
  mkdirSync(parent, { recursive: true });
  const folder = mkdtempSync(join(parent, '.push-'));
  const { pushFromLayout } = await import('../image/skopeo.ts');
  const tag = ref.tag ?? 'latest';
  const docker = ref;
  return {
    layout: join(folder, 'layout'),
    tag,
    shown: formatSourceRef(ref),
    send: () => pushFromLayout(join(folder, 'layout'), tag, docker, { tlsVerify: argv.tlsVerify }),
    cleanup: () => rmSync(folder, { recursive: true, force: true }),
  };
}

/** Pushes the image a checkpoint wrote into its layout; the checkpoint folder stays whatever happens. */
async function pushImage(push: NonNullable<Awaited<ReturnType<typeof registryTarget>>>, id: string, checkpointPath: string): Promise<string> {
  const progress = await spinner(`${id}: pushing ${push.shown}`);
  try {
    await push.send();
    return push.shown;
  } catch (err) {
    throw new StasisError(`checkpoint ${id}: the checkpoint is in ${checkpointPath}, but pushing its image failed: ${errorMessage(err)}`, { hint: err instanceof StasisError ? err.hint : undefined });
  } finally {
    progress.stop();
  }
}

/**
 * `--base-image HOST/NAME[:TAG|@DIGEST]`: a registry reference as containerd
 * pulls it (distribution's reference grammar, roughly: lowercase path
 * components, an optional tag, an optional sha256 digest).
 */
function parseBaseImage(value: string): string {
  const ok = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/.test(value);
  if (!ok) throw usageError(`--base-image ${JSON.stringify(value)}: not a registry image reference`, 'expected HOST[:PORT]/NAME[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/busybox:1');
  return value;
}
