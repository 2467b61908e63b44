import { closeSync, constants, existsSync, openSync, readFileSync, readSync, rmSync, rmdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { freezeV1, thawV1 } from '../host/cgroups.ts';
import { processesWithArg, readProcStat } from '../host/procfs.ts';
import type { ProcessRunner, RunOptions, RunResult } from '../host/spawn.ts';
import { debugLog } from '../log.ts';
import { DUMP_CONFIG_FILE, forgetDumpConfig, nameDumpConfig } from './criu-config.ts';
import type { DumpRequest } from './types.ts';

/**
 * runc prints logrus lines (time=… level=error msg="…"), directly or through
 * conmon; keep just the messages, once each. runc retries some cleanup steps
 * and logs every try ("will retry"): those are not why anything failed.
 */
export function runcMessage(stderr: string): string {
  const messages: string[] = [];
  for (const line of stderr.split('\n')) {
    const match = /level=(?:error|fatal|warning)\s+msg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (match) messages.push(match[1].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? ' ' : c)).trim());
    else if (line.trim() !== '' && !line.startsWith('time=')) messages.push(line.trim());
  }
  return [...new Set(messages)].filter((m) => !/will retry/.test(m)).join('; ') || 'runc failed without a message';
}

/** How long start waits for runc's init to write into exec.fifo. */
const START_TIMEOUT_MS = 10_000;
/** The name runc's init has until it runs the container's process. */
const RUNC_INIT_NAME = 'runc:[2:INIT]';

/** How long a dump may take before runc (and CRIU under it) is killed. */
const DUMP_TIMEOUT_MS = 600_000;

/** The parts of runc's state.json stasis reads. */
interface RuncState {
  init_process_pid?: unknown;
  init_process_start?: unknown;
  cgroup_paths?: Record<string, unknown>;
  config?: { Hooks?: { poststart?: unknown[] | null } };
}

/** The init runc's state names, while that process still runs (the same start time, not a zombie), as runc checks it; else null. */
function liveInit(state: RuncState): number | null {
  const pid = state.init_process_pid;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return null;
  const stat = readProcStat(pid);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X' && stat.startTime === Number(state.init_process_start) ? pid : null;
}

/** The cgroup v1 freezer folder in runc's state, or null (cgroup v2, no state). */
function v1Freezer(state: RuncState | null): string | null {
  const dir = state?.cgroup_paths?.freezer;
  return typeof dir === 'string' && dir.startsWith('/sys/fs/cgroup/') && existsSync(join(dir, 'freezer.state')) ? dir : null;
}

/**
 * Every runc command line stasis runs is built here. Methods named after a
 * runc command throw a StasisError with runc's own message when it fails;
 * `try…` methods return the result for the caller to judge.
 */
export class Runc {
  readonly binary: string;
  readonly root: string;
  readonly criu: string | null;
  private readonly runner: ProcessRunner;

  constructor(binary: string, root: string, criu: string | null, runner: ProcessRunner) {
    this.binary = binary;
    this.root = root;
    this.criu = criu;
    this.runner = runner;
  }

  /** --root (and --criu): what every runc call, conmon's included, is given first. */
  globalArgs(): string[] {
    const args = ['--root', this.root];
    if (this.criu) args.push('--criu', this.criu);
    return args;
  }

  private run(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.runner.run(this.binary, [...this.globalArgs(), ...args], opts).catch((err: NodeJS.ErrnoException) => {
      throw new StasisError(`cannot run ${this.binary}: ${err.message}`, { code: 'runc-missing' });
    });
  }

  private async check(what: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const result = await this.run(args, opts);
    if (result.exitCode !== 0) throw new StasisError(`${what}: ${runcMessage(result.stderr)}`);
    return result;
  }

  async start(id: string): Promise<void> {
    if (await this.startByFifo(id)) return;
    await this.check(`start ${id}`, ['start', id]);
  }

  /**
   * What `runc start ID` does to a created container, without starting runc
   * (6-20 ms of every run -d here): runc's init waits to write one byte into
   * exec.fifo in runc's state folder and then runs the container's process;
   * the byte is read and the fifo removed, which is how runc itself tells a
   * running container from a created one. Only where that is all runc would
   * do: not where runc start has more to do (poststart hooks, which runc
   * after 1.1 runs there; a systemd notify socket it relays), nor when the
   * init named in runc's state is not that process any more. Then false, and
   * nothing was done: the caller runs runc, which says what is wrong.
   */
  private async startByFifo(id: string): Promise<boolean> {
    const init = this.createdInit(id);
    if (init === null || init.poststart || existsSync(join(this.root, id, 'notify'))) return false;
    if (!init.runs()) return false;
    // A stasis killed after its open below let the init go without removing the fifo.
    if (this.settleExecFifo(id)) return true;
    let fd: number;
    try {
      // Non-blocking: an init that died after the look above must not leave stasis waiting for ever.
      fd = openSync(init.fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return false;
    }
    try {
      const byte = Buffer.alloc(1);
      const readByte = () => {
        try {
          return readSync(fd, byte, 0, 1, null) > 0;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw new StasisError(`start ${id}: cannot read runc's exec.fifo: ${(err as Error).message}`);
          return false;
        }
      };
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (let tries = 0; !readByte(); tries++) {
        // No byte yet: the init has yet to open its end (EOF) or to write (EAGAIN). One gone
        // may have written it and run a command that ended at once, since the read above: the
        // byte stays in the pipe while this end is open, so it is read once more.
        if (!init.runs()) {
          if (readByte()) break;
          return false;
        }
        if (init.execed()) break;
        if (Date.now() > deadline) throw new StasisError(`start ${id}: runc's init wrote nothing into exec.fifo in ${START_TIMEOUT_MS / 1000} s`);
        if (tries >= 10) await sleep(1);
      }
    } finally {
      closeSync(fd);
    }
    rmSync(init.fifo, { force: true });
    debugLog(`started ${id} through its exec.fifo, as runc start would`);
    return true;
  }

  /**
   * A created container's init as runc's state names it, or null: whether it
   * still runs (that process, not a zombie), and whether it has already run
   * the container's process (runc's init is named runc:[2:INIT] until then).
   */
  private createdInit(id: string, state = this.readState(id)) {
    if (state === null || typeof state.init_process_pid !== 'number') return null;
    const pid = state.init_process_pid;
    return {
      fifo: join(this.root, id, 'exec.fifo'),
      poststart: (state.config?.Hooks?.poststart?.length ?? 0) > 0,
      runs: () => liveInit(state) !== null,
      execed: () => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== RUNC_INIT_NAME;
        } catch {
          return false;
        }
      },
    };
  }

  /**
   * An exec.fifo left behind though the init has run the container's process
   * (a stasis killed between letting the init go and removing the fifo) makes
   * runc take a running container for a created one: removed, as runc start
   * would have. True when it was.
   */
  settleExecFifo(id: string, state = this.readState(id)): boolean {
    const init = this.createdInit(id, state);
    if (init === null || !existsSync(init.fifo) || !init.runs() || !init.execed()) return false;
    rmSync(init.fifo, { force: true });
    debugLog(`removed ${id}'s exec.fifo: its init had already run the container's process`);
    return true;
  }

  async kill(id: string, signal: string, all = false): Promise<void> {
    await this.check(`kill ${id}`, ['kill', ...(all ? ['--all'] : []), id, signal]);
  }

  tryKill(id: string, signal: string): Promise<RunResult> {
    return this.run(['kill', id, signal]);
  }

  /**
   * What `runc kill ID SIGNAL` does to a running or created container's
   * init, without starting runc: the init's pid and start time from runc's
   * state.json, checked against /proc first, as runc checks them (a pid
   * reused since is never signalled). False when that cannot be told (no or
   * unreadable state, another process or a zombie on that pid): then the
   * caller runs runc.
   */
  signalInit(id: string, signal: NodeJS.Signals): boolean {
    const state = this.readState(id);
    const pid = state === null ? null : liveInit(state);
    if (pid === null) return false;
    try {
      debugLog(`kill(2) ${pid} ${signal} (the init of ${id}, as runc kill would)`);
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** runc pause; `gate` (see RunOptions) is told which process it is before runc runs. */
  async pause(id: string, gate?: RunOptions['gate']): Promise<void> {
    await this.check(`pause ${id}`, ['pause', id], { gate });
  }

  async resume(id: string): Promise<void> {
    await this.check(`resume ${id}`, ['resume', id]);
  }

  /**
   * The container frozen, as `runc pause` would, by its cgroup v1 freezer
   * (named in runc's state) without starting runc. Elsewhere (cgroup v2, no
   * state) runc pauses it, `gate` told first (see RunOptions). runc reads a
   * container's paused state from the freezer itself, so either way runc sees
   * it paused.
   */
  async freeze(id: string, gate?: RunOptions['gate']): Promise<void> {
    const state = this.readState(id);
    // runc checkpoint refuses a container it takes for created.
    this.settleExecFifo(id, state);
    const dir = v1Freezer(state);
    if (dir === null) return this.pause(id, gate);
    try {
      await freezeV1(dir);
      debugLog(`froze ${id} through ${dir}, as runc pause would`);
    } catch (err) {
      throw new StasisError(`pause ${id}: unable to freeze: ${(err as Error).message}`);
    }
  }

  /** The container thawed by its cgroup v1 freezer, as `runc resume` would; runc resumes it where that cannot be done. */
  async thaw(id: string): Promise<void> {
    const dir = v1Freezer(this.readState(id));
    if (dir !== null) {
      try {
        thawV1(dir);
        debugLog(`thawed ${id} through ${dir}, as runc resume would`);
        return;
      } catch (err) {
        debugLog(`cannot thaw ${id} through ${dir} (${(err as Error).message}): runc resume`);
      }
    }
    await this.resume(id);
  }

  /** What stasis reads of runc's state.json of the container, or null (none, or unreadable). */
  private readState(id: string): RuncState | null {
    try {
      return JSON.parse(readFileSync(join(this.root, id, 'state.json'), 'utf8')) as RuncState;
    } catch {
      return null;
    }
  }

  /**
   * Kills whatever is left of the container and removes runc's state; a
   * container runc does not know is no error. Without runc's state folder
   * (runc checkpoint removed it, or runc never got that far) there is nothing
   * for runc to do, and it is not run.
   */
  forceDelete(id: string): Promise<RunResult> {
    if (!existsSync(join(this.root, id))) return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', signal: undefined });
    return this.run(['delete', '--force', id]);
  }

  /**
   * What `runc delete --force` does to a container whose processes are all
   * gone, done here: runc's state names the container's cgroups, which are
   * removed, then runc's state folder. Only where that is all runc would do:
   * not when the spec has poststop hooks or Intel RDT (then false and
   * nothing is removed), nor when a cgroup cannot be removed (a process is
   * still in it, or the container made one inside it): then false, and the
   * caller runs runc, which removes what is left (runc's state is kept).
   */
  destroyGone(id: string, spec: { hooks?: { poststop?: unknown[] }; linux?: { intelRdt?: unknown } } | null): boolean {
    if (spec === null || (spec.hooks?.poststop?.length ?? 0) > 0 || spec.linux?.intelRdt !== undefined) return false;
    const dir = join(this.root, id);
    const state = this.readState(id);
    if (state === null) return false;
    const cgroups = [...new Set(Object.values(state.cgroup_paths ?? {}).filter((p): p is string => typeof p === 'string' && p.startsWith('/sys/fs/cgroup/')))];
    if (cgroups.length === 0) return false;
    // rmdir(2) itself refuses a cgroup that still has a process (EBUSY): then runc does the rest.
    for (const cgroup of cgroups) {
      try {
        rmdirSync(cgroup);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false;
      }
    }
    debugLog(`removed ${id}'s cgroups and runc state (${cgroups.length} folders), as runc delete would`);
    rmSync(dir, { recursive: true, force: true });
    return true;
  }

  /**
   * runc processes of this root still running `VERB ... ID` (a `runc pause`
   * left behind by a stasis that was killed: it finishes on its own).
   */
  running(verb: string, id: string): number[] {
    return processesWithArg(this.root).filter((pid) => {
      try {
        const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return args.includes(verb) && args.includes(id);
      } catch {
        return false;
      }
    });
  }

  /** The host PIDs of the container's processes. */
  async processes(id: string): Promise<number[]> {
    const result = await this.check(`top ${id}`, ['ps', '--format', 'json', id]);
    return (JSON.parse(result.stdout) as number[] | null) ?? [];
  }

  dump(id: string, request: DumpRequest): Promise<RunResult> {
    const args = ['checkpoint', '--image-path', request.imagesDir, '--work-path', request.workDir];
    if (request.leaveRunning && !request.preDump) args.push('--leave-running');
    if (request.preDump) args.push('--pre-dump');
    if (request.parentPath !== undefined) args.push('--parent-path', request.parentPath);
    // runc writes a byte on the status descriptor once CRIU serves the pages.
    if (request.lazy) args.push('--lazy-pages', '--page-server', `127.0.0.1:${request.lazy.port}`, '--status-fd', '3');
    else if (request.pageServer !== undefined) args.push('--page-server', `127.0.0.1:${request.pageServer}`);
    args.push(...request.criuFlags, id);
    // runc's output goes to a file in the work folder, and runc to a session of
    // its own: a stasis killed (or Ctrl-C'd) mid-dump must not take runc with
    // it, since runc's CRIU dies with runc and a dump cut short can kill the container.
    const lazy = request.lazy;
    // CRIU's network lock (iptables in the container's namespace, at the freeze and again when
    // it lets go of a container left running) costs about 16 + 32 ms here; the caller says when
    // it guards nothing. runc has no flag for it: a configuration file runc names to CRIU.
    const undo = request.skipNetworkLock ? nameDumpConfig(this.root, id, join(request.workDir, DUMP_CONFIG_FILE), ['network-lock skip']) : null;
    if (!request.skipNetworkLock) forgetDumpConfig(this.root, id);
    const dumped = this.run(args, {
      timeout: DUMP_TIMEOUT_MS,
      outputFile: join(request.workDir, 'runc-checkpoint.log'),
      onStatus: lazy ? () => lazy.onReady() : undefined,
      gate: request.gate,
    });
    return undo === null ? dumped : dumped.finally(undo);
  }

  /** runc exec's argv (run in the foreground with stasis's own stdio by the caller). */
  execArgs(id: string, opts: { pidFile: string; tty: boolean; env: string[]; cwd?: string; args: string[]; root?: string }): string[] {
    const globals = this.globalArgs();
    if (opts.root !== undefined) globals[1] = opts.root;
    const args = [...globals, 'exec', '--pid-file', opts.pidFile];
    if (opts.tty) args.push('--tty');
    for (const entry of opts.env) args.push('--env', entry);
    if (opts.cwd !== undefined) args.push('--cwd', opts.cwd);
    args.push(id, ...opts.args);
    return args;
  }

  async version(): Promise<string> {
    const result = await this.run(['--version']);
    return /runc version (\S+)/.exec(result.stdout)?.[1] ?? 'unknown';
  }
}
