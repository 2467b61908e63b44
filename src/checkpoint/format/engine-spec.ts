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

/** A bind mount the user names on the command line. */
export interface UserMount {
  destination: string;
  source: string;
  options?: string[];
}
