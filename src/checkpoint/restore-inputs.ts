import { join } from 'node:path';
import { StasisError, type ErrorCode } from '../errors.ts';
import { bundleBase } from '../runtime/create-plan.ts';
import { defaultSpec, type OciSpec } from '../runtime/spec.ts';
import { AUTO_SIZE, mappedRoot, setUserns, USERNS_ANNOTATION, USERNS_LAYER_ANNOTATION } from '../runtime/userns.ts';
import type { ProvisionPlan } from '../runtime/types.ts';
import type { MountRecord } from '../state/store.ts';
import type { EngineFile } from './format/engine-files.ts';
import { describeEngine, type EngineInfo } from './format/engines.ts';
import { IMAGES_DIR, type CheckpointVolume } from './format/layout.ts';
import { applyRestorePolicy, type UserMount } from './policy/spec.ts';
import { checkCriuImages } from './policy/processes.ts';
import type { CheckpointSource } from './source.ts';
import { RestorePolicyError, type Trust } from './policy/trust.ts';

// What a restore is made of, whichever engine wrote the checkpoint: the
// options it is asked with, and the parts restore.ts (stasis's own
// checkpoints) and restore-foreign.ts (podman's, CRI-O's, containerd's) read
// from the checkpoint, which restore.ts then brings up the same way.

export interface RestoreOptions {
  /** Folder, archive, image reference or stream; default: the latest checkpoint of this ID. */
  checkpoint?: CheckpointSource;
  /** The base to restore onto, instead of the one the checkpoint names. */
  base?: { kind: 'overlay' | 'bundle'; dir: string };
  /** Mounted on a bundle's rootfs before the restore (bundle checkpoints only). */
  rootfsMounts?: Omit<MountRecord, 'target'>[];
  labels?: Record<string, string>;
  /** Bind mounts the user grants a checkpoint from elsewhere (the sources are the user's). */
  userMounts?: UserMount[];
  /** Use the volumes' folders as they are on this host, even where the checkpoint carries their contents. */
  ignoreVolumes?: boolean;
  /** What the user vouches for in a checkpoint from elsewhere, beyond stasis's policy. */
  trust?: Trust;
  /** CRIU options to repeat beyond those the checkpoint records (other engines record none): tcp-established, ext-unix-sk, shell-job, file-locks. */
  criuOptions?: string[];
  /** Restore established TCP connections closed (CRIU's tcp-close). */
  tcpClose?: boolean;
  /**
   * Finds the checkpoint's base image in the image store (by manifest digest,
   * image ID or name), or pulls the one the user named; the folder of its
   * unpacked tree, or null when the store does not have it.
   */
  baseImage?: (want: { digest: string | null; id: string | null; name: string | null }) => Promise<string | null>;
  /** Where the container came from, for its record and the journal, when that is not the checkpoint's path (a move: the source). */
  from?: string;
  /** The creation time the container keeps (a move: the source's), RFC 3339. */
  createdAt?: string;
  /**
   * Post-copy: the checkpoint has no memory pages; called with the
   * container's folder (runc restore's work folder) before runc restore
   * runs, to start CRIU's lazy-pages daemon there, which pulls them.
   */
  lazyPages?: (containerDir: string, imagesDir: string) => Promise<void>;
}

/** The rootfs changes a checkpoint carries, to unpack into the new writable layer. */
export interface LayerSource {
  diffTar: string;
  /** plain: podman's and stasis's tar (deletions listed apart); oci-layer: containerd's (gzip, whiteouts). */
  format: 'plain' | 'oci-layer';
  /** The tar lists files without their folders (podman, CRI-O): the base's folders' modes are given to them. */
  fixParents: boolean;
}

export interface RestoreParts {
  spec: OciSpec;
  rootfs: ProvisionPlan['rootfs'];
  trusted: boolean;
  warnings: string[];
  runcArgs: string[];
  labels: Record<string, string>;
  layer: LayerSource | null;
  /** Container paths to delete on the mounted root (checked by applyDeletions). */
  deletions: unknown;
  /** The mode "/" had at the dump (CRIU checks it): the new layer's. */
  rootMode: number;
  /** Files made in the container's folder for the spec's private bind mounts. */
  files: EngineFile[];
  shmTar: string | null;
  importLog: string | null;
  hostname: string;
  /** The checkpoint's volumes (stasis's own checkpoints). */
  volumes: CheckpointVolume[];
}

/** "cannot restore from FILE: made by podman 4.3.1, container ix1 (image ...): WHY". */
export function notRestorable(shown: string, info: EngineInfo, why: string, code: ErrorCode = 'not-restorable'): StasisError {
  const who = info.engine === 'unknown' && info.name === undefined ? '' : `${describeEngine(info)}: `;
  return new StasisError(`cannot restore from ${shown}: ${who}${why}`, { code });
}

/**
 * A checkpoint whose container had a user namespace of its own mapping its
 * root onto a host range (stasis's --userns) is granted one of this host's:
 * a range taken from the registry when the container is made (the same one
 * when free), never the host IDs the checkpoint names. The range its layer
 * was written in is noted, so that the layer's owners are moved into the new one.
 */
function grantUserns(untrusted: unknown, policySpec: OciSpec): void {
  const asked = untrusted as Parameters<typeof mappedRoot>[0] | null;
  if (typeof asked !== 'object' || asked === null || policySpec.linux?.namespaces?.some((ns) => ns.type === 'user')) return;
  const root = mappedRoot(asked);
  if (root === null || root.size > AUTO_SIZE || root.size < 1) return;
  setUserns(policySpec as Parameters<typeof setUserns>[0], { containerID: 0, hostID: 0, size: root.size });
  policySpec.annotations = { ...policySpec.annotations, [USERNS_ANNOTATION]: 'auto', [USERNS_LAYER_ANNOTATION]: `${root.uid}:${root.gid}` };
}

/**
 * The spec to restore with. A checkpoint this state directory wrote (and
 * signed) is restored as it was; any other gets the security-relevant parts
 * of its spec from stasis's policy, and is refused where it asks for more than
 * that. `engineMounts` are the binds of files restore made itself (granted as
 * the user's own mounts are). CRIU's images are checked against the resulting
 * spec either way.
 */
export function restoreSpec(
  dir: string,
  untrusted: unknown,
  id: string,
  rootfs: ProvisionPlan['rootfs'],
  trusted: boolean,
  opts: RestoreOptions,
  engineMounts: UserMount[] = [],
): { spec: OciSpec; warnings: string[] } {
  let spec: OciSpec;
  let warnings: string[] = [];
  if (trusted) {
    spec = untrusted as OciSpec;
    for (const mount of (spec.mounts ?? []) as { destination?: string; source?: string }[]) {
      const made = engineMounts.find((m) => m.destination === mount.destination);
      if (made) mount.source = made.source;
    }
    // The user's own binds (-v/--mount on restore: a volume mapped elsewhere) replace the checkpoint's.
    const granted = opts.userMounts ?? [];
    if (granted.length > 0) {
      const own = new Set(granted.map((m) => m.destination.replace(/\/+$/, '')));
      spec.mounts = [
        ...(spec.mounts ?? []).filter((m) => !own.has(String((m as { destination?: unknown }).destination ?? '').replace(/\/+$/, ''))),
        ...granted.map((m) => ({ destination: m.destination, type: 'bind', source: m.source, options: ['rbind', ...(m.options ?? ['rw']).filter((o) => o !== 'rbind' && o !== 'bind')] })),
      ];
    }
  } else {
    // The user's own statement of what the container may do: the bundle they name, else stasis's default.
    const policySpec = rootfs.kind === 'bundle' && rootfs.userBundle !== null ? bundleBase(rootfs.userBundle).spec : defaultSpec(id, []);
    grantUserns(untrusted, policySpec);
    const result = applyRestorePolicy(untrusted, { policySpec, kind: rootfs.kind, userMounts: [...(opts.userMounts ?? []), ...engineMounts], trust: opts.trust });
    if (!result.ok) throw new RestorePolicyError(result.refused);
    ({ spec, warnings } = result);
  }
  if (spec.process) spec.process.terminal = false;
  const images = checkCriuImages(join(dir, IMAGES_DIR), spec, { trust: trusted ? 'all' : opts.trust });
  if (images.refused.length > 0) throw new RestorePolicyError(images.refused, "the checkpoint's CRIU images");
  return { spec, warnings: [...warnings, ...images.warnings] };
}
