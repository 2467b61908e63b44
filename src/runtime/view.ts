import { readFileSync } from 'node:fs';
import type { ContainerRecord, ExitRecord, RecordStatus, StateStore } from '../state/store.ts';

export type Status = RecordStatus;

/** The container object of the contract, as `info`, `ps --json` and `create --json` print it. */
export interface ContainerInfo
  extends Pick<ContainerRecord, 'id' | 'pid' | 'bundle' | 'createdAt' | 'command' | 'labels' | 'restoredFrom' | 'exit' | 'rootfs' | 'tty' | 'stdio' | 'lastCheckpoint'> {
  status: Status;
  checkpointed: boolean;
  /** Set when the record does not tell the whole story (an interrupted create). */
  note?: string;
}

/** Whether a process exists (kill(pid, 0)); a zombie counts. Cheap: one system call. */
export function pidAlive(pid: number | null): boolean {
  if (pid === null || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a process still runs: exists and is not a zombie. A daemonised
 * monitor is reaped by whatever init adopted it, which may be late (a CI
 * runner's PID namespace); until then kill(pid, 0) still answers for it.
 * A container's own process is reaped at once by its monitor (a subreaper),
 * so `ps` uses the cheaper pidAlive for those.
 */
export function processRunning(pid: number | null): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // "PID (comm) S ...": the state follows the last ')', as comm may hold one.
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The exit status conmon wrote, with the file's mtime as the exit time. */
export function readExitFile(store: StateStore, id: string): ExitRecord | null {
  const file = store.readContainerFile(id, 'exit');
  if (file === null) return null;
  const status = Number.parseInt(file.text.trim(), 10);
  return { status: Number.isNaN(status) || status < 0 ? 255 : status, exitedAt: file.mtime.toISOString() };
}

/**
 * What a record means now, without calling runc: conmon's exit file and
 * whether the pid is alive tell whether a container recorded as running has
 * exited since (its exit command may not have run yet).
 */
export function viewOf(store: StateStore, record: ContainerRecord): ContainerInfo {
  let status: Status = record.status;
  let exit = record.exit;
  if (!record.checkpointing && (status === 'created' || status === 'running' || status === 'paused')) {
    const exited = readExitFile(store, record.id);
    if (exited !== null) {
      status = 'stopped';
      exit = exited;
    } else if (!pidAlive(record.pid)) {
      status = 'stopped';
    }
  }
  return {
    id: record.id,
    status,
    pid: status === 'stopped' ? null : record.pid,
    bundle: record.bundle,
    createdAt: record.createdAt,
    command: record.command,
    labels: record.labels,
    restoredFrom: record.restoredFrom,
    exit,
    rootfs: record.rootfs,
    tty: record.tty,
    stdio: record.stdio,
    lastCheckpoint: record.lastCheckpoint,
    checkpointed: record.checkpointedStop,
  };
}

/** A folder with no record: a create that was killed before it wrote one. */
export function orphanView(store: StateStore, id: string, creating: boolean): ContainerInfo {
  const pidFile = store.readContainerFile(id, 'pid');
  const pid = pidFile ? Number.parseInt(pidFile.text, 10) : null;
  const alive = processRunning(pid);
  return {
    id,
    status: creating ? 'creating' : alive ? 'created' : 'stopped',
    pid: alive ? pid : null,
    bundle: store.containerDir(id),
    createdAt: new Date(0).toISOString(),
    command: [],
    labels: {},
    restoredFrom: null,
    exit: null,
    rootfs: { kind: 'overlay', base: '', userBundle: null },
    tty: false,
    stdio: { mode: 'log', stdin: null, stdout: null, stderr: null },
    lastCheckpoint: null,
    checkpointed: false,
    note: creating ? 'being created' : 'create was interrupted; remove it with `stasis delete -f`',
  };
}
