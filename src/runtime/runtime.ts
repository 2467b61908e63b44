import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StasisError, notFound } from '../errors.ts';
import { EventJournal } from '../state/events.ts';
import type { ContainerRecord, ExitRecord, MountRecord } from '../state/store.ts';
import { StateStore } from '../state/store.ts';
import { fnv1a } from '../state/lock.ts';
import { startMonitor } from './conmon.ts';
import { mount, overlayMount, unmountAll, unmountUnder } from './mounts.ts';
import { Runc } from './runc.ts';
import type { OciSpec } from './spec.ts';
import { orphanView, processRunning, readExitFile, viewOf, type ContainerInfo, type Status } from './view.ts';
import type { Container, ContainerRuntime } from './interfaces.ts';
import type { ExecOptions } from './exec.ts';
import type { CheckpointOptions } from '../checkpoint/checkpoint.ts';

// The seed's Runtime (create / containers / delete / events) and Container
// (start / state / pause / resume / kill / exec / checkpoint), implemented over
// runc with conmon as the per-container monitor. No daemon: every method
// reads and writes the state directory under the container's lock.

export interface RuntimeConfig {
  stateDir: string;
  checkpointDir: string;
  runc: string;
  criu: string;
  conmon: string;
  /** argv prefix that runs this CLI again (conmon's exit command). */
  cliCommand: string[];
  /** util-linux flock, which bounds how many exit hooks run at once; null: unbounded. */
  flock?: string | null;
}

/** At most this many exit hooks (each a short Node process) run at once. */
const EXIT_HOOK_SLOTS = 4;

/** How the container's stdio is wired. */
export interface StdioPlan {
  stdin: string | null;
  stdout: string | null;
  stderr: string | null;
  /**
   * Attached run: streams without a file use the caller's own fds directly
   * ('output': stdout and stderr; 'all': stdin too, for -i / -t).
   */
  inherit: 'none' | 'output' | 'all';
}

/** Everything provision() needs to bring up a container, new or restored. */
export interface ProvisionPlan {
  spec: OciSpec;
  rootfs: ContainerRecord['rootfs'];
  /** --rootfs-mount: mounted on the rootfs before create. */
  rootfsMounts: Omit<MountRecord, 'target'>[];
  stdio: StdioPlan;
  labels: Record<string, string>;
  autoRemove: boolean;
  restore?: {
    /** CRIU image folder. */
    imagesDir: string;
    /** runc restore options, e.g. --tcp-established. */
    runcArgs: string[];
    /** What restoredFrom reports. */
    from: string;
    /** Fills the fresh writable layer before it is mounted. */
    fillLayer?: (upperDir: string) => Promise<void>;
    /** Runs on the mounted rootfs before runc restore (deletions). */
    onRootfs?: (rootfsDir: string) => Promise<void>;
    /** Called with the container folder when the restore failed, before it is cleaned up (to keep CRIU's log). */
    onFailure?: (containerDir: string) => void;
  };
}

export interface DeleteResult {
  id: string;
  /** null when the container did not exit but was stopped by a checkpoint. */
  status: number | null;
  exitedAt: string;
  checkpoint?: string;
}

/** What an in-place restore moves aside (and back, if it fails); the log is kept and appended to. */
const SET_ASIDE = ['upper', 'work', 'exit', 'oom', 'pid', 'conmon.pid'];

export class Runtime implements ContainerRuntime {
  readonly store: StateStore;
  readonly journal: EventJournal;
  readonly runc: Runc;
  readonly config: RuntimeConfig;

  constructor(config: RuntimeConfig) {
    this.config = config;
    this.store = new StateStore(config.stateDir);
    this.journal = new EventJournal(this.store.paths.events);
    this.runc = new Runc(config.runc, this.store.paths.runcRoot, config.criu);
  }

  // ---------------------------------------------------------------- listing

  /** A handle on container `id` (the seed's Container); it is looked up when used. */
  container(id: string): Container {
    return {
      id,
      start: () => this.start(id),
      state: () => this.info(id),
      pause: () => this.pause(id),
      resume: () => this.resume(id),
      kill: (signal, opts) => this.kill(id, signal, opts.all),
      exec: async (opts: ExecOptions) => (await import('./exec.ts')).execInContainer(this, id, opts),
      checkpoint: async (opts: CheckpointOptions, progress?: (step: string) => void) =>
        (await import('../checkpoint/checkpoint.ts')).checkpointContainer(this, id, opts, progress),
    };
  }

  events(): EventJournal {
    return this.journal;
  }

  async containers(): Promise<ContainerInfo[]> {
    const infos: ContainerInfo[] = [];
    for (const id of this.store.ids()) {
      const info = await this.info(id).catch(() => null);
      if (info !== null) infos.push(info);
    }
    return infos;
  }

  async info(id: string): Promise<ContainerInfo> {
    return (await this.inspect(id)).info;
  }

  /** info() and the mounts stasis made for the container, from one read of its record. */
  async inspect(id: string): Promise<{ info: ContainerInfo; mounts: MountRecord[] }> {
    const record = this.store.read(id);
    return { info: await this.infoOf(id, record), mounts: record?.mounts ?? [] };
  }

  private async infoOf(id: string, record: ContainerRecord | null): Promise<ContainerInfo> {
    if (record === null) return orphanView(this.store, id, await this.store.isLocked(id));
    if (record.status === 'creating') {
      if (await this.store.isLocked(id)) return viewOf(this.store, record);
      const orphan = orphanView(this.store, id, false);
      return { ...viewOf(this.store, record), status: orphan.status, pid: orphan.pid, note: orphan.note };
    }
    return viewOf(this.store, record);
  }

  /** Reads a record that must exist and be complete. */
  record(id: string): ContainerRecord {
    const record = this.store.read(id);
    if (record === null) {
      throw new StasisError(`container ${id} was never completely created`, { hint: `remove it with \`stasis delete -f ${id}\`` });
    }
    return record;
  }

  async withContainer<T>(id: string, fn: (record: ContainerRecord) => Promise<T>): Promise<T> {
    if (!this.store.exists(id)) throw notFound(id);
    const lock = await this.store.lock(id);
    try {
      // record() throws notFound when it was removed while we waited.
      return await fn(this.record(id));
    } finally {
      await lock.release();
    }
  }

  // ---------------------------------------------------------------- create

  /** Claims the ID and provisions the container. */
  async create(id: string, plan: ProvisionPlan): Promise<Container> {
    await this.createInfo(id, plan);
    return this.container(id);
  }

  /**
   * create(), returning the new container's state. `inPlace` is set by
   * restore: it says whether the existing container of that ID (one that a
   * checkpoint stopped) is restored in place.
   */
  async createInfo(id: string, plan: ProvisionPlan, opts: { inPlace?: (record: ContainerRecord) => boolean } = {}): Promise<ContainerInfo> {
    this.store.ensure();
    const lock = await this.store.lock(id);
    try {
      if (!this.store.claim(id)) {
        const existing = this.store.read(id);
        if (existing !== null && opts.inPlace?.(existing) && viewOf(this.store, existing).status === 'stopped') {
          return await this.reprovision(existing, plan);
        }
        throw new StasisError(`container ${id} already exists`, {
          hint: `choose another ID, or remove it first with \`stasis delete -f ${id}\``,
        });
      }
      try {
        return await this.provision(id, plan, null);
      } catch (err) {
        this.store.remove(id);
        throw err;
      }
    } finally {
      await lock.release();
    }
  }

  /** Restore in place: the old writable layer is kept aside until the new container runs. */
  private async reprovision(previous: ContainerRecord, plan: ProvisionPlan): Promise<ContainerInfo> {
    const dir = this.store.containerDir(previous.id);
    await this.runc.raw(['delete', '--force', previous.id]);
    await unmountAll(previous.mounts);
    const aside = join(dir, 'previous');
    rmSync(aside, { recursive: true, force: true });
    mkdirSync(aside);
    for (const name of SET_ASIDE) {
      if (existsSync(join(dir, name))) renameSync(join(dir, name), join(aside, name));
    }
    // A bundle container restored in place gets its --rootfs-mount mounts back.
    if (plan.rootfs.kind === 'bundle' && plan.rootfsMounts.length === 0) {
      plan.rootfsMounts = previous.mounts.map(({ type, source, options }) => ({ type, source, options }));
    }
    try {
      const info = await this.provision(previous.id, plan, previous);
      rmSync(aside, { recursive: true, force: true });
      return info;
    } catch (err) {
      for (const name of SET_ASIDE) {
        rmSync(join(dir, name), { recursive: true, force: true });
        if (existsSync(join(aside, name))) renameSync(join(aside, name), join(dir, name));
      }
      rmSync(aside, { recursive: true, force: true });
      this.store.write(previous);
      throw err;
    }
  }

  private async provision(id: string, plan: ProvisionPlan, previous: ContainerRecord | null): Promise<ContainerInfo> {
    const dir = this.store.containerDir(id);
    const spec = plan.spec;
    const record: ContainerRecord = {
      id,
      instance: `${Date.now().toString(36)}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
      status: 'creating',
      pid: null,
      bundle: dir,
      createdAt: previous?.createdAt ?? new Date().toISOString(),
      command: spec.process?.args ?? [],
      labels: plan.labels,
      restoredFrom: plan.restore?.from ?? null,
      exit: null,
      rootfs: plan.rootfs,
      mounts: [],
      stdio: { mode: plan.stdio.inherit !== 'none' || plan.stdio.stdin || plan.stdio.stdout || plan.stdio.stderr ? 'passthrough' : 'log', stdin: plan.stdio.stdin, stdout: plan.stdio.stdout, stderr: plan.stdio.stderr },
      tty: spec.process?.terminal === true,
      autoRemove: plan.autoRemove,
      lastCheckpoint: previous?.lastCheckpoint ?? null,
      checkpointing: false,
      checkpointedStop: false,
    };
    // Written before any mount so that a crash at any later point leaves a
    // record saying what to undo (delete -f reads record.mounts).
    this.store.write(record);
    const stdioFds: number[] = [];
    try {
      let rootPath = plan.rootfs.base;
      if (plan.rootfs.kind === 'overlay') {
        const upper = join(dir, 'upper');
        const work = join(dir, 'work');
        rootPath = join(dir, 'rootfs');
        // The upper layer's mode becomes the mode of the container's "/"; the
        // container folder above it is 0700 already.
        for (const sub of [upper, work, rootPath]) mkdirSync(sub, { recursive: true, mode: 0o755 });
        await plan.restore?.fillLayer?.(upper);
        await this.mountRecorded(record, overlayMount(plan.rootfs.base, upper, work, rootPath));
      } else {
        for (const m of plan.rootfsMounts) await this.mountRecorded(record, { ...m, target: rootPath });
      }
      await plan.restore?.onRootfs?.(rootPath);
      spec.root = { ...spec.root, path: rootPath };
      spec.linux ??= {};
      // One flat cgroup per container and state dir; runc removes it on delete.
      spec.linux.cgroupsPath = `/stasis-${fnv1a(this.store.lockRoot)}-${id}`;
      spec.annotations = { ...spec.annotations, 'io.container.manager': 'stasis', 'org.stasis.id': id };
      writeFileSync(join(dir, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o600 });

      const stdio = this.openStdio(dir, plan.stdio, stdioFds);
      const pid = await startMonitor({
        conmon: this.config.conmon,
        runc: this.config.runc,
        runcGlobalArgs: this.runc.globalArgs(),
        id,
        containerDir: dir,
        socketDir: this.store.paths.sockets,
        logPath: record.stdio.mode === 'log' ? join(dir, 'ctr.log') : null,
        stdio,
        terminal: record.tty && plan.stdio.inherit === 'none',
        exitCommand: this.exitCommand(id, record.instance),
        restoreImage: plan.restore?.imagesDir,
        restoreArgs: plan.restore?.runcArgs,
      });
      record.pid = pid;
      record.status = plan.restore ? 'running' : 'created';
      this.store.write(record);
    } catch (err) {
      plan.restore?.onFailure?.(dir);
      await this.teardown(record).catch(() => undefined);
      throw err;
    } finally {
      for (const fd of stdioFds) closeSync(fd);
    }
    if (previous === null) this.journal.append('/containers/create', id, { image: plan.rootfs.base, runtime: 'runc', labels: plan.labels });
    if (plan.restore) {
      this.journal.append('/tasks/restored', id, { pid: record.pid, checkpoint: plan.restore.from });
    } else {
      this.journal.append('/tasks/create', id, { pid: record.pid, bundle: dir, rootfs: record.mounts.map((m) => m.target) });
    }
    return viewOf(this.store, record);
  }

  private async mountRecorded(record: ContainerRecord, m: MountRecord): Promise<void> {
    record.mounts.push(m);
    this.store.write(record);
    await mount(m);
  }

  private openStdio(dir: string, plan: StdioPlan, opened: number[]): [number | 'ignore', number | 'ignore', number | 'ignore'] {
    if (plan.inherit === 'none' && !plan.stdin && !plan.stdout && !plan.stderr) return ['ignore', 'ignore', 'ignore'];
    const open = (path: string, flags: string) => {
      const fd = openSync(path, flags, 0o600);
      opened.push(fd);
      return fd;
    };
    const inheritOutput = plan.inherit !== 'none';
    return [
      plan.stdin ? open(plan.stdin, 'r') : plan.inherit === 'all' ? 0 : open('/dev/null', 'r'),
      plan.stdout ? open(plan.stdout, 'a') : inheritOutput ? 1 : open(join(dir, 'stdout.log'), 'a'),
      plan.stderr ? open(plan.stderr, 'a') : inheritOutput ? 2 : open(join(dir, 'stderr.log'), 'a'),
    ];
  }

  /**
   * What conmon runs when the container exits: `stasis __exit ID INSTANCE`,
   * which records the exit in the journal. When many containers exit at once
   * (a host shutting them down, a kill of all), each would start a Node
   * process of ~40 MB together; behind flock on one of a few slot files, at
   * most EXIT_HOOK_SLOTS run at a time and the rest wait in flock (~1 MB).
   */
  private exitCommand(id: string, instance: string): string[] {
    const hook = [...this.config.cliCommand, '--state-dir', this.store.paths.root, '--runc', this.config.runc, '__exit', id, instance];
    if (!this.config.flock) return hook;
    const slots = join(this.store.paths.root, 'exit-hooks');
    mkdirSync(slots, { recursive: true, mode: 0o700 });
    const slot = Number.parseInt(fnv1a(id), 16) % EXIT_HOOK_SLOTS;
    // -w: a hook that cannot get its slot in 10 minutes gives up; the exit
    // is still in conmon's exit file, which every command reads.
    return [this.config.flock, '-w', '600', join(slots, `slot-${slot}`), ...hook];
  }

  /** Undoes a provision: stops whatever runc made, unmounts. Leaves the folder. */
  private async teardown(record: ContainerRecord): Promise<void> {
    await this.runc.raw(['delete', '--force', record.id]);
    this.killMonitor(record.id);
    await unmountAll(record.mounts);
    record.mounts = [];
    await this.clearLeftovers(record.id);
  }

  /**
   * What a killed runc or CRIU can leave: mounts in the container's folders
   * and a runc state folder that `runc delete` no longer accepts. Called after
   * `runc delete --force`, so no process of the container is left to use them.
   */
  private async clearLeftovers(id: string): Promise<void> {
    const runcState = join(this.store.paths.runcRoot, id);
    await unmountUnder(this.store.containerDir(id), runcState);
    rmSync(runcState, { recursive: true, force: true });
  }

  // ---------------------------------------------------------------- lifecycle

  async start(id: string): Promise<ContainerInfo> {
    return this.withContainer(id, async (record) => {
      const info = viewOf(this.store, record);
      if (info.status !== 'created') {
        throw new StasisError(`cannot start container ${id}: it is ${info.status}`, {
          hint: info.status === 'stopped' ? 'a stopped container cannot be started again; create a new one' : undefined,
        });
      }
      await this.runc.call(`start ${id}`, ['start', id]);
      record.status = 'running';
      this.store.write(record);
      this.journal.append('/tasks/start', id, { pid: record.pid });
      return viewOf(this.store, record);
    });
  }

  async kill(id: string, signal: string, all: boolean): Promise<void> {
    await this.withContainer(id, async (record) => {
      const info = viewOf(this.store, record);
      if (info.status === 'stopped') throw new StasisError(`cannot kill container ${id}: it is not running`);
      const args = ['kill'];
      if (all) args.push('--all');
      await this.runc.call(`kill ${id}`, [...args, id, signal]);
    });
  }

  async pause(id: string): Promise<void> {
    await this.withContainer(id, async (record) => {
      const info = viewOf(this.store, record);
      if (info.status !== 'running') throw new StasisError(`cannot pause container ${id}: it is ${info.status}`);
      await this.runc.call(`pause ${id}`, ['pause', id]);
      record.status = 'paused';
      this.store.write(record);
      this.journal.append('/tasks/paused', id);
    });
  }

  async resume(id: string): Promise<void> {
    await this.withContainer(id, async (record) => {
      const info = viewOf(this.store, record);
      if (info.status !== 'paused') throw new StasisError(`cannot resume container ${id}: it is ${info.status}, not paused`);
      await this.runc.call(`resume ${id}`, ['resume', id]);
      record.status = 'running';
      this.store.write(record);
      this.journal.append('/tasks/resumed', id);
    });
  }

  /** Waits for conmon's exit file; returns the exit, or null when it never came (monitor gone). */
  async waitExit(id: string, opts: { timeoutMs?: number; signal?: AbortSignal; maxPollMs?: number } = {}): Promise<ExitRecord | 'checkpointed' | 'removed' | null> {
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    const maxDelay = opts.maxPollMs ?? 100;
    let delay = 5;
    for (;;) {
      if (!this.store.exists(id)) return 'removed';
      const record = this.store.read(id);
      if (record !== null) {
        if (record.checkpointedStop && !record.checkpointing) return 'checkpointed';
        if (record.exit !== null && record.status === 'stopped') return record.exit;
        if (!record.checkpointing) {
          const exited = readExitFile(this.store, id);
          if (exited !== null) return exited;
          if (record.status !== 'creating' && !processRunning(record.pid) && !this.monitorAlive(id)) return null;
        }
      }
      if (Date.now() > deadline || opts.signal?.aborted) return null;
      await sleep(delay);
      delay = Math.min(delay * 2, maxDelay);
    }
  }

  /** True once the container's process is gone for good: removed, exit file written, or monitor dead. */
  hasExited(id: string): boolean {
    return !this.store.exists(id) || readExitFile(this.store, id) !== null || !this.monitorAlive(id);
  }

  private monitorPid(id: string): number | null {
    const file = this.store.readContainerFile(id, 'conmon.pid');
    return file === null ? null : Number.parseInt(file.text, 10);
  }

  monitorAlive(id: string): boolean {
    return processRunning(this.monitorPid(id));
  }

  /** For a create that died half way: its monitor may still be there. */
  private killMonitor(id: string): void {
    const pid = this.monitorPid(id);
    if (pid === null || !Number.isInteger(pid) || pid <= 0) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  // ---------------------------------------------------------------- exit and delete

  /** Records the exit in the record (written by the caller) and the journal; unknown: 255 now. */
  private noteExit(record: ContainerRecord, exited: ExitRecord | null): void {
    record.exit = exited ?? { status: 255, exitedAt: new Date().toISOString() };
    record.status = 'stopped';
    this.journal.append('/tasks/exit', record.id, { pid: record.pid, status: record.exit.status, exitedAt: record.exit.exitedAt });
  }

  /** conmon's exit command: records the exit (and an OOM kill) while no other command may be running. */
  async recordExit(id: string, instance: string): Promise<void> {
    if (!this.store.exists(id)) return;
    const lock = await this.store.lock(id, 600_000);
    try {
      const record = this.store.read(id);
      if (record === null || record.instance !== instance) return;
      // A checkpoint stops the container through CRIU; that is not an exit.
      if (record.checkpointing || record.checkpointedStop) return;
      if (record.exit === null) {
        if (this.store.readContainerFile(id, 'oom') !== null) this.journal.append('/tasks/oom', id);
        this.noteExit(record, readExitFile(this.store, id));
        this.store.write(record);
      }
      if (record.autoRemove) await this.removeLocked(record);
    } finally {
      await lock.release();
    }
  }

  /** Deletes one container; with force a running one is killed first. */
  async delete(container: Container, opts: { force: boolean }): Promise<DeleteResult> {
    const { id } = container;
    const force = opts.force;
    if (!this.store.exists(id)) throw notFound(id);
    const lock = await this.store.lock(id);
    try {
      // read() throws notFound when it was removed while we waited.
      const record = this.store.read(id);
      if (record === null) return await this.removeOrphan(id, force);
      // We hold the lock, so a record still 'creating' belongs to a create that died.
      const info = viewOf(this.store, record);
      if (info.status !== 'stopped' && info.status !== 'created' && !force) {
        throw new StasisError(`cannot delete container ${id}: it is ${info.status}`, {
          hint: `stop it with \`stasis kill ${id}\`, or use \`stasis delete -f ${id}\``,
        });
      }
      let exited = info.exit;
      if (info.status !== 'stopped') {
        const killed = await this.killNow(id, info.status);
        exited = typeof killed === 'object' ? killed : null;
      }
      // Its exit command has not run yet (or could not), or we just killed it:
      // record the exit now. A checkpoint's stop is not an exit.
      if (record.exit === null && !record.checkpointedStop) this.noteExit(record, exited);
      return await this.removeLocked(record, info.status !== 'stopped');
    } finally {
      await lock.release();
    }
  }

  /**
   * Kills a running or created container and waits for its monitor to see it
   * exit, then removes runc's state. `runc delete --force` alone does the
   * same but waits in steps of 100 ms; SIGKILL and a 5-10 ms poll of the exit
   * file usually take a tenth of that. A paused container (a SIGKILL stays
   * pending while frozen), a failed kill or a process that will not die are
   * left to `runc delete --force`.
   */
  private async killNow(id: string, status: Status): Promise<ExitRecord | 'checkpointed' | 'removed' | null> {
    if (status === 'running' || status === 'created') {
      const kill = await this.runc.raw(['kill', id, 'KILL']);
      if (kill.exitCode === 0) {
        const exited = await this.waitExit(id, { timeoutMs: 5_000, maxPollMs: 10 });
        if (exited !== null) {
          await this.runc.raw(['delete', '--force', id]);
          return exited;
        }
      }
    }
    await this.runc.raw(['delete', '--force', id]);
    return this.waitExit(id, { timeoutMs: 10_000 });
  }

  private async removeLocked(record: ContainerRecord, runcDeleted = false): Promise<DeleteResult> {
    const id = record.id;
    if (!runcDeleted) await this.runc.raw(['delete', '--force', id]);
    await unmountAll(record.mounts);
    await this.clearLeftovers(id);
    this.store.remove(id);
    rmSync(join(this.store.paths.sockets, id), { recursive: true, force: true });
    if (record.exit === null && record.checkpointedStop && record.lastCheckpoint) {
      const { path, at } = record.lastCheckpoint;
      this.journal.append('/tasks/delete', id, { pid: record.pid, checkpoint: path, exitedAt: at });
      this.journal.append('/containers/delete', id);
      return { id, status: null, exitedAt: at, checkpoint: path };
    }
    const exit = record.exit ?? { status: 255, exitedAt: new Date().toISOString() };
    this.journal.append('/tasks/delete', id, { pid: record.pid, exitStatus: exit.status, exitedAt: exit.exitedAt });
    this.journal.append('/containers/delete', id);
    return { id, status: exit.status, exitedAt: exit.exitedAt };
  }

  /** A folder without a record: whatever a killed create left. */
  private async removeOrphan(id: string, force: boolean): Promise<DeleteResult> {
    const orphan = orphanView(this.store, id, false);
    if (orphan.status !== 'stopped' && !force) {
      throw new StasisError(`cannot delete container ${id}: it is ${orphan.status}`, { hint: `use \`stasis delete -f ${id}\`` });
    }
    await this.runc.raw(['delete', '--force', id]);
    this.killMonitor(id);
    await this.clearLeftovers(id);
    const exit = readExitFile(this.store, id) ?? { status: 255, exitedAt: new Date().toISOString() };
    this.store.remove(id);
    this.journal.append('/containers/delete', id);
    return { id, ...exit };
  }
}

