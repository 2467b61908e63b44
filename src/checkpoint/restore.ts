import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { EXIT_USAGE, StasisError, errorMessage } from '../errors.ts';
import { bundleBase, checkRootfsDir, defaultRootfs } from '../runtime/create-plan.ts';
import { defaultSpec, type OciSpec } from '../runtime/spec.ts';
import type { CheckpointHost, ContainerInfo, ProvisionPlan, Progress } from '../runtime/types.ts';
import type { ContainerRecord, MountRecord } from '../state/store.ts';
import { keepLog, withCriuLog } from './criu-log.ts';
import { IMAGES_DIR, SPEC_FILE, readCriuStats, type CheckpointMeta } from './image.ts';
import { chooseRestoreBase, readMeta, validateDescriptors } from './meta.ts';
import { applyRestorePolicy, type UserMount } from './policy.ts';
import { checkCriuImages } from './policy-images.ts';
import { RestorePolicyError, type Trust } from './trust.ts';
import { signedHere } from './signature.ts';
import { DELETED_FILES, DIFF_TAR, applyDeletions, changedBaseFiles, rootfsFingerprint } from './rootfs-diff.ts';
import { extractTar } from './tar.ts';

// A restore, as containerd's first one did it: through create, with the
// checkpoint's images handed to runc (`runc restore` run by conmon) and the
// writable layer put back underneath.

/**
 * The most an archive may unpack to, whatever the free space (which is
 * checked too): a few hundred KiB of zstd can expand to many GiB, and the
 * state directory is often in RAM (/run).
 */
const UNPACK_LIMIT_BYTES = 64 * 1024 ** 3;

export interface RestoreOptions {
  /** Folder or archive; default: the latest checkpoint of this ID. */
  checkpoint?: string;
  /** The base to restore onto, instead of the one the checkpoint names. */
  base?: { kind: 'overlay' | 'bundle'; dir: string };
  /** Mounted on a bundle's rootfs before the restore (bundle checkpoints only). */
  rootfsMounts?: Omit<MountRecord, 'target'>[];
  labels?: Record<string, string>;
  /** Bind mounts the user grants a checkpoint from elsewhere (the sources are the user's). */
  userMounts?: UserMount[];
  /** What the user vouches for in a checkpoint from elsewhere, beyond stasis's policy. */
  trust?: Trust;
}

export interface RestoreResult {
  container: ContainerInfo;
  checkpoint: string;
  inPlace: boolean;
  /** Whether the checkpoint was written by this state directory (its spec was taken as it is). */
  trusted: boolean;
  /** What the restore policy changed in a checkpoint from elsewhere (hooks dropped, limits lowered...). */
  warnings: string[];
  timingsMs: { total: number; unpack: number | null; restore: number };
  criu: Record<string, number> | null;
}

/** The newest checkpoint of `id`: the one its record names, else the newest under the checkpoint dir. */
export function latestCheckpoint(host: CheckpointHost, id: string, record: ContainerRecord | null): string {
  if (record?.lastCheckpoint && existsSync(record.lastCheckpoint.path)) return record.lastCheckpoint.path;
  const dir = join(host.checkpointDir, id);
  const candidates = existsSync(dir)
    ? readdirSync(dir).filter((name) => !name.startsWith('.') && existsSync(join(dir, name, IMAGES_DIR))).sort()
    : [];
  if (candidates.length === 0) {
    throw new StasisError(`no checkpoint of ${id} found in ${dir}`, { code: 'no-checkpoint' });
  }
  return join(dir, candidates[candidates.length - 1]);
}

/** Unpacks an archive into a fresh folder, checked; returns that folder. */
export async function unpackArchive(host: CheckpointHost, archive: string): Promise<string> {
  const target = mkdtempSync(join(host.scratchDir, '.restore-'));
  try {
    await extractTar(archive, target, { maxBytes: UNPACK_LIMIT_BYTES });
  } catch (err) {
    rmSync(target, { recursive: true, force: true });
    // extractTar's message names the archive already.
    throw new StasisError(errorMessage(err).startsWith('cannot') ? errorMessage(err) : `cannot restore from ${archive}: ${errorMessage(err)}`);
  }
  return target;
}

/** The base to restore onto: the one asked for, or the recorded one where the checkpoint may name it. */
function chooseBase(meta: CheckpointMeta, opts: RestoreOptions, trusted: boolean): ProvisionPlan['rootfs'] {
  const request = { rootfs: opts.base?.kind === 'overlay' ? opts.base.dir : undefined, bundle: opts.base?.kind === 'bundle' ? opts.base.dir : undefined };
  const choice = chooseRestoreBase(meta, request, { trusted, imageRoots: [dirname(defaultRootfs())] });
  if (choice.kind === 'bundle') return bundleBase(choice.bundle).rootfs;
  if (choice.from === 'flag') return { kind: 'overlay', base: checkRootfsDir(choice.base), userBundle: null };
  if (!existsSync(choice.base)) {
    throw new StasisError(`the checkpoint's base rootfs ${meta.rootfs.base} does not exist on this host`, { code: 'base-missing-overlay' });
  }
  return { kind: 'overlay', base: choice.base, userBundle: null };
}

/**
 * The spec to restore with. A checkpoint this state directory wrote (and
 * signed) is restored as it was; any other gets the security-relevant parts
 * of its spec from stasis's policy, and is refused where it asks for more than
 * that. CRIU's images are checked against the resulting spec either way.
 */
function restoreSpec(dir: string, id: string, rootfs: ProvisionPlan['rootfs'], trusted: boolean, opts: RestoreOptions): { spec: OciSpec; warnings: string[] } {
  const untrusted = readCheckpointJson<unknown>(dir, SPEC_FILE);
  let spec: OciSpec;
  let warnings: string[] = [];
  if (trusted) {
    spec = untrusted as OciSpec;
  } else {
    // The user's own statement of what the container may do: the bundle they name, else stasis's default.
    const policySpec = rootfs.kind === 'bundle' && rootfs.userBundle !== null ? bundleBase(rootfs.userBundle).spec : defaultSpec(id, []);
    const result = applyRestorePolicy(untrusted, { policySpec, kind: rootfs.kind, userMounts: opts.userMounts, trust: opts.trust });
    if (!result.ok) throw new RestorePolicyError(result.refused);
    ({ spec, warnings } = result);
  }
  if (spec.process) spec.process.terminal = false;
  const images = checkCriuImages(join(dir, IMAGES_DIR), spec, { trust: trusted ? 'all' : opts.trust });
  if (images.refused.length > 0) throw new RestorePolicyError(images.refused, "the checkpoint's CRIU images");
  return { spec, warnings: [...warnings, ...images.warnings] };
}

/** A JSON file of a checkpoint (untrusted input): a clear error when it is missing or damaged. */
function readCheckpointJson<T = unknown>(dir: string, name: string): T {
  try {
    return JSON.parse(readFileSync(join(dir, name), 'utf8')) as T;
  } catch (err) {
    throw new StasisError(`checkpoint ${dir}: ${name} is ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not valid JSON (${errorMessage(err)})`}`);
  }
}

/** Refuses a duplicate before looking for a checkpoint or unpacking anything; returns the record to restore in place. */
async function existingRecord(host: CheckpointHost, id: string): Promise<ContainerRecord | null> {
  if (!host.exists(id)) return null;
  const existing = await host.settledRecord(id);
  if (!existing?.checkpointedStop) {
    const status = existing ? host.statusOf(existing) : null;
    throw new StasisError(`container ${id} already exists${status ? ` (${status})` : ''}: only a container a checkpoint stopped is restored in place`, {
      hint: `restore under another ID, or remove it first with \`stasis delete -f ${id}\``,
    });
  }
  return existing;
}

export async function restoreContainer(
  host: CheckpointHost,
  id: string,
  opts: RestoreOptions,
  progress: Progress = () => undefined,
): Promise<RestoreResult> {
  const started = Date.now();
  const rootfsMounts = opts.rootfsMounts ?? [];
  const existing = await existingRecord(host, id);
  const source = resolve(opts.checkpoint ?? latestCheckpoint(host, id, existing));
  let stat;
  try {
    stat = statSync(source);
  } catch {
    throw new StasisError(`checkpoint ${source} does not exist`);
  }
  let unpacked: string | null = null;
  let layer: string | null = null;
  let unpackMs: number | null = null;
  try {
    let dir = source;
    if (stat.isFile()) {
      progress(`unpacking ${source}`);
      const unpackStarted = Date.now();
      unpacked = await unpackArchive(host, source);
      unpackMs = Date.now() - unpackStarted;
      dir = unpacked;
    }
    progress('checking the checkpoint');
    const meta = readMeta(dir);
    if (meta.preDump) throw new StasisError(`${source} is a pre-dump: restore the checkpoint taken on top of it`);
    const trusted = signedHere(host.stateRoot, dir);
    const rootfs = chooseBase(meta, opts, trusted);
    if (rootfsMounts.length > 0 && rootfs.kind !== 'bundle') {
      throw new StasisError('rootfs mounts are for a bundle\'s rootfs: this checkpoint is of a container on a read-only rootfs, whose writable layer it carries', {
        exitCode: EXIT_USAGE,
        code: 'mounts-need-bundle',
      });
    }
    // A bundle's rootfs is restored as it is now (the container wrote to it in
    // place), so only a read-only base can be checked against the checkpoint.
    if (rootfs.kind === 'overlay') {
      const fingerprint = await rootfsFingerprint(rootfs.base);
      if (fingerprint !== meta.rootfs.fingerprint) {
        throw new StasisError(`rootfs ${rootfs.base} does not match the checkpoint's base ${meta.rootfs.base} (their files differ)`, {
          code: 'base-differs',
        });
      }
      // The files the processes had mapped or open must be the same bytes: a
      // same-size change passes the fingerprint, and the process would crash.
      const changed = changedBaseFiles(rootfs.base, meta.rootfs.baseFiles ?? []);
      if (changed.length > 0) {
        const shown = changed.slice(0, 5).join(', ') + (changed.length > 5 ? ` and ${changed.length - 5} more` : '');
        throw new StasisError(`rootfs ${rootfs.base} does not match the checkpoint's base ${meta.rootfs.base}: ${shown} ${changed.length > 1 ? 'differ' : 'differs'} from the file${changed.length > 1 ? 's' : ''} the processes used`, {
          code: 'base-differs',
        });
      }
    }
    const { spec, warnings } = restoreSpec(dir, id, rootfs, trusted, opts);
    // runc restore hands the container the descriptors this file names.
    validateDescriptors(readCheckpointJson(join(dir, IMAGES_DIR), 'descriptors.json'));
    const diffTar = join(dir, DIFF_TAR);
    const deletedFile = join(dir, DELETED_FILES);
    // In place from the checkpoint that stopped it, the container's own layer (still mounted) is
    // what the checkpoint carries: it is kept, not unpacked again.
    const keepLayer = existing !== null && rootfs.kind === 'overlay' && existing.checkpointedStop
      && existing.lastCheckpoint?.path === source && existing.rootfs.base === rootfs.base;
    const hasDiff = rootfs.kind === 'overlay' && existsSync(diffTar) && !keepLayer;
    if (hasDiff) {
      // Extracted (and checked) before an in-place restore sets the old layer
      // aside, on the state directory's filesystem, then moved into place.
      layer = mkdtempSync(join(host.scratchDir, '.layer-'));
      chmodSync(layer, 0o755); // it becomes the upper layer, whose mode is the container's "/"
      await extractTar(diffTar, layer, { rootfsLayer: true, maxBytes: UNPACK_LIMIT_BYTES });
    }
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
        keepLayer,
        fillLayer: layer === null ? undefined : async (upper) => {
          rmdirSync(upper);
          renameSync(layer!, upper);
          layer = null;
        },
        onRootfs: rootfs.kind === 'overlay' ? async (rootfsDir) => { applyDeletions(rootfsDir, deleted); } : undefined,
        onFailure: (containerDir) => {
          keptLog = keepLog(host.logsDir, id, join(containerDir, 'restore.log'));
        },
      },
    };
    progress('restoring with CRIU');
    const restoreStarted = Date.now();
    let inPlace = false;
    let container: ContainerInfo;
    try {
      container = await host.provision(id, plan, {
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
      trusted,
      warnings,
      timingsMs: { total: Date.now() - started, unpack: unpackMs, restore: Date.now() - restoreStarted },
      criu: readCriuStats(join(host.containerDir(id), 'stats-restore')),
    };
  } finally {
    if (unpacked !== null) rmSync(unpacked, { recursive: true, force: true });
    if (layer !== null) rmSync(layer, { recursive: true, force: true });
  }
}
