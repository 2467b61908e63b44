import { chmodSync, closeSync, existsSync, lchownSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync, type Stats } from 'node:fs';
import { debugLog } from '../log.ts';
import { walkTree } from '../host/walk.ts';
import { dirname, join } from 'node:path';
import { StasisError, usageError } from '../errors.ts';
import { fnv1a } from '../state/hash.ts';
import type { ProcessRunner } from '../host/spawn.ts';

// User namespaces: --userns host|auto|C:H:S. The container's uids 0..S-1 are
// the host's H..H+S-1. `auto` takes a free range of 65536 from a host-wide
// registry (one file per range, made with O_EXCL, naming the container that
// holds it), so two containers never share one. The read-only base is seen
// through a copy owned by the range (made once per base and range, cached);
// the writable layer belongs to the range's root.

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export type UsernsOption = { mode: 'auto' } | { mode: 'map'; mapping: IdMapping };

/** Says the container's range is taken from the registry (create, and every restore). */
export const USERNS_ANNOTATION = 'org.stasis.userns';
/** On a restore from elsewhere: the host uid:gid of the root of the range the checkpoint's layer was written in. */
export const USERNS_LAYER_ANNOTATION = 'org.stasis.userns.layer-root';

/** podman's --userns=auto size. */
export const AUTO_SIZE = 65536;
/** Ranges `auto` hands out start here (far above the uids of a host's own users and of /etc/subuid's usual 100000). */
const AUTO_FIRST = 1 << 30;
const AUTO_SLOTS = Math.floor((0xffff_fffe - AUTO_FIRST) / AUTO_SIZE);

export function usernsRoot(): string {
  return process.env.STASIS_USERNS_DIR || '/var/lib/stasis/userns';
}

/** `host` (none), `auto`, or `CONTAINER:HOST:SIZE`. */
export function parseUserns(value: string | undefined): UsernsOption | undefined {
  if (value === undefined || value === 'host' || value === '') return undefined;
  if (value === 'auto') return { mode: 'auto' };
  const match = /^(\d+):(\d+):(\d+)$/.exec(value);
  if (!match) throw usageError(`--userns ${JSON.stringify(value)}: expected host, auto or CONTAINER:HOST:SIZE (e.g. 0:100000:65536)`);
  const [containerID, hostID, size] = match.slice(1).map(Number);
  if (containerID !== 0) throw usageError(`--userns ${value}: the mapping must start at the container's uid 0 (the container's root)`);
  if (size < 1 || hostID < 1 || hostID + size - 1 > 0xffff_fffe) throw usageError(`--userns ${value}: the host range must be within 1..4294967294, of at least one ID`);
  return { mode: 'map', mapping: { containerID, hostID, size } };
}

interface UsernsSpec {
  linux?: { namespaces?: { type: string; path?: string }[]; uidMappings?: IdMapping[]; gidMappings?: IdMapping[]; [key: string]: unknown };
  [key: string]: unknown;
}

/** The host uid/gid of the container's root when the spec has a user namespace of its own, else null. */
export function mappedRoot(spec: UsernsSpec): { uid: number; gid: number; size: number } | null {
  const linux = spec.linux;
  if (!linux?.namespaces?.some((ns) => ns.type === 'user' && ns.path === undefined)) return null;
  const uid = linux.uidMappings?.find((m) => m.containerID === 0);
  const gid = linux.gidMappings?.find((m) => m.containerID === 0);
  if (!uid || !gid) return null;
  return { uid: uid.hostID, gid: gid.hostID, size: Math.min(uid.size, gid.size) };
}

/**
 * Whether a task of a container's own user namespace (no CAP_SYS_PTRACE on
 * the host) may open a userfaultfd, as CRIU's lazy restore has each restored
 * task do: vm.unprivileged_userfaultfd is not 0 (a kernel without the knob allows it).
 */
export function unprivilegedUffd(): boolean {
  try {
    return readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim() !== '0';
  } catch {
    return true;
  }
}

/** A container's own user namespace as its spec (config.json) maps it, or null (the host's, or no spec). */
export function specUserns(configPath: string): { uidMappings: IdMapping[]; gidMappings: IdMapping[] } | null {
  let spec: UsernsSpec;
  try {
    spec = JSON.parse(readFileSync(configPath, 'utf8')) as UsernsSpec;
  } catch {
    return null;
  }
  if (mappedRoot(spec) === null) return null;
  return { uidMappings: spec.linux?.uidMappings ?? [], gidMappings: spec.linux?.gidMappings ?? [] };
}

/** Gives the spec a user namespace mapping the container's 0..size-1 onto hostID.. (uids and gids alike). */
export function setUserns(spec: UsernsSpec, mapping: IdMapping): void {
  spec.linux ??= {};
  const namespaces = (spec.linux.namespaces ?? []).filter((ns) => ns.type !== 'user');
  spec.linux.namespaces = [...namespaces, { type: 'user' }];
  spec.linux.uidMappings = [{ ...mapping }];
  spec.linux.gidMappings = [{ ...mapping }];
}

/**
 * A free range of AUTO_SIZE for container `id` of state directory `stateRoot`,
 * recorded in the registry. `prefer` is tried first (a restore keeps its
 * range when it is free, or held by this same container).
 */
export function allocateRange(stateRoot: string, containersDir: string, id: string, prefer?: number): number {
  const registry = join(usernsRoot(), 'ranges');
  mkdirSync(registry, { recursive: true, mode: 0o700 });
  const owner = `${stateRoot}\n${id}\n`;
  const candidates: number[] = [];
  if (prefer !== undefined && prefer >= AUTO_FIRST && (prefer - AUTO_FIRST) % AUTO_SIZE === 0) candidates.push(prefer);
  for (let slot = 0; slot < AUTO_SLOTS; slot++) candidates.push(AUTO_FIRST + slot * AUTO_SIZE);
  for (const start of candidates) {
    const file = join(registry, String(start));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600);
        writeSync(fd, owner);
        closeSync(fd);
        return start;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StasisError(`cannot record a user namespace range in ${registry}: ${(err as Error).message}`);
      }
      const holder = readFileSync(file, 'utf8');
      if (holder === owner) return start;
      // A range whose container is gone (deleted, or its state directory removed) is free again.
      const [holderRoot, holderId] = holder.split('\n');
      const holderDir = holderRoot === stateRoot ? join(containersDir, holderId ?? '') : join(holderRoot ?? '', 'containers', holderId ?? '');
      if (holderId && existsSync(holderDir)) break;
      rmSync(file, { force: true });
    }
  }
  throw new StasisError('no free user namespace range is left', { hint: `remove containers, or stale files in ${registry}` });
}

/** Releases the range `id` holds, if any (on delete; a stale entry is reclaimed anyway). */
export function releaseRange(stateRoot: string, id: string, start: number): void {
  const file = join(usernsRoot(), 'ranges', String(start));
  try {
    if (readFileSync(file, 'utf8') === `${stateRoot}\n${id}\n`) rmSync(file, { force: true });
  } catch (err) {
    // Not held is the usual case; anything else leaves a stale entry, reclaimed later.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') debugLog(`cannot release the user namespace range ${start} of ${id}: ${(err as Error).message}`);
  }
}

/** Shifts one file's owner into the range (ids beyond its size stay as they are: unmapped, seen as nobody). */
function shiftOwner(path: string, uid: number, gid: number, from: { uid: number; gid: number }, to: { uid: number; gid: number }, size: number, mode: number, isLink: boolean): void {
  const inFrom = (id: number, base: number) => id >= base && id < base + size;
  const newUid = inFrom(uid, from.uid) ? uid - from.uid + to.uid : uid;
  const newGid = inFrom(gid, from.gid) ? gid - from.gid + to.gid : gid;
  if (newUid === uid && newGid === gid) return;
  lchownSync(path, newUid, newGid);
  // chown clears set-user-ID and set-group-ID: put them back.
  if (!isLink && (mode & 0o6000) !== 0) chmodSync(path, mode & 0o7777);
}

/**
 * Moves the owners of every file under `dir` (and of `dir`) from one range
 * to another (0-based `from` for a base copy). Symbolic links are changed
 * themselves, never followed (walkTree).
 */
export function shiftTree(dir: string, from: { uid: number; gid: number }, to: { uid: number; gid: number }, size: number): void {
  const top = lstatSync(dir);
  shiftOwner(dir, top.uid, top.gid, from, to, size, top.mode, top.isSymbolicLink());
  if (!top.isDirectory()) return;
  for (const entry of walkTree(dir)) shiftOwner(entry.full, entry.stat.uid, entry.stat.gid, from, to, size, entry.stat.mode, entry.kind === 'symlink');
}

/** Gives every file under `dir` (and `dir`) to uid:gid (links themselves, never followed; set-ID bits kept). */
export function ownTree(dir: string, uid: number, gid: number): void {
  const give = (path: string, stat: Stats, isLink: boolean) => {
    if (stat.uid === uid && stat.gid === gid) return;
    lchownSync(path, uid, gid);
    if (!isLink && (stat.mode & 0o6000) !== 0) chmodSync(path, stat.mode & 0o7777);
  };
  const top = lstatSync(dir);
  give(dir, top, top.isSymbolicLink());
  if (!top.isDirectory()) return;
  for (const entry of walkTree(dir)) give(entry.full, entry.stat, entry.kind === 'symlink');
}

/**
 * The base as the range sees it: a copy owned by the range, made once per
 * base and range (`cp -a`, then owners shifted) and kept under the userns
 * folder. A changed base (its folder's mtime) gets a new copy.
 */
export async function shiftedBase(runner: ProcessRunner, base: string, root: { uid: number; gid: number; size: number }): Promise<string> {
  const stamp = Math.floor(statSync(base).mtimeMs).toString(36);
  const dir = join(usernsRoot(), 'bases', `${fnv1a(base)}-${stamp}-${root.uid}-${root.gid}`);
  if (existsSync(join(dir, '.stasis-complete'))) return join(dir, 'rootfs');
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true, mode: 0o711 });
  try {
    const copy = await runner.run('cp', ['-a', '--', base, join(work, 'rootfs')]);
    if (copy.exitCode !== 0) throw new StasisError(`cannot copy the base ${base} for a user namespace: ${copy.stderr.trim()}`);
    shiftTree(join(work, 'rootfs'), { uid: 0, gid: 0 }, root, root.size);
    writeFileSync(join(work, '.stasis-complete'), `${base}\n`);
    mkdirSync(dirname(dir), { recursive: true, mode: 0o711 });
    try {
      renameSync(work, dir);
    } catch (err) {
      // Another command made it meanwhile.
      if (!existsSync(join(dir, '.stasis-complete'))) throw err;
      rmSync(work, { recursive: true, force: true });
    }
  } catch (err) {
    rmSync(work, { recursive: true, force: true });
    throw err;
  }
  return join(dir, 'rootfs');
}

/**
 * runc's process in the user namespace (the range's root, with no privilege
 * on the host) must reach the rootfs: each folder above it must be
 * searchable by others. stasis's own (the state directory, containers/, the
 * container's folder) are made so (0711: searchable, not listable); any
 * other that is not is an error naming it.
 */
export function openPathTo(target: string, ownDirs: readonly string[]): void {
  for (const dir of ownDirs) {
    const mode = statSync(dir).mode & 0o777;
    if ((mode & 0o001) === 0) chmodSync(dir, mode | 0o011);
  }
  for (let dir = dirname(target); ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      throw new StasisError(`${dir} is not searchable by others (mode ${(mode & 0o777).toString(8)}): the container's root in its user namespace cannot reach its rootfs`, {
        hint: `chmod o+x ${dir}, or use a state directory whose parents are (such as /run/stasis)`,
      });
    }
    if (dir === '/') break;
  }
}
