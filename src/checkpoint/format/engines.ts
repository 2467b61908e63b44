import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { criuOptionsFromImages, rootDirMode } from '../criu/inventory.ts';
import { FILES, hasCriuImages } from './layout.ts';
import { classifyMounts, joinedNamespaces, type BindMountRecord, type EngineMount, type ForeignSpec, type Rlimit } from './engine-spec.ts';

// Which engine wrote a checkpoint folder, and what stasis needs to restore one
// it did not write. The layouts are in docs/engine-formats.md; the file names
// are checkpointctl's (lib/metadata.go), which podman, CRI-O and containerd use.

export type Engine = 'stasis' | 'podman' | 'cri-o' | 'containerd' | 'unknown';

export interface EngineInfo {
  engine: Engine;
  /** Only when something in the checkpoint says (a checkpoint image's annotations). */
  version?: string;
  /** The container's name as its engine knew it. */
  name?: string;
  /** The image (or, for stasis, the base rootfs) it ran on. */
  image?: string;
  /** Why stasis cannot restore it, when it can tell already (not a checkpoint, a pod, a pre-dump). */
  problem?: string;
  /** Why that engine: the files and annotations that say so. */
  evidence: string[];
}

/** Annotations of a checkpoint image, which say more than the archive does (versions). */
export interface EngineHints {
  annotations?: Record<string, string>;
}


/** Where each engine puts the container's log: podman ctr.log, CRI-O a file named after its annotation, containerd container.log. */
const LOG_FILES: Record<'podman' | 'cri-o' | 'containerd', string> = {
  podman: 'ctr.log',
  'cri-o': 'io.kubernetes.cri-o.LogPath',
  containerd: 'container.log',
};

type Json = Record<string, unknown>;

function readJson(dir: string, name: string): unknown {
  try {
    return JSON.parse(readFileSync(join(dir, name), 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function asObject(value: unknown): Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function annotationsOf(spec: ForeignSpec): Record<string, string> {
  return asObject(spec.annotations) as Record<string, string>;
}

function criOMetadataName(annotations: Record<string, string>): string | undefined {
  try {
    return str(asObject(JSON.parse(annotations['io.kubernetes.cri-o.Metadata'] ?? '')).name);
  } catch {
    return undefined;
  }
}

const VERSION_ANNOTATIONS: Record<string, string> = {
  podman: 'io.podman.annotations.checkpoint.podman.version',
  'cri-o': 'io.kubernetes.cri-o.annotations.checkpoint.cri-o.version',
};

/**
 * Tells the engine from the files themselves: stasis.json is ours; otherwise
 * spec.dump's io.container.manager says libpod (podman) or cri-o, as
 * checkpointctl reads it (internal/container.go); containerd writes no manager
 * but the CRI annotations (io.kubernetes.cri.*) and its own status files.
 */
export function detectEngine(dir: string, hints: EngineHints = {}): EngineInfo {
  const hasImages = hasCriuImages(dir);
  const spec = asObject(readJson(dir, FILES.spec)) as ForeignSpec;
  const config = asObject(readJson(dir, FILES.config));
  const annotations = annotationsOf(spec);
  const manager = annotations['io.container.manager'];
  const stasis = asObject(readJson(dir, FILES.stasis));
  const image = str(config.rootfsImageName) ?? str(config.rootfsImage);
  const named = (prefix: string) => Object.keys(annotations).filter((key) => key.startsWith(prefix)).slice(0, 3);
  const managerSays = manager ? [`io.container.manager=${manager}`] : [];
  let info: EngineInfo;
  if (existsSync(join(dir, FILES.stasis)) || manager === 'stasis') {
    const evidence = existsSync(join(dir, FILES.stasis)) ? [FILES.stasis, ...managerSays] : managerSays;
    info = { engine: 'stasis', name: str(stasis.id) ?? str(config.name), image: str(asObject(stasis.rootfs).base) ?? image, evidence };
  } else if (manager === 'libpod') {
    info = { engine: 'podman', name: str(config.name), image, evidence: managerSays };
  } else if (manager === 'cri-o' || (named('io.kubernetes.cri-o.').length > 0 && named('io.kubernetes.cri.').length === 0)) {
    // CRI-O names itself, and writes its own annotations on every container;
    // containerd's CRI annotations win over copied CRI-O ones.
    info = { engine: 'cri-o', name: criOMetadataName(annotations) ?? str(config.name), image, evidence: manager === 'cri-o' ? managerSays : named('io.kubernetes.cri-o.') };
  } else if (named('io.kubernetes.cri.').length > 0 || existsSync(join(dir, FILES.criStatus)) || existsSync(join(dir, FILES.containerdStatus))) {
    const files = [FILES.criStatus, FILES.containerdStatus].filter((name) => existsSync(join(dir, name)));
    info = { engine: 'containerd', name: annotations['io.kubernetes.cri.container-name'] ?? str(config.name), image, evidence: [...named('io.kubernetes.cri.'), ...files] };
  } else {
    info = { engine: 'unknown', name: str(config.name), image, evidence: Object.keys(config).length > 0 ? [`${FILES.config} (no engine annotation)`] : [] };
  }
  const version = hints.annotations?.[VERSION_ANNOTATIONS[info.engine] ?? ''] ?? hints.annotations?.['org.criu.checkpoint.engine.version'];
  if (version) info.version = version;
  const problem = problemOf(dir, info, hasImages, spec);
  if (problem) info.problem = problem;
  return clean(info);
}

function clean(info: EngineInfo): EngineInfo {
  for (const key of Object.keys(info) as (keyof EngineInfo)[]) if (info[key] === undefined) delete info[key];
  return info;
}

function problemOf(dir: string, info: EngineInfo, hasImages: boolean, spec: ForeignSpec): string | undefined {
  if (existsSync(join(dir, FILES.podDump)) || existsSync(join(dir, FILES.podOptions))) {
    return 'it is a checkpoint of a whole pod, and stasis restores single containers';
  }
  if (!hasImages) {
    if (existsSync(join(dir, FILES.preImages))) return 'it holds only a pre-checkpoint (memory pages), which is restored together with the full checkpoint taken after it';
    if (existsSync(join(dir, 'index.json')) && existsSync(join(dir, 'oci-layout'))) return 'it is an OCI image layout: give it as oci:DIR (or oci-archive:FILE for a tar of one)';
    return `it is not a checkpoint: it has no ${FILES.images}/${FILES.inventory}`;
  }
  if (info.engine === 'unknown') {
    return existsSync(join(dir, FILES.spec))
      ? 'its spec.dump names no engine stasis knows (io.container.manager is neither libpod nor cri-o, and no CRI annotations)'
      : `it has CRIU images but no ${FILES.spec}, so nothing says how the container was set up`;
  }
  if (info.engine !== 'stasis' && !spec.process) return `its ${FILES.spec} is missing or not an OCI spec`;
  return undefined;
}

const ENGINE_LABEL: Record<Engine, string> = { stasis: 'stasis', podman: 'podman', 'cri-o': 'CRI-O', containerd: 'containerd', unknown: 'an unknown engine' };

/** "made by podman 4.3.1, container ix1 (image localhost/busybox:stasis)", for messages that name the user's file. */
export function describeEngine(info: EngineInfo): string {
  const who = `${ENGINE_LABEL[info.engine]}${info.version ? ` ${info.version}` : ''}`;
  const what = info.name ? `, container ${info.name}` : '';
  const image = info.image ? ` (image ${info.image})` : '';
  return `made by ${who}${what}${image}`;
}

export interface ForeignMeta {
  engine: 'podman' | 'cri-o' | 'containerd';
  /** A stasis ID to restore under when the user gives none: the engine's container name, made valid. */
  id: string;
  name: string;
  /** The engine's own container ID. */
  engineId: string | null;
  command: string[];
  image: { name: string | null; id: string | null; userRequested: string | null };
  pod: { name: string; namespace: string; uid: string | null } | null;
  rootfs: {
    kind: 'overlay';
    /** Absolute path of the diff tar, or null when nothing changed. */
    diffTar: string | null;
    /** plain: podman/CRI-O (deletions in deleted.files); oci-layer: containerd (gzip, whiteouts). */
    diffFormat: 'plain' | 'oci-layer';
    deleted: string[];
  };
  /** The root directory's mode at dump time (CRIU checks it), or null if the images do not say. */
  rootMode: number | null;
  criuOptions: string[];
  restoreArgs: string[];
  mounts: { private: EngineMount[]; volumes: EngineMount[] };
  /** podman's copy of /dev/shm, to unpack into the new /dev/shm source. */
  shmTar: string | null;
  /** The engine's container log (k8s-file lines, the format stasis's ctr.log has). */
  log: string | null;
  hostname: string;
  rlimits: Rlimit[];
  namespaces: { type: string; path: string; external: boolean }[];
  terminal: boolean;
  createdAt: string | null;
  checkpointedAt: string | null;
  specFile: string;
}

export type MetaError = { code: 'not-restorable' | 'damaged' | 'wrong-engine'; message: string };
export type MetaResult = { ok: true; meta: ForeignMeta; warnings: string[] } | { ok: false; error: MetaError };

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** The engine's name as a stasis ID: other characters become "-", at most 128. */
export function idFromName(name: string): string {
  const id = name.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 128);
  return ID_PATTERN.test(id) ? id : 'restored';
}

function fileIfPresent(dir: string, name: string): string | null {
  const path = join(dir, name);
  return statSync(path, { throwIfNoEntry: false })?.isFile() ? path : null;
}

/** What a restore needs from a podman, CRI-O or containerd checkpoint folder; errors as data. */
export function foreignMeta(dir: string, engine: Engine): MetaResult {
  if (engine !== 'podman' && engine !== 'cri-o' && engine !== 'containerd') {
    return { ok: false, error: { code: 'wrong-engine', message: `foreignMeta reads podman, CRI-O and containerd checkpoints, not ${ENGINE_LABEL[engine]}'s` } };
  }
  const info = detectEngine(dir);
  if (info.problem) return { ok: false, error: { code: 'not-restorable', message: info.problem } };
  if (info.engine !== engine) {
    return { ok: false, error: { code: 'wrong-engine', message: `it was ${describeEngine(info)}, not by ${ENGINE_LABEL[engine]}` } };
  }
  const specValue = readJson(dir, FILES.spec);
  const spec = asObject(specValue) as ForeignSpec;
  if (!Array.isArray(spec.process?.args) || spec.process.args.length === 0) {
    return { ok: false, error: { code: 'damaged', message: `${FILES.spec} has no process.args, so the command is unknown` } };
  }
  const config = asObject(readJson(dir, FILES.config));
  const annotations = annotationsOf(spec);
  const warnings: string[] = [];
  const deletedValue = readJson(dir, FILES.deleted);
  const deleted = Array.isArray(deletedValue) ? deletedValue.filter((path): path is string => typeof path === 'string') : [];
  if (existsSync(join(dir, FILES.deleted)) && !Array.isArray(deletedValue)) {
    return { ok: false, error: { code: 'damaged', message: `${FILES.deleted} is not a JSON array of paths` } };
  }
  const bindMountsValue = readJson(dir, FILES.bindMounts);
  const bindMounts = Array.isArray(bindMountsValue) ? (bindMountsValue as BindMountRecord[]) : [];
  const status = asObject(readJson(dir, FILES.criStatus));
  const names = engineNames(engine, config, annotations, status);
  const criuOptions = criuOptionsFromImages(join(dir, FILES.images));
  if (criuOptions.length > 0) warnings.push(`the CRIU images show the dump used ${criuOptions.map((o) => `--${o}`).join(', ')}; the restore repeats them`);
  let rootMode: number | null = null;
  try {
    rootMode = rootDirMode(join(dir, FILES.images));
  } catch (err) {
    return { ok: false, error: { code: 'damaged', message: `cannot read the CRIU images: ${(err as Error).message}` } };
  }
  const meta: ForeignMeta = {
    engine,
    id: idFromName(names.name),
    name: names.name,
    engineId: str(config.id) ?? null,
    command: spec.process.args,
    image: {
      name: str(config.rootfsImageName) ?? null,
      id: str(config.rootfsImageID) ?? str(config.rootfsImageRef) ?? null,
      userRequested: str(config.rootfsImage) ?? str(config.RawImageName) ?? null,
    },
    pod: names.pod,
    rootfs: {
      kind: 'overlay',
      diffTar: fileIfPresent(dir, FILES.diff),
      diffFormat: engine === 'containerd' ? 'oci-layer' : 'plain',
      deleted,
    },
    rootMode,
    criuOptions,
    restoreArgs: criuOptions.map((option) => `--${option}`),
    mounts: classifyMounts(spec, bindMounts),
    shmTar: fileIfPresent(dir, FILES.shm),
    log: fileIfPresent(dir, LOG_FILES[engine]),
    hostname: str(spec.hostname) ?? idFromName(names.name).slice(0, 63),
    rlimits: Array.isArray(spec.process.rlimits) ? spec.process.rlimits : [],
    namespaces: joinedNamespaces(spec),
    terminal: spec.process.terminal === true,
    createdAt: str(config.createdTime) ?? annotations['io.kubernetes.cri-o.Created'] ?? null,
    checkpointedAt: str(config.checkpointedTime) ?? null,
    specFile: join(dir, FILES.spec),
  };
  if (meta.image.name === null) warnings.push(`${FILES.config} names no image; restore needs the base given with --rootfs`);
  return { ok: true, meta, warnings };
}

function engineNames(
  engine: ForeignMeta['engine'],
  config: Json,
  annotations: Record<string, string>,
  status: Json,
): { name: string; pod: ForeignMeta['pod'] } {
  if (engine === 'podman') return { name: str(config.name) ?? str(config.id) ?? 'restored', pod: null };
  if (engine === 'cri-o') {
    const pod = annotations['io.kubernetes.pod.name'];
    return {
      name: criOMetadataName(annotations) ?? annotations['io.kubernetes.container.name'] ?? str(config.name) ?? 'restored',
      pod: pod ? { name: pod, namespace: annotations['io.kubernetes.pod.namespace'] ?? '', uid: annotations['io.kubernetes.pod.uid'] ?? null } : null,
    };
  }
  const pod = annotations['io.kubernetes.cri.sandbox-name'];
  return {
    name: annotations['io.kubernetes.cri.container-name'] ?? str(asObject(status.metadata).name) ?? str(config.name) ?? 'restored',
    pod: pod ? { name: pod, namespace: annotations['io.kubernetes.cri.sandbox-namespace'] ?? '', uid: annotations['io.kubernetes.cri.sandbox-uid'] ?? null } : null,
  };
}

/**
 * The kubelet's archive name: checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar
 * (kubernetes pkg/kubelet/kubelet.go, CheckpointContainer). Pod names cannot
 * hold "_", so the pod is certain; namespace and container are both allowed
 * "-", so the split between them is only certain when `container` is known.
 */
export function parseKubeletArchiveName(fileName: string, container?: string): { pod: string; namespace: string | null; container: string | null; time: string } | null {
  const match = /^checkpoint-([^_/]+)_(.+)-(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))\.tar$/.exec(fileName);
  if (!match) return null;
  const [, pod, rest, time] = match;
  if (container && rest.endsWith(`-${container}`)) return { pod, namespace: rest.slice(0, -container.length - 1), container, time };
  const dashes = rest.split('-').length - 1;
  if (dashes === 1) {
    const [namespace, name] = rest.split('-');
    return { pod, namespace, container: name, time };
  }
  return { pod, namespace: null, container: null, time };
}
