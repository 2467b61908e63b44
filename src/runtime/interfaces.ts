import type { CheckpointOptions, CheckpointResult } from '../checkpoint/checkpoint.ts';
import type { EventJournal } from '../state/events.ts';
import type { ExecOptions } from './exec.ts';
import type { DeleteResult, ProvisionPlan } from './runtime.ts';
import type { ContainerInfo } from './view.ts';

// The seed's interfaces (containerd's 2017 plugin/runtime.go): a Runtime
// creates containers — from a spec, rootfs mounts, IO and optionally a
// checkpoint to restore from (ProvisionPlan) — lists them, deletes them
// returning the exit status and time, and reports events. Commands work on a
// Container through these, never on runc directly.

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
  checkpoint(opts: CheckpointOptions, progress?: (step: string) => void): Promise<CheckpointResult>;
}
