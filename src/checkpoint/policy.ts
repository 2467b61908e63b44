import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, posix } from 'node:path';
import { StasisError } from '../errors.ts';
import type { OciSpec } from '../runtime/spec.ts';
import { capabilityNumber } from './capabilities.ts';
import { capabilityExcess, readCriuProcesses, RLIMIT_NAMES, type CriuProcesses, type NamespaceKind, type RlimitValue } from './criu-creds.ts';
import { readImageMounts, type ImageMount } from './criu-mounts.ts';

// The restore policy: what a restored container may have, whatever its checkpoint says.
//
// A checkpoint (spec.dump, stasis.json and CRIU's images) is untrusted input. The
// security-relevant parts of the restored container come from the policy spec, the
// spec stasis itself would give the container (defaultSpec for a --rootfs restore; for a
// --bundle restore, the config.json of the bundle the user names, which is the user's
// own statement of what that container may do, exactly as for `create --bundle`).
//
// Grant model. Each thing a checkpoint can ask for beyond the policy belongs to one
// trust area. Restore refuses a checkpoint that asks for more than the policy in an area
// the caller did not trust, listing every excess with the way to grant it; nothing that
// matters is dropped silently, because CRIU restores the mount tree, credentials and
// namespaces its images record, so a restore that quietly left an extra mount or
// capability out of the spec would either fail inside CRIU or not take it away at all.
//   - mounts: a bind mount is granted one destination at a time by the user naming its
//     source (userMounts), or by a bundle whose config.json has it; trusting the area
//     takes the checkpoint's own sources.
//   - everything else is granted per area (`trust`), or all at once ('all'): an admin's
//     explicit, knowing decision for a checkpoint they vouch for.
// Hooks are never taken from an untrusted checkpoint unless the area is trusted, and
// dropping them is safe, so they are dropped with a warning rather than refused. The same
// goes for fields the policy replaces without loss (seccomp, AppArmor, masked paths in the
// spec): the spec gets the policy's, a warning says what the checkpoint asked for, and
// what the processes really get is checked in CRIU's images (checkRestoredImages).
//
// What is kept from the checkpoint, because CRIU needs it to match the dumped processes:
// process args/env/cwd/user (terminal forced off), rlimits (lowered to this host's hard
// limits), hostname and domainname, the namespace types (without paths), memory/pids/cpu
// limits, harmless tmpfs mounts, and informational annotations.

export type TrustArea = 'hooks' | 'mounts' | 'capabilities' | 'devices' | 'namespaces' | 'security' | 'rlimits';
export const TRUST_AREAS: readonly TrustArea[] = ['hooks', 'mounts', 'capabilities', 'devices', 'namespaces', 'security', 'rlimits'];

/** Spellings of the command-line grants named in refusals (data for the message; the command layer owns the flags). */
export const GRANT_FLAGS = {
  trust: '--trust-checkpoint',
  mount: '--mount',
  bundle: '--bundle',
};

export type Trust = readonly TrustArea[] | 'all';

/** A bind mount the user names on the command line. */
export interface UserMount {
  destination: string;
  source: string;
  options?: string[];
}

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

export interface PolicyRefusal {
  area: TrustArea;
  /** The thing asked for: "mount /data", "capability CAP_SYS_ADMIN". */
  what: string;
  /** What the checkpoint asks, in words. */
  asked: string;
  /** How to grant it, naming the command-line flags. */
  grant: string;
  /** Where it was found: spec.dump, or a CRIU image. */
  source: string;
}

export type RestorePolicyResult =
  | { ok: true; spec: OciSpec; warnings: string[] }
  | { ok: false; refused: PolicyRefusal[]; warnings: string[] };

/** A refusal as one error: every excess on its own line, the grants in the hint. */
export class RestorePolicyError extends StasisError {
  readonly refused: PolicyRefusal[];
  constructor(refused: PolicyRefusal[], subject = 'the checkpoint') {
    const lines = refused.map((r) => `  ${r.what}: ${r.asked} (${r.source})`);
    const grants = [...new Set(refused.map((r) => r.grant))];
    super(`${subject} asks for more than stasis's restore policy allows:\n${lines.join('\n')}`, {
      hint: `to grant it: ${grants.join('; ')}`,
    });
    this.name = 'RestorePolicyError';
    this.refused = refused;
  }
}

function trusts(trust: Trust | undefined, area: TrustArea): boolean {
  return trust === 'all' || (trust?.includes(area) ?? false);
}

function grantTrust(area: TrustArea): string {
  return `${GRANT_FLAGS.trust} ${area}`;
}

// ------------------------------------------------------------------ host limits

const PROC_LIMIT_NAMES: Record<string, string> = {
  'Max cpu time': 'RLIMIT_CPU',
  'Max file size': 'RLIMIT_FSIZE',
  'Max data size': 'RLIMIT_DATA',
  'Max stack size': 'RLIMIT_STACK',
  'Max core file size': 'RLIMIT_CORE',
  'Max resident set': 'RLIMIT_RSS',
  'Max processes': 'RLIMIT_NPROC',
  'Max open files': 'RLIMIT_NOFILE',
  'Max locked memory': 'RLIMIT_MEMLOCK',
  'Max address space': 'RLIMIT_AS',
  'Max file locks': 'RLIMIT_LOCKS',
  'Max pending signals': 'RLIMIT_SIGPENDING',
  'Max msgqueue size': 'RLIMIT_MSGQUEUE',
  'Max nice priority': 'RLIMIT_NICE',
  'Max realtime priority': 'RLIMIT_RTPRIO',
  'Max realtime timeout': 'RLIMIT_RTTIME',
};

/** Hard limits from the text of /proc/PID/limits (Node has no getrlimit). */
export function parseProcLimits(text: string): Map<string, RlimitValue> {
  const limits = new Map<string, RlimitValue>();
  for (const line of text.split('\n')) {
    const match = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    const type = match ? PROC_LIMIT_NAMES[match[1]] : undefined;
    if (!match || !type) continue;
    const hard = match[3] === 'unlimited' ? 'unlimited' : Number(match[3]);
    if (hard === 'unlimited' || Number.isFinite(hard)) limits.set(type, hard);
  }
  return limits;
}

let hostLimitsCache: Map<string, RlimitValue> | null = null;
export function readHostRlimits(): Map<string, RlimitValue> {
  if (hostLimitsCache === null) {
    try {
      hostLimitsCache = parseProcLimits(readFileSync('/proc/self/limits', 'utf8'));
    } catch {
      hostLimitsCache = new Map();
    }
  }
  return hostLimitsCache;
}

function exceeds(value: RlimitValue, limit: RlimitValue | undefined): boolean {
  if (limit === undefined || limit === 'unlimited') return false;
  return value === 'unlimited' || value > limit;
}

// ------------------------------------------------------------------ checking shapes

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isString = (value: unknown): value is string => typeof value === 'string' && !value.includes('\0');
const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every(isString);
const isUint32 = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff_ffff;

/** A malformed field: the spec cannot be used at all. */
export class CheckpointSpecError extends StasisError {
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`the checkpoint's spec.dump is not a usable OCI spec: ${field} ${problem}`, {
      hint: 'the checkpoint is damaged or was not written by a container engine; take it again',
    });
    this.name = 'CheckpointSpecError';
    this.field = field;
  }
}

function isAbsolutePath(value: unknown): value is string {
  return isString(value) && isAbsolute(value) && value.length <= 4096;
}

/** "/a/./b/" → "/a/b" (and "/../x" → "/x": runc resolves destinations inside the rootfs anyway). */
function cleanPath(path: string): string {
  const clean = posix.normalize(path);
  return clean.length > 1 ? clean.replace(/\/+$/, '') : clean;
}

const NAMESPACE_TYPES: readonly string[] = ['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time'];
const NAMESPACE_KIND: Record<string, NamespaceKind> = {
  pid: 'pid', network: 'network', mount: 'mount', ipc: 'ipc', uts: 'uts', user: 'user', cgroup: 'cgroup', time: 'time',
};
const CAPABILITY_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const;

/** Annotation prefixes a runtime acts on: never taken from a checkpoint. */
const ACTIVE_ANNOTATIONS = ['org.criu.', 'org.systemd.', 'run.oci.', 'org.opencontainers.runc.', 'io.containers.trace-', 'io.kubernetes.cri-o.TrustedSandbox'];
/** Informational annotations kept (names, image references); anything else is left out. */
const KEPT_ANNOTATIONS = [/^org\.opencontainers\.image\./, /^io\.kubernetes\.cri\.container-name$/, /^io\.podman\.annotations\.checkpoint\./];

interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [key: string]: unknown;
}

function readMounts(value: unknown, field: string): OciMount[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new CheckpointSpecError(field, 'is not an array');
  return value.map((mount, index) => {
    if (!isObject(mount) || !isAbsolutePath(mount.destination)) throw new CheckpointSpecError(`${field}[${index}]`, 'has no absolute destination');
    if (mount.type !== undefined && !isString(mount.type)) throw new CheckpointSpecError(`${field}[${index}].type`, 'is not a string');
    if (mount.source !== undefined && !isString(mount.source)) throw new CheckpointSpecError(`${field}[${index}].source`, 'is not a string');
    if (mount.options !== undefined && !isStringArray(mount.options)) throw new CheckpointSpecError(`${field}[${index}].options`, 'is not an array of strings');
    return { ...mount, destination: cleanPath(mount.destination) } as OciMount;
  });
}

function isBind(mount: OciMount): boolean {
  return mount.type === 'bind' || mount.type === undefined || (mount.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

function describeMount(mount: OciMount): string {
  const options = mount.options && mount.options.length > 0 ? mount.options.join(',') : 'no options';
  const writable = (mount.options ?? []).includes('ro') ? 'read-only' : 'read-write';
  if (isBind(mount)) return `a ${writable} bind mount of ${mount.source ?? '(no source)'} (${options})`;
  return `a ${mount.type} mount of ${mount.source ?? mount.type} (${options})`;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

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
      else if (allowed[set] !== undefined) kept[set] = [...policySet];
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

function restoreNamespaces(
  linux: Record<string, unknown>,
  policyValue: unknown,
  resultLinux: Record<string, unknown>,
  trust: Trust | undefined,
  refuse: (area: TrustArea, what: string, asked: string, grant?: string) => void,
  warnings: string[],
): void {
  const value = linux.namespaces;
  if (value !== undefined && !Array.isArray(value)) throw new CheckpointSpecError('linux.namespaces', 'is not an array');
  const asked = (value ?? []) as unknown[];
  const entries = asked.map((ns, index) => {
    if (!isObject(ns) || !isString(ns.type) || !NAMESPACE_TYPES.includes(ns.type)) throw new CheckpointSpecError(`linux.namespaces[${index}]`, 'is not a namespace of a known type');
    if (ns.path !== undefined && !isAbsolutePath(ns.path)) throw new CheckpointSpecError(`linux.namespaces[${index}].path`, 'is not an absolute path');
    return { type: ns.type, path: ns.path as string | undefined };
  });
  const policyTypes = new Set(((policyValue ?? []) as { type: string }[]).map((ns) => ns.type));
  const askedTypes = new Set(entries.map((ns) => ns.type));
  if (trusts(trust, 'namespaces')) {
    resultLinux.namespaces = entries.map((ns) => (ns.path === undefined ? { type: ns.type } : { type: ns.type, path: ns.path }));
    // The ID mappings belong with the user namespace they were dumped in.
    if (askedTypes.has('user')) {
      for (const field of ['uidMappings', 'gidMappings'] as const) {
        if (linux[field] !== undefined) resultLinux[field] = clone(linux[field]);
      }
    }
    return;
  }
  for (const type of policyTypes) {
    if (!askedTypes.has(type)) refuse('namespaces', `${type} namespace`, `none: the container shared the host's ${type} namespace, and CRIU would restore it there`);
  }
  if (askedTypes.has('user') && !policyTypes.has('user')) {
    refuse('namespaces', 'user namespace', 'a user namespace with the checkpoint\'s own ID mappings');
  }
  for (const ns of entries) {
    if (ns.path === undefined) continue;
    if (ns.type === 'network') warnings.push(`the checkpoint joined the network namespace ${ns.path}; it is restored in a new one with loopback only`);
    else refuse('namespaces', `${ns.type} namespace ${ns.path}`, `joining an existing ${ns.type} namespace`);
  }
  resultLinux.namespaces = entries.map((ns) => ({ type: ns.type }));
}

function restoreDevices(
  linux: Record<string, unknown>,
  policyLinux: Record<string, unknown>,
  resultLinux: Record<string, unknown>,
  trust: Trust | undefined,
  refuse: (area: TrustArea, what: string, asked: string, grant?: string) => void,
): void {
  const rules = (linux.resources === undefined ? undefined : isObject(linux.resources) ? linux.resources.devices : null) as unknown;
  if (rules === null) throw new CheckpointSpecError('linux.resources', 'is not an object');
  if (rules !== undefined && (!Array.isArray(rules) || !rules.every(isObject))) throw new CheckpointSpecError('linux.resources.devices', 'is not an array of rules');
  if (linux.devices !== undefined && (!Array.isArray(linux.devices) || !linux.devices.every(isObject))) throw new CheckpointSpecError('linux.devices', 'is not an array of devices');
  const policyRules = ((isObject(policyLinux.resources) ? policyLinux.resources.devices : undefined) ?? []) as Record<string, unknown>[];
  const policyNodes = (policyLinux.devices ?? []) as Record<string, unknown>[];
  if (trusts(trust, 'devices')) {
    const resources = (resultLinux.resources ??= {}) as Record<string, unknown>;
    if (rules !== undefined) resources.devices = clone(rules);
    if (linux.devices !== undefined) resultLinux.devices = clone(linux.devices);
    return;
  }
  for (const rule of (rules ?? []) as Record<string, unknown>[]) {
    if (rule.allow !== true) continue;
    if (policyRules.some((allowed) => allowed.allow === true && sameRule(allowed, rule))) continue;
    refuse('devices', `device rule ${describeRule(rule)}`, 'access to host devices beyond the policy\'s');
  }
  for (const node of (linux.devices ?? []) as Record<string, unknown>[]) {
    if (policyNodes.some((allowed) => allowed.path === node.path && allowed.type === node.type && allowed.major === node.major && allowed.minor === node.minor)) continue;
    refuse('devices', `device ${String(node.path)}`, `a ${String(node.type)} device node ${String(node.major)}:${String(node.minor)} in the container`);
  }
}

function sameRule(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const type = (rule: Record<string, unknown>) => rule.type ?? 'a';
  const num = (value: unknown) => (value === undefined || value === null || value === -1 ? '*' : String(value));
  const access = (rule: Record<string, unknown>) => new Set(String(rule.access ?? 'rwm').split(''));
  if (type(a) !== type(b) || num(a.major) !== num(b.major) || num(a.minor) !== num(b.minor)) return false;
  const allowed = access(a);
  return [...access(b)].every((c) => allowed.has(c));
}

function describeRule(rule: Record<string, unknown>): string {
  const num = (value: unknown) => (value === undefined || value === null || value === -1 ? '*' : String(value));
  return `${String(rule.type ?? 'a')} ${num(rule.major)}:${num(rule.minor)} ${String(rule.access ?? 'rwm')}`;
}

/**
 * Memory, pids and CPU limits are kept (they protect the host, and the restored
 * processes may need what they had); where the policy sets one too, the lower wins.
 */
function restoreResources(value: unknown, resultLinux: Record<string, unknown>, warnings: string[]): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new CheckpointSpecError('linux.resources', 'is not an object');
  const resources = (resultLinux.resources ??= {}) as Record<string, unknown>;
  const lower = (policyValue: unknown, asked: number): number => {
    // OCI: zero or a negative limit means none.
    if (typeof policyValue !== 'number' || policyValue <= 0) return asked;
    return asked <= 0 ? policyValue : Math.min(policyValue, asked);
  };
  const limits = (field: 'memory' | 'pids', names: string[]) => {
    const object = value[field];
    if (object === undefined) return;
    if (!isObject(object)) throw new CheckpointSpecError(`linux.resources.${field}`, 'is not an object');
    const policyObject = isObject(resources[field]) ? (resources[field] as Record<string, unknown>) : {};
    const kept: Record<string, unknown> = { ...policyObject };
    for (const name of names) {
      const n = object[name];
      if (n === undefined) continue;
      if (!Number.isSafeInteger(n)) throw new CheckpointSpecError(`linux.resources.${field}.${name}`, 'is not an integer');
      kept[name] = lower(policyObject[name], n as number);
    }
    resources[field] = kept;
  };
  limits('memory', ['limit', 'reservation', 'swap']);
  limits('pids', ['limit']);
  if (value.cpu !== undefined && resources.cpu === undefined) {
    if (!isObject(value.cpu)) throw new CheckpointSpecError('linux.resources.cpu', 'is not an object');
    const cpu: Record<string, unknown> = {};
    for (const name of ['shares', 'quota', 'period']) {
      const n = value.cpu[name];
      if (n === undefined) continue;
      if (!Number.isSafeInteger(n)) throw new CheckpointSpecError(`linux.resources.cpu.${name}`, 'is not an integer');
      cpu[name] = n;
    }
    for (const name of ['cpus', 'mems']) {
      const set = value.cpu[name];
      if (set === undefined) continue;
      if (!isString(set) || !/^[0-9,-]*$/.test(set)) throw new CheckpointSpecError(`linux.resources.cpu.${name}`, 'is not a CPU list');
      cpu[name] = set;
    }
    resources.cpu = cpu;
  }
  const other = Object.keys(value).filter((name) => !['memory', 'pids', 'cpu', 'devices'].includes(name));
  if (other.length > 0) warnings.push(`the checkpoint's linux.resources ${other.join(', ')} are not used`);
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

// ------------------------------------------------------------------ CRIU's images

export interface CriuImageFacts {
  processes: CriuProcesses;
  mounts: ImageMount[];
}

export interface ImagePolicyOptions {
  trust?: Trust;
  /** This host's hard limits; default: /proc/self/limits. */
  hostLimits?: ReadonlyMap<string, RlimitValue>;
  /**
   * Whether a masked or read-only path exists in a fresh container here. Those are
   * /proc and /sys paths, which show the host kernel's, so the default asks the host.
   */
  pathExists?: (path: string) => boolean;
  /** The oom_score_adj a new container starts with here; default: this process's. */
  hostOomScoreAdj?: number;
}

/** Decodes what checkRestoredImages needs (throws CriuImageError for a damaged image). */
export function readCriuImageFacts(imagesDir: string): CriuImageFacts {
  return { processes: readCriuProcesses(imagesDir), mounts: readImageMounts(imagesDir) };
}

/** checkRestoredImages on the images in `imagesDir`. */
export function checkCriuImages(imagesDir: string, spec: OciSpec, opts: ImagePolicyOptions = {}): { refused: PolicyRefusal[]; warnings: string[] } {
  return checkRestoredImages(readCriuImageFacts(imagesDir), spec, opts);
}

/** Device nodes runc always creates and maps on restore (libcontainer/specconv AllowedDevices). */
const RUNC_DEVICES = ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty'];
const MOUNT_TYPES_FOR: Record<string, string[]> = {
  proc: ['proc'],
  sysfs: ['sysfs'],
  devpts: ['devpts'],
  mqueue: ['mqueue'],
  tmpfs: ['tmpfs'],
  cgroup: ['cgroup', 'cgroup2', 'tmpfs'],
  cgroup2: ['cgroup2'],
};

function readOomScoreAdj(): number {
  try {
    return Number.parseInt(readFileSync('/proc/self/oom_score_adj', 'utf8'), 10) || 0;
  } catch {
    return 0;
  }
}

function taskName(pid: number, comm: string | null): string {
  return comm ? `${pid} (${comm})` : String(pid);
}

/**
 * What the restored processes would get from CRIU's images beyond `spec` (the
 * spec applyRestorePolicy returned): capabilities outside its bounding set, a
 * namespace it has that the root task would be restored without (the host's),
 * mounts it does not have, missing masks and read-only paths, rlimits above this
 * host's hard limits, real-time scheduling, and a seccomp filter or LSM profile
 * the spec has that the processes lack.
 */
export function checkRestoredImages(facts: CriuImageFacts, spec: OciSpec, opts: ImagePolicyOptions = {}): { refused: PolicyRefusal[]; warnings: string[] } {
  const refused: PolicyRefusal[] = [];
  const warnings: string[] = [];
  const trust = opts.trust;
  const refuse = (area: TrustArea, what: string, asked: string, source: string, grant = grantTrust(area)) => {
    refused.push({ area, what, asked, grant, source });
  };
  const process = (spec.process ?? {}) as Record<string, unknown>;
  const linux = (spec.linux ?? {}) as Record<string, unknown>;
  const bounding = ((process.capabilities as Record<string, string[]> | undefined)?.bounding ?? []).map((name) => name.toUpperCase());
  const hasCap = (name: string) => bounding.includes(name);
  const { processes, mounts } = facts;

  // --- capabilities, per capability with the tasks that would hold it.
  if (!trusts(trust, 'capabilities')) {
    const byCapability = new Map<string, Map<string, Set<string>>>();
    for (const excess of capabilityExcess(processes.threads, bounding)) {
      for (const name of excess.capabilities) {
        const tasks = byCapability.get(name) ?? new Map<string, Set<string>>();
        const task = taskName(excess.pid, excess.comm);
        tasks.set(task, (tasks.get(task) ?? new Set()).add(excess.set));
        byCapability.set(name, tasks);
      }
    }
    for (const [name, tasks] of byCapability) {
      const held = [...tasks].map(([task, sets]) => `task ${task} in its ${[...sets].join(', ')} set${sets.size > 1 ? 's' : ''}`);
      refuse('capabilities', `capability ${name}`, `CRIU would restore ${held.join('; ')}`, 'CRIU core images');
    }
    for (const thread of processes.threads) {
      if (thread.creds === null) {
        refuse('capabilities', `credentials of task ${taskName(thread.pid, thread.comm)}`, 'none recorded: CRIU would leave it with its own (root, every capability)', `core-${thread.tid}.img`);
      }
      const realtime = thread.sched.policy === 'fifo' || thread.sched.policy === 'rr' || thread.sched.policy === 'deadline';
      if ((realtime || (thread.sched.nice ?? 0) < 0) && !hasCap('CAP_SYS_NICE')) {
        const how = realtime ? `SCHED_${thread.sched.policy.toUpperCase()} priority ${thread.sched.priority ?? 0}` : `nice ${thread.sched.nice}`;
        refuse('capabilities', `scheduling of task ${taskName(thread.pid, thread.comm)}`, `${how}, which needs CAP_SYS_NICE`, `core-${thread.tid}.img`);
      }
    }
    const floor = opts.hostOomScoreAdj ?? readOomScoreAdj();
    for (const task of processes.tasks) {
      if (task.oomScoreAdj !== null && task.oomScoreAdj < floor && !hasCap('CAP_SYS_RESOURCE')) {
        refuse('capabilities', `oom_score_adj of task ${taskName(task.pid, task.comm)}`, `${task.oomScoreAdj}, below ${floor}, which needs CAP_SYS_RESOURCE`, `core-${task.pid}.img`);
      }
    }
  }

  // --- rlimits: CRIU sets them as root; a fresh container could not exceed the host's hard limits.
  if (!trusts(trust, 'rlimits') && !hasCap('CAP_SYS_RESOURCE')) {
    const hostLimits = opts.hostLimits ?? readHostRlimits();
    const over = new Map<string, string[]>();
    for (const task of processes.tasks) {
      for (const limit of task.rlimits) {
        const hostHard = hostLimits.get(limit.type);
        if (exceeds(limit.hard, hostHard)) over.set(`${limit.type} ${limit.hard} (this host's hard limit is ${hostHard})`, [...(over.get(limit.type) ?? []), taskName(task.pid, task.comm)]);
      }
    }
    for (const [limit, tasks] of over) {
      refuse('rlimits', `rlimit ${limit.split(' ')[0]}`, `${limit.slice(limit.indexOf(' ') + 1)} for task${tasks.length > 1 ? 's' : ''} ${tasks.join(', ')}`, 'CRIU core images');
    }
  }

  // --- namespaces: the root task must get each namespace the spec creates.
  if (!trusts(trust, 'namespaces')) {
    for (const ns of (linux.namespaces ?? []) as { type: string; path?: string }[]) {
      const kind = NAMESPACE_KIND[ns.type];
      // CRIU does not create cgroup namespaces from its clone mask (criu/pstree.c get_clone_mask).
      if (ns.path !== undefined || kind === undefined || kind === 'cgroup') continue;
      if (processes.rootNamespaces[kind] !== true) {
        refuse('namespaces', `${ns.type} namespace`, `the images restore the processes in the host's ${ns.type} namespace (their namespace is the one CRIU dumped from)`, 'ids and inventory images');
      }
    }
  }

  // --- seccomp, LSM, no_new_privs
  if (!trusts(trust, 'security')) {
    if (linux.seccomp !== undefined) {
      const unfiltered = processes.threads.filter((thread) => thread.seccomp === 'disabled');
      if (unfiltered.length > 0) {
        refuse('security', 'seccomp', `tasks ${unfiltered.map((t) => taskName(t.pid, t.comm)).join(', ')} would run without the seccomp filter the policy requires`, 'CRIU core images');
      }
    }
    for (const field of ['apparmorProfile', 'selinuxLabel'] as const) {
      const wanted = process[field];
      if (typeof wanted !== 'string') continue;
      const others = processes.threads.filter((thread) => (thread.creds?.lsmProfile ?? '').replace(/ \([a-z]+\)\n?$/, '').trim() !== wanted);
      if (others.length > 0) {
        refuse('security', field === 'apparmorProfile' ? 'AppArmor profile' : 'SELinux label', `tasks ${others.map((t) => `${taskName(t.pid, t.comm)} ${JSON.stringify(t.creds?.lsmProfile ?? null)}`).join(', ')} instead of ${wanted}`, 'CRIU core images');
      }
    }
  }
  if (process.noNewPrivileges === true) {
    const without = processes.threads.filter((thread) => thread.creds?.noNewPrivs === false);
    if (without.length > 0) warnings.push(`tasks ${without.map((t) => taskName(t.pid, t.comm)).join(', ')} run without no_new_privs (the images say so); their bounding set still limits what they can gain`);
  }

  // --- mounts
  checkImageMounts(mounts, spec, opts, refuse);
  return { refused, warnings };
}

function checkImageMounts(
  mounts: ImageMount[],
  spec: OciSpec,
  opts: ImagePolicyOptions,
  refuse: (area: TrustArea, what: string, asked: string, source: string, grant?: string) => void,
): void {
  const linux = (spec.linux ?? {}) as Record<string, unknown>;
  const specMounts = (spec.mounts ?? []) as OciMount[];
  const masked = ((linux.maskedPaths ?? []) as string[]).map(cleanPath);
  const readonly = ((linux.readonlyPaths ?? []) as string[]).map(cleanPath);
  const pathExists = opts.pathExists ?? existsSync;
  const file = (mount: ImageMount) => `mountpoints-${mount.namespace}.img`;
  const cgroupRoots = specMounts.filter((m) => m.type === 'cgroup' || m.type === 'cgroup2').map((m) => m.destination);
  const under = (path: string, dir: string) => path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);

  if (!trusts(opts.trust, 'mounts')) {
    const externalKeys = new Set<string>(['/dev/null', ...RUNC_DEVICES]);
    for (const m of specMounts) if (isBind(m)) externalKeys.add(m.destination);
    for (const device of (linux.devices ?? []) as { path?: unknown }[]) if (typeof device.path === 'string') externalKeys.add(device.path);
    for (const mount of mounts) {
      if (mount.isRoot || mount.bindOfRoot) continue;
      if (mount.externalKey !== null) {
        const key = mount.externalKey;
        if (externalKeys.has(key) || cgroupRoots.some((root) => under(key, root) && key !== root)) continue;
        refuse('mounts', `mount ${mount.mountpoint}`, `a bind mount whose source runc must supply (key ${key}), which the restore spec does not have`, file(mount),
          `${GRANT_FLAGS.mount} type=bind,source=DIR,destination=${key}, or ${grantTrust('mounts')}`);
        continue;
      }
      if (mount.fstype === 'tmpfs') continue;
      const specMount = specMounts.find((m) => m.destination === mount.mountpoint && !isBind(m));
      if (specMount && (MOUNT_TYPES_FOR[specMount.type ?? ''] ?? []).includes(mount.fstype)) continue;
      if ((masked.includes(mount.mountpoint) || readonly.includes(mount.mountpoint)) && ['proc', 'sysfs'].includes(mount.fstype)) continue;
      if ((mount.fstype === 'cgroup' || mount.fstype === 'cgroup2') && cgroupRoots.some((root) => under(mount.mountpoint, root))) continue;
      const type = mount.fstype === 'auto' ? (mount.fsname ?? 'unknown') : mount.fstype;
      refuse('mounts', `mount ${mount.mountpoint}`, `${mount.source || '(no source)'}${mount.root !== '/' ? ` (its ${mount.root})` : ''} of type ${type} with options ${mount.options || '(none)'}, which CRIU would mount as recorded`, file(mount));
    }
  }

  if (!trusts(opts.trust, 'security')) {
    // Every mount namespace: a nested one is a copy of the container's, masks included.
    const namespaces = [...new Set(mounts.map((m) => m.namespace))];
    for (const namespace of namespaces) {
      const tree = mounts.filter((m) => m.namespace === namespace);
      const at = (path: string) => tree.filter((m) => m.mountpoint === path);
      for (const path of masked) {
        if (!pathExists(path)) continue;
        const masks = at(path).filter((m) => m.externalKey === '/dev/null' || (m.fstype === 'tmpfs' && m.readOnly));
        if (masks.length === 0) refuse('security', `masked path ${path}`, 'left visible: the checkpoint\'s mount tree does not mask it', `mountpoints-${namespace}.img`);
      }
      for (const path of readonly) {
        if (!pathExists(path)) continue;
        if (!at(path).some((m) => m.readOnly)) refuse('security', `read-only path ${path}`, 'left writable: the checkpoint\'s mount tree does not mount it read-only', `mountpoints-${namespace}.img`);
      }
      for (const m of specMounts) {
        if (!(m.options ?? []).includes('ro')) continue;
        const isCgroup = m.type === 'cgroup' || m.type === 'cgroup2';
        const found = isCgroup
          ? tree.filter((t) => (t.fstype === 'cgroup' || t.fstype === 'cgroup2') && under(t.mountpoint, m.destination))
          : at(m.destination);
        const writable = found.filter((t) => !t.readOnly);
        if (writable.length > 0) {
          refuse('security', `read-only mount ${m.destination}`, `mounted writable: ${writable.map((t) => t.mountpoint).join(', ')}`, `mountpoints-${namespace}.img`);
        }
      }
      if (spec.root?.readonly === true && tree.some((t) => t.isRoot && !t.readOnly)) {
        refuse('security', 'read-only root', 'the checkpoint\'s root is mounted writable', `mountpoints-${namespace}.img`);
      }
    }
  }
}
