import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { StasisError, usageError } from '../errors.ts';
import { criuVersion as criuVersionOf, softDirtyTracking } from '../runtime/criu.ts';
import { runcMessage } from '../runtime/runc.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { viewOf } from '../runtime/view.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { OciSpec } from '../runtime/spec.ts';
import { CONFIG_FILE, IMAGES_DIR, META_FILE, SPEC_FILE, STATS_FILE, criuErrors, folderSize, readCriuStats, type CheckpointMeta } from './image.ts';
import { captureOverlayDiff, rootfsFingerprint } from './rootfs-diff.ts';
import { compressionForPath, createTar } from './tar.ts';

export interface CheckpointOptions {
  imagePath?: string;
  leaveRunning: boolean;
  exportPath?: string;
  tcpEstablished: boolean;
  extUnixSk: boolean;
  shellJob: boolean;
  fileLocks: boolean;
  preDump: boolean;
  parentPath?: string;
}

export interface CheckpointResult {
  id: string;
  path: string;
  exported: string | null;
  leftRunning: boolean;
  preDump: boolean;
  imageBytes: number;
  rootfsChanges: { files: number; deleted: number } | null;
  timingsMs: { total: number; dump: number; rootfs: number; archive: number | null };
  criu: Record<string, number> | null;
}

/** The CRIU options that restore must repeat, as runc flags. */
const RESTORE_FLAGS: [keyof CheckpointOptions, string][] = [
  ['tcpEstablished', '--tcp-established'],
  ['extUnixSk', '--ext-unix-sk'],
  ['shellJob', '--shell-job'],
  ['fileLocks', '--file-locks'],
];

function timestampName(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** Flag combinations and the kernel's abilities, checked before the container is touched. */
async function checkOptions(runtime: Runtime, opts: CheckpointOptions): Promise<void> {
  if (opts.preDump && opts.exportPath) throw usageError('--pre-dump cannot be combined with --export: a pre-dump is not restorable on its own');
  if (opts.exportPath) compressionFor(opts.exportPath);
  if (opts.parentPath !== undefined && !existsSync(join(resolve(opts.parentPath), IMAGES_DIR))) {
    throw new StasisError(`--parent-path ${opts.parentPath}: not a checkpoint folder (no ${IMAGES_DIR}/ inside)`);
  }
  if (opts.preDump || opts.parentPath !== undefined) {
    if (!(await softDirtyTracking(runtime.config.criu))) {
      const flag = opts.preDump ? '--pre-dump' : '--parent-path';
      throw new StasisError(`${flag} needs memory change tracking (soft-dirty bits), which this kernel does not provide`, {
        hint: 'take a full checkpoint without --pre-dump; `stasis doctor` shows what the kernel supports',
      });
    }
  }
}

function compressionFor(path: string): void {
  try {
    compressionForPath(path);
  } catch (err) {
    throw usageError(`--export ${path}: ${(err as Error).message}`);
  }
}

export async function checkpointContainer(
  runtime: Runtime,
  id: string,
  opts: CheckpointOptions,
  progress: (step: string) => void = () => undefined,
): Promise<CheckpointResult> {
  await checkOptions(runtime, opts);
  const started = Date.now();
  return runtime.withContainer(id, async (record) => {
    const info = viewOf(runtime.store, record);
    if (info.status !== 'running') {
      const why = info.status === 'paused' ? 'it was paused with `stasis pause`; resume it first' : `it is ${info.status}`;
      throw new StasisError(`cannot checkpoint container ${id}: ${why}`);
    }
    if (record.tty) {
      throw new StasisError(`cannot checkpoint container ${id}: it has a terminal (--tty), and runc cannot checkpoint a container with a terminal`, {
        hint: 'run the container without -t to be able to checkpoint it',
      });
    }
    if (record.stdio.mode === 'passthrough') {
      throw new StasisError(`cannot checkpoint container ${id}: its stdio is connected to files or to the terminal that started it, which CRIU cannot carry`, {
        hint: 'run it without --stdin/--stdout/--stderr, -i or -t, so its output goes to pipes the monitor holds',
      });
    }
    const now = new Date();
    const finalPath = resolve(opts.imagePath ?? join(runtime.config.checkpointDir, id, timestampName(now)));
    if (existsSync(finalPath) && readdirSync(finalPath).length > 0) {
      throw new StasisError(`--image-path ${finalPath} is not empty; a checkpoint is never written over another`, { hint: 'choose a new folder' });
    }
    mkdirSync(dirname(finalPath), { recursive: true, mode: 0o700 });
    // Written beside the final folder and renamed at the end, so that a failed
    // or interrupted dump never leaves something that looks like a checkpoint.
    const workDir = join(dirname(finalPath), `.${basename(finalPath)}.partial-${process.pid}`);
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(join(workDir, IMAGES_DIR), { recursive: true, mode: 0o700 });

    const restoreArgs = RESTORE_FLAGS.filter(([key]) => opts[key] === true).map(([, flag]) => flag);
    const leaveRunning = opts.leaveRunning || opts.preDump;
    record.checkpointing = true;
    runtime.store.write(record);
    let paused = false;
    let rootfsChanges: CheckpointResult['rootfsChanges'] = null;
    let rootfsMs = 0;
    const dumpStarted = Date.now();
    let facts: Promise<Facts> | null = null;
    try {
      // Frozen while the files are captured, so that memory and files agree.
      progress('pausing');
      await runtime.runc.call(`checkpoint ${id}: pause`, ['pause', id]);
      paused = true;
      if (record.rootfs.kind === 'overlay' && !opts.preDump) {
        progress('capturing rootfs changes');
        const rootfsStarted = Date.now();
        rootfsChanges = await captureOverlayDiff(join(record.bundle, 'upper'), workDir);
        rootfsMs = Date.now() - rootfsStarted;
      }
      progress(opts.preDump ? 'pre-dumping memory with CRIU' : 'dumping with CRIU');
      // dump() has started runc when it returns its promise. Versions and the
      // base's fingerprint do not depend on the dump: they are gathered while
      // CRIU works, not before the pause (each spawn holds up this thread).
      const dumping = dump(runtime, record, workDir, finalPath, opts, restoreArgs);
      facts = gatherFacts(runtime, record.rootfs.base);
      facts.catch(() => undefined);
      await dumping;
      if (!leaveRunning) paused = false;
      await writeMetadata(record, workDir, opts, restoreArgs, now, await facts);
      renameSync(workDir, finalPath);
    } catch (err) {
      const kept = keepLog(runtime, id, join(workDir, 'dump.log'));
      rmSync(workDir, { recursive: true, force: true });
      if (paused) await runtime.runc.raw(['resume', id]);
      record.checkpointing = false;
      runtime.store.write(record);
      throw withCriuLog(err, kept, 'checkpoint', id);
    }
    const dumpMs = Date.now() - dumpStarted - rootfsMs;
    record.checkpointing = false;
    if (leaveRunning) {
      await runtime.runc.raw(['resume', id]);
    } else {
      record.status = 'stopped';
      record.checkpointedStop = true;
      record.pid = null;
    }
    record.lastCheckpoint = { path: finalPath, at: now.toISOString() };
    runtime.store.write(record);

    let exported: string | null = null;
    let archiveMs: number | null = null;
    if (opts.exportPath) {
      progress(`writing ${opts.exportPath}`);
      const archiveStarted = Date.now();
      exported = resolve(opts.exportPath);
      try {
        await createTar(finalPath, exported);
      } catch (err) {
        throw new StasisError(`checkpoint ${id}: the checkpoint is in ${finalPath}, but exporting it failed: ${(err as Error).message}`);
      }
      archiveMs = Date.now() - archiveStarted;
    }
    runtime.journal.append('/tasks/checkpointed', id, { path: finalPath, exported, leftRunning: leaveRunning, preDump: opts.preDump });
    return {
      id,
      path: finalPath,
      exported,
      leftRunning: leaveRunning,
      preDump: opts.preDump,
      imageBytes: folderSize(finalPath),
      rootfsChanges,
      timingsMs: { total: Date.now() - started, dump: dumpMs, rootfs: rootfsMs, archive: archiveMs },
      // writeMetadata copied CRIU's stats-dump next to the images.
      criu: readCriuStats(join(finalPath, STATS_FILE)),
    };
  });
}

async function dump(
  runtime: Runtime,
  record: ContainerRecord,
  workDir: string,
  finalPath: string,
  opts: CheckpointOptions,
  restoreArgs: string[],
): Promise<void> {
  const args = ['checkpoint', '--image-path', join(workDir, IMAGES_DIR), '--work-path', workDir];
  if (opts.leaveRunning && !opts.preDump) args.push('--leave-running');
  if (opts.preDump) args.push('--pre-dump');
  if (opts.parentPath !== undefined) {
    // CRIU wants the parent relative to the images folder; workDir and
    // finalPath are siblings, so the relative path holds after the rename.
    args.push('--parent-path', relative(join(finalPath, IMAGES_DIR), join(resolve(opts.parentPath), IMAGES_DIR)));
  }
  args.push(...restoreArgs, record.id);
  const result = await runtime.runc.raw(args, { timeout: 600_000 });
  if (result.exitCode !== 0) {
    throw new StasisError(`runc checkpoint failed: ${runcMessage(result.stderr)}`);
  }
}

interface Facts {
  runcVersion: string;
  criuVersion: string;
  fingerprint: string;
}

async function gatherFacts(runtime: Runtime, base: string): Promise<Facts> {
  const [runcVersion, criuVersion, fingerprint] = await Promise.all([
    runtime.runc.version(),
    criuVersionOf(runtime.config.criu).then((v) => v ?? 'unknown'),
    rootfsFingerprint(base),
  ]);
  return { runcVersion, criuVersion, fingerprint };
}

async function writeMetadata(
  record: ContainerRecord,
  workDir: string,
  opts: CheckpointOptions,
  restoreArgs: string[],
  now: Date,
  facts: Facts,
): Promise<void> {
  const spec = JSON.parse(readFileSync(join(record.bundle, 'config.json'), 'utf8')) as OciSpec;
  // checkpointctl shows this annotation as the container's name (its engine column says containerd for any
  // manager but podman's and CRI-O's; we do not pretend to be either).
  spec.annotations = { ...spec.annotations, 'io.kubernetes.cri.container-name': record.id };
  writeFileSync(join(workDir, SPEC_FILE), `${JSON.stringify(spec, null, 2)}\n`);
  const meta: CheckpointMeta = {
    format: 1,
    id: record.id,
    checkpointedAt: now.toISOString(),
    runcVersion: facts.runcVersion,
    criuVersion: facts.criuVersion,
    rootfs: {
      kind: record.rootfs.kind,
      base: record.rootfs.base,
      fingerprint: facts.fingerprint,
      userBundle: record.rootfs.userBundle,
    },
    restoreArgs,
    criuOptions: restoreArgs.map((flag) => flag.replace(/^--/, '')),
    preDump: opts.preDump,
    parentPath: opts.parentPath === undefined ? null : resolve(opts.parentPath),
    command: record.command,
    labels: record.labels,
  };
  writeFileSync(join(workDir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
  // podman's container config, reduced to what checkpointctl shows.
  const config = {
    id: record.id,
    name: record.id,
    rootfsImageName: record.rootfs.base,
    rootfsImageRef: meta.rootfs.fingerprint,
    rootfsImage: record.rootfs.base,
    createdTime: record.createdAt,
    checkpointedTime: meta.checkpointedAt,
    restored: record.restoredFrom !== null,
    runtime: 'runc',
  };
  writeFileSync(join(workDir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  const stats = join(workDir, IMAGES_DIR, STATS_FILE);
  if (existsSync(stats)) copyFileSync(stats, join(workDir, STATS_FILE));
}

/** Keeps CRIU's log of a failed operation in the state dir's logs/ folder. */
export function keepLog(runtime: Runtime, id: string, logPath: string): string | null {
  if (!existsSync(logPath)) return null;
  const kept = join(runtime.store.paths.logs, `${id}-${basename(logPath, '.log')}-${timestampName(new Date())}.log`);
  try {
    mkdirSync(runtime.store.paths.logs, { recursive: true, mode: 0o700 });
    copyFileSync(logPath, kept);
    return kept;
  } catch {
    return null;
  }
}

/** Adds the CRIU log's name and its last error lines to a failure. */
export function withCriuLog(err: unknown, logPath: string | null, what: string, id: string): StasisError {
  // runc names CRIU's log where it was written (a folder now removed): we name the kept copy.
  const base = (err instanceof StasisError ? err.message : String((err as Error)?.message ?? err)).replace(/\s*log file: \S+/g, '');
  if (logPath === null) return new StasisError(`${what} ${id} failed: ${base}`, { hint: err instanceof StasisError ? err.hint : undefined });
  const lines = criuErrors(logPath);
  const quoted = lines.length > 0 ? `\n${lines.map((l) => `  ${l}`).join('\n')}` : '';
  return new StasisError(`${what} ${id} failed: ${base}\nCRIU log: ${logPath}${quoted}`, {
    hint: err instanceof StasisError ? err.hint : undefined,
  });
}
