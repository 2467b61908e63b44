import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StasisError, usageError } from '../errors.ts';
import { bundleBase, checkRootfsDir } from '../runtime/create-plan.ts';
import type { ProvisionPlan, Runtime } from '../runtime/runtime.ts';
import type { ContainerRecord } from '../state/store.ts';
import { parseMountFlag } from '../runtime/mounts.ts';
import type { OciSpec } from '../runtime/spec.ts';
import { viewOf, type ContainerInfo } from '../runtime/view.ts';
import { DELETED_FILES, DIFF_TAR, applyDeletions, rootfsFingerprint } from './rootfs-diff.ts';
import { IMAGES_DIR, SPEC_FILE, readCriuStats, readMeta, type CheckpointMeta } from './image.ts';
import { extractTar, readTarEntries, checkEntriesSafe } from './tar.ts';
import { keepLog, withCriuLog } from './checkpoint.ts';

export interface RestoreOptions {
  /** Folder or archive; default: the latest checkpoint of this ID. */
  checkpoint?: string;
  rootfs?: string;
  bundle?: string;
  /** --rootfs-mount flags: mounted on the bundle's rootfs before the restore (bundle checkpoints only). */
  rootfsMounts?: string[];
  labels?: Record<string, string>;
}

export interface RestoreResult {
  container: ContainerInfo;
  checkpoint: string;
  inPlace: boolean;
  timingsMs: { total: number; unpack: number | null; restore: number };
  criu: Record<string, number> | null;
}

/** The newest checkpoint of `id`: the one its record names, else the newest under the checkpoint dir. */
export function latestCheckpoint(runtime: Runtime, id: string, record: ContainerRecord | null): string {
  if (record?.lastCheckpoint && existsSync(record.lastCheckpoint.path)) return record.lastCheckpoint.path;
  const dir = join(runtime.config.checkpointDir, id);
  const candidates = existsSync(dir)
    ? readdirSync(dir).filter((name) => !name.startsWith('.') && existsSync(join(dir, name, IMAGES_DIR))).sort()
    : [];
  if (candidates.length === 0) {
    throw new StasisError(`no checkpoint of ${id} found in ${dir}`, { hint: 'name one with --checkpoint PATH' });
  }
  return join(dir, candidates[candidates.length - 1]);
}

/** Unpacks an archive into a fresh folder after checking every entry; returns that folder. */
async function unpackArchive(runtime: Runtime, archive: string): Promise<string> {
  runtime.store.ensure();
  const target = mkdtempSync(join(runtime.store.paths.root, '.restore-'));
  try {
    await extractTar(archive, target);
  } catch (err) {
    rmSync(target, { recursive: true, force: true });
    throw new StasisError(`cannot restore from ${archive}: ${(err as Error).message}`);
  }
  return target;
}

function chooseBase(meta: CheckpointMeta, opts: RestoreOptions): ProvisionPlan['rootfs'] {
  if (opts.rootfs !== undefined && opts.bundle !== undefined) throw usageError('--bundle and --rootfs cannot be used together');
  if (opts.rootfs !== undefined && meta.rootfs.kind === 'bundle') {
    throw usageError('this checkpoint is of a --bundle container: restore it onto a bundle with --bundle DIR', 'its rootfs changes were written in place, so the checkpoint does not carry them');
  }
  if (opts.bundle !== undefined && meta.rootfs.kind === 'overlay') {
    throw usageError('this checkpoint is of a --rootfs container: restore it onto a copy of its base with --rootfs DIR', 'the checkpoint carries its writable layer, which goes on top of that base');
  }
  if (opts.rootfs !== undefined) return { kind: 'overlay', base: checkRootfsDir(opts.rootfs), userBundle: null };
  if (opts.bundle !== undefined) return bundleBase(opts.bundle).rootfs;
  if (!existsSync(meta.rootfs.base)) {
    throw new StasisError(`the checkpoint's base rootfs ${meta.rootfs.base} does not exist on this host`, {
      hint: `copy it here, or name a copy with --rootfs DIR${meta.rootfs.kind === 'bundle' ? ' or --bundle DIR' : ''}`,
    });
  }
  return { kind: meta.rootfs.kind, base: meta.rootfs.base, userBundle: meta.rootfs.userBundle };
}

/** A JSON file of a checkpoint (untrusted input): a clear error when it is missing or damaged. */
function readCheckpointJson<T = unknown>(dir: string, name: string): T {
  try {
    return JSON.parse(readFileSync(join(dir, name), 'utf8')) as T;
  } catch (err) {
    throw new StasisError(`checkpoint ${dir}: ${name} is ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not valid JSON (${(err as Error).message})`}`);
  }
}

export async function restoreContainer(
  runtime: Runtime,
  id: string,
  opts: RestoreOptions,
  progress: (step: string) => void = () => undefined,
): Promise<RestoreResult> {
  const started = Date.now();
  const rootfsMounts = (opts.rootfsMounts ?? []).map(parseMountFlag);
  // Refuse a duplicate before looking for a checkpoint or unpacking anything.
  const taken = runtime.store.exists(id);
  const existing = taken ? runtime.store.read(id) : null;
  if (taken && !existing?.checkpointedStop) {
    const status = existing ? viewOf(runtime.store, existing).status : null;
    throw new StasisError(`container ${id} already exists${status ? ` (${status})` : ''}: only a container a checkpoint stopped is restored in place`, {
      hint: `restore under another ID, or remove it first with \`stasis delete -f ${id}\``,
    });
  }
  const source = resolve(opts.checkpoint ?? latestCheckpoint(runtime, id, existing));
  let stat;
  try {
    stat = statSync(source);
  } catch {
    throw new StasisError(`checkpoint ${source} does not exist`);
  }
  let unpacked: string | null = null;
  let unpackMs: number | null = null;
  try {
    let dir = source;
    if (stat.isFile()) {
      progress(`unpacking ${source}`);
      const unpackStarted = Date.now();
      unpacked = await unpackArchive(runtime, source);
      unpackMs = Date.now() - unpackStarted;
      dir = unpacked;
    }
    progress('checking the checkpoint');
    const meta = readMeta(dir);
    if (meta.preDump) throw new StasisError(`${source} is a pre-dump: restore the checkpoint taken with --parent-path pointing at it`);
    const rootfs = chooseBase(meta, opts);
    if (rootfsMounts.length > 0 && rootfs.kind !== 'bundle') {
      throw usageError('--rootfs-mount mounts onto a bundle\'s rootfs: this checkpoint is of a --rootfs container', 'its writable layer is carried in the checkpoint and restored into a layer of its own');
    }
    // A bundle's rootfs is restored as it is now (the container wrote to it in
    // place), so only a read-only base can be checked against the checkpoint.
    if (rootfs.kind === 'overlay') {
      const fingerprint = await rootfsFingerprint(rootfs.base);
      if (fingerprint !== meta.rootfs.fingerprint) {
        throw new StasisError(`rootfs ${rootfs.base} does not match the checkpoint's base ${meta.rootfs.base} (their files differ)`, {
          hint: 'restore onto the image the container ran on, or an exact copy of it (--rootfs DIR)',
        });
      }
    }
    const spec = readCheckpointJson<OciSpec>(dir, SPEC_FILE);
    if (spec.process) spec.process.terminal = false;
    const diffTar = join(dir, DIFF_TAR);
    const deletedFile = join(dir, DELETED_FILES);
    const hasDiff = rootfs.kind === 'overlay' && existsSync(diffTar);
    if (hasDiff) checkEntriesSafe(await readTarEntries(diffTar), { rootfsLayer: true });
    const deleted: unknown = rootfs.kind === 'overlay' && existsSync(deletedFile) ? readCheckpointJson(dir, DELETED_FILES) : [];
    let keptLog: string | null = null;
    const plan: ProvisionPlan = {
      spec,
      rootfs,
      rootfsMounts,
      stdio: { stdin: null, stdout: null, stderr: null, inherit: 'none' },
      labels: opts.labels ?? meta.labels,
      autoRemove: false,
      restore: {
        imagesDir: join(dir, IMAGES_DIR),
        runcArgs: meta.restoreArgs,
        from: source,
        fillLayer: hasDiff ? (upper) => extractTar(diffTar, upper, { rootfsLayer: true }) : undefined,
        onRootfs: rootfs.kind === 'overlay' ? async (rootfsDir) => { applyDeletions(rootfsDir, deleted); } : undefined,
        onFailure: (containerDir) => {
          keptLog = keepLog(runtime, id, join(containerDir, 'restore.log'));
        },
      },
    };
    progress('restoring with CRIU');
    const restoreStarted = Date.now();
    let inPlace = false;
    let container: ContainerInfo;
    try {
      container = await runtime.createInfo(id, plan, {
        inPlace: (record) => {
          inPlace = record.checkpointedStop;
          return inPlace;
        },
      });
    } catch (err) {
      throw withCriuLog(err, keptLog, 'restore', id);
    }
    return {
      container,
      checkpoint: source,
      inPlace,
      timingsMs: { total: Date.now() - started, unpack: unpackMs, restore: Date.now() - restoreStarted },
      criu: readCriuStats(join(runtime.store.containerDir(id), 'stats-restore')),
    };
  } finally {
    if (unpacked !== null) rmSync(unpacked, { recursive: true, force: true });
  }
}
