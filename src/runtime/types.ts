import type { EventJournal } from '../state/events.ts';
import type { ContainerRecord, ExitRecord, MountRecord, RecordStatus, VolumeMount } from '../state/store.ts';
import type { RunResult, StartedProcess } from '../host/spawn.ts';
import type { Writable } from 'node:stream';
import type { CriuOptions } from './criu.ts';
import type { OciSpec } from './spec.ts';

// The contract of the runtime layer, after containerd's 2017 plugin/runtime.go:
// a Runtime creates containers (from a spec, rootfs mounts, IO and optionally a
// checkpoint to restore from: ProvisionPlan), lists them, deletes them
// returning the exit status and time, and reports events; a Container is
// started, inspected, paused, resumed, signalled, exec'd into and
// checkpointed. Commands work through these types. This file imports nothing
// of ours above src/state and src/host.

export type Status = RecordStatus;

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
  /**
   * Attached run with captured output: the container's stdin is a pipe the
   * monitor holds, fed from the caller's stdin through its attach socket, so
   * that the container stays checkpointable. Otherwise stdin is /dev/null.
   */
  attachStdin?: boolean;
}

/** What a restore adds to a ProvisionPlan: the images, and hooks run while the container is brought up. */
export interface RestorePlan {
  /** CRIU image folder. */
  imagesDir: string;
  /** runc restore options, e.g. --tcp-established (built from a whitelist, never taken from a checkpoint as given). */
  runcArgs: string[];
  /** What restoredFrom reports. */
  from: string;
  /** The container's creation time, kept from where it came from (a move); default: now (in place: the record's). */
  createdAt?: string;
  /** Runs first, with the new container's folder (made, empty but for its record): files the spec's bind mounts name. */
  prepare?: (containerDir: string) => Promise<void>;
  /** A log (k8s-file lines) that becomes the start of a new container's captured log (not used in place, where the log goes on). */
  importLog?: string;
  /** Fills the fresh writable layer before it is mounted. */
  fillLayer?: (upperDir: string) => Promise<void>;
  /**
   * In place, onto the container's own writable layer, which is still
   * mounted and is what the checkpoint carries (the checkpoint stopped it):
   * kept as it is, with no unmount, extraction or mount (an unmount of an
   * overlay syncs its whole filesystem, which a dump has just filled).
   */
  keepLayer?: boolean;
  /** With the ID maps of the user namespace the container gets (CRIU recreates it from the images' maps). */
  setIdMaps?: (uidMap: { containerID: number; hostID: number; size: number }[], gidMap: { containerID: number; hostID: number; size: number }[]) => void;
  /** Runs on the mounted rootfs before runc restore (deletions). */
  onRootfs?: (rootfsDir: string) => Promise<void>;
  /**
   * Volume folders whose files follow the container's user namespace range
   * when this restore gives it another one (`:U` volumes, and the folders
   * this restore filled from the checkpoint); shifted back if it fails.
   */
  followRange?: string[];
  /** Called with the container folder when the restore failed, before it is cleaned up (to keep CRIU's log). */
  onFailure?: (containerDir: string) => void;
}

/** Everything provisioning needs to bring up a container, new or restored. */
export interface ProvisionPlan {
  spec: OciSpec;
  rootfs: ContainerRecord['rootfs'];
  /** Mounts that give access to a bundle's rootfs, made before create. */
  rootfsMounts: Omit<MountRecord, 'target'>[];
  /** Host folders bind-mounted in (already in the spec's mounts), recorded on the container. */
  volumes?: VolumeMount[];
  stdio: StdioPlan;
  labels: Record<string, string>;
  autoRemove: boolean;
  restore?: RestorePlan;
}

export interface DeleteResult {
  id: string;
  /** null when the container did not exit but was stopped by a checkpoint, or its status is unknown. */
  status: number | null;
  exitedAt: string;
  checkpoint?: string;
}

/** The container object of the contract, as `info`, `ps --json` and `create --json` print it. */
export interface ContainerInfo
  extends Pick<ContainerRecord, 'id' | 'pid' | 'bundle' | 'createdAt' | 'command' | 'labels' | 'restoredFrom' | 'exit' | 'rootfs' | 'tty' | 'stdio' | 'lastCheckpoint'> {
  status: Status;
  /** Host folders bind-mounted in. */
  volumes: VolumeMount[];
  checkpointed: boolean;
  /** Set when the record does not tell the whole story (an interrupted create, a damaged record). */
  note?: string;
}

/** What waiting for a container ends with. */
export type WaitOutcome = ExitRecord | 'checkpointed' | 'removed' | null;

export interface ExecOptions {
  args: string[];
  env: string[];
  cwd?: string;
  tty: boolean;
  /** Where the process's own stderr goes (runc's error lines are kept apart from it). */
  stderr: NodeJS.WritableStream;
}

export interface CheckpointOptions extends CriuOptions {
  imagePath?: string;
  leaveRunning: boolean;
  exportPath?: string;
  /** Write the archive here instead (stdout), compressed with `compression`. */
  exportStream?: Writable;
  /** With an export: the chunks the receiver's store holds (its have-list); the big files holding some travel as FILE.stasis-chunks. */
  haveChunks?: ReadonlySet<string>;
  /** The archive's compression; default: from exportPath's name, else zstd. */
  compression?: 'none' | 'gzip' | 'zstd';
  /** Leave the rootfs changes out of the archive and the image (the folder keeps them). */
  ignoreRootfs?: boolean;
  /** Leave the volumes' contents out of an export, an image or a move (they must be there when it is restored). */
  ignoreVolumes?: boolean;
  /** Also write an OCI checkpoint image: oci:DIR[:NAME] or oci-archive:FILE[:NAME]. */
  createImage?: string;
  /** The podman image the container's base is, so that podman can restore the image. */
  podmanImage?: { name: string; id?: string };
  /** The registry image (HOST/NAME[:TAG|@DIGEST]) the container's base is, so that a CRI runtime (containerd) can restore the image. */
  baseImage?: string;
  preDump: boolean;
  parentPath?: string;
  /** With leaveRunning: keep the container frozen after the dump, its status paused (migrate thaws or kills it). */
  stayFrozen?: boolean;
  /** Post-copy (migrate --lazy, with stayFrozen): serve the memory pages on this 127.0.0.1 port instead of writing them. */
  lazyPort?: number;
  /** Called with the folder CRIU writes into as each attempt of the dump starts (migrate --precopy follows its page images: follow.ts). */
  onDumping?: (dir: string) => void;
  /** The memory pages go to the page server on this 127.0.0.1 port, not into files (migrate --precopy's freeze: pageserver.ts). */
  pageServerPort?: number;
}

export interface CheckpointResult {
  id: string;
  path: string;
  exported: string | null;
  /** The checkpoint image written (--create-image), as its reference. */
  image: string | null;
  /** With --have: the big files the archive carries as chunks, and their bytes left to the receiver's store. */
  exportChunks?: { files: number; fromStore: number } | null;
  leftRunning: boolean;
  preDump: boolean;
  imageBytes: number;
  rootfsChanges: { files: number; deleted: number } | null;
  /** store: indexing it in the checkpoint store and packing the older ones (null: not kept under the checkpoint directory). */
  timingsMs: { total: number; dump: number; rootfs: number; archive: number | null; store?: number | null };
  criu: Record<string, number> | null;
  /** The checkpoint store's part (a checkpoint kept under the checkpoint directory), or null; error: why it was not stored (the checkpoint is whole). */
  store?: { hashMs: number; packed: string[]; chunkBytesWritten: number; error: string | null } | null;
  /** With lazyPort: settles when runc checkpoint ends, every page pulled (or the transfer broken). */
  pagesServed?: Promise<RunResult>;
}

export type Progress = (step: string) => void;

export interface ContainerRuntime {
  create(id: string, opts: ProvisionPlan): Promise<Container>;
  containers(): Promise<ContainerInfo[]>;
  delete(container: Container, opts: { force: boolean }): Promise<DeleteResult>;
  events(): EventJournal;
}

export interface Container {
  readonly id: string;
  start(): Promise<ContainerInfo>;
  state(): Promise<ContainerInfo>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  kill(signal: string, opts: { all: boolean }): Promise<void>;
  exec(opts: ExecOptions): Promise<number>;
}

/**
 * Checkpointing is a layer above the runtime, which commands call directly
 * (checkpoint/dump.ts, checkpoint/restore.ts); the runtime needs only its
 * recovery, which the composition root hands in.
 */
export interface CheckpointFeature {
  /**
   * Finishes or undoes a checkpoint whose command died (the record says
   * checkpointing, and its lock, which the caller holds now, was free):
   * thaws the container, keeps a dump that completed, removes one that did not.
   */
  recover(host: CheckpointHost, record: ContainerRecord): Promise<void>;
}

/** runc's checkpoint command, as the checkpoint layer asks for it. */
export interface DumpRequest {
  imagesDir: string;
  workDir: string;
  leaveRunning: boolean;
  preDump: boolean;
  /** Relative to imagesDir, as CRIU wants it. */
  parentPath?: string;
  /** CRIU options as runc flags (--tcp-established ...). */
  criuFlags: string[];
  /**
   * Post-copy: dump all but the memory, then serve the pages on this
   * 127.0.0.1 port until the destination has pulled them all (runc returns
   * then); onReady is called when everything else is written.
   */
  lazy?: { port: number; onReady: () => void };
  /** The pages go to the page server on this 127.0.0.1 port (not post-copy: CRIU sends them all during the dump). */
  pageServer?: number;
  /** Told which process runc checkpoint is before it runs (RunOptions.gate): the record notes it. */
  gate?: (started: StartedProcess) => void;
  /**
   * CRIU is told not to lock the container's network (network-lock skip): for a
   * namespace of its own with nothing but lo and no established TCP connection
   * dumped, where every peer is a frozen process of the container itself.
   */
  skipNetworkLock?: boolean;
}

/**
 * What src/checkpoint needs of a runtime, and nothing more: the container's
 * record under its lock, the runc calls of a dump, the journal, and
 * provisioning for a restore. The Runtime implements it.
 */
export interface CheckpointHost {
  readonly checkpointDir: string;
  /** Where CRIU logs of failed operations are kept. */
  readonly logsDir: string;
  /** A folder on the state directory's filesystem for unpacking archives. */
  readonly scratchDir: string;
  /** The state directory itself, where the key that signs its checkpoints is kept. */
  readonly stateRoot: string;
  readonly criu: string;
  readonly journal: EventJournal;
  /** Runs fn on the container's record while holding its lock. */
  withContainer<T>(id: string, fn: (record: ContainerRecord) => Promise<T>): Promise<T>;
  /** The record, or null while being created; throws when there is no such container. */
  readRecord(id: string): ContainerRecord | null;
  /** The record once whatever a killed command left half done is finished or undone (takes the lock if free). */
  settledRecord(id: string): Promise<ContainerRecord | null>;
  exists(id: string): boolean;
  saveRecord(record: ContainerRecord): void;
  containerDir(id: string): string;
  /** What the record means now (the exit file and the pid are looked at). */
  statusOf(record: ContainerRecord): Status;
  /** The host PIDs of the container's processes (from its cgroup: no runc call). */
  containerPids(id: string): number[];
  /** Freezes it as runc pause would, with no state checks (a checkpoint freezes the container it holds): its cgroup v1 freezer written directly, else runc pause, `gate` as DumpRequest's. */
  freeze(id: string, gate?: (started: StartedProcess) => void): Promise<void>;
  /** Thaws it as runc resume would (the v1 freezer written directly where it can be); throws with runc's message when runc fails. */
  thaw(id: string): Promise<void>;
  dump(id: string, request: DumpRequest): Promise<RunResult>;
  /** Ends a runc checkpoint into workDir, and its CRIU (a lazy dump's page server): their process group is killed. */
  stopDumpers(workDir: string): Promise<void>;
  /** Waits until that exact process (PID and start time) has ended; a zombie has. */
  waitForExit(started: StartedProcess): Promise<void>;
  /** Waits until no `runc pause` of the container runs any more (one a killed stasis left behind would freeze it after a thaw). */
  waitForPause(id: string): Promise<void>;
  /** Waits (up to a dump's time limit) until no runc checkpoint (or CRIU) into workDir runs any more. */
  waitForDumpers(workDir: string): Promise<void>;
  runcVersion(): Promise<string>;
  /** Kills (when it runs) and removes a container whose lock the caller holds; a checkpoint's stop is not recorded as an exit. */
  discard(id: string): Promise<void>;
  /** Creates a container from a plan with a restore part (in place, replacing the stopped container given as `replace`). */
  provision(id: string, plan: ProvisionPlan, opts?: { replace?: ContainerRecord }): Promise<ContainerInfo>;
}
