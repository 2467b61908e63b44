import { StasisError } from '../errors.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupDirs, cgroupPids } from '../host/cgroups.ts';
import { commandLineHas, processRow, processRunning, processesWithArg, sameProcessRuns, type ProcessRow } from '../host/procfs.ts';
import { systemRunner, type ProcessRunner, type StartedProcess } from '../host/spawn.ts';
import { EventJournal } from '../state/events.ts';
import { DamagedRecordError, StateStore, type ContainerRecord, type MountRecord } from '../state/store.ts';
import type { Lock } from '../state/lock.ts';
import { startMonitor, type MonitorOptions } from './conmon.ts';
import type { RuntimeContext } from './context.ts';
import { execInContainer } from './exec.ts';
import { hasExited, monitorAlive, waitExit } from './exit.ts';
import { recordExit } from './exit-hook.ts';
import { kill, pause, resume, start } from './lifecycle.ts';
import { provisionContainer } from './provision.ts';
import { completeRecord, withContainer } from './records.ts';
import { moveToUndo, recovered } from './recover.ts';
import { deleteContainer, deleteHeld } from './remove.ts';
import { Runc } from './runc.ts';
import type {
  CheckpointFeature,
  CheckpointHost,
  Container,
  ContainerInfo,
  ContainerRuntime,
  DeleteResult,
  DumpRequest,
  ProvisionPlan,
  RuntimeConfig,
  WaitOutcome,
} from './types.ts';
import { orphanView, viewOf } from './view.ts';
import { bestEffort } from '../log.ts';
import { UNPACK_PREFIX, sweepOwnedTempDirs } from '../host/scratch.ts';
import { keepCriuCache } from './criu-cache.ts';

/** How long ps and info wait for a checkpoint in its last steps (the lock's holder), before listing it as it stands. */
const SETTLING_WAIT_MS = 10_000;

/** What the runtime is built with besides its configuration: the ways out to real processes, and features above it. */
export interface RuntimeDeps {
  runner?: ProcessRunner;
  startMonitor?: (opts: MonitorOptions) => Promise<number>;
  /** Recovery of a checkpoint whose command died; without it such a record is left as it is. */
  checkpoint?: CheckpointFeature;
  /** Sees that CRIU finds its kernel cache before a dump or restore (criu-cache.ts); none with a fake runner. */
  keepCriuCache?: (criu: string) => Promise<void>;
}

/**
 * The runtime over runc with conmon as the per-container monitor. No daemon:
 * every method reads and writes the state directory under the container's
 * lock. The work is done in the modules beside this one (provision,
 * lifecycle, exit, remove, exec); this class holds their shared context and
 * offers the contract's methods and the port checkpoint/ works through.
 */
export class Runtime implements ContainerRuntime, CheckpointHost {
  private readonly ctx: RuntimeContext;
  private readonly checkpointFeature: CheckpointFeature | undefined;
  private readonly keepCriuCache: (criu: string) => Promise<void>;

  constructor(config: RuntimeConfig, deps: RuntimeDeps = {}) {
    const runner = deps.runner ?? systemRunner;
    const store = new StateStore(config.stateDir);
    this.ctx = {
      config,
      store,
      journal: new EventJournal(store.paths.events),
      runc: new Runc(config.runc, store.paths.runcRoot, config.criu, runner),
      runner,
      startMonitor: deps.startMonitor ?? startMonitor,
      recoverCheckpoint: async (record) => {
        if (this.checkpointFeature) await this.checkpointFeature.recover(this, record);
      },
    };
    this.checkpointFeature = deps.checkpoint;
    this.keepCriuCache = deps.keepCriuCache ?? (deps.runner ? async () => undefined : keepCriuCache);
  }

  get config(): RuntimeConfig {
    return this.ctx.config;
  }

  get store(): StateStore {
    return this.ctx.store;
  }

  get journal(): EventJournal {
    return this.ctx.journal;
  }

  get runner(): ProcessRunner {
    return this.ctx.runner;
  }

  // ------------------------------------------------ the contract

  /** A handle on container `id`; it is looked up when used. */
  container(id: string): Container {
    return {
      id,
      start: () => start(this.ctx, id),
      state: () => this.info(id),
      pause: () => pause(this.ctx, id),
      resume: () => resume(this.ctx, id),
      kill: (signal, opts) => kill(this.ctx, id, signal, opts.all),
      exec: (opts) => execInContainer(this.ctx, id, opts),
    };
  }

  async create(id: string, plan: ProvisionPlan): Promise<Container> {
    await provisionContainer(this.ctx, id, plan);
    return this.container(id);
  }

  /** create(), returning the new container's state. */
  createInfo(id: string, plan: ProvisionPlan): Promise<ContainerInfo> {
    return provisionContainer(this.ctx, id, plan);
  }

  events(): EventJournal {
    return this.ctx.journal;
  }

  /** Every container in the state directory; one whose record is damaged is listed with a note, never left out. */
  async containers(): Promise<ContainerInfo[]> {
    // What restores that were killed left (their unpack folders: see checkpoint/source.ts): the
    // command an admin runs next is most often ps, and a restore killed while unpacking has no container to delete.
    sweepOwnedTempDirs(this.store.paths.root, [UNPACK_PREFIX]);
    const infos: ContainerInfo[] = [];
    for (const id of this.store.ids()) {
      try {
        infos.push(await this.info(id));
      } catch (err) {
        // Removed between the listing and the read: it is simply gone.
        if (this.store.exists(id)) throw err;
      }
    }
    return infos;
  }

  delete(container: Container, opts: { force: boolean }): Promise<DeleteResult> {
    return deleteContainer(this.ctx, container.id, opts.force);
  }

  // ------------------------------------------------ inspection and exits

  async info(id: string): Promise<ContainerInfo> {
    return (await this.inspect(id)).info;
  }

  /** info() and the mounts stasis made for the container, from one read of its record. */
  async inspect(id: string): Promise<{ info: ContainerInfo; mounts: MountRecord[] }> {
    let record: ContainerRecord | null;
    try {
      record = this.store.read(id);
    } catch (err) {
      if (err instanceof DamagedRecordError) return { info: orphanView(this.store, id, { creating: false, damaged: err.problem }), mounts: [] };
      throw err;
    }
    if (record === null) return { info: orphanView(this.store, id, { creating: await this.store.isLocked(id) }), mounts: [] };
    // A checkpoint whose command died is finished or undone first (under the lock), so nothing stays frozen.
    // One whose processes are gone (CRIU ends them after its dump) is in its last steps, or its
    // command was killed there: the lock's holder (that command, or conmon's exit hook for a moment)
    // lets go soon, and it is waited for, so that the list says what the checkpoint left.
    const endedByDump = record.checkpointing && !processRunning(record.pid);
    if ((record.checkpointing || moveToUndo(record)) && (endedByDump || !(await this.store.isLocked(id)))) {
      record = (await this.recoverNow(id, endedByDump ? SETTLING_WAIT_MS : undefined)) ?? record;
    }
    // A create or restore under way (its command holds the lock) is listed as being created. Asked
    // once: a holder that lets go meanwhile (another command's recovery of it, which waits for
    // conmon) has changed the record since it was read, so that record cannot be judged unheld.
    const held = record.status === 'creating' && (await this.store.isLocked(id));
    if (record.status === 'creating' && !held) record = (await this.recoverNow(id)) ?? record;
    let info = viewOf(this.store, record);
    if (record.status === 'creating' && !held) {
      const orphan = orphanView(this.store, id, { creating: false });
      info = { ...info, status: orphan.status, pid: orphan.pid, note: orphan.note };
    }
    return { info, mounts: record.mounts };
  }

  async settledRecord(id: string): Promise<ContainerRecord | null> {
    const record = this.store.read(id);
    if (record === null || !(record.checkpointing || moveToUndo(record) || record.status === 'creating') || (await this.store.isLocked(id))) return record;
    return this.recoverNow(id);
  }

  /** Recovers the record under its lock; with `waitMs`, a lock still held then leaves the record as it is. */
  private async recoverNow(id: string, waitMs?: number): Promise<ContainerRecord | null> {
    let lock: Lock;
    try {
      lock = await this.store.lock(id, waitMs);
    } catch (err) {
      if (waitMs === undefined) throw err;
      return this.store.read(id);
    }
    try {
      const record = this.store.read(id);
      return record === null ? null : await recovered(this.ctx, record);
    } finally {
      await lock.release();
    }
  }

  /** The container's processes, for `top`. */
  async processes(id: string): Promise<ProcessRow[]> {
    const { status } = viewOf(this.store, completeRecord(this.ctx, id));
    if (status === 'stopped') throw new StasisError(`container ${id} is not running`);
    const pids = await this.ctx.runc.processes(id);
    return pids.map(processRow).filter((row): row is ProcessRow => row !== null);
  }

  /** The record of a container that must exist and be complete. */
  record(id: string): ContainerRecord {
    return completeRecord(this.ctx, id);
  }

  waitExit(id: string, opts: { timeoutMs?: number; signal?: AbortSignal; maxPollMs?: number } = {}): Promise<WaitOutcome> {
    return waitExit(this.ctx, id, opts);
  }

  hasExited(id: string): boolean {
    return hasExited(this.ctx, id);
  }

  monitorAlive(id: string): boolean {
    return monitorAlive(this.ctx, id);
  }

  /** conmon's exit command. */
  recordExit(id: string, instance: string): Promise<void> {
    return recordExit(this.ctx, id, instance);
  }

  // ------------------------------------------------ the port checkpoint/ works through

  get checkpointDir(): string {
    return this.config.checkpointDir;
  }

  get logsDir(): string {
    return this.store.paths.logs;
  }

  get scratchDir(): string {
    this.store.ensure();
    return this.store.paths.root;
  }

  get stateRoot(): string {
    this.store.ensure();
    return this.store.paths.root;
  }

  get criu(): string {
    return this.config.criu;
  }

  withContainer<T>(id: string, fn: (record: ContainerRecord) => Promise<T>): Promise<T> {
    return withContainer(this.ctx, id, fn);
  }

  readRecord(id: string): ContainerRecord | null {
    return this.store.read(id);
  }

  async discard(id: string): Promise<void> {
    // A frozen container cannot die: every process gets its SIGKILL while
    // frozen, and takes it before any of its code runs once thawed.
    if (this.store.read(id)?.status === 'paused') {
      await bestEffort(`runc kill ${id} KILL`, this.ctx.runc.kill(id, 'KILL', true));
      await bestEffort(`runc resume ${id}`, this.ctx.runc.resume(id));
    }
    await deleteHeld(this.ctx, id, true);
  }

  exists(id: string): boolean {
    return this.store.exists(id);
  }

  saveRecord(record: ContainerRecord): void {
    this.store.write(record);
  }

  containerDir(id: string): string {
    return this.store.containerDir(id);
  }

  statusOf(record: ContainerRecord) {
    return viewOf(this.store, record).status;
  }

  containerPids(id: string): number[] {
    return cgroupPids(cgroupDirs(this.store.cgroupPath(id)));
  }

  async freeze(id: string, gate?: (started: StartedProcess) => void): Promise<void> {
    // Before the freeze, so that making the cache (once a boot) does not lengthen it.
    await this.keepCriuCache(this.ctx.config.criu);
    return this.ctx.runc.freeze(id, gate);
  }

  async waitForExit(started: StartedProcess): Promise<void> {
    // As long as a dump may take (runc's own limit): then it is not waited for any more.
    const deadline = Date.now() + 600_000;
    while (sameProcessRuns(started) && Date.now() < deadline) await sleep(20);
  }

  thaw(id: string): Promise<void> {
    return this.ctx.runc.thaw(id);
  }

  dump(id: string, request: DumpRequest) {
    return this.ctx.runc.dump(id, request);
  }

  async stopDumpers(workDir: string): Promise<void> {
    // runc checkpoint runs in a session of its own (see Runc.dump), with its CRIU in its process group.
    for (const pid of processesWithArg(workDir)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    await this.waitForDumpers(workDir);
  }

  async waitForDumpers(workDir: string): Promise<void> {
    const deadline = Date.now() + 600_000;
    for (let pids = processesWithArg(workDir); pids.length > 0 && Date.now() < deadline; ) {
      await sleep(50);
      pids = pids.filter((pid) => commandLineHas(pid, workDir));
    }
  }

  async waitForPause(id: string): Promise<void> {
    // A `runc pause` takes milliseconds; ten seconds is far more than one left behind can need.
    const deadline = Date.now() + 10_000;
    while (this.ctx.runc.running('pause', id).length > 0 && Date.now() < deadline) await sleep(10);
  }

  runcVersion(): Promise<string> {
    return this.ctx.runc.version();
  }

  async provision(id: string, plan: ProvisionPlan, opts: { replace?: ContainerRecord } = {}): Promise<ContainerInfo> {
    if (plan.restore) await this.keepCriuCache(this.ctx.config.criu);
    return provisionContainer(this.ctx, id, plan, opts);
  }
}
