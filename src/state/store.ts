import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync, statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError, notFound } from '../errors.ts';
import { readJson, writeJsonAtomic } from './atomic.ts';
import { validateId } from './ids.ts';
import { fnv1a } from './hash.ts';
import { acquireLock, isLocked, type Lock } from './lock.ts';

export type RecordStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface MountRecord {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** A host folder bind-mounted into the container (-v/--volume, --mount type=bind). */
export interface VolumeMount {
  /** The host folder, absolute. */
  source: string;
  /** The path inside the container, absolute. */
  destination: string;
  readonly: boolean;
  /**
   * `:U` (podman's): the folder's files are the container's. Given to the
   * container's user when it is created; moved with its user namespace range
   * when a restore gives it another one.
   */
  chown?: boolean;
}

export interface ExitRecord {
  /** null: the container is gone but its status could not be learnt. */
  status: number | null;
  exitedAt: string;
}

/** What `stasis checkpoint` records on the container it dumped. */
export interface CheckpointMark {
  path: string;
  at: string;
}

export interface CheckpointWork {
  /** The folder being written (renamed to finalPath when complete). */
  workDir: string;
  finalPath: string;
  leaveRunning: boolean;
  at: string;
  /**
   * The runc the checkpoint started last (pause, then dump), written before
   * that runc could act (see RunOptions.gate): a recovery waits for this
   * process, by PID and start time, and knows that no other one ran.
   */
  started?: { step: 'pause' | 'dump'; pid: number; startTime: number } | null;
}

/**
 * While `migrate` holds the container (from its dump to the switch): what a command finding the
 * move killed needs to undo it, or to say that only the destination knows whether it switched.
 */
export interface MigrationMark {
  /** The destination, as messages show it. */
  to: string;
  /** The checkpoint the record named before the move: put back when the move is undone. */
  previous: CheckpointMark | null;
  /** Folders the move writes here (its dumps, a pre-copy's first dump): removed when it is undone. */
  scratch: string[];
  /** Set just before the destination is asked to commit: from then on only the destination knows whether it switched. */
  committing: boolean;
  /** The destination said it switched: what is left here is only to be removed. */
  switched?: boolean;
}

/** The persistent record of one container: state.json in its folder. */
export interface ContainerRecord {
  id: string;
  /** Changes with every create/restore of this ID, so a late exit report of an earlier incarnation is ignored. */
  instance: string;
  status: RecordStatus;
  pid: number | null;
  /** The folder holding config.json that runc was given. */
  bundle: string;
  createdAt: string;
  command: string[];
  labels: Record<string, string>;
  restoredFrom: string | null;
  exit: ExitRecord | null;
  rootfs: {
    /** overlay: --rootfs image under a private writable layer; bundle: a bundle's own rootfs, written in place. */
    kind: 'overlay' | 'bundle';
    /** The read-only image (overlay) or the rootfs folder used in place (bundle). */
    base: string;
    /** For kind bundle: the bundle folder the user named. */
    userBundle: string | null;
  };
  /** Mounts stasis made for this container, unmounted (in reverse) on delete. */
  mounts: MountRecord[];
  /** Host folders bind-mounted in by runc (absent in records written before volumes existed). */
  volumes?: VolumeMount[];
  stdio: {
    /** log: pipes held by conmon, captured to ctr.log; passthrough: files or the caller's own stdio. */
    mode: 'log' | 'passthrough';
    stdin: string | null;
    stdout: string | null;
    stderr: string | null;
  };
  tty: boolean;
  autoRemove: boolean;
  /** Last checkpoint taken of this container. */
  lastCheckpoint: CheckpointMark | null;
  /** Set while `checkpoint` runs and after a checkpoint stopped the container. */
  checkpointing: boolean;
  checkpointedStop: boolean;
  /** While `checkpoint` runs: where it writes, so that a command finding it interrupted can finish or undo it. */
  checkpointWork?: CheckpointWork | null;
  /** While `migrate` moves it (absent in records written before moves were recorded). */
  migrating?: MigrationMark | null;
}

export interface StorePaths {
  root: string;
  containers: string;
  runcRoot: string;
  events: string;
  sockets: string;
  logs: string;
}

const STATUSES = new Set(['creating', 'created', 'running', 'paused', 'stopped']);

/** Why a parsed state.json is not a usable record, or null when it is one. */
function recordProblem(value: unknown, id: string): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const record = value as Partial<ContainerRecord>;
  if (record.id === undefined) return 'it names no container';
  if (record.id !== id) return `it names container ${JSON.stringify(record.id)}`;
  if (typeof record.status !== 'string' || !STATUSES.has(record.status)) return `unknown status ${JSON.stringify(record.status)}`;
  if (typeof record.instance !== 'string' || typeof record.bundle !== 'string') return 'instance or bundle missing';
  if (typeof record.rootfs !== 'object' || record.rootfs === null || !Array.isArray(record.mounts)) return 'rootfs or mounts missing';
  if (typeof record.stdio !== 'object' || record.stdio === null || !Array.isArray(record.command)) return 'stdio or command missing';
  return null;
}

/** A state.json that exists but cannot be used: `ps` lists the container as damaged, `delete -f` removes it. */
export class DamagedRecordError extends StasisError {
  readonly problem: string;
  constructor(id: string, problem: string) {
    super(`state of container ${id} is unreadable: ${problem}`, { hint: `remove it with \`stasis delete -f ${id}\`` });
    this.problem = problem;
  }
}

/** The state directory: one folder per container, the runc root and the event journal. */
export class StateStore {
  readonly paths: StorePaths;
  private realRoot: string | null = null;

  constructor(root: string) {
    this.paths = {
      root,
      containers: join(root, 'containers'),
      runcRoot: join(root, 'runc'),
      events: join(root, 'events.jsonl'),
      sockets: join(root, 'sockets'),
      logs: join(root, 'logs'),
    };
  }

  /**
   * Creates the state directory (mode 0700) and its folders if needed. Each
   * folder is looked for: the first command in a new state directory, killed
   * while making them, left some out (conmon then found no sockets folder).
   */
  ensure(): void {
    const missing = [this.paths.containers, this.paths.runcRoot, this.paths.sockets, this.paths.logs].filter((dir) => !existsSync(dir));
    if (missing.length === 0) return;
    // 0700 when we create it; an existing folder the user named keeps its mode.
    mkdirSync(this.paths.root, { recursive: true, mode: 0o700 });
    for (const dir of missing) mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  get lockRoot(): string {
    if (this.realRoot === null) {
      this.ensure();
      this.realRoot = realpathSync(this.paths.root);
    }
    return this.realRoot;
  }

  containerDir(id: string): string {
    return join(this.paths.containers, validateId(id));
  }

  /** conmon's log of the captured stdio (ctr), or the file a passthrough stream without its own file went to. */
  logPath(id: string, stream: 'ctr' | 'stdout' | 'stderr' = 'ctr'): string {
    return join(this.containerDir(id), `${stream}.log`);
  }

  /** The container's cgroup (runc's cgroupsPath): one flat cgroup per container and state directory. */
  cgroupPath(id: string): string {
    return `/stasis-${fnv1a(this.lockRoot)}-${validateId(id)}`;
  }

  statePath(id: string): string {
    return join(this.containerDir(id), 'state.json');
  }

  lock(id: string, timeoutMs?: number): Promise<Lock> {
    return acquireLock(this.lockRoot, `ctr/${id}`, { timeoutMs, what: `container ${id}` });
  }

  isLocked(id: string): Promise<boolean> {
    return isLocked(this.lockRoot, `ctr/${id}`);
  }

  /** Claims an ID by creating its folder; false when it exists already. */
  claim(id: string): boolean {
    this.ensure();
    try {
      mkdirSync(this.containerDir(id), { mode: 0o700 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }

  exists(id: string): boolean {
    return existsSync(this.containerDir(id));
  }

  /**
   * The record, or null when the folder exists but no record was written yet
   * (an interrupted create). A record that cannot be read, or is not a record
   * (empty, `{}`), throws DamagedRecordError.
   */
  read(id: string): ContainerRecord | null {
    const dir = this.containerDir(id);
    if (!existsSync(dir)) throw notFound(id);
    let record: unknown;
    try {
      record = readJson<unknown>(join(dir, 'state.json'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      // The parser's own words differ between runtimes (Node, Bun): say what it is first.
      throw new DamagedRecordError(id, err instanceof SyntaxError ? `not valid JSON (${err.message})` : (err as Error).message);
    }
    const problem = recordProblem(record, id);
    if (problem !== null) throw new DamagedRecordError(id, problem);
    return record as ContainerRecord;
  }

  write(record: ContainerRecord): void {
    writeJsonAtomic(this.statePath(record.id), record);
  }

  remove(id: string): void {
    rmSync(this.containerDir(id), { recursive: true, force: true });
  }

  ids(): string[] {
    if (!existsSync(this.paths.containers)) return [];
    return readdirSync(this.paths.containers).filter((name) => !name.startsWith('.')).sort();
  }

  /** Raw text of a file in a container's folder, or null. */
  readContainerFile(id: string, name: string): { text: string; mtime: Date } | null {
    const path = join(this.containerDir(id), name);
    try {
      const text = readFileSync(path, 'utf8');
      return { text, mtime: statSync(path).mtime };
    } catch {
      return null;
    }
  }
}
