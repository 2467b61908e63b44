// What the image tests share: OCI layouts written by the test itself (layers
// as tar archives of folders, or of hand-made headers for hostile entries),
// and a docker-registry of its own on 127.0.0.1 (config and storage in a
// temporary folder, stopped and removed after).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { freePort } from './sshd.ts';
import { eventually } from './helpers.ts';

export interface ImageConfig {
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  User?: string;
  [key: string]: unknown;
}

const sha = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function writeBlob(layout: string, bytes: Buffer): string {
  const digest = sha(bytes);
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), bytes);
  return digest;
}

/** A plain tar of a folder's contents, made by GNU tar (owners kept, names sorted, "./" first). */
export function tarOf(dir: string): Buffer {
  const result = spawnSync('tar', ['-C', dir, '-c', '-f', '-', '--numeric-owner', '--sort=name', '.'], { maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`tar of ${dir} failed: ${result.stderr.toString()}`);
  return result.stdout;
}

export interface RawEntry {
  name: string;
  /** '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' folder. */
  type: '0' | '1' | '2' | '3' | '4' | '5';
  data?: string;
  linkName?: string;
  mode?: number;
}

/** A ustar archive of hand-written headers: names GNU tar would never write (absolute, "..") and devices without mknod. */
export function rawTar(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    const header = Buffer.alloc(512);
    const put = (text: string, offset: number, length: number) => header.write(text, offset, length, 'utf8');
    const octal = (value: number, offset: number, length: number) => put(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length);
    put(entry.name, 0, 100);
    octal(entry.mode ?? (entry.type === '5' ? 0o755 : 0o644), 100, 8);
    octal(0, 108, 8);
    octal(0, 116, 8);
    octal(entry.type === '0' ? data.length : 0, 124, 12);
    octal(1_700_000_000, 136, 12);
    header.fill(' ', 148, 156);
    put(entry.type, 156, 1);
    put(entry.linkName ?? '', 157, 100);
    put('ustar\0', 257, 6);
    put('00', 263, 2);
    if (entry.type === '3' || entry.type === '4') {
      octal(1, 329, 8);
      octal(3, 337, 8);
    }
    let sum = 0;
    for (const byte of header) sum += byte;
    put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
    blocks.push(header);
    if (entry.type === '0') {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/**
 * Writes an OCI image layout at `layout` holding one image named `tag`:
 * the layers (plain tars, gzipped here) in order, and `config` as the
 * config's "config". Returns the manifest's digest.
 */
export function writeLayout(layout: string, tag: string, layers: Buffer[], config: ImageConfig, opts: { created?: string } = {}): string {
  mkdirSync(layout, { recursive: true });
  const layerDescs = layers.map((tar) => {
    const gz = gzipSync(tar);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: writeBlob(layout, gz), size: gz.length };
  });
  const configBytes = Buffer.from(JSON.stringify({
    created: opts.created ?? '2026-01-02T03:04:05Z',
    architecture: 'amd64',
    os: 'linux',
    config,
    rootfs: { type: 'layers', diff_ids: layers.map(sha) },
  }));
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: writeBlob(layout, configBytes), size: configBytes.length };
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers: layerDescs }));
  const manifestDigest = writeBlob(layout, manifestBytes);
  let index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] as unknown[] };
  try {
    index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  } catch {
    // a new layout
  }
  index.manifests = [
    ...index.manifests.filter((m) => (m as { annotations?: Record<string, string> }).annotations?.['org.opencontainers.image.ref.name'] !== tag),
    { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifestBytes.length, annotations: { 'org.opencontainers.image.ref.name': tag } },
  ];
  writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return manifestDigest;
}

/** The plain tar inside a gzip blob (for tests that look at a layer). */
export function gunzip(bytes: Buffer): Buffer {
  return gunzipSync(bytes);
}

export interface Registry {
  /** host:port, on 127.0.0.1. */
  readonly address: string;
  stop(): Promise<void>;
}

/** Starts Debian's docker-registry on a free 127.0.0.1 port, its config and storage under `dir`; resolves once /v2/ answers. */
export async function startRegistry(dir: string): Promise<Registry> {
  const port = await freePort();
  const storage = join(dir, 'storage');
  mkdirSync(storage, { recursive: true });
  const config = join(dir, 'config.yml');
  writeFileSync(config, [
    'version: 0.1',
    'log:',
    '  level: error',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '',
  ].join('\n'));
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    // A fetch that throws is a registry not listening yet.
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/v2/`)).ok, `docker-registry to answer on 127.0.0.1:${port}`, 60_000, {
      giveUp: () => (child.exitCode !== null ? 'it exited' : null),
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}: ${stderr}`);
  }
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
