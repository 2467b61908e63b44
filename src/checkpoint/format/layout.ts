import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { treeBytes } from '../../host/walk.ts';
import { basename, dirname, join, resolve } from 'node:path';
import { withoutLoopbackHook } from '../../runtime/network.ts';
import type { OciSpec } from '../../runtime/spec.ts';
import type { ContainerRecord } from '../../state/store.ts';

// A checkpoint folder (and the exported archive, which is the same tree):
//   checkpoint/      CRIU's images (runc checkpoint --image-path)
//   spec.dump        the container's OCI spec (config.json)
//   config.dump      a podman-style container config, so checkpointctl can read it
//   stasis.json      our metadata: see CheckpointMeta
//   rootfs-diff.tar  the writable layer's added/changed files (--rootfs containers)
//   deleted.files    JSON array of paths deleted from the base
//   stats-dump       CRIU's dump statistics
//   dump.log         CRIU's log of the dump
//   container.log    the container's captured output at the dump
//   volumes/<n>.tar  each volume's contents (exports and moves), indexed by stasis.json

// Every engine's names, in one table (checkpointctl's lib/metadata.go, which
// podman, CRI-O and containerd use, plus stasis's own).
export const FILES = {
  images: 'checkpoint',
  preImages: 'pre-checkpoint',
  inventory: 'inventory.img',
  spec: 'spec.dump',
  config: 'config.dump',
  stasis: 'stasis.json',
  stats: 'stats-dump',
  diff: 'rootfs-diff.tar',
  deleted: 'deleted.files',
  shm: 'devshm-checkpoint.tar',
  bindMounts: 'bind.mounts',
  podDump: 'pod.dump',
  podOptions: 'pod.options',
  containerdStatus: 'status',
  criStatus: 'status.dump',
  /** The container's captured output, carried by an export or a move so that `stasis logs` there shows what ran here. */
  log: 'container.log',
  /** A volume's contents, volumes/<n>.tar, indexed by stasis.json's volumes (an export or a move; not with --ignore-volumes). */
  volumes: 'volumes',
} as const;

export const IMAGES_DIR = FILES.images;
export const META_FILE = FILES.stasis;
export const SPEC_FILE = FILES.spec;
export const CONFIG_FILE = FILES.config;
export const STATS_FILE = FILES.stats;
export const LOG_FILE = FILES.log;
export const DIFF_TAR = FILES.diff;
export const DELETED_FILES = FILES.deleted;

/** Whether `dir` holds CRIU's images (checkpoint/inventory.img): the one test of "is this a checkpoint". */
export function hasCriuImages(dir: string): boolean {
  return existsSync(join(dir, FILES.images, FILES.inventory));
}

/** A file of the base that the checkpointed processes had mapped or open, as it was then. */
export interface BaseFile {
  /** Inside the container, absolute. */
  path: string;
  size: number;
  sha256: string;
}

/** A volume (host folder bind-mounted in) of the checkpointed container. */
export interface CheckpointVolume {
  destination: string;
  /** The host folder it was, on the host that checkpointed it. */
  source: string;
  readonly: boolean;
  /** `:U`: its files follow the container's user namespace range on a restore. */
  chown?: boolean;
  /** Whether the checkpoint carries its contents (an export or a move without --ignore-volumes). */
  carried: boolean;
  /** volumes/<n>.tar, or null (not carried, or an empty folder). */
  archive: string | null;
  /** The top folder's mode and owner (carried volumes). */
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface CheckpointMeta {
  format: 1;
  id: string;
  checkpointedAt: string;
  runcVersion: string;
  criuVersion: string;
  rootfs: {
    kind: 'overlay' | 'bundle';
    /** The base the container ran on: its read-only image, or a bundle's rootfs. */
    base: string;
    fingerprint: string;
    userBundle: string | null;
    /** The base's files the processes had mapped or open, which a restore finds unchanged or refuses. */
    baseFiles?: BaseFile[];
    /** The image of the image store the base is (`run --image`): a restore finds it there by digest. */
    image?: BaseImage;
  };
  /** runc restore flags that must repeat the checkpoint's CRIU options. */
  restoreArgs: string[];
  criuOptions: string[];
  preDump: boolean;
  parentPath: string | null;
  command: string[];
  labels: Record<string, string>;
  /** The container's volumes (absent before volumes existed). */
  volumes?: CheckpointVolume[];
}

/** A base that is an image of the image store (src/image/store.ts). */
export interface BaseImage {
  /** The manifest's digest. */
  digest: string;
  /** The config's digest: the image ID podman, CRI-O and containerd record. */
  configDigest: string;
  /** The reference it was pulled as (docker://…, oci:DIR:TAG). */
  name: string;
}

/** The image store's record beside each unpacked image's rootfs folder (<store>/<hex>/image.json). */
export const IMAGE_RECORD_FILE = 'image.json';

/** The store image a base folder is (<store>/<hex>/rootfs beside its image.json), or null. */
export function baseImageOf(base: string): BaseImage | null {
  if (basename(base) !== 'rootfs') return null;
  const dir = dirname(base);
  try {
    const record = JSON.parse(readFileSync(join(dir, IMAGE_RECORD_FILE), 'utf8')) as { digest?: unknown; configDigest?: unknown; names?: unknown };
    if (record.digest !== `sha256:${basename(dir)}` || typeof record.configDigest !== 'string' || !Array.isArray(record.names)) return null;
    const name = record.names[record.names.length - 1];
    return { digest: record.digest, configDigest: record.configDigest, name: typeof name === 'string' ? name : record.digest };
  } catch {
    return null;
  }
}

/** The name podman, CRI-O and containerd give an image: a registry reference without docker://; stasis's own form for local layouts. */
export function engineImageName(image: BaseImage): string {
  return image.name.startsWith('docker://') ? image.name.slice('docker://'.length) : image.name;
}

/** Where a checkpoint came from: the tools that made it and the base it needs. */
export interface Provenance {
  runcVersion: string;
  criuVersion: string;
  fingerprint: string;
  baseFiles?: BaseFile[];
}

/** What replaceFile writes first, beside the file it replaces. */
const TEMP_SUFFIX = '.stasis-tmp';

/**
 * Writes a file of a checkpoint folder being made by replacing it whole: a
 * stasis killed mid-way leaves the file as it was or as it is now, never cut
 * short (the folder may then be kept as the checkpoint: checkpoint/recover.ts).
 */
export function replaceFile(dir: string, name: string, text: string, mode?: number): void {
  const temp = join(dir, `${name}${TEMP_SUFFIX}`);
  writeFileSync(temp, text, mode === undefined ? undefined : { mode });
  renameSync(temp, join(dir, name));
}

/** What a killed replaceFile left in `dir`, removed. */
export function removeReplaceLeftovers(dir: string): void {
  for (const name of readdirSync(dir)) if (name.endsWith(TEMP_SUFFIX)) rmSync(join(dir, name), { force: true });
}

/**
 * Writes spec.dump, stasis.json and config.dump into a checkpoint folder
 * being made (the first time before the dump, then again with what the dump
 * told: each replaced whole, see replaceFile).
 */
export function writeMetadata(
  record: ContainerRecord,
  dir: string,
  opts: { preDump: boolean; parentPath?: string; criuOptions: string[]; restoreArgs: string[]; checkpointedAt: Date; volumes?: CheckpointVolume[] },
  provenance: Provenance,
): void {
  // stasis adds its loopback hook to every container it brings up: the checkpoint does not carry it.
  const spec = withoutLoopbackHook(JSON.parse(readFileSync(join(record.bundle, 'config.json'), 'utf8')) as OciSpec);
  // checkpointctl shows this annotation as the container's name (its engine column says containerd for any
  // manager but podman's and CRI-O's; we do not pretend to be either).
  spec.annotations = { ...spec.annotations, 'io.kubernetes.cri.container-name': record.id };
  replaceFile(dir, SPEC_FILE, `${JSON.stringify(spec, null, 2)}\n`);
  const image = record.rootfs.kind === 'overlay' ? baseImageOf(record.rootfs.base) : null;
  const meta: CheckpointMeta = {
    format: 1,
    id: record.id,
    checkpointedAt: opts.checkpointedAt.toISOString(),
    runcVersion: provenance.runcVersion,
    criuVersion: provenance.criuVersion,
    rootfs: {
      kind: record.rootfs.kind,
      base: record.rootfs.base,
      fingerprint: provenance.fingerprint,
      userBundle: record.rootfs.userBundle,
      ...(provenance.baseFiles ? { baseFiles: provenance.baseFiles } : {}),
      ...(image ? { image } : {}),
    },
    restoreArgs: opts.restoreArgs,
    criuOptions: opts.criuOptions,
    preDump: opts.preDump,
    parentPath: opts.parentPath === undefined ? null : resolve(opts.parentPath),
    command: record.command,
    labels: record.labels,
    ...(opts.volumes && opts.volumes.length > 0 ? { volumes: opts.volumes } : {}),
  };
  replaceFile(dir, META_FILE, `${JSON.stringify(meta, null, 2)}\n`);
  // podman's container config, reduced to what checkpointctl shows.
  const config = {
    id: record.id,
    name: record.id,
    // On an image: its name and ID as the engines record theirs (containerd pulls the name).
    rootfsImageName: image ? engineImageName(image) : record.rootfs.base,
    rootfsImageRef: image ? image.configDigest : meta.rootfs.fingerprint,
    rootfsImage: image ? engineImageName(image) : record.rootfs.base,
    createdTime: record.createdAt,
    checkpointedTime: meta.checkpointedAt,
    restored: record.restoredFrom !== null,
    runtime: 'runc',
  };
  replaceFile(dir, CONFIG_FILE, `${JSON.stringify(config, null, 2)}\n`);
}

/** The bytes of the regular files under dir (a link counts nothing and is never followed). */
export function folderSize(dir: string): number {
  return treeBytes(dir);
}
