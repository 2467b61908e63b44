import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError, usageError } from '../errors.ts';
import { CAPABILITY_NAMES, capabilityNumber } from '../host/capabilities.ts';
import { AUTO_SIZE, setUserns, USERNS_ANNOTATION, type UsernsOption } from './userns.ts';

// Who the container's process is: --user resolved in the rootfs's own
// /etc/passwd and /etc/group, its capabilities (--cap-add, --cap-drop) and
// its host name. Pure functions over the rootfs and the spec.

/**
 * The default capability set: the one podman's containers.conf ships, which
 * lets a distribution's service start as root, chown its files and drop to
 * its own user, plus CAP_AUDIT_WRITE, so that it holds all of runc's three
 * (`runc spec`: AUDIT_WRITE, KILL, NET_BIND_SERVICE) and the checkpoints of
 * containers made with those restore under the policy as before.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_AUDIT_WRITE', 'CAP_SETFCAP',
];

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const ID = /^\d{1,10}$/;
const MAX_ID = 0xffff_fffe;

function parseId(text: string): number | null {
  if (!ID.test(text)) return null;
  const value = Number(text);
  return value <= MAX_ID ? value : null;
}

/** /etc/passwd lines (name:x:uid:gid:gecos:home:shell); malformed lines and comments are skipped, as libc does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length < 7 || fields[0] === '') continue;
    const uid = parseId(fields[2]);
    const gid = parseId(fields[3]);
    if (uid === null || gid === null) continue;
    entries.push({ name: fields[0], uid, gid, home: fields[5], shell: fields[6] });
  }
  return entries;
}

/** /etc/group lines (name:x:gid:member,member). */
export function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length < 4 || fields[0] === '') continue;
    const gid = parseId(fields[2]);
    if (gid === null) continue;
    entries.push({ name: fields[0], gid, members: fields[3].split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return entries;
}

/**
 * Reads a file of the rootfs as the container would see it: symbolic links
 * are followed inside the rootfs (an absolute target is taken from the
 * rootfs's root), never onto the host. null when it does not exist.
 */
export function readInRoot(root: string, path: string): string | null {
  const pending = path.split('/').filter(Boolean);
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const here = join(root, ...done, part);
    const stat = lstatSync(here, { throwIfNoEntry: false });
    if (stat === undefined) return null;
    if (stat.isSymbolicLink()) {
      if (++links > 40) return null;
      const target = readlinkSync(here);
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...target.split('/').filter(Boolean));
      continue;
    }
    if (pending.length > 0 && !stat.isDirectory()) return null;
    if (pending.length === 0 && !stat.isFile()) return null;
    done.push(part);
  }
  if (done.length === 0) return null;
  return readFileSync(join(root, ...done), 'utf8');
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** From passwd; null for a number it does not list. */
  home: string | null;
}

/**
 * `--user NAME|UID[:GROUP|GID]` resolved in `rootfs`'s /etc/passwd and
 * /etc/group, as podman and runc do: a name must be listed; a number need not
 * be (its group is then 0, or the one given). The supplementary groups are
 * those that list the user by name.
 */
export function resolveUser(rootfs: string, value: string): ResolvedUser {
  const flag = `--user ${JSON.stringify(value)}`;
  const colon = value.indexOf(':');
  const userPart = colon < 0 ? value : value.slice(0, colon);
  const groupPart = colon < 0 ? undefined : value.slice(colon + 1);
  if (userPart === '' || groupPart === '' || (groupPart !== undefined && groupPart.includes(':'))) {
    throw usageError(`${flag}: expected NAME or UID, optionally followed by :GROUP or :GID`);
  }
  const passwdText = safeRead(rootfs, '/etc/passwd');
  const passwd = passwdText === null ? [] : parsePasswd(passwdText);
  const groupText = safeRead(rootfs, '/etc/group');
  const groups = groupText === null ? [] : parseGroup(groupText);

  let entry: PasswdEntry | undefined;
  let uid: number;
  const numericUser = /^\d+$/.test(userPart);
  if (numericUser) {
    const parsed = parseId(userPart);
    if (parsed === null) throw usageError(`${flag}: user ID ${userPart} is out of range`);
    uid = parsed;
    entry = passwd.find((e) => e.uid === uid);
  } else {
    entry = passwd.find((e) => e.name === userPart);
    if (entry === undefined) {
      throw usageError(
        `${flag}: no user ${JSON.stringify(userPart)} in the container's /etc/passwd${passwdText === null ? ' (the rootfs has none)' : ''}`,
        'give a user listed in the rootfs\'s /etc/passwd, or a numeric UID[:GID]',
      );
    }
    uid = entry.uid;
  }

  let gid: number;
  if (groupPart === undefined) {
    gid = entry?.gid ?? 0;
  } else if (/^\d+$/.test(groupPart)) {
    const parsed = parseId(groupPart);
    if (parsed === null) throw usageError(`${flag}: group ID ${groupPart} is out of range`);
    gid = parsed;
  } else {
    const group = groups.find((g) => g.name === groupPart);
    if (group === undefined) {
      throw usageError(
        `${flag}: no group ${JSON.stringify(groupPart)} in the container's /etc/group${groupText === null ? ' (the rootfs has none)' : ''}`,
        'give a group listed in the rootfs\'s /etc/group, or a numeric GID',
      );
    }
    gid = group.gid;
  }
  const name = entry?.name;
  const additionalGids = name === undefined ? [] : [...new Set(groups.filter((g) => g.members.includes(name) && g.gid !== gid).map((g) => g.gid))];
  return { uid, gid, additionalGids, home: entry?.home || null };
}

function safeRead(rootfs: string, path: string): string | null {
  try {
    return readInRoot(rootfs, path);
  } catch (err) {
    throw new StasisError(`cannot read ${path} of rootfs ${rootfs}: ${(err as Error).message}`);
  }
}

/** A capability name as the spec spells it (CAP_X), from `x`, `cap_x` or `CAP_X`; ALL as is. */
export function capabilityName(flag: string, value: string): string {
  const upper = value.trim().toUpperCase();
  if (upper === 'ALL' || upper === 'CAP_ALL') return 'ALL';
  if (capabilityNumber(upper) === undefined) {
    throw usageError(`--${flag} ${JSON.stringify(value)}: not a Linux capability`, 'names such as NET_ADMIN or CAP_SYS_PTRACE, or ALL');
  }
  return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}

/**
 * The capability set from the default, --cap-add and --cap-drop, as podman
 * computes it: `--cap-add ALL` gives all but the dropped ones; `--cap-drop ALL`
 * gives only the added ones; otherwise default + added - dropped.
 */
export function capabilitySet(add: readonly string[], drop: readonly string[], base: readonly string[] = DEFAULT_CAPABILITIES, held: readonly string[] = CAPABILITY_NAMES): string[] {
  const added = add.map((c) => capabilityName('cap-add', c));
  const dropped = drop.map((c) => capabilityName('cap-drop', c));
  let set: Set<string>;
  if (added.includes('ALL')) {
    // Every capability stasis itself holds: runc cannot give one that its caller lacks.
    set = new Set(held);
    for (const name of dropped) if (name !== 'ALL') set.delete(name);
    return CAPABILITY_NAMES.filter((name) => set.has(name));
  }
  set = dropped.includes('ALL') ? new Set() : new Set(base);
  for (const name of added) {
    if (!held.includes(name)) {
      throw new StasisError(`--cap-add ${name}: stasis itself does not hold ${name} on this host, so the container cannot be given it`, {
        hint: 'see the capabilities of stasis\'s own process: grep Cap /proc/self/status',
      });
    }
    set.add(name);
  }
  if (!dropped.includes('ALL')) for (const name of dropped) set.delete(name);
  return CAPABILITY_NAMES.filter((name) => set.has(name));
}

/** The capabilities in this process's bounding set (what runc, as its child, can give). */
export function heldCapabilities(statusText?: string): string[] {
  let text = statusText;
  try {
    text ??= readFileSync('/proc/self/status', 'utf8');
  } catch {
    return [...CAPABILITY_NAMES];
  }
  const match = /^CapBnd:\s*([0-9a-f]+)$/m.exec(text);
  if (!match) return [...CAPABILITY_NAMES];
  const mask = BigInt(`0x${match[1]}`);
  return CAPABILITY_NAMES.filter((_name, bit) => ((mask >> BigInt(bit)) & 1n) === 1n);
}

/** A host name the kernel and resolvers take: RFC 1123 labels, at most 64 characters. */
export function checkHostname(value: string): string {
  if (value.length > 64 || !/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(value)) {
    throw usageError(`--hostname ${JSON.stringify(value)}: not a valid host name`, 'letters, digits and "-", in labels separated by ".", at most 64 characters');
  }
  return value;
}

export interface IdentityOptions {
  /** --userns: absent for the host's. */
  userns?: UsernsOption;
  user?: string;
  capAdd?: string[];
  capDrop?: string[];
  hostname?: string;
}

interface SpecProcess {
  user?: { uid: number; gid: number; additionalGids?: number[]; [key: string]: unknown };
  env?: string[];
  capabilities?: Record<string, string[]>;
  [key: string]: unknown;
}

/** Applies --user, --cap-add/--cap-drop and --hostname to a spec (in place); `rootfs` is where /etc/passwd is read. */
export function applyIdentity(spec: { process?: SpecProcess; hostname?: string; linux?: { namespaces?: { type: string; path?: string }[] } & Record<string, unknown> }, rootfs: string, opts: IdentityOptions): void {
  const proc = (spec.process ??= {});
  if (opts.user !== undefined) {
    const user = resolveUser(rootfs, opts.user);
    proc.user = { ...(proc.user ?? {}), uid: user.uid, gid: user.gid, additionalGids: user.additionalGids };
    if (user.additionalGids.length === 0) delete proc.user.additionalGids;
    const env = proc.env ?? [];
    if (!env.some((entry) => entry.startsWith('HOME='))) proc.env = [...env, `HOME=${user.home ?? '/'}`];
  }
  const added = (opts.capAdd ?? []).map((c) => capabilityName('cap-add', c));
  if (added.length > 0 || (opts.capDrop ?? []).length > 0) {
    const current = proc.capabilities?.bounding ?? DEFAULT_CAPABILITIES;
    const set = capabilitySet(opts.capAdd ?? [], opts.capDrop ?? [], current, heldCapabilities());
    proc.capabilities = { bounding: [...set], effective: [...set], permitted: [...set] };
  }
  // A process of a user other than root keeps its capabilities in the bounding set only (execve
  // as non-root clears the others), as with podman; those given with --cap-add it holds too (ambient).
  if (proc.capabilities && proc.user && proc.user.uid !== 0) {
    const bounding = [...(proc.capabilities.bounding ?? [])];
    const held = added.includes('ALL') ? bounding : bounding.filter((name) => added.includes(name));
    proc.capabilities = { bounding, effective: [...held], permitted: [...held], inheritable: [...held], ambient: [...held] };
  }
  if (opts.userns !== undefined) {
    // auto: the range is taken when the container is made (provision), recorded in the annotation.
    const mapping = opts.userns.mode === 'map' ? opts.userns.mapping : { containerID: 0, hostID: 0, size: AUTO_SIZE };
    setUserns(spec, mapping);
    if (opts.userns.mode === 'auto') (spec as { annotations?: Record<string, string> }).annotations = { ...(spec as { annotations?: Record<string, string> }).annotations, [USERNS_ANNOTATION]: 'auto' };
    const uid = proc.user?.uid ?? 0;
    const gid = proc.user?.gid ?? 0;
    if ([uid, gid, ...(proc.user?.additionalGids ?? [])].some((id) => id >= mapping.size)) {
      throw usageError(`--user ${opts.user ?? '0'}: its IDs are beyond the user namespace's ${mapping.size}`, 'give a user whose uid and gids are within the mapping');
    }
  }
  if (opts.hostname !== undefined) {
    const hasUts = (spec.linux?.namespaces ?? []).some((ns) => ns.type === 'uts');
    if (!hasUts) throw usageError('--hostname needs a UTS namespace: the bundle\'s config.json has none');
    spec.hostname = checkHostname(opts.hostname);
  }
}
