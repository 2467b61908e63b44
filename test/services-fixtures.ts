// What the service tests and the migrate tests share: the C fixtures (built
// by the test with gcc), a base rootfs holding them, whether CRIU can dump
// sockets here, and another "host" (mount and network namespaces of its own).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { CLI, REPO, ROOTFS, TestEnv, type Result } from './helpers.ts';

export const FIXTURES = join(REPO, 'test', 'fixtures', 'services');
export const PROGRAMS = ['httpcount', 'tcpstream', 'udpecho', 'sockpair', 'lockhold', 'bigmem'];

function versionOf(command: string, args: string[], pattern: RegExp): number[] | null {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  const match = pattern.exec(`${result.stdout ?? ''}${result.stderr ?? ''}`);
  return match ? match[1].split('.').map(Number) : null;
}

function atLeast(version: number[] | null, wanted: number[]): boolean {
  if (version === null) return false;
  for (let i = 0; i < wanted.length; i++) {
    const part = version[i] ?? 0;
    if (part !== wanted[i]) return part > wanted[i];
  }
  return true;
}

const CRIU = versionOf('criu', ['--version'], /Version: (\d+(?:\.\d+)*)/);
const KERNEL = /^(\d+(?:\.\d+)*)/.exec(release())![1].split('.').map(Number);
export const SOCKETS_DUMPABLE = atLeast(CRIU, [4, 2]) || !atLeast(KERNEL, [6, 16]);
export const SOCKETS_REASON = `CRIU ${CRIU?.join('.') ?? '(none)'} cannot dump TCP or UDP sockets on Linux ${release()} ("Can't get 1:16 opt"); CRIU >= 4.2 can`;

/** Builds the fixtures into `binDir`; null when they were built, else why not. */
export function buildFixtures(binDir: string): string | null {
  if (spawnSync('gcc', ['--version']).status !== 0) return 'gcc is not installed (the service fixtures are C programs built by the test)';
  mkdirSync(binDir, { recursive: true });
  for (const name of PROGRAMS) {
    const gcc = spawnSync('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', join(binDir, name), join(FIXTURES, `${name}.c`)], { encoding: 'utf8' });
    if (gcc.status !== 0) return `gcc -static could not build ${name}.c: ${gcc.stderr.trim()}`;
  }
  return null;
}

/** A copy of the default rootfs with the fixtures in /srv. */
export function makeBase(target: string, binDir: string): string {
  cpSync(ROOTFS, target, { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(target, 'srv'), { recursive: true });
  for (const name of PROGRAMS) cpSync(join(binDir, name), join(target, 'srv', name));
  return target;
}

/**
 * Another host: a mount and network namespace of its own (bound to files so
 * that every command can enter them), with its own state directory and its
 * own copy of the base rootfs mounted where the checkpoint says the base is.
 */
export class OtherHost {
  readonly dir: string;
  readonly stateDir: string;
  readonly checkpointDir: string;
  readonly mntNs: string;
  readonly netNs: string;

  /** `hardLinks`: the copy of the base shares its files' inodes (cp -al: quick for a large tree that nothing writes). */
  constructor(env: TestEnv, name: string, base: string, opts: { hardLinks?: boolean } = {}) {
    this.dir = join(env.root, name);
    this.stateDir = join(this.dir, 'state');
    this.checkpointDir = join(this.dir, 'checkpoints');
    this.mntNs = join(this.dir, 'mnt');
    this.netNs = join(this.dir, 'net');
    const copy = join(this.dir, 'base-copy');
    mkdirSync(this.dir, { recursive: true });
    const cp = spawnSync('cp', [opts.hardLinks ? '-al' : '-a', base, copy]);
    assert.equal(cp.status, 0, String(cp.stderr));
    // A mount namespace can only be bound to a file on a private mount.
    for (const args of [['--bind', this.dir, this.dir], ['--make-private', this.dir]]) {
      const mount = spawnSync('mount', args);
      assert.equal(mount.status, 0, String(mount.stderr));
    }
    writeFileSync(this.mntNs, '');
    writeFileSync(this.netNs, '');
    const unshare = spawnSync('unshare', [
      `--mount=${this.mntNs}`, `--net=${this.netNs}`, '--propagation', 'private', '--',
      'sh', '-c', `mount --bind "${copy}" "${base}" && ip link set lo up`,
    ], { encoding: 'utf8' });
    assert.equal(unshare.status, 0, unshare.stderr);
  }

  /** The CLI in the other host's namespaces, in a session of its own. */
  run(args: string[], opts: { hostNet?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', [
        // hostNet: this host's network namespace (to reach a test's sshd on 127.0.0.1).
        `--mount=${this.mntNs}`, ...(opts.hostNet ? [] : [`--net=${this.netNs}`]), '--', 'setsid', '-w',
        ...CLI, '--state-dir', this.stateDir, '--checkpoint-dir', this.checkpointDir, ...args,
      ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...opts.env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
  }

  async ok(args: string[], opts: Parameters<OtherHost['run']>[1] = {}): Promise<string> {
    const result = await this.run(args, opts);
    if (result.code !== 0) throw new Error(`(other host) stasis ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    return result.stdout;
  }

  async json<T = any>(args: string[], opts: Parameters<OtherHost['run']>[1] = {}): Promise<T> {
    return JSON.parse(await this.ok(['--json', ...args], opts)) as T;
  }

  async cleanup(): Promise<void> {
    const containers = join(this.stateDir, 'containers');
    const ids = existsSync(containers) ? readdirSync(containers) : [];
    if (ids.length > 0) await this.run(['delete', '-f', ...ids]);
    for (const target of [this.mntNs, this.netNs, this.dir]) spawnSync('umount', ['-l', target]);
  }
}

/** Skips the test with a reason unless `ok`; returns `ok`. */
export function skipUnless(t: TestContext, ok: boolean, reason: string): boolean {
  if (!ok) t.skip(reason);
  return ok;
}
