import { join } from 'node:path';
import { EXIT_USAGE, StasisError } from '../errors.ts';
import { checkRootfsDir } from '../runtime/create-plan.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import { engineFileMounts, engineFiles } from './format/engine-files.ts';
import { describeEngine, type EngineInfo, type ForeignMeta } from './format/engines.ts';
import { withoutNamespacePaths, type ForeignSpec } from './format/engine-spec.ts';
import { IMAGES_DIR, SPEC_FILE } from './format/layout.ts';
import { validateDescriptors } from './format/meta.ts';
import { restoreSpec, type RestoreOptions, type RestoreParts } from './restore-inputs.ts';
import { readCheckpointJson } from './source.ts';
import { GRANT_FLAGS } from './policy/trust.ts';

// A checkpoint of podman, CRI-O or containerd, restored here (the formats are
// in docs/engine-formats.md). It is untrusted, always: its spec goes through
// the restore policy like any checkpoint from elsewhere. What stasis adds for
// it: the base must be named (an engine's image is not a folder here); the
// engine's private bind mounts (/etc/hosts, /dev/shm, ...) get files of the
// new container's own; namespaces it joined by path become new ones; its
// volumes, which no archive carries, must be given by the user.

/** The parts of a restore of another engine's checkpoint in `dir`, under `id`. */
export function foreignParts(
  host: CheckpointHost,
  dir: string,
  shown: string,
  id: string,
  info: EngineInfo,
  meta: ForeignMeta,
  warnings: string[],
  opts: RestoreOptions,
): RestoreParts {
  const what = `${shown} (${describeEngine(info)})`;
  if (opts.base?.kind === 'bundle') {
    throw new StasisError(`${what} is a checkpoint of a container on an image: it restores onto a copy of that image's root filesystem, not onto a bundle`, {
      exitCode: EXIT_USAGE,
      code: 'foreign-bundle',
    });
  }
  if (opts.base === undefined) {
    throw new StasisError(`${what} ran on the image ${meta.image.name ?? meta.image.userRequested ?? '(not named)'}, which is not in the image store: that image (--image REF) or a folder holding its root filesystem (--rootfs DIR) must be named`, {
      code: 'foreign-needs-rootfs',
    });
  }
  if ((opts.rootfsMounts ?? []).length > 0) {
    throw new StasisError("rootfs mounts are for a bundle's rootfs: this checkpoint carries its writable layer", { exitCode: EXIT_USAGE, code: 'mounts-need-bundle' });
  }
  const rootfs = { kind: 'overlay' as const, base: checkRootfsDir(opts.base.dir), userBundle: null };

  // Volumes are the user's data, never in an archive: each must be given a folder.
  const granted = new Set((opts.userMounts ?? []).map((mount) => mount.destination.replace(/\/+$/, '')));
  const volumes = meta.mounts.volumes.filter((volume) => !granted.has(volume.destination.replace(/\/+$/, '')));
  if (volumes.length > 0) {
    const listed = volumes.map((volume) => `${volume.destination} (from ${volume.source || 'an unnamed source'} where it ran)`).join(', ');
    throw new StasisError(`cannot restore from ${what}: it had ${volumes.length > 1 ? 'volumes' : 'a volume'} the checkpoint does not carry: ${listed}`, {
      code: 'foreign-volumes',
      hint: `give each a folder of yours: ${volumes.map((volume) => `${GRANT_FLAGS.mount} type=bind,source=DIR,destination=${volume.destination}`).join(' ')}`,
    });
  }

  const untrusted = readCheckpointJson<ForeignSpec>(dir, SPEC_FILE, shown);
  if (meta.namespaces.length > 0) {
    warnings.push(`the container joined ${meta.namespaces.map((ns) => `the ${ns.type} namespace ${ns.path}`).join(', ')}; it is restored into new ones (loopback only)`);
  }
  const files = engineFiles(meta.mounts.private, host.containerDir(id));
  const { spec, warnings: policyWarnings } = restoreSpec(dir, withoutNamespacePaths(untrusted), id, rootfs, false, opts, engineFileMounts(files));
  validateDescriptors(readCheckpointJson(join(dir, IMAGES_DIR), 'descriptors.json', shown));
  return {
    spec,
    rootfs,
    trusted: false,
    warnings: [...warnings, ...policyWarnings],
    runcArgs: meta.restoreArgs,
    labels: opts.labels ?? {},
    layer: meta.rootfs.diffTar === null ? null : { diffTar: meta.rootfs.diffTar, format: meta.rootfs.diffFormat, fixParents: true },
    deletions: meta.rootfs.deleted,
    rootMode: meta.rootMode ?? 0o40755,
    files,
    shmTar: meta.shmTar,
    importLog: meta.log,
    volumes: [],
    hostname: typeof spec.hostname === 'string' ? spec.hostname : meta.hostname,
  };
}
