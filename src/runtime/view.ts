import { processRunning } from '../host/procfs.ts';
import type { ContainerRecord, ExitRecord, StateStore } from '../state/store.ts';
import type { ContainerInfo, Status } from './types.ts';

/**
 * The exit status conmon wrote, with the file's mtime as the exit time. A
 * status conmon could not learn (it writes -1) is unknown: null, not a number.
 */
export function readExitFile(store: StateStore, id: string): ExitRecord | null {
  const file = store.readContainerFile(id, 'exit');
  if (file === null) return null;
  const status = Number.parseInt(file.text.trim(), 10);
  return { status: Number.isNaN(status) || status < 0 ? null : status, exitedAt: file.mtime.toISOString() };
}

/**
 * What a record means now, without calling runc: conmon's exit file and
 * whether the pid runs (exists and is not a zombie) tell whether a container
 * recorded as running has exited since (its exit command may not have run yet).
 */
export function viewOf(store: StateStore, record: ContainerRecord): ContainerInfo {
  let status: Status = record.status;
  let exit = record.exit;
  if (status === 'created' || status === 'running' || status === 'paused') {
    // While a checkpoint is marked, an exit status is CRIU ending the processes it dumped, not
    // theirs; but processes that are gone are gone (a checkpoint command killed after its dump,
    // seen while conmon's exit hook holds the lock that its recovery needs).
    const exited = record.checkpointing ? null : readExitFile(store, record.id);
    if (exited !== null) {
      status = 'stopped';
      exit = exited;
    } else if (!processRunning(record.pid)) {
      // Gone, or a zombie: its monitor (which reaps it) died, and this host's init may never reap it.
      status = 'stopped';
    }
  }
  return {
    id: record.id,
    status,
    pid: status === 'stopped' ? null : record.pid,
    bundle: record.rootfs.userBundle ?? record.bundle,
    createdAt: record.createdAt,
    command: record.command,
    labels: record.labels,
    restoredFrom: record.restoredFrom,
    exit,
    rootfs: record.rootfs,
    volumes: record.volumes ?? [],
    tty: record.tty,
    stdio: record.stdio,
    lastCheckpoint: record.lastCheckpoint,
    checkpointed: record.checkpointedStop,
    ...(record.migrating?.committing ? { note: moveNote(record.id, record.migrating.to, record.migrating.switched === true) } : {}),
  };
}

/** What `ps` and `info` say of a container whose move was cut off at or after the switch. */
function moveNote(id: string, to: string, switched: boolean): string {
  if (switched) return `moved to ${to}; removing it here was cut off: stasis delete -f ${id}`;
  return `a move to ${to} was cut off at the switch: if it runs there, stasis delete -f ${id} here; if not, stasis resume ${id}`;
}

/**
 * A folder whose record is missing (a create killed before it wrote one) or
 * unreadable: what can be told from conmon's files alone.
 */
export function orphanView(store: StateStore, id: string, opts: { creating: boolean; damaged?: string }): ContainerInfo {
  const pidFile = store.readContainerFile(id, 'pid');
  const pid = pidFile ? Number.parseInt(pidFile.text, 10) : null;
  const alive = processRunning(pid);
  const exit = readExitFile(store, id);
  const status: Status = opts.creating ? 'creating' : exit === null && alive ? (opts.damaged ? 'running' : 'created') : 'stopped';
  let note = opts.creating ? 'being created' : 'create was interrupted; remove it with `stasis delete -f`';
  if (opts.damaged) note = `its record is damaged (${opts.damaged}); remove it with \`stasis delete -f\``;
  return {
    id,
    status,
    pid: status === 'stopped' ? null : pid,
    bundle: store.containerDir(id),
    createdAt: new Date(0).toISOString(),
    command: [],
    labels: {},
    restoredFrom: null,
    exit,
    rootfs: { kind: 'overlay', base: '', userBundle: null },
    volumes: [],
    tty: false,
    stdio: { mode: 'log', stdin: null, stdout: null, stderr: null },
    lastCheckpoint: null,
    checkpointed: false,
    note,
  };
}
