import { sha256 as startSha256 } from '../../host/digest.ts';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { arch, release } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable, type Transform } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';

// The OCI image layout (image-spec image-layout.md) as far as a checkpoint
// image needs it, and the annotations each engine looks for on one.

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export const LAYER_COMPRESSION: Record<string, 'none' | 'gzip' | 'zstd'> = {
  [MEDIA.layer]: 'none',
  [MEDIA.layerGzip]: 'gzip',
  [MEDIA.layerZstd]: 'zstd',
  [MEDIA.dockerLayerGzip]: 'gzip',
};

export const REF_NAME = 'org.opencontainers.image.ref.name';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string };
}

export interface ImageRef {
  transport: 'oci' | 'oci-archive';
  path: string;
  /** The image's name in the layout (org.opencontainers.image.ref.name), when given. */
  reference: string | null;
}

/**
 * oci:DIR[:REFERENCE] and oci-archive:FILE[:REFERENCE], split as
 * containers/image does (oci/internal SplitPathAndImage): at the first ":"
 * after the transport, so the reference may hold ":" and "/"
 * (oci-archive:ckpt.tar:localhost/web:latest) and the path may not. Null for
 * anything else.
 */
export function parseImageRef(text: string): ImageRef | null {
  const match = /^(oci|oci-archive):([^:]+)(?::(.*))?$/.exec(text);
  if (!match) return null;
  return { transport: match[1] as ImageRef['transport'], path: match[2], reference: match[3] ? match[3] : null };
}

export function formatImageRef(ref: ImageRef): string {
  return `${ref.transport}:${ref.path}${ref.reference ? `:${ref.reference}` : ''}`;
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** blobs/sha256/<hex>; refuses any other algorithm or a malformed digest before it becomes a path. */
export function blobPath(layoutDir: string, digest: unknown): string {
  const match = typeof digest === 'string' ? DIGEST.exec(digest) : null;
  if (!match) throw new Error(`unsupported or malformed digest ${JSON.stringify(digest)} (stasis reads sha256 digests)`);
  return join(layoutDir, 'blobs', 'sha256', match[1]);
}

export function sha256(bytes: Buffer): string {
  return `sha256:${startSha256().update(bytes).digest('hex')}`;
}

/** sha256 of a file's bytes, or of what they decompress to. */
export async function fileDigest(path: string, compression: 'none' | 'gzip' | 'zstd' = 'none'): Promise<string> {
  const hash = startSha256();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done();
    },
  });
  const stages: (NodeJS.ReadableStream | Transform | Writable)[] = [createReadStream(path)];
  if (compression === 'gzip') stages.push(createGunzip());
  if (compression === 'zstd') stages.push(createZstdDecompress());
  stages.push(sink);
  await (pipeline as (...streams: unknown[]) => Promise<void>)(...stages);
  return `sha256:${hash.digest('hex')}`;
}

/** Checks a blob against its descriptor (size, then sha256) and returns its path. */
export async function verifiedBlob(layoutDir: string, desc: Descriptor, what: string): Promise<string> {
  const path = blobPath(layoutDir, desc.digest);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat?.isFile()) throw new Error(`the ${what} blob ${desc.digest} is missing`);
  if (typeof desc.size === 'number' && stat.size !== desc.size) {
    throw new Error(`the ${what} blob ${desc.digest} has ${stat.size} bytes, its descriptor says ${desc.size}`);
  }
  const actual = await fileDigest(path);
  if (actual !== desc.digest) throw new Error(`the ${what} blob does not match its digest: expected ${desc.digest}, got ${actual}`);
  return path;
}

export async function verifiedJson<T>(layoutDir: string, desc: Descriptor, what: string): Promise<T> {
  const path = await verifiedBlob(layoutDir, desc, what);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new Error(`the ${what} blob ${desc.digest} is not JSON: ${(err as Error).message}`);
  }
}

/** GOARCH names, which OCI platforms and podman's host.arch annotation use. */
export function goArch(nodeArch: string = arch()): string {
  return ({ x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[nodeArch] ?? nodeArch;
}

export interface HostFacts {
  arch: string;
  kernel: string;
  cgroupVersion: 'v1' | 'v2';
  distributionName: string;
  distributionVersion: string;
}

export function hostFacts(): HostFacts {
  const osRelease = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  const field = (name: string) => new RegExp(`^${name}="?([^"\\n]*)"?$`, 'm').exec(osRelease)?.[1] ?? '';
  return {
    arch: goArch(),
    kernel: release(),
    cgroupVersion: existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1',
    distributionName: field('ID'),
    distributionVersion: field('VERSION_ID'),
  };
}

export interface CheckpointFacts {
  containerName: string;
  /** What the container ran on: stasis's base rootfs, or the podman image given for podman. */
  rootfsImageName: string;
  rootfsImageId?: string;
  /** The manifest digest of the base image (a container on an image of stasis's store). */
  rootfsImageDigest?: string;
  criuVersion?: string;
  runtimeName?: string;
  runtimeVersion?: string;
  conmonVersion?: string;
  engineVersion?: string;
}

/** "4.2.1" → "40201", the form podman writes (criu.GetCriuVersion()). */
function criuNumber(version: string): string {
  const [major = 0, minor = 0, patch = 0] = version.split('.').map((part) => Number.parseInt(part, 10) || 0);
  return String(major * 10000 + minor * 100 + patch);
}

/**
 * The annotations of a checkpoint image. podman libpod/define/annotations.go
 * (io.podman.annotations.checkpoint.*; podman 4.3 reads none of them, podman 5
 * `run IMAGE` treats an image with runtime.name as a checkpoint), CRI-O
 * internal/annotations/checkpoint.go (checkpoint.name marks a checkpoint image,
 * read from the manifest), checkpointctl lib/annotations.go (org.criu.*, which
 * containerd's CRI read as container.name from the image's target blob).
 * Empty values are left out.
 */
export function checkpointAnnotations(facts: CheckpointFacts, host: HostFacts): { podman: Record<string, string>; crio: Record<string, string>; criu: Record<string, string> } {
  const runtimeName = facts.runtimeName ?? 'runc';
  const drop = (map: Record<string, string | undefined>) =>
    Object.fromEntries(Object.entries(map).filter((entry): entry is [string, string] => typeof entry[1] === 'string' && entry[1] !== ''));
  const p = 'io.podman.annotations.checkpoint.';
  const c = 'io.kubernetes.cri-o.annotations.checkpoint.';
  const o = 'org.criu.checkpoint.';
  return {
    podman: drop({
      [`${p}name`]: facts.containerName,
      [`${p}rawImageName`]: facts.rootfsImageName,
      [`${p}rootfsImageID`]: facts.rootfsImageId,
      [`${p}rootfsImageName`]: facts.rootfsImageName,
      [`${p}criu.version`]: facts.criuVersion ? criuNumber(facts.criuVersion) : undefined,
      [`${p}runtime.name`]: runtimeName,
      [`${p}runtime.version`]: facts.runtimeVersion,
      [`${p}conmon.version`]: facts.conmonVersion,
      [`${p}host.arch`]: host.arch,
      [`${p}host.kernel`]: host.kernel,
      [`${p}cgroups.version`]: host.cgroupVersion,
      [`${p}distribution.name`]: host.distributionName,
      [`${p}distribution.version`]: host.distributionVersion,
    }),
    crio: drop({
      [`${c}name`]: facts.containerName,
      [`${c}rawImageName`]: facts.rootfsImageName,
      [`${c}rootfsImageID`]: facts.rootfsImageId,
      [`${c}rootfsImageName`]: facts.rootfsImageName,
      [`${c}criu.version`]: facts.criuVersion,
    }),
    criu: drop({
      [`${o}engine.name`]: 'stasis',
      [`${o}engine.version`]: facts.engineVersion,
      [`${o}container.name`]: facts.containerName,
      [`${o}rootfsImageName`]: facts.rootfsImageName,
      [`${o}rootfsImageID`]: facts.rootfsImageId,
      [`${o}rawImageName`]: facts.rootfsImageName,
      [`${o}runtime.name`]: runtimeName,
      [`${o}runtime.version`]: facts.runtimeVersion,
      [`${o}criu.version`]: facts.criuVersion,
      [`${o}conmon.version`]: facts.conmonVersion,
      [`${o}host.arch`]: host.arch,
      [`${o}host.kernel`]: host.kernel,
      [`${o}cgroup.version`]: host.cgroupVersion,
      [`${o}distribution.name`]: host.distributionName,
      [`${o}distribution.version`]: host.distributionVersion,
      // stasis's own: the base image by its manifest digest, which stasis.json also records.
      'io.stasis.checkpoint.rootfsImageDigest': facts.rootfsImageDigest,
    }),
  };
}
