import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, cpSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO = resolve(import.meta.dirname, '..');
export const BIN = join(REPO, 'bin', 'stasis');
/**
 * The stasis under test: STASIS_TEST_BIN=PATH runs that executable (the
 * compiled dist/stasis, or an installed one), else bin/stasis under this Node.
 * STASIS_PROGRAM is the file that runs as `stasis` by name (put on PATH, run
 * from a shell), CLI the command line that starts it.
 */
export const STASIS_PROGRAM = process.env.STASIS_TEST_BIN ? resolve(process.env.STASIS_TEST_BIN) : BIN;
export const CLI: readonly string[] = process.env.STASIS_TEST_BIN ? [STASIS_PROGRAM] : [process.execPath, BIN];
export const ROOTFS = process.env.STASIS_TEST_ROOTFS ?? '/var/lib/stasis/rootfs/busybox';

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A private state directory and checkpoint directory for one test file, removed by cleanup(). */
export class TestEnv {
  readonly root: string;
  readonly stateDir: string;
  readonly checkpointDir: string;

  constructor(name: string) {
    this.root = mkdtempSync(join(tmpdir(), `stasis-test-${name}-`));
    this.stateDir = join(this.root, 'state');
    this.checkpointDir = join(this.root, 'checkpoints');
  }

  /** The arguments that make CLI[0] run `stasis ARGS` in this env. */
  args(args: string[]): string[] {
    return [...CLI.slice(1), '--state-dir', this.stateDir, '--checkpoint-dir', this.checkpointDir, ...args];
  }

  /** Runs the real CLI to completion. */
  run(args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Result> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(CLI[0], this.args(args), {
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1', ...opts.env },
        cwd: opts.cwd,
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      if (opts.input !== undefined) child.stdin!.end(opts.input);
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolvePromise({ code, signal, stdout, stderr });
      });
    });
  }

  /** Runs the CLI and fails the test, with its stderr, unless it exits 0. */
  async ok(args: string[], opts: Parameters<TestEnv['run']>[1] = {}): Promise<string> {
    const result = await this.run(args, opts);
    if (result.code !== 0) {
      throw new Error(`stasis ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    }
    return result.stdout;
  }

  async json<T = any>(args: string[]): Promise<T> {
    return JSON.parse(await this.ok(['--json', ...args])) as T;
  }

  /** Runs the CLI, asserts it exits `code` with stderr matching `stderr`, and returns the result (as podman's `run_podman 125 ...`). */
  async fails(code: number, args: string[], stderr: RegExp, opts: Parameters<TestEnv['run']>[1] = {}): Promise<Result> {
    const result = await this.run(args, opts);
    assert.equal(result.code, code, `stasis ${args.join(' ')}: exit code\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    assert.match(result.stderr, stderr, `stasis ${args.join(' ')}: stderr`);
    return result;
  }

  /** No container folder and no mount under the state directory: what a refused command must leave. */
  assertNothingLeft(): void {
    assert.deepEqual(this.containerIds(), []);
    assert.deepEqual(mountedUnder(this.stateDir), []);
  }

  containerIds(): string[] {
    const dir = join(this.stateDir, 'containers');
    return existsSync(dir) ? readdirSync(dir) : [];
  }

  /** Removes every container this env started, then the folders. */
  async cleanup(): Promise<void> {
    const ids = this.containerIds();
    if (ids.length > 0) await this.run(['delete', '-f', ...ids]);
    for (const id of this.containerIds()) {
      // Last resort for anything delete could not remove.
      spawnSync('runc', ['--root', join(this.stateDir, 'runc'), 'delete', '-f', id]);
    }
    const mounts = spawnSync('sh', ['-c', `grep -o ' ${this.root}[^ ]*' /proc/self/mountinfo | sort -r`]).stdout.toString().trim();
    for (const target of mounts.split('\n').filter(Boolean)) spawnSync('umount', ['-l', target.trim()]);
    rmSync(this.root, { recursive: true, force: true });
  }

  /** A writable copy of the default rootfs (for bundles, or a "fresh copy" of a base). */
  copyRootfs(name: string): string {
    const target = join(this.root, name);
    cpSync(ROOTFS, target, { recursive: true, verbatimSymlinks: true });
    return target;
  }

  /** An OCI bundle made with `runc spec`, running `args`, its rootfs a copy of the default one. */
  makeBundle(name: string, args: string[]): string {
    const bundle = join(this.root, name);
    mkdirSync(bundle, { recursive: true });
    cpSync(ROOTFS, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    spawnSync('runc', ['spec', '--bundle', bundle]);
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    spec.process.terminal = false;
    spec.process.args = args;
    spec.root.readonly = false;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
    return bundle;
  }
}

/** Polls `check` until it returns a truthy value or the time runs out. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000, opts: { giveUp?: () => string | null } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    // What is waited for can no longer come (a server that exited): no need to wait the rest.
    const hopeless = opts.giveUp?.() ?? null;
    if (hopeless !== null) throw new Error(`gave up waiting for ${what}: ${hopeless}`);
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(50);
  }
}

export const COUNTER = ['sh', '-c', 'i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done'];

/** The last counter value a container printed. */
export function lastCount(logs: string): number {
  const counts = [...logs.matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
  return counts.length === 0 ? -1 : counts[counts.length - 1];
}

/** Waits until container `id`'s counter (COUNTER) has printed a value above `beyond`; returns it. */
export async function counterAdvances(env: TestEnv, id: string, beyond: number): Promise<number> {
  return eventually(async () => {
    const value = lastCount(await env.ok(['logs', id]));
    return value > beyond ? value : 0;
  }, `${id}'s counter to pass ${beyond}`);
}

export function mountedUnder(path: string): string[] {
  return spawnSync('sh', ['-c', `cut -d' ' -f5 /proc/self/mountinfo | grep '^${path}' || true`]).stdout.toString().split('\n').filter(Boolean);
}

/**
 * The cgroup folder of a process for one controller, on cgroup v1 (a
 * hierarchy per controller), v2 (one unified hierarchy) or a hybrid of the
 * two: /proc/PID/cgroup names the path, /proc/self/mountinfo the mount point.
 */
export function cgroupDir(pid: number, controller: 'memory' | 'pids'): string {
  const memberships = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n').map((line) => {
    const [, , controllers, path] = /^(\d+):([^:]*):(.*)$/.exec(line)!;
    return { controllers: controllers.split(','), path };
  });
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map((line) => {
    const [before, after] = line.split(' - ');
    const [fstype, , superOptions] = after.split(' ');
    return { target: before.split(' ')[4], fstype, options: superOptions.split(',') };
  });
  const v1 = memberships.find((m) => m.controllers.includes(controller));
  const v1Mount = mounts.find((m) => m.fstype === 'cgroup' && m.options.includes(controller));
  if (v1 && v1Mount) return join(v1Mount.target, v1.path);
  const v2 = memberships.find((m) => m.controllers.length === 1 && m.controllers[0] === '');
  const v2Mount = mounts.find((m) => m.fstype === 'cgroup2');
  if (v2 && v2Mount) return join(v2Mount.target, v2.path);
  throw new Error(`no ${controller} cgroup found for process ${pid}`);
}

/** A cgroup's limit for a controller, under its v1 or v2 file name (memory.limit_in_bytes / memory.max, pids.max). */
export function cgroupLimit(dir: string, controller: 'memory' | 'pids'): string {
  const v2 = existsSync(join(dir, 'cgroup.controllers'));
  const file = controller === 'memory' ? (v2 ? 'memory.max' : 'memory.limit_in_bytes') : 'pids.max';
  return readFileSync(join(dir, file), 'utf8').trim();
}

/** Whether process `pid` has an inotify instance open (it is watching a file: an events follower is ready). */
export function hasInotify(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:inotify';
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

// ------------------------------------------------ requirements (as runc's bats `requires`)

/** What a test can need of the host. `criu>=4.2`: at least that CRIU version. */
export type Requirement =
  | 'root'
  | 'runc'
  | 'criu'
  | 'conmon'
  | 'podman'
  | 'sshd'
  | 'checkpointctl'
  | 'flock'
  | 'iptables'
  | 'socat'
  | 'skopeo'
  | 'docker-registry'
  | 'rootfs'
  | 'uffd'
  | `criu>=${number}.${number}`;

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function onPath(program: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...SBIN]) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

let criuVersionCache: string | null | undefined;

function installedCriuVersion(): string | null {
  if (criuVersionCache === undefined) {
    const criu = onPath('criu');
    const out = criu ? spawnSync(criu, ['--version'], { encoding: 'utf8', timeout: 10_000 }) : null;
    criuVersionCache = out ? /Version: (\d+(?:\.\d+)*)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? null : null;
  }
  return criuVersionCache;
}

function atLeast(version: string, wanted: string): boolean {
  const have = version.split('.').map(Number);
  const want = wanted.split('.').map(Number);
  for (let i = 0; i < want.length; i++) {
    if ((have[i] ?? 0) !== want[i]) return (have[i] ?? 0) > want[i];
  }
  return true;
}

/** Why one requirement is not met on this host, or null when it is. */
function unmet(requirement: Requirement): string | null {
  // STASIS_TEST_MISSING=root,criu pretends those are missing (to see the skips without changing the host).
  const pretend = (process.env.STASIS_TEST_MISSING ?? '').split(',').map((s) => s.trim());
  const name = requirement.startsWith('criu>=') ? 'criu' : requirement;
  if (pretend.includes(requirement) || pretend.includes(name)) return `${requirement} (STASIS_TEST_MISSING)`;
  if (requirement === 'root') return process.getuid?.() === 0 ? null : 'root';
  if (requirement === 'rootfs') return existsSync(join(ROOTFS, 'bin')) ? null : `the rootfs ${ROOTFS} (scripts/setup.sh builds it)`;
  if (requirement === 'uffd') {
    const criu = onPath('criu');
    if (!criu) return 'criu (for uffd)';
    return spawnSync(criu, ['check', '--feature', 'uffd-noncoop'], { timeout: 30_000 }).status === 0 ? null : 'userfaultfd (criu check --feature uffd-noncoop)';
  }
  if (requirement.startsWith('criu>=')) {
    const wanted = requirement.slice('criu>='.length);
    const version = installedCriuVersion();
    if (version === null) return requirement;
    return atLeast(version, wanted) ? null : `${requirement} (found ${version})`;
  }
  return onPath(requirement) ? null : requirement;
}

/**
 * For a describe's or a test's `skip` option: false when the host has
 * everything, else the reason, which the runner prints with the skip:
 *
 *   describe('checkpoint', { skip: requires('root', 'runc', 'conmon', 'criu') }, () => { ... });
 */
export function requires(...requirements: Requirement[]): string | false {
  const missing = requirements.map(unmet).filter((why): why is string => why !== null);
  return missing.length === 0 ? false : `needs ${missing.join(', ')}`;
}

/** What every test that runs real containers needs. */
export const CONTAINERS: Requirement[] = ['root', 'runc', 'conmon', 'rootfs'];

/** `stasis FROM-ARGS | stasis TO-ARGS` through a real pipe between the two processes, each with its own state directory. */
export function pipeline(from: TestEnv, fromArgs: string[], to: TestEnv, toArgs: string[]): Promise<[Result, Result]> {
  const env = { ...process.env, NO_COLOR: '1' };
  const writer = spawn(CLI[0], from.args(fromArgs), { stdio: ['ignore', 'pipe', 'pipe'], env });
  const reader = spawn(CLI[0], to.args(toArgs), { stdio: [writer.stdout, 'pipe', 'pipe'], env });
  // The reader has its own copy of the pipe; ours would keep the writer's stdout from ever ending.
  writer.stdout!.destroy();
  const finished = (child: ChildProcess, own: boolean) => new Promise<Result>((resolve) => {
    let stdout = '';
    let stderr = '';
    if (own) child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return Promise.all([finished(writer, false), finished(reader, true)]);
}
