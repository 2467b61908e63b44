// containerd 2.1 and a docker-registry for test/integration/cri.test.ts, each
// with its own config, root, state and socket in a temporary folder, bound to
// 127.0.0.1, started and stopped by the test. The binaries are the ones
// scripts/setup/containerd.sh unpacked into $STASIS_CONTAINERD_PREFIX
// (default /opt/stasis/containerd); nothing is installed on the host.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CriClient } from './cri-client.ts';
import { eventually } from './helpers.ts';

export const CONTAINERD_PREFIX = process.env.STASIS_CONTAINERD_PREFIX ?? '/opt/stasis/containerd';
const BIN = {
  containerd: join(CONTAINERD_PREFIX, 'usr/bin/containerd'),
  ctr: join(CONTAINERD_PREFIX, 'usr/bin/ctr'),
  shimDir: join(CONTAINERD_PREFIX, 'usr/bin'),
  registry: join(CONTAINERD_PREFIX, 'usr/bin/docker-registry'),
  cniDir: join(CONTAINERD_PREFIX, 'usr/lib/cni'),
  pause: join(CONTAINERD_PREFIX, 'pause'),
};

/** Why the containerd tests cannot run here, or undefined when they can. */
export function containerdMissing(): string | undefined {
  for (const [what, path] of Object.entries(BIN)) {
    if (what === 'shimDir') continue;
    const file = what === 'cniDir' ? join(path, 'loopback') : path;
    if (!existsSync(file)) return `${file} is missing: run scripts/setup/containerd.sh (scripts/test.sh does)`;
  }
  return undefined;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, child: ChildProcess, log: string, timeoutMs = 120_000): Promise<void> {
  try {
    await eventually(check, `${what} to be ready`, timeoutMs, {
      giveUp: () => (child.exitCode !== null || child.signalCode !== null ? `${what} exited (${child.exitCode ?? child.signalCode})` : null),
    });
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${readTail(log)}`);
  }
}

export function readTail(file: string, bytes = 6000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '(no log)';
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await done;
  clearTimeout(timer);
}

export class Registry {
  readonly host: string;
  readonly dir: string;
  private readonly child: ChildProcess;
  private constructor(dir: string, port: number, child: ChildProcess) {
    this.dir = dir;
    this.child = child;
    this.host = `127.0.0.1:${port}`;
  }

  static async start(dir: string): Promise<Registry> {
    mkdirSync(join(dir, 'data'), { recursive: true });
    const port = await freePort();
    const config = join(dir, 'config.yml');
    writeFileSync(config, [
      'version: 0.1',
      'log:',
      '  level: info',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'));
    const log = join(dir, 'registry.log');
    const fd = openSync(log, 'a');
    const child = spawn(BIN.registry, ['serve', config], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const reg = new Registry(dir, port, child);
    await waitFor('docker-registry', async () => {
      try {
        const res = await fetch(`http://${reg.host}/v2/`);
        return res.ok;
      } catch {
        return false;
      }
    }, child, log);
    return reg;
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
  }
}

export class Containerd {
  readonly socket: string;
  readonly cri: CriClient;
  readonly dir: string;
  readonly log: string;
  private readonly child: ChildProcess;
  private constructor(dir: string, child: ChildProcess, log: string) {
    this.dir = dir;
    this.child = child;
    this.log = log;
    this.socket = join(dir, 'containerd.sock');
    this.cri = new CriClient(this.socket);
  }

  /** Starts containerd with the CRI plugin, runc from the host, loopback-only CNI, `sandboxImage` as the pause image and plain HTTP to `registryHost`. */
  static async start(dir: string, opts: { sandboxImage: string; registryHost: string; runc: string; path: string }): Promise<Containerd> {
    for (const sub of ['root', 'state', 'cni', `certs.d/${opts.registryHost}`, 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
    writeFileSync(join(dir, 'cni/10-loopback.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'stasis-test-lo', plugins: [{ type: 'loopback' }] }));
    writeFileSync(join(dir, `certs.d/${opts.registryHost}/hosts.toml`), [
      `server = "http://${opts.registryHost}"`,
      `[host."http://${opts.registryHost}"]`,
      '  capabilities = ["pull", "resolve", "push"]',
      '',
    ].join('\n'));
    const q = (s: string) => JSON.stringify(s);
    const rt = 'plugins."io.containerd.cri.v1.runtime"';
    writeFileSync(join(dir, 'config.toml'), [
      'version = 3',
      `root = ${q(join(dir, 'root'))}`,
      `state = ${q(join(dir, 'state'))}`,
      `temp = ${q(join(dir, 'tmp'))}`,
      // NRI would listen on /var/run/nri; tracing would want a collector.
      'disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
      '[grpc]',
      `  address = ${q(join(dir, 'containerd.sock'))}`,
      '[ttrpc]',
      `  address = ${q(join(dir, 'containerd.ttrpc.sock'))}`,
      '[debug]',
      `  address = ${q(join(dir, 'debug.sock'))}`,
      '  level = "debug"',
      '[plugins."io.containerd.cri.v1.images"]',
      '  [plugins."io.containerd.cri.v1.images".pinned_images]',
      `    sandbox = ${q(opts.sandboxImage)}`,
      '  [plugins."io.containerd.cri.v1.images".registry]',
      `    config_path = ${q(join(dir, 'certs.d'))}`,
      `[${rt}]`,
      // The sandbox's oom_score_adj would be -998; lowering it needs
      // CAP_SYS_RESOURCE, which root lacks here (runc: "failed to update
      // /proc/self/oom_score_adj: Permission denied"). Restricted, it is never
      // below containerd's own.
      '  restrict_oom_score_adj = true',
      `  [${rt}.cni]`,
      `    bin_dirs = [${q(BIN.cniDir)}]`,
      `    conf_dir = ${q(join(dir, 'cni'))}`,
      `  [${rt}.containerd]`,
      '    default_runtime_name = "runc"',
      `    [${rt}.containerd.runtimes.runc]`,
      '      runtime_type = "io.containerd.runc.v2"',
      `      [${rt}.containerd.runtimes.runc.options]`,
      `        BinaryName = ${q(opts.runc)}`,
      '        SystemdCgroup = false',
      `        Root = ${q(join(dir, 'runc'))}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(join(dir, 'opt'))}`,
      '',
    ].join('\n'));
    const log = join(dir, 'containerd.log');
    const fd = openSync(log, 'a');
    // The shim (containerd-shim-runc-v2) is found on PATH, CRIU through runc.
    const child = spawn(BIN.containerd, ['--config', join(dir, 'config.toml')], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, PATH: `${BIN.shimDir}:${opts.path}`, TMPDIR: join(dir, 'tmp') },
    });
    closeSync(fd);
    const c = new Containerd(dir, child, log);
    await waitFor('containerd', async () => {
      if (!existsSync(c.socket)) return false;
      try {
        await c.cri.version();
        return true;
      } catch {
        return false;
      }
    }, child, log);
    return c;
  }

  ctr(args: string[]): string {
    const r = spawnSync(BIN.ctr, ['--address', this.socket, ...args], { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`ctr ${args.join(' ')}: exit ${r.status}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async stop(): Promise<void> {
    this.cri.close();
    await stopChild(this.child);
  }
}

// --- OCI images built here ---------------------------------------------------

function sha256(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/**
 * Writes an OCI layout at `layoutDir` holding one image: the files of `rootDir`
 * as one uncompressed layer, `config` as the image config's `config`, named
 * `ref` in index.json (org.opencontainers.image.ref.name).
 */
export function writeOciImage(layoutDir: string, rootDir: string, ref: string, config: Record<string, unknown>): string {
  const blobs = join(layoutDir, 'blobs/sha256');
  mkdirSync(blobs, { recursive: true });
  const layerFile = join(layoutDir, 'layer.tar');
  const tar = spawnSync('tar', ['--numeric-owner', '--sort=name', '-C', rootDir, '-cf', layerFile, '.'], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`tar of ${rootDir}: ${tar.stderr}`);
  const layer = readFileSync(layerFile);
  rmSync(layerFile);
  const put = (buf: Buffer): string => {
    const d = sha256(buf);
    writeFileSync(join(blobs, d.slice(7)), buf);
    return d;
  };
  const layerDigest = put(layer);
  const cfg = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config,
    rootfs: { type: 'layers', diff_ids: [layerDigest] },
  }));
  const cfgDigest = put(cfg);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfgDigest, size: cfg.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
  }));
  const manifestDigest = put(manifest);
  writeFileSync(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(layoutDir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: manifestDigest,
      size: manifest.length,
      annotations: { 'org.opencontainers.image.ref.name': ref },
    }],
  }));
  return manifestDigest;
}

/** Makes an OCI archive (a tar of the layout) for `ctr images import`. */
export function tarLayout(layoutDir: string, file: string): void {
  const r = spawnSync('tar', ['-C', layoutDir, '-cf', file, 'oci-layout', 'index.json', 'blobs'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar of ${layoutDir}: ${r.stderr}`);
}

export function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
