import { closeSync, constants as fsConstants, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { constants, tmpdir } from 'node:os';
import type { Readable } from 'node:stream';
import { signalExitCode } from '../errors.ts';
import { debugLog } from '../log.ts';
import { mountCalls, type MountCalls } from './mount.ts';
import { readProcStat } from './procfs.ts';

// Every external command stasis runs goes through here, so --debug can show
// each runc / criu / conmon command line on stderr. The library layers take a
// ProcessRunner rather than calling run() themselves, so unit tests can give
// them a fake one that answers as runc, CRIU or tar would.

/**
 * node:child_process, loaded on first use: it pulls in streams and sockets,
 * several milliseconds that commands which spawn nothing (ps, info, logs) skip.
 */
export const spawn: typeof import('node:child_process').spawn = ((...args: unknown[]) =>
  (process.getBuiltinModule('node:child_process').spawn as (...a: unknown[]) => unknown)(...args)) as never;

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

export function showCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map(quote).join(' ');
}

/** The version a program prints (the first group of `pattern`, stdout or stderr), or null when it cannot be run. */
export async function versionOf(binary: string, args: string[], pattern: RegExp): Promise<string | null> {
  try {
    const result = await run(binary, args);
    return pattern.exec(`${result.stdout}\n${result.stderr}`)?.[1] ?? null;
  } catch {
    return null;
  }
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  signal: string | undefined;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Killed with SIGKILL after this long; the result then has signal SIGKILL. */
  timeout?: number;
  /** Piped to the child's stdin (a tar archive, say); an error on it kills the child and rejects. */
  input?: Readable;
  /**
   * Run it in a session of its own with its output going to this file (read
   * back into the result): it then finishes even when stasis is killed or
   * the terminal's Ctrl-C reaches stasis. Used where dying half way would do
   * harm, as runc checkpoint does (runc's CRIU dies with runc, and a dump cut
   * short can kill the container).
   */
  outputFile?: string;
  /** The child gets a pipe as descriptor 3 (runc's --status-fd 3); this is called when it writes there. */
  onStatus?: (data: string) => void;
  /**
   * Called with the child's PID and start time before the program may do
   * anything: it waits (a shell reading its stdin, a pipe from this process)
   * until this returns, then becomes the program (exec: the same PID and
   * start time). A stasis killed before that closes the pipe, and the shell
   * exits without running the program. What the caller records here (the
   * process a step started) is then a fact for a later recovery: it waits on
   * that exact process, or knows that none ran. Stdin is /dev/null.
   */
  gate?: (started: StartedProcess) => void;
}

/** A process as /proc names it for good: a PID reused later has another start time. */
export interface StartedProcess {
  pid: number;
  /** Field 22 of /proc/PID/stat (clock ticks after boot). */
  startTime: number;
}

/** The shell that waits for stasis's go before it becomes the program (RunOptions.gate). */
export const GATE_SCRIPT = 'read -r _ || exit 1; exec "$@" </dev/null';

/** What the library layers use to run programs: the real one below, or a fake in unit tests. */
export interface ProcessRunner {
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /**
   * mount(2)/umount2(2) made directly, in place of running mount(8) and
   * umount(8); null, or absent (a fake runner), when those commands are run.
   */
  mountCalls?(): MountCalls | null;
}

/**
 * Runs a command to completion and captures its output; never throws for a
 * non-zero exit, only when the program cannot be started. This is the hot
 * path of every runc call, so it uses node:child_process directly (loading
 * execa costs more start-up time than most runc calls take), or under Bun,
 * Bun.spawn (but for input and outputFile, which keep node:child_process).
 */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  debugLog(showCommand(file, args));
  const spawnBun = opts.input || opts.outputFile !== undefined || opts.onStatus || opts.gate ? null : bunSpawn();
  if (spawnBun !== null) return runWithBun(spawnBun, file, args, opts);
  if (opts.gate && opts.input) throw new Error('run: a gated program reads no input');
  return new Promise((resolve, reject) => {
    const outputFd = opts.outputFile === undefined ? null : openSync(opts.outputFile, 'w', 0o600);
    const status = opts.onStatus ? statusPipe(opts.outputFile === undefined ? tmpdir() : dirname(opts.outputFile)) : null;
    const [program, argv] = opts.gate ? ['sh', ['-c', GATE_SCRIPT, 'sh', file, ...args]] : [file, args];
    const child = spawn(program, argv, {
      stdio: [opts.input || opts.gate ? 'pipe' : 'ignore', outputFd ?? 'pipe', outputFd ?? 'pipe', ...(status ? [status.write] : [])],
      env: opts.env ?? process.env,
      detached: outputFd !== null,
    });
    if (opts.gate && child.pid !== undefined) {
      const started = readProcStat(child.pid);
      try {
        // The shell has not read its go yet: it is alive, and its start time is the program's.
        if (started === null) throw new Error(`the process ${child.pid} that was to run ${file} is gone before it started`);
        opts.gate({ pid: child.pid, startTime: started.startTime });
      } catch (err) {
        child.stdin!.destroy();
        child.kill('SIGKILL');
        reject(err);
        return;
      }
      child.stdin!.on('error', () => undefined);
      child.stdin!.end('go\n');
    }
    if (outputFd !== null) closeSync(outputFd);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    if (status) {
      closeSync(status.write);
      watchStatus(status.read, opts.onStatus!);
    }
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    if (opts.input) {
      // The child stopping early (tar refusing an archive) is reported by its exit, not as EPIPE.
      child.stdin!.on('error', () => undefined);
      opts.input.on('error', (err) => {
        child.kill('SIGKILL');
        reject(err);
      });
      opts.input.pipe(child.stdin!);
    }
    const timer = opts.timeout ? setTimeout(() => child.kill('SIGKILL'), opts.timeout) : undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // Both streams went to one file: all of it is the child's "stderr" (runc logs there).
      const combined = opts.outputFile === undefined ? null : readFileSync(opts.outputFile, 'utf8');
      // The gate's shell could not exec the program: as spawn says of a missing one.
      if (opts.gate && code === 127 && /exec: .*(not found|No such file)/i.test(combined ?? Buffer.concat(stderr).toString('utf8'))) {
        reject(Object.assign(new Error(`spawn ${file} ENOENT`), { code: 'ENOENT' }));
        return;
      }
      resolve({
        // A child killed by a signal has no exit code: the shell's 128+n.
        exitCode: code ?? signalExitCode((signal && constants.signals[signal]) || 0),
        stdout: combined ?? Buffer.concat(stdout).toString('utf8'),
        stderr: combined ?? Buffer.concat(stderr).toString('utf8'),
        signal: signal ?? undefined,
      });
    });
  });
}

/**
 * A pipe for a child's status descriptor whose write end is write-only (runc
 * checks that; node:child_process's pipes are sockets, open for both): a
 * FIFO, made and opened (the read end non-blocking) and removed at once.
 */
function statusPipe(dir: string): { read: number; write: number } {
  const fifo = join(dir, `.status-${process.pid}-${Date.now()}`);
  const made = process.getBuiltinModule('node:child_process').spawnSync('mkfifo', ['-m', '600', fifo]);
  if (made.status !== 0) throw new Error(`mkfifo ${fifo} failed: ${String(made.stderr ?? '').trim()}`);
  try {
    const read = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const write = openSync(fifo, fsConstants.O_WRONLY);
    return { read, write };
  } finally {
    rmSync(fifo, { force: true });
  }
}

/** Polls the status pipe's read end until every writer has closed it. */
function watchStatus(fd: number, onStatus: (data: string) => void): void {
  const buffer = Buffer.alloc(256);
  const timer = setInterval(() => {
    let n: number;
    try {
      n = readSync(fd, buffer, 0, buffer.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return;
      n = 0;
    }
    if (n > 0) {
      onStatus(buffer.subarray(0, n).toString('utf8'));
      return;
    }
    clearInterval(timer);
    closeSync(fd);
  }, 5);
}

/** The real runner. */
export const systemRunner: ProcessRunner = { run, mountCalls };

/** The part of Bun's own process API that stasis uses (src/host/spawn.ts, src/runtime/conmon.ts). */
export interface BunSubprocess {
  readonly pid: number;
  readonly stdout: ReadableStream<Uint8Array> | null;
  readonly stderr: ReadableStream<Uint8Array> | null;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  kill(signal?: string): void;
  unref(): void;
}
export interface BunSpawnOptions {
  stdio: (number | 'ignore' | 'pipe' | 'inherit')[];
  env: Record<string, string | undefined>;
  detached?: boolean;
}

/**
 * Bun.spawn where the runtime is Bun, else null. node:child_process under
 * Bun builds node:stream objects for every child (about 15 ms of a command's
 * start-up the first time); Bun's own spawn reads the pipes natively.
 */
export function bunSpawn(): ((cmd: string[], opts: BunSpawnOptions) => BunSubprocess) | null {
  const bun = (globalThis as { Bun?: { spawn(cmd: string[], opts: BunSpawnOptions): BunSubprocess } }).Bun;
  return bun ? (cmd, opts) => bun.spawn(cmd, opts) : null;
}

/** run() through Bun.spawn: the same result, without node:child_process. */
async function runWithBun(spawnBun: NonNullable<ReturnType<typeof bunSpawn>>, file: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  // Bun.spawn throws at once when the program cannot be started (ENOENT, EACCES), as the promise below rejects under Node.
  const child = spawnBun([file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const timer = opts.timeout ? setTimeout(() => child.kill('SIGKILL'), opts.timeout) : undefined;
  try {
    const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    const signal = child.signalCode ?? undefined;
    return {
      exitCode: child.exitCode ?? signalExitCode((signal && constants.signals[signal as NodeJS.Signals]) || 0),
      stdout,
      stderr,
      signal,
    };
  } finally {
    clearTimeout(timer);
  }
}
