import { statSync } from 'node:fs';
import { posix } from 'node:path';
import { StasisError } from '../errors.ts';
import type { VolumeMount } from '../state/store.ts';
import type { OciSpec } from './spec.ts';

// Volumes: host folders bind-mounted into a container (`-v HOST:CTR[:ro]`,
// `--mount type=bind,...`), recorded in its record and its spec. runc tells
// CRIU that every bind mount of the spec is external, so a checkpoint never
// holds a volume's files: an export or a move carries them beside CRIU's
// images (src/checkpoint/volumes.ts).

/** The spec's mount for a volume. */
export function volumeSpecMount(volume: VolumeMount): { destination: string; type: string; source: string; options: string[] } {
  return { destination: volume.destination, type: 'bind', source: volume.source, options: ['rbind', volume.readonly ? 'ro' : 'rw'] };
}

/** A container path made canonical: absolute, without `.`, `..`, doubled or trailing slashes. */
export function cleanDestination(path: string): string {
  return posix.normalize(path).replace(/\/+$/, '') || '/';
}

/**
 * Checks volumes before anything is made: each host folder exists, each
 * destination is absolute, not "/", and named once. Returns them with their
 * destinations made canonical.
 */
export function checkVolumes(volumes: readonly VolumeMount[]): VolumeMount[] {
  const seen = new Set<string>();
  return volumes.map((volume) => {
    if (!volume.source.startsWith('/')) throw new StasisError(`volume ${volume.source}: the host folder must be an absolute path`, { code: 'volume-relative' });
    if (!volume.destination.startsWith('/')) throw new StasisError(`volume ${volume.source}:${volume.destination}: the container path must be absolute`, { code: 'volume-relative' });
    const destination = cleanDestination(volume.destination);
    if (destination === '/') throw new StasisError(`volume ${volume.source}:/: a volume cannot be the container's root`, { code: 'volume-root' });
    if (seen.has(destination)) throw new StasisError(`two volumes on ${destination}`, { code: 'volume-twice' });
    seen.add(destination);
    const stat = statSync(volume.source, { throwIfNoEntry: false });
    if (stat === undefined) throw new StasisError(`volume ${volume.source}: no such folder on this host`, { hint: `make it first (mkdir -p ${volume.source})`, code: 'volume-missing' });
    if (!stat.isDirectory()) throw new StasisError(`volume ${volume.source}: not a folder (a volume is a host folder)`, { code: 'volume-not-folder' });
    return { source: posix.normalize(volume.source), destination, readonly: volume.readonly, ...(volume.chown ? { chown: true } : {}) };
  });
}

/** Adds the volumes' bind mounts to a spec (in place), replacing any mount on the same destination. */
export function addVolumesToSpec(spec: OciSpec, volumes: readonly VolumeMount[]): OciSpec {
  if (volumes.length === 0) return spec;
  const destinations = new Set(volumes.map((v) => v.destination));
  const kept = (spec.mounts ?? []).filter((m) => !destinations.has(cleanDestination(String((m as { destination?: unknown }).destination ?? ''))));
  spec.mounts = [...kept, ...volumes.map(volumeSpecMount)];
  return spec;
}
