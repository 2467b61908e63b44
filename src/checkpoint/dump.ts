import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { StasisError, errorMessage } from '../errors.ts';
import { criuOptionNames, criuVersion, runcCriuFlags, softDirtyTracking } from '../runtime/criu.ts';
import { runcMessage } from '../runtime/runc.ts';
import type { RunResult } from '../host/spawn.ts';
import type { CheckpointHost, CheckpointOptions, CheckpointResult, Progress } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import { keepLog, withCriuLog } from './criu/log.ts';
import { timestampName } from '../host/clock.ts';
import { IMAGES_DIR, LOG_FILE, STATS_FILE, baseImageOf, engineImageName, folderSize, writeMetadata, type Provenance } from './format/layout.ts';
import { readCriuStats } from './criu/stats.ts';
import { baseFilesInUse, captureOverlayDiff, hashBaseFiles, rootfsFingerprint } from './rootfs-diff.ts';
import { ENGINE_FILES_DIR, SHM_TAR } from './format/engine-files.ts';
import { ROOTFS_FILES, exportTarget, exportToFile, exportToStream, type ExportTarget } from './archive/export.ts';
import { checkImageTarget, writeCheckpointImage } from './oci/image.ts';
import { signCheckpoint } from './policy/signature.ts';
import { createTar } from './archive/tar.ts';
import { captureVolumes } from './volumes.ts';

// A checkpoint, as containerd's first one did it: freeze the container, take
// its writable layer and spec with the memory, dump with CRIU through runc,
// and put CRIU's log in the error when that fails.

/** The kernel's abilities, the parent image and the image's target, checked before the container is touched. */
async function checkPreconditions(host: CheckpointHost, opts: CheckpointOptions): Promise<void> {
  if (opts.createImage !== undefined) {
    try {
      checkImageTarget(opts.createImage);
    } catch (err) {
      throw new StasisError(errorMessage(err), { code: 'bad-image-target' });
    }
  }
  if (opts.parentPath !== undefined && !existsSync(join(resolve(opts.parentPath), IMAGES_DIR))) {
    throw new StasisError(`the parent checkpoint ${opts.parentPath} is not a checkpoint folder (no ${IMAGES_DIR}/ inside)`, { code: 'bad-parent' });
  }
  if ((opts.preDump || opts.parentPath !== undefined) && !(await softDirtyTracking(host.criu))) {
    throw new StasisError(`${opts.preDump ? 'a pre-dump' : 'a checkpoint on top of a parent'} needs memory change tracking (soft-dirty bits), which this kernel does not provide`, {
      hint: 'take a full checkpoint instead; `stasis doctor` shows what the kernel supports',
      code: 'no-soft-dirty',
    });
  }
}

/** Why a container cannot be checkpointed as it is, or null. */
function refusal(host: CheckpointHost, record: ContainerRecord): StasisError | null {
  const status = host.statusOf(record);
  if (status !== 'running') {
    const why = status === 'paused' ? 'it was paused with `stasis pause`; resume it first' : `it is ${status}`;
    return new StasisError(`cannot checkpoint container ${record.id}: ${why}`);
  }
  if (record.tty) {
    return new StasisError(`cannot checkpoint container ${record.id}: it has a terminal, and runc cannot checkpoint a container with a terminal`, {
      code: 'tty',
    });
  }
  if (record.stdio.mode === 'passthrough') {
    return new StasisError(`cannot checkpoint container ${record.id}: its stdio is connected to files or to the terminal that started it, which CRIU cannot carry`, {
      code: 'stdio-passthrough',
    });
  }
  return null;
}

/** The image folder: the one asked for (which must be empty), or a new one under the checkpoint dir. */
function imageFolder(host: CheckpointHost, id: string, opts: CheckpointOptions, now: Date): string {
  if (opts.imagePath !== undefined) {
    const path = resolve(opts.imagePath);
    if (existsSync(path) && readdirSync(path).length > 0) {
      throw new StasisError(`${path} is not empty; a checkpoint is never written over another`, { hint: 'choose a new folder', code: 'image-path-not-empty' });
    }
    return path;
  }
  const base = join(host.checkpointDir, id, timestampName(now));
  // Two checkpoints in the same millisecond still get folders of their own.
  let path = base;
  for (let n = 1; existsSync(path); n++) path = `${base}-${n}`;
  return path;
}

async function provenanceOf(host: CheckpointHost, fingerprint: string): Promise<Provenance> {
  const [runcVersion, criu] = await Promise.all([host.runcVersion(), criuVersion(host.criu)]);
  return { runcVersion, criuVersion: criu ?? 'unknown', fingerprint };
}

export async function checkpointContainer(
  host: CheckpointHost,
  id: string,
  opts: CheckpointOptions,
  progress: Progress = () => undefined,
): Promise<CheckpointResult> {
  await checkPreconditions(host, opts);
  return host.withContainer(id, (record) => checkpointHeld(host, record, opts, progress));
}

/** What a checkpoint does once it holds the container's lock (migrate holds it longer, around the move). */
export async function checkpointHeld(
  host: CheckpointHost,
  record: ContainerRecord,
  opts: CheckpointOptions,
  progress: Progress = () => undefined,
): Promise<CheckpointResult> {
  const started = Date.now();
  const id = record.id;
  const refused = refusal(host, record);
  if (refused) throw refused;
  const now = new Date();
  const finalPath = imageFolder(host, id, opts, now);
  // Where the archive goes is settled before anything is done, so a bad name changes nothing.
  const exportTo: ExportTarget | null = opts.exportPath === undefined ? null : exportTarget(opts.exportPath, id, opts.compression, now);
  mkdirSync(dirname(finalPath), { recursive: true, mode: 0o700 });
  // Written beside the final folder and renamed at the end, so that a failed
  // or interrupted dump never leaves something that looks like a checkpoint.
  const workDir = join(dirname(finalPath), `.${basename(finalPath)}.partial-${process.pid}`);
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(join(workDir, IMAGES_DIR), { recursive: true, mode: 0o700 });
  // CRIU opens some images as the task it restores, a non-root user of a user namespace (redis,
  // postgres): "Unable to open timens-0.img: Permission denied" unless it may search this folder.
  chmodSync(join(workDir, IMAGES_DIR), 0o711);

  const restoreArgs = runcCriuFlags(criuOptionNames(opts));
  const leaveRunning = opts.leaveRunning || opts.preDump;
  const metaOpts: Parameters<typeof writeMetadata>[2] = {
    preDump: opts.preDump,
    parentPath: opts.parentPath,
    restoreArgs,
    criuOptions: restoreArgs.map((flag) => flag.replace(/^--/, '')),
    checkpointedAt: now,
  };
  record.checkpointing = true;
  record.checkpointWork = { workDir, finalPath, leaveRunning, at: now.toISOString() };
  host.saveRecord(record);
  let frozen = false;
  let dumped = false;
  let rootfsChanges: CheckpointResult['rootfsChanges'] = null;
  let rootfsMs = 0;
  let versions: Provenance | null = null;
  let pagesServed: Promise<RunResult> | null = null;
  let resultPath = finalPath;
  const dumpStarted = Date.now();
  // Each runc this starts is noted in the record before it can act (see RunOptions.gate): a
  // recovery after a kill waits for that exact process, or knows that none ran.
  const noteStart = (step: 'pause' | 'dump') => (started: { pid: number; startTime: number }) => {
    record.checkpointWork = { ...record.checkpointWork!, started: { step, pid: started.pid, startTime: started.startTime } };
    host.saveRecord(record);
  };
  try {
    // Frozen while the files are captured, so that memory and files agree.
    progress('pausing');
    await host.freeze(id, noteStart('pause'));
    frozen = true;
    if (record.rootfs.kind === 'overlay' && !opts.preDump) {
      progress('capturing rootfs changes');
      const rootfsStarted = Date.now();
      rootfsChanges = await captureOverlayDiff(join(record.bundle, 'upper'), workDir);
      rootfsMs = Date.now() - rootfsStarted;
    }
    // A /dev/shm that restore made for another engine's container is a bind
    // mount, which CRIU leaves out as external: its files are carried as podman carries them.
    if (!opts.preDump) await captureShm(record.bundle, workDir);
    // A volume's files are not in CRIU's images: what leaves this host carries them, taken while frozen.
    if (!opts.preDump && (record.volumes ?? []).length > 0) {
      const leaves = exportTo !== null || opts.exportStream !== undefined || opts.createImage !== undefined || opts.stayFrozen === true;
      progress(leaves && !opts.ignoreVolumes ? 'capturing the volumes' : 'recording the volumes');
      metaOpts.volumes = await captureVolumes(record.volumes ?? [], workDir, leaves && !opts.ignoreVolumes);
    }
    // The base's files the processes use: a restore elsewhere must find them unchanged.
    const inUse = record.rootfs.kind === 'overlay' && !opts.preDump
      ? baseFilesInUse(host.containerPids(id), join(record.bundle, 'rootfs'), join(record.bundle, 'upper'))
      : [];
    // The metadata is written before the dump, so that a dump which
    // finishes is restorable even if stasis dies right after it.
    const fingerprint = await rootfsFingerprint(record.rootfs.base);
    writeMetadata(record, workDir, metaOpts, { runcVersion: 'unknown', criuVersion: 'unknown', fingerprint });
    progress(opts.preDump ? 'pre-dumping memory with CRIU' : opts.lazyPort !== undefined ? 'dumping all but the memory with CRIU' : 'dumping with CRIU');
    let onReady = () => undefined as void;
    const ready = new Promise<null>((resolve) => (onReady = () => resolve(null)));
    const dumping = host.dump(id, {
      lazy: opts.lazyPort === undefined ? undefined : { port: opts.lazyPort, onReady: () => onReady() },
      imagesDir: join(workDir, IMAGES_DIR),
      workDir,
      leaveRunning: opts.leaveRunning,
      preDump: opts.preDump,
      // CRIU wants the parent relative to the images folder; workDir and
      // finalPath are siblings, so the relative path holds after the rename.
      parentPath: opts.parentPath === undefined ? undefined : relative(join(finalPath, IMAGES_DIR), join(resolve(opts.parentPath), IMAGES_DIR)),
      criuFlags: restoreArgs,
      gate: noteStart('dump'),
    });
    // The versions and the base files' hashes do not depend on the dump: done while CRIU works.
    const provenance = provenanceOf(host, fingerprint);
    provenance.catch(() => undefined);
    const baseFiles = hashBaseFiles(record.rootfs.base, inUse);
    if (opts.lazyPort !== undefined) {
      // Post-copy: everything but the pages is written once runc says so; CRIU serves the pages until they are pulled.
      const exited = await Promise.race([ready, dumping]);
      if (exited !== null) throw new StasisError(`runc checkpoint failed: ${runcMessage(exited.stderr)}`);
      pagesServed = dumping;
      versions = await provenance;
      writeMetadata(record, workDir, metaOpts, { ...versions, baseFiles });
      signCheckpoint(host.stateRoot, workDir);
      copyLog(host, id, workDir);
      // Not renamed: CRIU still writes its log there.
      resultPath = workDir;
    } else {
      const result = await dumping;
      if (result.exitCode !== 0) throw new StasisError(`runc checkpoint failed: ${runcMessage(result.stderr)}`);
      dumped = true;
      if (!leaveRunning) frozen = false;
      versions = await provenance;
      writeMetadata(record, workDir, metaOpts, { ...versions, baseFiles });
      signCheckpoint(host.stateRoot, workDir);
      if (!opts.preDump) copyLog(host, id, workDir);
      renameSync(workDir, finalPath);
    }
  } catch (err) {
    if (dumped && !leaveRunning) {
      // CRIU has stopped the container: the dump is all there is of it. It
      // stays where it is, marked, and the next command that takes the
      // container (any of them) finishes the checkpoint.
      throw new StasisError(`checkpoint ${id}: the dump is complete in ${workDir}, but finishing it failed: ${errorMessage(err)}`, {
        hint: `free what was short (disk space?), then run any command on it, e.g. \`stasis info ${id}\`, to finish the checkpoint`,
      });
    }
    const kept = keepLog(host.logsDir, id, join(workDir, 'dump.log'));
    rmSync(workDir, { recursive: true, force: true });
    let thawFailure = '';
    if (frozen) {
      thawFailure = await host.thaw(id).then(() => '', (thawErr: unknown) => `; the container is still frozen: ${errorMessage(thawErr)}`);
    }
    record.checkpointing = false;
    record.checkpointWork = null;
    if (thawFailure) record.status = 'paused';
    host.saveRecord(record);
    throw withCriuLog(thawFailure ? new StasisError(`${errorMessage(err)}${thawFailure}`) : err, kept, 'checkpoint', id);
  }
  const dumpMs = Date.now() - dumpStarted - rootfsMs;
  record.checkpointing = false;
  record.checkpointWork = null;
  record.lastCheckpoint = { path: resultPath, at: now.toISOString() };
  if (!leaveRunning) {
    record.status = 'stopped';
    record.checkpointedStop = true;
    record.pid = null;
  }
  let thawError: unknown = null;
  if (opts.stayFrozen) {
    // migrate: frozen until the destination has it (then killed) or has failed (then thawed).
    record.status = 'paused';
  } else if (leaveRunning) {
    await host.thaw(id).catch((err: unknown) => {
      thawError = err;
      record.status = 'paused';
    });
  }
  host.saveRecord(record);
  if (thawError !== null) {
    throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but the container could not be thawed and is still frozen: ${errorMessage(thawError)}`, {
      hint: `try \`stasis resume ${id}\``,
    });
  }

  let exported: string | null = null;
  let archiveMs: number | null = null;
  const exclude = opts.ignoreRootfs ? ROOTFS_FILES : [];
  if (exportTo !== null || opts.exportStream !== undefined) {
    progress(`writing ${exportTo?.file ?? 'the archive'}`);
    const archiveStarted = Date.now();
    try {
      if (exportTo !== null) {
        await exportToFile(finalPath, exportTo, exclude);
        exported = exportTo.file;
      } else {
        await exportToStream(finalPath, opts.exportStream!, opts.compression ?? 'zstd', exclude);
        exported = '-';
      }
    } catch (err) {
      throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but exporting it failed: ${errorMessage(err)}`);
    }
    archiveMs = Date.now() - archiveStarted;
  }
  let image: string | null = null;
  if (opts.createImage !== undefined) {
    progress(`writing the image ${opts.createImage}`);
    const baseImage = record.rootfs.kind === 'overlay' ? baseImageOf(record.rootfs.base) : null;
    try {
      const written = await writeCheckpointImage(finalPath, opts.createImage, {
        facts: {
          containerName: id,
          rootfsImageName: opts.podmanImage?.name ?? opts.baseImage ?? (baseImage ? engineImageName(baseImage) : record.rootfs.base),
          rootfsImageId: opts.podmanImage?.id ?? baseImage?.configDigest,
          rootfsImageDigest: baseImage?.digest,
          criuVersion: versions?.criuVersion,
          runtimeVersion: versions?.runcVersion,
        },
        podman: opts.podmanImage ? { imageName: opts.podmanImage.name, imageId: opts.podmanImage.id } : undefined,
        cri: opts.baseImage ? { image: opts.baseImage, containerName: id } : undefined,
        exclude,
        created: now,
      });
      image = written.ref;
    } catch (err) {
      throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but writing the image failed: ${errorMessage(err)}`);
    }
  }
  // A move records its checkpoint when it is done, with the destination.
  if (!opts.stayFrozen) host.journal.append('/tasks/checkpointed', id, { path: finalPath, exported, image, leftRunning: leaveRunning, preDump: opts.preDump });
  return {
    id,
    path: resultPath,
    exported,
    image,
    leftRunning: leaveRunning,
    preDump: opts.preDump,
    imageBytes: folderSize(resultPath),
    rootfsChanges,
    timingsMs: { total: Date.now() - started, dump: dumpMs, rootfs: rootfsMs, archive: archiveMs },
    criu: readCriuStats(join(resultPath, STATS_FILE)),
    pagesServed: pagesServed ?? undefined,
  };
}

/**
 * The container's captured output so far, beside CRIU's images: an export,
 * a copy of the folder or a move carries it, and `stasis logs` after a
 * restore under another ID or in another state directory shows what ran
 * before (in place, the container's own log goes on).
 */
function copyLog(host: CheckpointHost, id: string, workDir: string): void {
  const log = join(host.containerDir(id), 'ctr.log');
  if (existsSync(log)) copyFileSync(log, join(workDir, LOG_FILE));
}

/**
 * podman's devshm-checkpoint.tar, for a container whose /dev/shm is a bind
 * of a folder restore made in its engine-files (a container restored from
 * another engine's checkpoint): CRIU does not dump an external mount's files.
 */
async function captureShm(bundleDir: string, workDir: string): Promise<void> {
  let mounts: unknown;
  try {
    mounts = (JSON.parse(readFileSync(join(bundleDir, 'config.json'), 'utf8')) as { mounts?: unknown }).mounts;
  } catch {
    return;
  }
  const shm = Array.isArray(mounts)
    ? (mounts as { destination?: unknown; source?: unknown }[]).find((m) => m.destination === '/dev/shm' && typeof m.source === 'string' && m.source === join(bundleDir, ENGINE_FILES_DIR, 'shm'))
    : undefined;
  if (shm && existsSync(shm.source as string) && readdirSync(shm.source as string).length > 0) await createTar(shm.source as string, join(workDir, SHM_TAR), 'none');
}
