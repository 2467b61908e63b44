// Fakes for the fast tier: they stand in for runc, conmon and CRIU only. The
// stasis code under test (Runtime, provisioning, delete, checkpoint/,
// restore) is the real one, working on a real state directory under
// os.tmpdir(); what it asks of runc is recorded and answered as runc would.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StasisError } from '../../src/errors.ts';
import type { ProcessRunner, RunOptions, RunResult } from '../../src/host/spawn.ts';
import type { MonitorOptions } from '../../src/runtime/conmon.ts';
import { planCreate, type CreateOptions } from '../../src/runtime/create-plan.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import type { ProvisionPlan } from '../../src/runtime/types.ts';
import type { ContainerRecord } from '../../src/state/store.ts';
import { syntheticImages } from './criu-encode.ts';
import { recoverCheckpoint } from '../../src/checkpoint/recover.ts';

export const FAKE_RUNC = '/fake/bin/runc';
export const FAKE_CONMON = '/fake/bin/conmon';
/** Never run: criu's version and feature checks, which bypass the runner, then find no CRIU. */
export const NO_CRIU = '/nonexistent/criu';

/** One program run through the fake runner; for runc, `args` come after its --root/--criu. */
export interface Call {
  file: string;
  args: string[];
}

export type Answer = Partial<RunResult> | ((call: Call, opts: RunOptions) => Partial<RunResult> | Promise<Partial<RunResult>>);

interface Rule {
  file: string;
  prefix: string[];
  answer: Answer;
  once: boolean;
}

/** A logrus line as runc writes it on stderr. */
export function runcError(message: string): string {
  return `time="2026-01-02T03:04:05Z" level=error msg="${message.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"\n`;
}

/**
 * A scriptable ProcessRunner: answers by program and argv prefix (the rule
 * given last wins), records every call. Unscripted calls succeed with no
 * output, as runc's do; tests assert the whole list of calls.
 */
/** The PID FakeRunner gives a gated program: above pid_max, never a process. */
export const FAKE_GATED_PID = 4_194_305;

export class FakeRunner implements ProcessRunner {
  readonly calls: Call[] = [];
  private readonly rules: Rule[] = [];
  private readonly runcGlobal: string[];

  constructor(runcRoot: string) {
    this.runcGlobal = ['--root', runcRoot, '--criu', NO_CRIU];
  }

  /** Answers `file` ('runc', 'mount', 'umount') called with arguments starting with `prefix`. */
  on(file: string, prefix: string[], answer: Answer, opts: { once?: boolean } = {}): this {
    this.rules.push({ file, prefix, answer, once: opts.once === true });
    return this;
  }

  /** runc exits 1 with this message as its logrus error line. */
  failRunc(prefix: string[], message: string, opts: { once?: boolean } = {}): this {
    return this.on('runc', prefix, { exitCode: 1, stderr: runcError(message) }, opts);
  }

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    let call: Call;
    if (file === FAKE_RUNC) {
      // Every runc call must name the state directory's runc root (and our CRIU).
      const global = args.slice(0, this.runcGlobal.length);
      if (global.join('\0') !== this.runcGlobal.join('\0')) throw new Error(`runc called without ${this.runcGlobal.join(' ')}: ${args.join(' ')}`);
      call = { file: 'runc', args: args.slice(this.runcGlobal.length) };
    } else {
      call = { file, args: [...args] };
    }
    // Recorded before any await, so calls started together keep their order.
    this.calls.push(call);
    // A gated program (RunOptions.gate) is named to the caller before it runs: here a PID above
    // pid_max (2^22), which never names a process, so a recovery has nothing to wait for.
    opts.gate?.({ pid: FAKE_GATED_PID, startTime: 1 });
    const index = this.rules.findLastIndex((rule) => rule.file === call.file && rule.prefix.every((word, i) => call.args[i] === word));
    let answer: Partial<RunResult> = {};
    if (index >= 0) {
      const rule = this.rules[index];
      if (rule.once) this.rules.splice(index, 1);
      answer = typeof rule.answer === 'function' ? await rule.answer(call, opts) : rule.answer;
    } else if (call.file === 'runc' && call.args[0] === '--version') {
      answer = { stdout: 'runc version 1.1.5-fake\ncommit: fake\nspec: 1.0.2-dev\n' };
    }
    return { exitCode: 0, stdout: '', stderr: '', signal: undefined, ...answer };
  }

  /** The runc calls, each as one string: "kill web KILL". */
  runcCalls(): string[] {
    return this.calls.filter((c) => c.file === 'runc').map((c) => c.args.join(' '));
  }

  /** Every call, runc's without the global arguments: "runc kill web KILL", "mount -t overlay ...". */
  allCalls(): string[] {
    return this.calls.map((c) => [c.file, ...c.args].join(' '));
  }

  reset(): void {
    this.calls.length = 0;
  }
}

/** A pid that named a process a moment ago and names none now (a container CRIU or a kill stopped). */
export function deadPid(): number {
  return Number.parseInt(spawnSync('sh', ['-c', 'echo $$']).stdout.toString(), 10);
}

/** The value after `flag` in a call's arguments. */
export function flagValue(call: Call, flag: string): string {
  const at = call.args.indexOf(flag);
  if (at < 0) throw new Error(`no ${flag} in ${call.args.join(' ')}`);
  return call.args[at + 1];
}

/**
 * What a successful `runc checkpoint` leaves, as CRIU writes it: decodable
 * images of one process (pstree, core, ids, mountpoints, inventory) and
 * runc's descriptors.json in --image-path; CRIU's log and statistics in
 * --work-path.
 */
export function writeCriuDump(call: Call): void {
  const images = flagValue(call, '--image-path');
  const work = flagValue(call, '--work-path');
  for (const [name, bytes] of syntheticImages()) writeFileSync(join(images, name), bytes);
  writeFileSync(join(images, 'descriptors.json'), JSON.stringify(['/dev/null', 'pipe:[4001]', 'pipe:[4002]']));
  writeFileSync(join(work, 'dump.log'), '(00.001000) Dumping finished successfully\n');
  writeFileSync(join(work, 'stats-dump'), Buffer.alloc(0));
}

/** What conmon writes when the container exits: its status, in the container folder. */
export function writeExit(containerDir: string, status: number): void {
  writeFileSync(join(containerDir, 'exit'), String(status));
}

/**
 * Stands in for conmon's launcher (conmon.ts startMonitor): it writes the
 * files conmon writes into the container folder (the container's pid, the
 * monitor's pid) and reports the pid, or rejects with the message
 * startMonitor makes of runc's error. The container's process is this test
 * process: alive for the whole test, and never signalled, because runc is
 * fake and the monitor's pid file names no monitor of that folder.
 */
export class FakeMonitor {
  readonly calls: MonitorOptions[] = [];
  containerPid = process.pid;
  private failure: { message: string; files: Record<string, string> } | null = null;

  /** The next start fails: `files` are written into the container folder first (restore.log), then it rejects. */
  failNext(message: string, files: Record<string, string> = {}): void {
    this.failure = { message, files };
  }

  readonly start = async (opts: MonitorOptions): Promise<number> => {
    this.calls.push(opts);
    // conmon writes its own pid before it runs runc.
    writeFileSync(join(opts.containerDir, 'conmon.pid'), String(process.pid));
    const failure = this.failure;
    if (failure) {
      this.failure = null;
      for (const [name, text] of Object.entries(failure.files)) writeFileSync(join(opts.containerDir, name), text);
      throw new StasisError(failure.message);
    }
    writeFileSync(join(opts.containerDir, 'pid'), String(this.containerPid));
    // runc create (or restore) made its state folder under its --root.
    const root = opts.runcGlobalArgs[opts.runcGlobalArgs.indexOf('--root') + 1];
    mkdirSync(join(root, opts.id), { recursive: true });
    return this.containerPid;
  };
}

/** A runtime over fakes, in a fresh temporary state directory. */
export class FakeHost {
  readonly root: string;
  readonly stateDir: string;
  readonly checkpointDir: string;
  readonly runner: FakeRunner;
  readonly monitor = new FakeMonitor();
  readonly runtime: Runtime;

  constructor(name: string) {
    this.root = mkdtempSync(join(tmpdir(), `stasis-unit-${name}-`));
    this.stateDir = join(this.root, 'state');
    this.checkpointDir = join(this.root, 'checkpoints');
    this.runner = new FakeRunner(join(this.stateDir, 'runc'));
    this.runtime = new Runtime(
      {
        stateDir: this.stateDir,
        checkpointDir: this.checkpointDir,
        runc: FAKE_RUNC,
        criu: NO_CRIU,
        conmon: FAKE_CONMON,
        cliCommand: ['/usr/bin/node', '/opt/stasis/bin/stasis'],
        flock: null,
      },
      { runner: this.runner, startMonitor: this.monitor.start, checkpoint: { recover: recoverCheckpoint } },
    );
  }

  containerDir(id: string): string {
    return join(this.stateDir, 'containers', id);
  }

  /** The state.json as written, parsed. */
  record(id: string): ContainerRecord {
    return JSON.parse(readFileSync(join(this.containerDir(id), 'state.json'), 'utf8')) as ContainerRecord;
  }

  /** "topic id" of every event in the journal. */
  events(): string[] {
    let text = '';
    try {
      text = readFileSync(join(this.stateDir, 'events.jsonl'), 'utf8');
    } catch {
      return [];
    }
    return text.trim().split('\n').filter(Boolean).map((line) => {
      const event = JSON.parse(line) as { topic: string; id: string };
      return `${event.topic} ${event.id}`;
    });
  }

  /** An OCI bundle (config.json + rootfs with one file) as `runc spec` would make, running `args`. */
  bundle(name: string, args: string[] = ['sleep', '100'], spec: Record<string, unknown> = {}): string {
    const dir = join(this.root, name);
    mkdirSync(join(dir, 'rootfs', 'bin'), { recursive: true });
    writeFileSync(join(dir, 'rootfs', 'bin', 'sh'), 'not really a shell\n');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({
      ociVersion: '1.0.2-dev',
      process: { terminal: false, args, cwd: '/', env: ['PATH=/bin'] },
      root: { path: 'rootfs', readonly: false },
      ...spec,
    }));
    return dir;
  }

  /** A read-only base image folder for --rootfs containers. */
  baseImage(name: string): string {
    const dir = join(this.root, name);
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'etc', 'hostname'), 'base\n');
    return dir;
  }

  /** The plan `stasis create ID --bundle DIR` makes, through the real planCreate. */
  plan(id: string, opts: Partial<CreateOptions>): ProvisionPlan {
    return planCreate(id, { labels: {}, rootfsMounts: [], autoRemove: false, inheritStdio: 'none', ...opts });
  }

  /** create: a bundle container (or, with opts.rootfs, a --rootfs one), status created. */
  async create(id: string, opts: Partial<CreateOptions> = {}): Promise<void> {
    const bundle = opts.rootfs === undefined ? this.bundle(`bundle-${id}`) : undefined;
    await this.runtime.createInfo(id, this.plan(id, { bundle, ...opts }));
  }

  /** create + start. */
  async createRunning(id: string, opts: Partial<CreateOptions> = {}): Promise<void> {
    await this.create(id, opts);
    await this.runtime.container(id).start();
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The error a promise rejects with (fails the test if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<StasisError> {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof StasisError)) throw err;
    return err;
  }
  throw new Error('expected a rejection, but it resolved');
}
