import { chmodSync, existsSync, lchownSync, lstatSync, mkdtempSync, readdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EXIT_USAGE, StasisError } from '../errors.ts';
import { bundleBase, checkRootfsDir, defaultRootfs } from '../runtime/create-plan.ts';
import { CRIU_CONFIG_ANNOTATION, criuConfigText } from '../runtime/criu-config.ts';
import type { CheckpointHost, ContainerInfo, ProvisionPlan, Progress } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import { validateId } from '../state/ids.ts';
import { keepLog, withCriuLog } from './criu/log.ts';
import { setUsernsImages } from './criu/userns-image.ts';
import { SHM_TAR, engineFileMounts, engineFiles, makeEngineFiles, ownEngineMounts } from './format/engine-files.ts';
import { rootDirMode } from './criu/inventory.ts';
import { detectEngine, foreignMeta, type EngineInfo } from './format/engines.ts';
import { fixParentDirs, layerWhiteouts, missingParentDirs, opaqueDeletions, removeWhiteoutMarkers } from './archive/layer.ts';
import type { ForeignSpec } from './format/engine-spec.ts';
import { DELETED_FILES, DIFF_TAR, IMAGES_DIR, LOG_FILE, SPEC_FILE, type CheckpointMeta } from './format/layout.ts';
import { readCriuStats } from './criu/stats.ts';
import { chooseRestoreBase, readMeta, restoreArgsFor, validateDescriptors } from './format/meta.ts';
import { foreignParts } from './restore-foreign.ts';
import { notRestorable, restoreSpec, type LayerSource, type RestoreOptions, type RestoreParts } from './restore-inputs.ts';
import { UNPACK_LIMIT_BYTES, openCheckpoint, readCheckpointJson, type OpenedCheckpoint } from './source.ts';
import { signedHere } from './policy/signature.ts';
import { applyDeletions, changedBaseFiles, rootfsFingerprint } from './rootfs-diff.ts';
import { extractTar, readTarEntries } from './archive/tar.ts';
import { fillVolumes, planVolumeRestore } from './volumes.ts';

// A restore, as containerd's first one did it: through create, with the
// checkpoint's images handed to runc (`runc restore` run by conmon) and the
// writable layer put back underneath. The checkpoint may be stasis's own or
// another engine's (restore-foreign.ts); both become the same RestoreParts.

export type { RestoreOptions } from './restore-inputs.ts';

/** The CRIU configuration file restore writes in the container's folder (named to runc by CRIU_CONFIG_ANNOTATION). */
const CRIU_CONFIG_FILE = 'criu-restore.conf';

export interface RestoreResult {
  container: ContainerInfo;
  checkpoint: string;
  inPlace: boolean;
  /** Whether the checkpoint was written by this state directory (its spec was taken as it is). */
  trusted: boolean;
  /** Which engine wrote the checkpoint, with what it says of the container. */
  engine: Omit<EngineInfo, 'problem'>;
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

/** The base to restore onto: the one asked for, or the recorded one where the checkpoint may name it. */
async function chooseBase(meta: CheckpointMeta, opts: RestoreOptions, trusted: boolean): Promise<ProvisionPlan['rootfs']> {
  // A container that ran on an image of the store: that image, found by its digest (or pulled), whatever its path was.
  const image = meta.rootfs.image;
  if (image !== undefined && opts.base === undefined && meta.rootfs.kind === 'overlay' && opts.baseImage) {
    const found = await opts.baseImage({ digest: image.digest, id: image.configDigest, name: image.name });
    if (found !== null) return { kind: 'overlay', base: checkRootfsDir(found), userBundle: null };
    if (!trusted || !existsSync(meta.rootfs.base)) {
      throw new StasisError(`the checkpoint's base image ${image.name} (${image.digest}) is not in the image store`, { code: 'base-image-missing' });
    }
  }
  const request = { rootfs: opts.base?.kind === 'overlay' ? opts.base.dir : undefined, bundle: opts.base?.kind === 'bundle' ? opts.base.dir : undefined };
  const choice = chooseRestoreBase(meta, request, { trusted, imageRoots: [dirname(defaultRootfs())] });
  if (choice.kind === 'bundle') {
    if (choice.from === 'checkpoint' && !existsSync(choice.bundle)) {
      throw new StasisError(`the checkpoint's bundle ${choice.bundle} does not exist on this host`, { code: 'base-missing-bundle' });
    }
    return bundleBase(choice.bundle).rootfs;
  }
  if (choice.from === 'flag') return { kind: 'overlay', base: checkRootfsDir(choice.base), userBundle: null };
  if (!existsSync(choice.base)) {
    throw new StasisError(`the checkpoint's base rootfs ${meta.rootfs.base} does not exist on this host`, { code: 'base-missing-overlay' });
  }
  return { kind: 'overlay', base: choice.base, userBundle: null };
}

/** Refuses a duplicate before looking for a checkpoint or unpacking anything; returns the record to restore in place. */
async function existingRecord(host: CheckpointHost, id: string): Promise<ContainerRecord | null> {
  if (!host.exists(id)) return null;
  // Whatever a killed command left half done is finished or undone first.
  const existing = await host.settledRecord(id);
  if (!existing?.checkpointedStop) {
    const status = existing ? host.statusOf(existing) : null;
    throw new StasisError(`container ${id} already exists${status ? ` (${status})` : ''}: only a container a checkpoint stopped is restored in place`, {
      hint: `restore under another ID, or remove it first with \`stasis delete -f ${id}\``,
      code: 'duplicate',
    });
  }
  return existing;
}

/** stasis.json, with messages naming the user's checkpoint rather than the folder it was unpacked into. */
function readStasisMeta(opened: OpenedCheckpoint): CheckpointMeta {
  try {
    return readMeta(opened.dir);
  } catch (err) {
    if (err instanceof StasisError && opened.temp !== null && err.message.startsWith(opened.dir)) {
      throw new StasisError(`${opened.shown}${err.message.slice(opened.dir.length)}`, { code: err.code, hint: err.hint, exitCode: err.exitCode });
    }
    throw err;
  }
}

/** The mode "/" had when CRIU dumped it (CRIU refuses another), else a stasis layer's. */
function imagesRootMode(imagesDir: string): number {
  try {
    return rootDirMode(imagesDir) ?? 0o40755;
  } catch {
    // A damaged image is CRIU's to report (the policy has decoded the ones it reads).
    return 0o40755;
  }
}

/** The parts of a restore of a checkpoint stasis wrote (here, or in another state directory). */
async function stasisParts(host: CheckpointHost, opened: OpenedCheckpoint, id: string, meta: CheckpointMeta, opts: RestoreOptions): Promise<RestoreParts> {
  const { dir, shown } = opened;
  const trusted = signedHere(host.stateRoot, dir);
  const rootfs = await chooseBase(meta, opts, trusted);
  if ((opts.rootfsMounts ?? []).length > 0 && rootfs.kind !== 'bundle') {
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
      const listed = changed.slice(0, 5).join(', ') + (changed.length > 5 ? ` and ${changed.length - 5} more` : '');
      throw new StasisError(`rootfs ${rootfs.base} does not match the checkpoint's base ${meta.rootfs.base}: ${listed} ${changed.length > 1 ? 'differ' : 'differs'} from the file${changed.length > 1 ? 's' : ''} the processes used`, {
        code: 'base-differs',
      });
    }
  }
  const untrusted = withoutOwnCriuConfig(readCheckpointJson<ForeignSpec>(dir, SPEC_FILE, shown));
  // A container once restored from another engine's checkpoint has binds of files restore made: made again.
  const files = typeof untrusted === 'object' && untrusted !== null ? engineFiles(ownEngineMounts(untrusted), host.containerDir(id)) : [];
  const { spec, warnings } = restoreSpec(dir, untrusted, id, rootfs, trusted, opts, engineFileMounts(files));
  // runc restore hands the container the descriptors this file names.
  validateDescriptors(readCheckpointJson(join(dir, IMAGES_DIR), 'descriptors.json', shown));
  const diffTar = join(dir, DIFF_TAR);
  const hasDiff = rootfs.kind === 'overlay' && existsSync(diffTar);
  if (rootfs.kind === 'overlay' && !hasDiff) warnings.push(`the checkpoint carries no rootfs changes (${DIFF_TAR}): the container gets its base as it is`);
  const deletedFile = join(dir, DELETED_FILES);
  const shmTar = join(dir, SHM_TAR);
  return {
    spec,
    rootfs,
    trusted,
    warnings,
    runcArgs: meta.restoreArgs,
    labels: opts.labels ?? meta.labels,
    layer: hasDiff ? { diffTar, format: 'plain', fixParents: false } : null,
    deletions: rootfs.kind === 'overlay' && existsSync(deletedFile) ? readCheckpointJson(dir, DELETED_FILES, shown) : [],
    rootMode: imagesRootMode(join(dir, IMAGES_DIR)),
    files,
    shmTar: existsSync(shmTar) ? shmTar : null,
    // A moved container's output (a regular file only: the folder is untrusted input).
    importLog: lstatSync(join(dir, LOG_FILE), { throwIfNoEntry: false })?.isFile() ? join(dir, LOG_FILE) : null,
    hostname: spec.hostname ?? id,
    volumes: Array.isArray(meta.volumes) ? meta.volumes : [],
  };
}

/** A spec without the CRIU configuration file a restore with tcp-close named (it was for that restore only). */
function withoutOwnCriuConfig<T>(spec: T): T {
  const annotations = (spec as { annotations?: Record<string, unknown> } | null)?.annotations;
  const value = annotations?.[CRIU_CONFIG_ANNOTATION];
  if (typeof value === 'string' && value.endsWith(`/${CRIU_CONFIG_FILE}`)) delete annotations![CRIU_CONFIG_ANNOTATION];
  return spec;
}

/**
 * Unpacks the rootfs changes into a fresh folder on the state directory's
 * filesystem, which becomes the upper layer: checked as a rootfs layer, the
 * folders the tar leaves out given the base's modes, an OCI layer's
 * whiteouts turned into deletions, "/" given the mode CRIU recorded.
 * Returns the folder and the deletions to apply on the mounted root.
 */
async function unpackLayer(host: CheckpointHost, layer: LayerSource, baseDir: string, rootMode: number): Promise<{ dir: string; deletions: string[] }> {
  const dir = mkdtempSync(join(host.scratchDir, '.layer-'));
  try {
    await extractTar(layer.diffTar, dir, { rootfsLayer: true, maxBytes: UNPACK_LIMIT_BYTES });
    const deletions: string[] = [];
    if (layer.fixParents || layer.format === 'oci-layer') {
      const entries = await readTarEntries(layer.diffTar);
      if (layer.fixParents) fixParentDirs(dir, missingParentDirs(entries.map((entry) => entry.name), baseDir), { chmod: chmodSync, lchown: lchownSync });
      if (layer.format === 'oci-layer') {
        const whiteouts = layerWhiteouts(entries);
        removeWhiteoutMarkers(dir, whiteouts.markers, (path) => rmSync(path, { force: true }));
        deletions.push(...whiteouts.deleted, ...whiteouts.opaque.flatMap((folder) => opaqueDeletions(baseDir, dir, folder)));
      }
    }
    chmodSync(dir, rootMode & 0o7777);
    return { dir, deletions };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export async function restoreContainer(
  host: CheckpointHost,
  id: string | undefined,
  opts: RestoreOptions,
  progress: Progress = () => undefined,
): Promise<RestoreResult> {
  const started = Date.now();
  if (id === undefined && opts.checkpoint === undefined) {
    throw new StasisError('nothing to restore: name the container to restore in place, or a checkpoint', { exitCode: EXIT_USAGE, code: 'no-id' });
  }
  let existing = id === undefined ? null : await existingRecord(host, id);
  // The user's CRIU options, checked before anything is unpacked.
  const extraArgs = restoreArgsFor(opts.criuOptions ?? []);
  const opened = await openCheckpoint(host, opts.checkpoint ?? latestCheckpoint(host, id!, existing), progress);
  const scratch: string[] = [];
  let criuConfigFile: string | null = null;
  try {
    progress('checking the checkpoint');
    const info = detectEngine(opened.dir, { annotations: opened.annotations });
    if (info.problem) throw notRestorable(opened.shown, info, info.problem);
    const engine = { ...info };
    delete engine.problem;
    let parts: RestoreParts;
    let finalId: string;
    if (info.engine === 'stasis') {
      const meta = readStasisMeta(opened);
      if (meta.preDump) throw new StasisError(`${opened.shown} is a pre-dump: restore the checkpoint taken on top of it`);
      finalId = id ?? meta.id;
      if (id === undefined) existing = await existingRecord(host, finalId);
      parts = await stasisParts(host, opened, finalId, meta, opts);
    } else {
      const read = foreignMeta(opened.dir, info.engine);
      if (!read.ok) throw notRestorable(opened.shown, info, read.error.message);
      finalId = id ?? validateId(read.meta.id);
      if (id === undefined) existing = await existingRecord(host, finalId);
      // Its base image, when the store has it (or the user named one to pull): no --rootfs needed.
      let foreignOpts = opts;
      if (opts.base === undefined && opts.baseImage) {
        const found = await opts.baseImage({ digest: null, id: read.meta.image.id, name: read.meta.image.name ?? read.meta.image.userRequested });
        if (found !== null) foreignOpts = { ...opts, base: { kind: 'overlay', dir: found } };
      }
      parts = foreignParts(host, opened.dir, opened.shown, finalId, info, read.meta, [...read.warnings], foreignOpts);
    }
    const restoreId = finalId;
    // Decided once: in place when the container of that ID is one its checkpoint stopped.
    const inPlace = existing !== null && existing.checkpointedStop;

    // In place from the checkpoint that stopped it, the container's own layer (still mounted) is
    // what the checkpoint carries: it is kept, not unpacked again.
    const keepLayer = info.engine === 'stasis' && inPlace && parts.rootfs.kind === 'overlay' && existing!.rootfs.kind === 'overlay'
      && existing!.lastCheckpoint?.path === opened.dir && existing!.rootfs.base === parts.rootfs.base;
    let layerDir: string | null = null;
    let deletions = parts.deletions;
    if (parts.layer !== null && parts.rootfs.kind === 'overlay' && !keepLayer) {
      // Extracted (and checked) before an in-place restore sets the old layer
      // aside, on the state directory's filesystem, then moved into place.
      progress('unpacking the rootfs changes');
      const unpacked = await unpackLayer(host, parts.layer, parts.rootfs.base, parts.rootMode);
      layerDir = unpacked.dir;
      scratch.push(layerDir);
      if (unpacked.deletions.length > 0) deletions = [...(Array.isArray(deletions) ? deletions : []), ...unpacked.deletions];
    }
    let shmDir: string | null = null;
    if (parts.shmTar !== null && parts.files.some((file) => file.kind === 'shm' && file.directory)) {
      shmDir = join(mkdtempSync(join(host.scratchDir, '.shm-')), 'shm');
      scratch.push(dirname(shmDir));
      await extractTar(parts.shmTar, shmDir, { rootfsLayer: true, maxBytes: UNPACK_LIMIT_BYTES });
    }
    if (opts.tcpClose) {
      // runc 1.1 has no --tcp-close, but hands CRIU the configuration file this annotation names (docs/services-notes.md).
      criuConfigFile = join(host.containerDir(restoreId), CRIU_CONFIG_FILE);
      parts.spec.annotations = { ...parts.spec.annotations, [CRIU_CONFIG_ANNOTATION]: criuConfigFile };
    }

    // The volumes: checked (folders there, empty where contents are carried) before anything is made.
    const volumePlans = planVolumeRestore(opened.dir, parts.volumes, parts.spec, {
      inPlace,
      ignoreVolumes: opts.ignoreVolumes === true,
    });
    const rootMode = parts.rootMode;
    let keptLog: string | null = null;
    const plan: ProvisionPlan = {
      spec: parts.spec,
      rootfs: parts.rootfs,
      rootfsMounts: opts.rootfsMounts ?? [],
      volumes: volumePlans.map((v) => v.volume),
      stdio: { stdin: null, stdout: null, stderr: null, inherit: 'none' },
      labels: parts.labels,
      autoRemove: false,
      restore: {
        imagesDir: join(opened.dir, IMAGES_DIR),
        runcArgs: [...new Set([...parts.runcArgs, ...extraArgs, ...(opts.lazyPages ? ['--lazy-pages'] : [])])],
        from: opts.from ?? opened.shown,
        createdAt: opts.createdAt,
        keepLayer,
        followRange: volumePlans.filter((v) => v.fill !== null || v.volume.chown === true).map((v) => v.volume.source),
        importLog: parts.importLog ?? undefined,
        prepare: async (containerDir) => {
          makeEngineFiles(containerDir, parts.files, { hostname: parts.hostname }, shmDir);
          shmDir = null;
          if (criuConfigFile !== null) writeFileSync(join(containerDir, CRIU_CONFIG_FILE), criuConfigText(['tcp-close']), { mode: 0o600 });
          await opts.lazyPages?.(containerDir, join(opened.dir, IMAGES_DIR));
        },
        fillLayer: parts.rootfs.kind !== 'overlay' ? undefined : async (upper) => {
          if (layerDir === null) {
            chmodSync(upper, rootMode & 0o7777);
            return;
          }
          rmdirSync(upper);
          renameSync(layerDir, upper);
          layerDir = null;
        },
        setIdMaps: (uidMap, gidMap) => {
          setUsernsImages(join(opened.dir, IMAGES_DIR), uidMap, gidMap);
        },
        onRootfs: parts.rootfs.kind === 'overlay' ? async (rootfsDir) => { applyDeletions(rootfsDir, deletions); } : undefined,
        onFailure: (containerDir) => {
          keptLog = keepLog(host.logsDir, restoreId, join(containerDir, 'restore.log'));
        },
      },
    };
    progress('restoring with CRIU');
    const restoreStarted = Date.now();
    let container: ContainerInfo;
    let undoVolumes = () => undefined as void;
    if (volumePlans.some((v) => v.fill !== null)) {
      progress('restoring the volumes');
      undoVolumes = await fillVolumes(volumePlans);
    }
    try {
      container = await host.provision(restoreId, plan, { replace: inPlace ? existing! : undefined });
    } catch (err) {
      undoVolumes();
      throw withCriuLog(err, keptLog, 'restore', restoreId);
    }
    return {
      container,
      checkpoint: opened.shown,
      inPlace,
      trusted: parts.trusted,
      engine,
      warnings: parts.warnings,
      timingsMs: { total: Date.now() - started, unpack: opened.unpackMs, restore: Date.now() - restoreStarted },
      criu: readCriuStats(join(host.containerDir(restoreId), 'stats-restore')),
    };
  } finally {
    // CRIU has read the configuration file once runc restore is done; later dumps must not take tcp-close.
    if (criuConfigFile !== null) rmSync(criuConfigFile, { force: true });
    if (opened.temp !== null) rmSync(opened.temp, { recursive: true, force: true });
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  }
}
