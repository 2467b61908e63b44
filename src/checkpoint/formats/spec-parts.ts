// The parts of another engine's spec.dump that a restore here has to replace:
// bind mounts of the engine's own per-container files, rlimits this host
// cannot grant, namespaces joined by path. Pure functions over parsed JSON.

export interface SpecMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

/** The fields of an OCI spec read here; anything else is passed through untouched. */
export interface ForeignSpec {
  process?: { args?: string[]; terminal?: boolean; rlimits?: Rlimit[]; [key: string]: unknown };
  hostname?: string;
  mounts?: SpecMount[];
  annotations?: Record<string, string>;
  linux?: { namespaces?: { type: string; path?: string }[]; [key: string]: unknown };
  [key: string]: unknown;
}

/**
 * Files and folders an engine makes for each container and bind-mounts in.
 * Their sources are the engine's (podman's userdata/, CRI-O's sandbox folder,
 * the kubelet's pod folder), so a restore here makes its own in the
 * container's folder: podman libpod/container_internal_common.go
 * (makeBindMounts), CRI-O server/container_create.go
 * (setupBaseContainerMounts) and container_create_linux.go (addShmMount), the
 * kubelet's etc-hosts and termination-log.
 */
export type PrivateKind = 'hosts' | 'hostname' | 'resolv.conf' | 'containerenv' | 'shm' | 'secrets' | 'termination-log';

const PRIVATE_DESTINATIONS: Record<string, PrivateKind> = {
  '/etc/hosts': 'hosts',
  '/etc/hostname': 'hostname',
  '/etc/resolv.conf': 'resolv.conf',
  '/run/.containerenv': 'containerenv',
  '/dev/shm': 'shm',
  '/run/secrets': 'secrets',
  '/dev/termination-log': 'termination-log',
};

const DIRECTORY_KINDS: ReadonlySet<PrivateKind> = new Set(['shm', 'secrets']);

export interface EngineMount {
  destination: string;
  source: string;
  options: string[];
  /** The engine's private file this is, or null for a volume (the user's data, which no archive carries). */
  kind: PrivateKind | null;
  /** From CRI-O's bind.mounts when it says; else what the kind implies; null when unknown. */
  fileType: 'file' | 'directory' | null;
}

/** CRI-O's bind.mounts (internal/lib/checkpoint.go, ExternalBindMount). */
export interface BindMountRecord {
  source: string;
  destination: string;
  file_type?: string;
  permissions?: number;
}

export function isBindMount(mount: SpecMount): boolean {
  return mount.type === 'bind' || (mount.options ?? []).some((option) => option === 'bind' || option === 'rbind');
}

/** The spec's bind mounts, split into the engine's private files and volumes. */
export function classifyMounts(spec: ForeignSpec, bindMounts: BindMountRecord[] = []): { private: EngineMount[]; volumes: EngineMount[] } {
  const result = { private: [] as EngineMount[], volumes: [] as EngineMount[] };
  for (const mount of spec.mounts ?? []) {
    if (!isBindMount(mount) || typeof mount.destination !== 'string') continue;
    const kind = PRIVATE_DESTINATIONS[mount.destination.replace(/\/+$/, '')] ?? null;
    const recorded = bindMounts.find((record) => record.destination === mount.destination);
    const recordedType = recorded?.file_type === 'directory' ? 'directory' : recorded?.file_type === 'file' ? 'file' : null;
    const entry: EngineMount = {
      destination: mount.destination,
      source: mount.source ?? '',
      options: mount.options ?? [],
      kind,
      fileType: recordedType ?? (kind === null ? null : DIRECTORY_KINDS.has(kind) ? 'directory' : 'file'),
    };
    (kind === null ? result.volumes : result.private).push(entry);
  }
  return result;
}

/**
 * What to put in a recreated private file. Loopback only: /etc/hosts names
 * localhost and the container's host name, resolv.conf has no name server.
 * Their sizes do not matter to CRIU (no process holds them open; a process
 * that did would be named in CRIU's log).
 */
export function privateFileContent(kind: PrivateKind, facts: { hostname: string }): string {
  switch (kind) {
    case 'hosts':
      return `127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t${facts.hostname}\n`;
    case 'hostname':
      return `${facts.hostname}\n`;
    default:
      return '';
  }
}

const LIMIT_NAMES: Record<string, string> = {
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

/** Hard limits from the text of /proc/self/limits ("unlimited" is Infinity). */
export function parseHardLimits(procLimits: string): Map<string, number> {
  const limits = new Map<string, number>();
  for (const line of procLimits.split('\n')) {
    const match = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    const name = match && LIMIT_NAMES[match[1]];
    if (!match || !name) continue;
    limits.set(name, match[3] === 'unlimited' ? Infinity : Number(match[3]));
  }
  return limits;
}

export interface RlimitFit {
  rlimits: Rlimit[];
  /** Limits brought down to this host's hard limit. */
  lowered: { type: string; from: number; to: number }[];
  /** Limits over this host's hard limit when lowering is not allowed. */
  refused: { type: string; asked: number; hard: number }[];
}

/**
 * runc sets each rlimit in the container, and without CAP_SYS_RESOURCE it can
 * only lower a limit, so a limit above the local hard limit fails the restore
 * ("error setting rlimit type 7: operation not permitted"). Lowers them to the
 * local hard limit, or lists them as refused when `lower` is false.
 */
export function fitRlimits(rlimits: Rlimit[], hardLimits: Map<string, number>, lower: boolean): RlimitFit {
  const fit: RlimitFit = { rlimits: [], lowered: [], refused: [] };
  for (const limit of rlimits) {
    const hard = hardLimits.get(limit.type) ?? Infinity;
    if (limit.hard <= hard && limit.soft <= hard) {
      fit.rlimits.push(limit);
    } else if (lower) {
      fit.rlimits.push({ type: limit.type, hard: Math.min(limit.hard, hard), soft: Math.min(limit.soft, hard) });
      fit.lowered.push({ type: limit.type, from: limit.hard, to: hard });
    } else {
      fit.refused.push({ type: limit.type, asked: Math.max(limit.hard, limit.soft), hard });
    }
  }
  return fit;
}

/**
 * Namespaces the container joined by path (a pod's network, IPC and UTS
 * namespaces under CRI-O and containerd; podman's netns when it has a
 * network). runc dumps a network or PID namespace joined by path as external
 * (libcontainer/container_linux.go, handleCheckpointingExternalNamespaces:
 * `--external net[<inode>]:extRootNetNS`), and its restore then wants a
 * namespace by path to hand CRIU; the others CRIU recreates from its images.
 */
export function joinedNamespaces(spec: ForeignSpec): { type: string; path: string; external: boolean }[] {
  return (spec.linux?.namespaces ?? [])
    .filter((ns): ns is { type: string; path: string } => typeof ns.path === 'string' && ns.path !== '')
    .map((ns) => ({ type: ns.type, path: ns.path, external: ns.type === 'network' || ns.type === 'pid' }));
}

/** A copy of the spec whose namespaces are all new ones (loopback-only network). */
export function withoutNamespacePaths<T extends ForeignSpec>(spec: T): T {
  if (!spec.linux?.namespaces) return spec;
  return { ...spec, linux: { ...spec.linux, namespaces: spec.linux.namespaces.map(({ type }) => ({ type })) } };
}
