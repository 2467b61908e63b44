import { chownSync, chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from '../host/digest.ts';
import { basename, dirname, join } from 'node:path';
import { StasisError, errorMessage } from '../errors.ts';
import type { OciSpec } from '../runtime/spec.ts';
import { cleanDestination } from '../runtime/volumes.ts';
import type { VolumeMount } from '../state/store.ts';
import { createTar, extractTar } from './archive/tar.ts';
import { FILES, type CheckpointVolume } from './format/layout.ts';
import { ENGINE_FILES_DIR, SHM_TAR } from './format/engine-files.ts';
import { UNPACK_LIMIT_BYTES } from './source.ts';

// A volume's files are not in CRIU's images (runc declares every bind mount
// external). A checkpoint that leaves the host (an export, an image, a move)
// carries each volume's contents as volumes/<n>.tar, taken while the
// container is frozen, indexed in stasis.json; a checkpoint folder kept here
// only names the volumes. A restore puts carried contents into the folder the
// restored spec mounts (the checkpoint's own, or one the user maps with -v),
// which must be new or empty; or, with --ignore-volumes (or nothing carried),
// uses what that folder holds.

/**
 * Records the volumes in a checkpoint being written; with `carry`, each
 * one's contents as volumes/<n>.tar (its top folder's mode and owner in the
 * index: tar has no entry for it).
 */
export async function captureVolumes(volumes: readonly VolumeMount[], workDir: string, carry: boolean): Promise<CheckpointVolume[]> {
  const out: CheckpointVolume[] = [];
  for (const [index, volume] of volumes.entries()) {
    const entry: CheckpointVolume = { destination: volume.destination, source: volume.source, readonly: volume.readonly, ...(volume.chown ? { chown: true } : {}), carried: carry, archive: null };
    if (carry) {
      const stat = statSync(volume.source, { throwIfNoEntry: false });
      if (!stat?.isDirectory()) throw new StasisError(`volume ${volume.destination}: its host folder ${volume.source} is gone`);
      Object.assign(entry, { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid });
      if (readdirSync(volume.source).length > 0) {
        const archive = `${FILES.volumes}/${index}.tar`;
        mkdirSync(join(workDir, FILES.volumes), { recursive: true, mode: 0o700 });
        try {
          await createTar(volume.source, join(workDir, archive), 'none');
        } catch (err) {
          throw new StasisError(`volume ${volume.destination}: cannot archive ${volume.source}: ${errorMessage(err)}`, {
            hint: 'leave the volumes out with --ignore-volumes (they must then be there when it is restored)',
          });
        }
        entry.archive = archive;
      }
    }
    out.push(entry);
  }
  return out;
}

/** A volume of a checkpoint, as a restore will bring it back. */
export interface VolumeRestore {
  volume: VolumeMount;
  /** The archive to unpack into volume.source (null: use the folder as it is). */
  fill: { archive: string | null; mode?: number; uid?: number; gid?: number } | null;
}

function isEmptyDir(path: string): boolean {
  return readdirSync(path).length === 0;
}

/**
 * What each of the checkpoint's volumes becomes: the folder the restore
 * spec mounts at its destination (the spec is the policy's, so an untrusted
 * checkpoint's volume is there only if the user granted it), filled from
 * the checkpoint or used as it is. Checked before anything is made.
 */
export function planVolumeRestore(dir: string, volumes: readonly CheckpointVolume[], spec: OciSpec, opts: { inPlace: boolean; ignoreVolumes: boolean }): VolumeRestore[] {
  const plans: VolumeRestore[] = [];
  for (const volume of volumes) {
    const destination = cleanDestination(String(volume.destination));
    const mount = (spec.mounts ?? []).find((m) => cleanDestination(String((m as { destination?: unknown }).destination ?? '')) === destination) as { source?: unknown; options?: unknown } | undefined;
    if (mount === undefined || typeof mount.source !== 'string') continue;
    const target = mount.source;
    const readonly = Array.isArray(mount.options) && mount.options.includes('ro');
    const asVolume: VolumeMount = { source: target, destination, readonly, ...(volume.chown === true ? { chown: true } : {}) };
    const stat = lstatSync(target, { throwIfNoEntry: false });
    const carried = volume.carried === true && !opts.inPlace && !opts.ignoreVolumes;
    if (!carried) {
      if (!stat?.isDirectory()) {
        throw new StasisError(`volume ${destination}: its host folder ${target} is not here${opts.inPlace ? '' : volume.carried ? ' (--ignore-volumes: what is on the host is used)' : " (the checkpoint does not carry the volume's contents)"}`, {
          hint: `make it (mkdir -p ${target}), or map the volume to a folder of yours with -v DIR:${destination}`,
          code: 'volume-missing',
        });
      }
      plans.push({ volume: asVolume, fill: null });
      continue;
    }
    if (stat !== undefined && !(stat.isDirectory() && isEmptyDir(target))) {
      throw new StasisError(`volume ${destination}: ${target} is not empty, and the checkpoint carries this volume's contents`, {
        hint: `restore them into a new or empty folder with -v DIR:${destination}, or keep what ${target} holds with --ignore-volumes`,
        code: 'volume-not-empty',
      });
    }
    const archive = volume.archive === null || volume.archive === undefined ? null : join(dir, String(volume.archive));
    if (archive !== null && (!/^volumes\/\d+\.tar$/.test(String(volume.archive)) || !lstatSync(archive, { throwIfNoEntry: false })?.isFile())) {
      throw new StasisError(`volume ${destination}: the checkpoint names ${JSON.stringify(volume.archive)}, which it does not hold as a volume archive`, { code: 'volume-archive' });
    }
    const number = (n: unknown) => (typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined);
    plans.push({ volume: asVolume, fill: { archive, mode: number(volume.mode), uid: number(volume.uid), gid: number(volume.gid) } });
  }
  return plans;
}

/**
 * Puts carried contents into their folders (each unpacked beside its
 * folder, checked as a rootfs layer is, then renamed into place). Returns
 * an undo that empties what it filled.
 */
export async function fillVolumes(plans: readonly VolumeRestore[]): Promise<() => void> {
  const done: { target: string; existed: boolean }[] = [];
  const undo = () => {
    for (const { target, existed } of done.reverse()) {
      rmSync(target, { recursive: true, force: true });
      if (existed) mkdirSync(target, { recursive: true });
    }
  };
  try {
    for (const { volume, fill } of plans) {
      if (fill === null) continue;
      const target = volume.source;
      const existed = existsSync(target);
      mkdirSync(dirname(target), { recursive: true });
      const temp = join(dirname(target), `.${basename(target)}.restore-${randomBytes(6).toString('hex')}`);
      try {
        if (fill.archive !== null) await extractTar(fill.archive, temp, { rootfsLayer: true, maxBytes: UNPACK_LIMIT_BYTES });
        else mkdirSync(temp, { mode: 0o700 });
        if (fill.uid !== undefined && fill.gid !== undefined) chownSync(temp, fill.uid, fill.gid);
        chmodSync(temp, fill.mode ?? 0o755);
        // rename(2) replaces an empty folder.
        renameSync(temp, target);
      } catch (err) {
        rmSync(temp, { recursive: true, force: true });
        throw new StasisError(`volume ${volume.destination}: cannot restore its contents into ${target}: ${errorMessage(err)}`);
      }
      done.push({ target, existed });
    }
  } catch (err) {
    undo();
    throw err;
  }
  return undo;
}

/**
 * podman's devshm-checkpoint.tar, for a container whose /dev/shm is a bind
 * of a folder restore made in its engine-files (a container restored from
 * another engine's checkpoint): CRIU does not dump an external mount's files.
 */
export async function captureShm(bundleDir: string, workDir: string): Promise<void> {
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
