import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO = resolve(import.meta.dirname, '..');
export const BIN = join(REPO, 'bin', 'stasis');
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

  args(args: string[]): string[] {
    return [BIN, '--state-dir', this.stateDir, '--checkpoint-dir', this.checkpointDir, ...args];
  }

  /** Runs the real CLI to completion. */
  run(args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Result> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, this.args(args), {
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
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
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

export function mountedUnder(path: string): string[] {
  return spawnSync('sh', ['-c', `cut -d' ' -f5 /proc/self/mountinfo | grep '^${path}' || true`]).stdout.toString().split('\n').filter(Boolean);
}
