import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { StasisError, errorMessage } from '../errors.ts';
import { criuOptionNames, criuVersion, runcCriuFlags, softDirtyTracking } from '../runtime/criu.ts';
import { runcMessage } from '../runtime/runc.ts';
import type { RunResult } from '../host/spawn.ts';
import type { CheckpointHost, CheckpointOptions, CheckpointResult, Progress } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import { keepLog, withCriuLog } from './criu/log.ts';
import { timestampName } from '../host/clock.ts';
import { networkLockGuardsNothing } from '../runtime/criu-config.ts';
import { IMAGES_DIR, LOG_FILE, STATS_FILE, folderSize, writeMetadata, type Provenance } from './format/layout.ts';
import { readCriuStats } from './criu/stats.ts';
import { baseFilesInUse, captureOverlayDiff, hashBaseFiles, rootfsFingerprint } from './rootfs-diff.ts';
import { exportTarget, type ExportTarget } from './archive/export.ts';
import { checkImageTarget } from './oci/image.ts';
import { writeOutputs } from './outputs.ts';
import { signCheckpoint } from './policy/signature.ts';
import { captureShm, captureVolumes } from './volumes.ts';

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

/** A checkpoint under way: where it is written, and how far it got (what its one undo path reads). */
interface Work {
  id: string;
  now: Date;
  finalPath: string;
  /** Written here and renamed to finalPath at the end: a failed or interrupted dump never looks like a checkpoint. */
  workDir: string;
  exportTo: ExportTarget | null;
  restoreArgs: string[];
  leaveRunning: boolean;
  metaOpts: Parameters<typeof writeMetadata>[2];
  /** The container is frozen by this checkpoint (thawed on failure). */
  frozen: boolean;
  /** CRIU finished and stopped the container: the dump is all there is of it. */
  dumped: boolean;
}

/** What CRIU left: the checkpoint's folder, and for post-copy what serves its pages. */
interface Dumped {
  path: string;
  versions: Provenance | null;
  pagesServed: Promise<RunResult> | null;
  rootfsChanges: CheckpointResult['rootfsChanges'];
  rootfsMs: number;
}

/**
 * What a checkpoint does once it holds the container's lock (migrate holds
 * it longer, around the move), as steps: begin (folders, the record marked),
 * capture while frozen, dump with CRIU, settle the record, write what leaves
 * the host. A failure before the record is settled goes through one undo.
 */
export async function checkpointHeld(
  host: CheckpointHost,
  record: ContainerRecord,
  opts: CheckpointOptions,
  progress: Progress = () => undefined,
): Promise<CheckpointResult> {
  try {
    return await checkpointOnce(host, record, opts, progress);
  } catch (err) {
    // CRIU gives up on a task it cannot stop within its timeout: one caught in an uninterruptible
    // wait just then (seen under the cgroup v1 freezer; CRIU #423). The attempt was undone and the
    // container thawed, so it is taken once more, from the start. (Not a post-copy dump, whose
    // page server the move set up for one.)
    if (opts.lazyPort !== undefined || !(err instanceof StasisError) || !SEIZE_TIMED_OUT.test(err.message) || record.status !== 'running') throw err;
    progress('CRIU could not stop every task in time: once more');
    return await checkpointOnce(host, record, opts, progress);
  }
}

/** CRIU's words when it could not stop (seize) every task before its timeout. */
const SEIZE_TIMED_OUT = /Timeout reached\. Try to interrupt|Unseizable non-zombie/;

async function checkpointOnce(host: CheckpointHost, record: ContainerRecord, opts: CheckpointOptions, progress: Progress): Promise<CheckpointResult> {
  const started = Date.now();
  const refused = refusal(host, record);
  if (refused) throw refused;
  const work = beginCheckpoint(host, record, opts);
  const dumpStarted = Date.now();
  let dumped: Dumped;
  try {
    dumped = await dumpFrozen(host, record, opts, work, progress);
  } catch (err) {
    throw await undoCheckpoint(host, record, work, err);
  }
  const dumpMs = Date.now() - dumpStarted - dumped.rootfsMs;
  await settleRecord(host, record, opts, work, dumped.path);
  const { exported, image, archiveMs, exportChunks } = await writeOutputs(record, opts, work, dumped.versions, progress);
  // Not during a move: the container is frozen until the other side has it (the next store command indexes it).
  const store = opts.stayFrozen ? null : await keepInStore(host, dumped.path, progress);
  // A move records its checkpoint when it is done, with the destination.
  if (!opts.stayFrozen) host.journal.append('/tasks/checkpointed', work.id, { path: work.finalPath, exported, image, leftRunning: work.leaveRunning, preDump: opts.preDump });
  return {
    id: work.id,
    path: dumped.path,
    exported,
    image,
    // Only with --have: the result of every other checkpoint is as it was.
    ...(exportChunks === null ? {} : { exportChunks }),
    leftRunning: work.leaveRunning,
    preDump: opts.preDump,
    imageBytes: folderSize(dumped.path),
    rootfsChanges: dumped.rootfsChanges,
    timingsMs: { total: Date.now() - started, dump: dumpMs, rootfs: dumped.rootfsMs, archive: archiveMs, store: store?.ms ?? null },
    criu: readCriuStats(join(dumped.path, STATS_FILE)),
    pagesServed: dumped.pagesServed ?? undefined,
    store: store?.report ?? null,
  };
}

/**
 * A checkpoint kept under the checkpoint directory goes into the store
 * (store/store.ts): hashed, and the container's older checkpoints packed.
 * The checkpoint is whole before this: a failure here is reported, not thrown.
 */
async function keepInStore(host: CheckpointHost, path: string, progress: Progress): Promise<{ ms: number; report: NonNullable<CheckpointResult['store']> } | null> {
  if (dirname(dirname(path)) !== resolve(host.checkpointDir)) return null;
  const started = Date.now();
  progress('indexing the checkpoint in the store');
  try {
    const { keepCheckpoint } = await import('./store/store.ts');
    const kept = await keepCheckpoint(host.checkpointDir, path);
    return { ms: Date.now() - started, report: { hashMs: kept.hashMs, packed: kept.packed, chunkBytesWritten: kept.chunkBytes, error: null } };
  } catch (err) {
    return { ms: Date.now() - started, report: { hashMs: 0, packed: [], chunkBytesWritten: 0, error: errorMessage(err) } };
  }
}

/** Settles where the checkpoint goes (a bad name changes nothing), makes its work folder, and marks the record. */
function beginCheckpoint(host: CheckpointHost, record: ContainerRecord, opts: CheckpointOptions): Work {
  const id = record.id;
  const now = new Date();
  const finalPath = imageFolder(host, id, opts, now);
  const exportTo: ExportTarget | null = opts.exportPath === undefined ? null : exportTarget(opts.exportPath, id, opts.compression, now);
  mkdirSync(dirname(finalPath), { recursive: true, mode: 0o700 });
  const workDir = join(dirname(finalPath), `.${basename(finalPath)}.partial-${process.pid}`);
  const restoreArgs = runcCriuFlags(criuOptionNames(opts));
  const leaveRunning = opts.leaveRunning || opts.preDump;
  const metaOpts: Work['metaOpts'] = {
    preDump: opts.preDump,
    parentPath: opts.parentPath,
    restoreArgs,
    criuOptions: restoreArgs.map((flag) => flag.replace(/^--/, '')),
    checkpointedAt: now,
  };
  // The record names the work folder before it exists: a kill between the two leaves nothing unnamed.
  record.checkpointing = true;
  record.checkpointWork = { workDir, finalPath, leaveRunning, at: now.toISOString() };
  host.saveRecord(record);
  try {
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(join(workDir, IMAGES_DIR), { recursive: true, mode: 0o700 });
    // CRIU opens some images as the task it restores, a non-root user of a user namespace (redis,
    // postgres): "Unable to open timens-0.img: Permission denied" unless it may search this folder.
    chmodSync(join(workDir, IMAGES_DIR), 0o711);
  } catch (err) {
    rmSync(workDir, { recursive: true, force: true });
    record.checkpointing = false;
    record.checkpointWork = null;
    host.saveRecord(record);
    throw err;
  }
  return { id, now, finalPath, workDir, exportTo, restoreArgs, leaveRunning, metaOpts, frozen: false, dumped: false };
}

/** Freezes the container, captures what CRIU does not (layer, /dev/shm, volumes, metadata), and dumps it. */
async function dumpFrozen(host: CheckpointHost, record: ContainerRecord, opts: CheckpointOptions, work: Work, progress: Progress): Promise<Dumped> {
  const { id, workDir, finalPath, metaOpts } = work;
  // Each runc this starts is noted in the record before it can act (see RunOptions.gate): a
  // recovery after a kill waits for that exact process, or knows that none ran.
  const noteStart = (step: 'pause' | 'dump') => (started: { pid: number; startTime: number }) => {
    record.checkpointWork = { ...record.checkpointWork!, started: { step, pid: started.pid, startTime: started.startTime } };
    host.saveRecord(record);
  };
  // Looked at before the freeze (a scan of /proc), so that it costs the frozen container nothing.
  const skipNetworkLock = networkLockGuardsNothing(record.pid, host.containerPids(id), work.restoreArgs);
  // Frozen while the files are captured, so that memory and files agree.
  progress('pausing');
  await host.freeze(id, noteStart('pause'));
  work.frozen = true;
  let rootfsChanges: CheckpointResult['rootfsChanges'] = null;
  let rootfsMs = 0;
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
    const leaves = work.exportTo !== null || opts.exportStream !== undefined || opts.createImage !== undefined || opts.stayFrozen === true;
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
  opts.onDumping?.(workDir);
  const dumping = host.dump(id, {
    lazy: opts.lazyPort === undefined ? undefined : { port: opts.lazyPort, onReady: () => onReady() },
    pageServer: opts.pageServerPort,
    imagesDir: join(workDir, IMAGES_DIR),
    workDir,
    leaveRunning: opts.leaveRunning,
    preDump: opts.preDump,
    // CRIU wants the parent relative to the images folder; workDir and
    // finalPath are siblings, so the relative path holds after the rename.
    parentPath: opts.parentPath === undefined ? undefined : relative(join(finalPath, IMAGES_DIR), join(resolve(opts.parentPath), IMAGES_DIR)),
    criuFlags: work.restoreArgs,
    gate: noteStart('dump'),
    skipNetworkLock,
  });
  // The versions and the base files' hashes do not depend on the dump: done while CRIU works.
  const provenance = provenanceOf(host, fingerprint);
  provenance.catch(() => undefined);
  const baseFiles = hashBaseFiles(record.rootfs.base, inUse);
  if (opts.lazyPort !== undefined) {
    // Post-copy: everything but the pages is written once runc says so; CRIU serves the pages until they are pulled.
    const exited = await Promise.race([ready, dumping]);
    if (exited !== null) throw new StasisError(`runc checkpoint failed: ${runcMessage(exited.stderr)}`);
    const versions = await provenance;
    writeMetadata(record, workDir, metaOpts, { ...versions, baseFiles });
    signCheckpoint(host.stateRoot, workDir);
    copyLog(host, id, workDir);
    // Not renamed: CRIU still writes its log there.
    return { path: workDir, versions, pagesServed: dumping, rootfsChanges, rootfsMs };
  }
  const result = await dumping;
  if (result.exitCode !== 0) throw new StasisError(`runc checkpoint failed: ${runcMessage(result.stderr)}`);
  work.dumped = true;
  if (!work.leaveRunning) work.frozen = false;
  const versions = await provenance;
  writeMetadata(record, workDir, metaOpts, { ...versions, baseFiles });
  signCheckpoint(host.stateRoot, workDir);
  if (!opts.preDump) copyLog(host, id, workDir);
  renameSync(workDir, finalPath);
  return { path: finalPath, versions, pagesServed: null, rootfsChanges, rootfsMs };
}

/**
 * The one undo of a checkpoint that failed before it was settled: the work
 * folder goes (CRIU's log kept), the container is thawed and the record is
 * as before. Once CRIU has stopped the container the dump is all there is of
 * it: it stays, marked, for the next command to finish. Returns the error to throw.
 */
async function undoCheckpoint(host: CheckpointHost, record: ContainerRecord, work: Work, err: unknown): Promise<StasisError> {
  const { id, workDir } = work;
  if (work.dumped && !work.leaveRunning) {
    return new StasisError(`checkpoint ${id}: the dump is complete in ${workDir}, but finishing it failed: ${errorMessage(err)}`, {
      hint: `free what was short (disk space?), then run any command on it, e.g. \`stasis info ${id}\`, to finish the checkpoint`,
    });
  }
  const kept = keepLog(host.logsDir, id, join(workDir, 'dump.log'));
  rmSync(workDir, { recursive: true, force: true });
  let thawFailure = '';
  if (work.frozen) {
    thawFailure = await host.thaw(id).then(() => '', (thawErr: unknown) => `; the container is still frozen: ${errorMessage(thawErr)}`);
  }
  record.checkpointing = false;
  record.checkpointWork = null;
  if (thawFailure) record.status = 'paused';
  host.saveRecord(record);
  return withCriuLog(thawFailure ? new StasisError(`${errorMessage(err)}${thawFailure}`) : err, kept, 'checkpoint', id);
}

/** The record after the dump: stopped by its checkpoint, running again (thawed), or paused for a move. */
async function settleRecord(host: CheckpointHost, record: ContainerRecord, opts: CheckpointOptions, work: Work, path: string): Promise<void> {
  record.checkpointing = false;
  record.checkpointWork = null;
  record.lastCheckpoint = { path, at: work.now.toISOString() };
  if (!work.leaveRunning) {
    record.status = 'stopped';
    record.checkpointedStop = true;
    record.pid = null;
  }
  let thawError: unknown = null;
  if (opts.stayFrozen) {
    // migrate: frozen until the destination has it (then killed) or has failed (then thawed).
    record.status = 'paused';
  } else if (work.leaveRunning) {
    await host.thaw(work.id).catch((err: unknown) => {
      thawError = err;
      record.status = 'paused';
    });
  }
  host.saveRecord(record);
  if (thawError !== null) {
    throw new StasisError(`checkpoint ${work.id}: the checkpoint is in ${work.finalPath}, but the container could not be thawed and is still frozen: ${errorMessage(thawError)}`, {
      hint: `try \`stasis resume ${work.id}\``,
    });
  }
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
