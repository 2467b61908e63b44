import type { UserMount } from '../format/engine-spec.ts';
import { StasisError } from '../../errors.ts';
import type { OciSpec } from '../../runtime/spec.ts';
import { capabilityNumber } from '../criu/capabilities.ts';
import { RLIMIT_NAMES, type RlimitValue } from '../criu/creds.ts';
import { restoreDevices, restoreNamespaces, restoreResources } from './linux.ts';
import {
  CheckpointSpecError,
  cleanPath,
  clone,
  describeMount,
  isAbsolutePath,
  isBind,
  isObject,
  isString,
  isStringArray,
  isUint32,
  readMounts,
  sameJson,
  type OciMount,
} from './shape.ts';
import { GRANT_FLAGS, grantTrust, readHostRlimits, trusts, type PolicyRefusal, type Trust, type TrustArea } from './trust.ts';

// The restore policy: what a restored container may have, whatever its checkpoint says.
//
// A checkpoint (spec.dump, stasis.json and CRIU's images) is untrusted input. The
// security-relevant parts of the restored container come from the policy spec, the
// spec stasis itself would give the container (defaultSpec for a --rootfs restore; for a
// --bundle restore, the config.json of the bundle the user names, which is the user's
// own statement of what that container may do, exactly as for `create --bundle`).
//
// What a checkpoint may be granted beyond the policy, and how, is in trust.ts; what
// CRIU's images would give the processes is checked in policy-images.ts.
//
// What is kept from the checkpoint, because CRIU needs it to match the dumped processes:
// process args/env/cwd/user (terminal forced off), rlimits (lowered to this host's hard
// limits), hostname and domainname, the namespace types (without paths), memory/pids/cpu
// limits, harmless tmpfs mounts, and informational annotations.


export type { UserMount };

export interface RestorePolicyOptions {
  /** The spec stasis would give this container (see the comment at the top). */
  policySpec: OciSpec;
  /** How the user restores: onto a read-only base with a layer of its own, or onto a bundle. */
  kind: 'overlay' | 'bundle';
  userMounts?: readonly UserMount[];
  trust?: Trust;
  /** This host's hard limits by RLIMIT_ name; default: read from /proc/self/limits. */
  hostLimits?: ReadonlyMap<string, RlimitValue>;
}

export type RestorePolicyResult =
  | { ok: true; spec: OciSpec; warnings: string[] }
  | { ok: false; refused: PolicyRefusal[]; warnings: string[] };

const CAPABILITY_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const;

/** Annotation prefixes a runtime acts on: never taken from a checkpoint. */
const ACTIVE_ANNOTATIONS = ['org.criu.', 'org.systemd.', 'run.oci.', 'org.opencontainers.runc.', 'io.containers.trace-', 'io.kubernetes.cri-o.TrustedSandbox'];
/** Informational annotations kept (names, image references); anything else is left out. */
const KEPT_ANNOTATIONS = [/^org\.opencontainers\.image\./, /^io\.kubernetes\.cri\.container-name$/, /^io\.podman\.annotations\.checkpoint\./];

// ------------------------------------------------------------------ the spec

/** The spec to restore with, built from the policy and what CRIU needs of the checkpoint's; or every excess. */
export function applyRestorePolicy(untrusted: unknown, opts: RestorePolicyOptions): RestorePolicyResult {
  const refused: PolicyRefusal[] = [];
  const warnings: string[] = [];
  const trust = opts.trust;
  const source = 'spec.dump';
  const refuse = (area: TrustArea, what: string, asked: string, grant = grantTrust(area)) => {
    refused.push({ area, what, asked, grant, source });
  };

  if (!isObject(untrusted)) throw new CheckpointSpecError('the document', 'is not a JSON object');
  const policy = opts.policySpec;
  const spec: OciSpec = clone(policy);
  const process = untrusted.process;
  if (!isObject(process)) throw new CheckpointSpecError('process', 'is missing');
  const policyProcess = (policy.process ?? {}) as Record<string, unknown>;
  const result = (spec.process ??= {}) as Record<string, unknown>;

  // --- process: what the dumped processes were started with.
  if (!isStringArray(process.args) || process.args.length === 0) throw new CheckpointSpecError('process.args', 'is not a non-empty array of strings');
  result.args = [...process.args];
  if (process.env !== undefined) {
    if (!isStringArray(process.env) || process.env.some((entry) => !entry.includes('='))) throw new CheckpointSpecError('process.env', 'is not an array of NAME=VALUE strings');
    result.env = [...process.env];
  }
  if (process.cwd !== undefined) {
    if (!isAbsolutePath(process.cwd)) throw new CheckpointSpecError('process.cwd', 'is not an absolute path');
    result.cwd = process.cwd;
  }
  if (process.terminal === true) warnings.push('the checkpoint\'s process had a terminal; it is restored without one (its stdio are pipes)');
  result.terminal = false;
  result.user = readUser(process.user, policyProcess.user);
  if (process.rlimits !== undefined) result.rlimits = readRlimits(process.rlimits, opts.hostLimits ?? readHostRlimits(), warnings);

  // --- capabilities
  const asked = readCapabilities(process.capabilities);
  const allowed = (policyProcess.capabilities ?? {}) as Partial<Record<(typeof CAPABILITY_SETS)[number], string[]>>;
  if (asked.unknown.length > 0 && !trusts(trust, 'capabilities')) {
    refuse('capabilities', `capabilities ${asked.unknown.join(', ')}`, 'names Linux does not have');
  }
  if (trusts(trust, 'capabilities')) {
    if (asked.sets !== null) result.capabilities = asked.sets;
  } else if (asked.sets !== null) {
    const kept: Record<string, string[]> = {};
    const excess = new Map<string, string[]>();
    for (const set of CAPABILITY_SETS) {
      const policySet = new Set(allowed[set] ?? []);
      const askedSet = asked.sets[set];
      for (const name of askedSet ?? []) {
        if (!policySet.has(name)) excess.set(name, [...(excess.get(name) ?? []), set]);
      }
      // The smaller of the two: what exec'd processes get should not exceed what the restored ones hold.
      if (askedSet !== undefined) kept[set] = askedSet.filter((name) => policySet.has(name));
      else if (allowed[set] !== undefined) kept[set] = [...policySet].filter((name) => asked.sets!.bounding === undefined || asked.sets!.bounding.includes(name));
    }
    for (const [name, sets] of excess) refuse('capabilities', `capability ${name}`, `in its ${sets.join(', ')} set${sets.length > 1 ? 's' : ''}`);
    result.capabilities = kept;
  }
  if (policyProcess.noNewPrivileges === true && process.noNewPrivileges !== true) {
    warnings.push('the checkpoint\'s spec turns noNewPrivileges off; the policy keeps it on');
  }
  for (const field of ['apparmorProfile', 'selinuxLabel', 'oomScoreAdj', 'scheduler', 'ioPriority', 'execCPUAffinity'] as const) {
    if (process[field] === undefined || sameJson(process[field], policyProcess[field])) continue;
    if (trusts(trust, 'security')) result[field] = clone(process[field]);
    else warnings.push(`the checkpoint's process.${field} ${JSON.stringify(process[field])} is not used; the policy's is (${JSON.stringify(policyProcess[field] ?? null)})`);
  }

  // --- hostname, domainname
  for (const field of ['hostname', 'domainname'] as const) {
    const value = untrusted[field];
    if (value === undefined) continue;
    if (!isString(value) || !/^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})?$/.test(value)) throw new CheckpointSpecError(field, 'is not a valid host name');
    spec[field] = value;
  }

  // --- hooks: never from an untrusted checkpoint; the policy's (a user's bundle) stay.
  const hooks = readHooks(untrusted.hooks);
  if (hooks.length > 0) {
    if (trusts(trust, 'hooks')) spec.hooks = clone(untrusted.hooks);
    else warnings.push(`the checkpoint's hooks are not run: ${hooks.map((h) => `${h.kind} ${h.path}`).join(', ')}`);
  }

  // --- mounts
  spec.mounts = restoreMounts(readMounts(untrusted.mounts, 'mounts'), readMounts(policy.mounts, 'policy mounts'), opts, refuse, warnings);

  // --- linux
  const linux = untrusted.linux === undefined ? {} : untrusted.linux;
  if (!isObject(linux)) throw new CheckpointSpecError('linux', 'is not an object');
  const policyLinux = (policy.linux ?? {}) as Record<string, unknown>;
  const resultLinux = (spec.linux = clone(policyLinux)) as Record<string, unknown>;
  delete resultLinux.cgroupsPath;

  restoreNamespaces(linux, policyLinux.namespaces, resultLinux, trust, refuse, warnings);
  restoreDevices(linux, policyLinux, resultLinux, trust, refuse);
  restoreResources(linux.resources, resultLinux, warnings);

  for (const field of ['seccomp', 'maskedPaths', 'readonlyPaths', 'sysctl', 'rootfsPropagation', 'mountLabel', 'intelRdt', 'personality', 'timeOffsets'] as const) {
    if (sameJson(linux[field], policyLinux[field])) continue;
    if (trusts(trust, 'security')) {
      if (linux[field] === undefined) delete resultLinux[field];
      else resultLinux[field] = clone(linux[field]);
      continue;
    }
    const missing = Array.isArray(policyLinux[field]) && Array.isArray(linux[field])
      ? (policyLinux[field] as unknown[]).filter((entry) => !(linux[field] as unknown[]).some((other) => sameJson(other, entry)))
      : [];
    if (linux[field] === undefined) warnings.push(`the checkpoint's spec has no linux.${field}; the policy's is used`);
    else if (missing.length > 0) warnings.push(`the checkpoint's linux.${field} leaves out ${missing.map((entry) => JSON.stringify(entry)).join(', ')}; the policy's is used`);
    else warnings.push(`the checkpoint's linux.${field} is not used; the policy's is`);
  }

  // --- root: stasis sets the path; read-only-ness is the policy's.
  if (isObject(untrusted.root) && untrusted.root.readonly !== undefined && untrusted.root.readonly !== (policy.root?.readonly ?? false)) {
    warnings.push(`the checkpoint's root.readonly (${String(untrusted.root.readonly)}) is not used; the policy's is`);
  }

  // --- annotations
  spec.annotations = restoreAnnotations(untrusted.annotations, policy.annotations, warnings);

  return refused.length > 0 ? { ok: false, refused, warnings } : { ok: true, spec, warnings };
}

function readUser(value: unknown, policyUser: unknown): Record<string, unknown> {
  if (value === undefined) return clone((policyUser ?? { uid: 0, gid: 0 }) as Record<string, unknown>);
  if (!isObject(value) || !isUint32(value.uid) || !isUint32(value.gid)) throw new CheckpointSpecError('process.user', 'needs numeric uid and gid');
  const user: Record<string, unknown> = { uid: value.uid, gid: value.gid };
  if (value.additionalGids !== undefined) {
    if (!Array.isArray(value.additionalGids) || !value.additionalGids.every(isUint32)) throw new CheckpointSpecError('process.user.additionalGids', 'is not an array of group IDs');
    user.additionalGids = [...value.additionalGids];
  }
  if (value.umask !== undefined) {
    if (!Number.isInteger(value.umask) || (value.umask as number) < 0 || (value.umask as number) > 0o777) throw new CheckpointSpecError('process.user.umask', 'is not a umask');
    user.umask = value.umask;
  }
  return user;
}

const RLIMIT_TYPES = new Set(RLIMIT_NAMES);

function readRlimits(value: unknown, hostLimits: ReadonlyMap<string, RlimitValue>, warnings: string[]): unknown[] {
  if (!Array.isArray(value)) throw new CheckpointSpecError('process.rlimits', 'is not an array');
  const seen = new Set<string>();
  const kept: { type: string; soft: number; hard: number }[] = [];
  value.forEach((limit, index) => {
    if (!isObject(limit) || !isString(limit.type) || !Number.isSafeInteger(limit.soft) || !Number.isSafeInteger(limit.hard)
      || (limit.soft as number) < 0 || (limit.hard as number) < 0) {
      throw new CheckpointSpecError(`process.rlimits[${index}]`, 'needs a type and numeric soft and hard limits');
    }
    const type = limit.type;
    if (!RLIMIT_TYPES.has(type)) {
      warnings.push(`the checkpoint's rlimit ${type} is not a Linux resource limit; it is left out`);
      return;
    }
    if (seen.has(type)) throw new CheckpointSpecError(`process.rlimits[${index}]`, `repeats ${type}`);
    seen.add(type);
    let hard = limit.hard as number;
    let soft = limit.soft as number;
    const hostHard = hostLimits.get(type);
    if (hostHard !== undefined && hostHard !== 'unlimited' && hard > hostHard) {
      warnings.push(`the checkpoint's ${type} hard limit ${hard} is above this host's ${hostHard}; it is lowered to ${hostHard}`);
      hard = hostHard;
    }
    if (soft > hard) soft = hard;
    kept.push({ type, hard, soft });
  });
  return kept;
}

function readCapabilities(value: unknown): { sets: Partial<Record<(typeof CAPABILITY_SETS)[number], string[]>> | null; unknown: string[] } {
  if (value === undefined) return { sets: null, unknown: [] };
  if (!isObject(value)) throw new CheckpointSpecError('process.capabilities', 'is not an object');
  const sets: Partial<Record<(typeof CAPABILITY_SETS)[number], string[]>> = {};
  const unknown = new Set<string>();
  for (const set of CAPABILITY_SETS) {
    const names = value[set];
    if (names === undefined) continue;
    if (!isStringArray(names)) throw new CheckpointSpecError(`process.capabilities.${set}`, 'is not an array of names');
    sets[set] = [];
    for (const name of names) {
      const number = capabilityNumber(name);
      if (number === undefined) unknown.add(name);
      else sets[set].push(name.toUpperCase().startsWith('CAP_') ? name.toUpperCase() : `CAP_${name.toUpperCase()}`);
    }
  }
  return { sets, unknown: [...unknown] };
}

function readHooks(value: unknown): { kind: string; path: string }[] {
  if (value === undefined || value === null) return [];
  if (!isObject(value)) throw new CheckpointSpecError('hooks', 'is not an object');
  const hooks: { kind: string; path: string }[] = [];
  for (const [kind, list] of Object.entries(value)) {
    if (!Array.isArray(list)) throw new CheckpointSpecError(`hooks.${kind}`, 'is not an array');
    for (const hook of list) hooks.push({ kind, path: isObject(hook) && isString(hook.path) ? hook.path : '(no path)' });
  }
  return hooks;
}

function restoreMounts(
  asked: OciMount[],
  policyMounts: OciMount[],
  opts: RestorePolicyOptions,
  refuse: (area: TrustArea, what: string, asked: string, grant?: string) => void,
  warnings: string[],
): OciMount[] {
  const userMounts = (opts.userMounts ?? []).map((mount, index): OciMount => {
    if (!isAbsolutePath(mount.destination) || !isAbsolutePath(mount.source)) {
      throw new StasisError(`user mount ${index + 1}: source and destination must be absolute paths`);
    }
    const options = mount.options ?? [];
    return { destination: cleanPath(mount.destination), type: 'bind', source: mount.source, options: options.some((o) => o === 'bind' || o === 'rbind') ? options : ['rbind', ...options] };
  });
  const byDestination = (list: OciMount[], destination: string) => list.find((mount) => mount.destination === destination);
  let base: OciMount[];
  if (trusts(opts.trust, 'mounts')) {
    base = asked.map(clone);
  } else {
    base = policyMounts.map(clone);
    for (const mount of asked) {
      if (byDestination(userMounts, mount.destination) || byDestination(policyMounts, mount.destination)) continue;
      // A tmpfs is memory of the container's own; CRIU recreates it with its contents.
      if (mount.type === 'tmpfs' && !isBind(mount)) {
        base.push(clone(mount));
        continue;
      }
      const grant = isBind(mount)
        ? `${GRANT_FLAGS.mount} type=bind,source=DIR,destination=${mount.destination} (a folder of yours in its place)${opts.kind === 'bundle' ? `, a ${GRANT_FLAGS.bundle} DIR whose config.json mounts ${mount.destination}` : ''}, or ${grantTrust('mounts')} to use the checkpoint's source as it is`
        : grantTrust('mounts');
      refuse('mounts', `mount ${mount.destination}`, describeMount(mount), grant);
    }
  }
  for (const mount of userMounts) {
    if (!byDestination(asked, mount.destination)) {
      warnings.push(`the checkpoint has no mount at ${mount.destination}: CRIU restores the mounts it recorded, so ${mount.source} is not mounted there`);
    }
  }
  const userDestinations = new Set(userMounts.map((m) => m.destination));
  return [...base.filter((mount) => !userDestinations.has(mount.destination)), ...userMounts];
}

function restoreAnnotations(value: unknown, policyAnnotations: Record<string, string> | undefined, warnings: string[]): Record<string, string> {
  const result: Record<string, string> = { ...policyAnnotations };
  if (value === undefined) return result;
  if (!isObject(value)) throw new CheckpointSpecError('annotations', 'is not an object');
  const active: string[] = [];
  for (const [key, entry] of Object.entries(value)) {
    if (ACTIVE_ANNOTATIONS.some((prefix) => key.startsWith(prefix))) {
      active.push(`${key}=${JSON.stringify(entry)}`);
      continue;
    }
    if (!isString(entry) || key.length > 256 || entry.length > 4096) continue;
    if (KEPT_ANNOTATIONS.some((pattern) => pattern.test(key)) && !(key in result)) result[key] = entry;
  }
  if (active.length > 0) warnings.push(`the checkpoint's annotations that runc or CRIU act on are left out: ${active.join(', ')}`);
  return result;
}
