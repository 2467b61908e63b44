import type { ProcessRunner } from '../host/spawn.ts';
import type { EventJournal } from '../state/events.ts';
import type { ContainerRecord, StateStore } from '../state/store.ts';
import type { MonitorOptions } from './conmon.ts';
import type { Runc } from './runc.ts';
import type { RuntimeConfig } from './types.ts';

/**
 * What every part of the runtime shares: the configuration, the state
 * directory, the journal, runc, and the two ways out to real processes
 * (the runner, and conmon's launcher), which unit tests replace with fakes.
 */
export interface RuntimeContext {
  readonly config: RuntimeConfig;
  readonly store: StateStore;
  readonly journal: EventJournal;
  readonly runc: Runc;
  readonly runner: ProcessRunner;
  readonly startMonitor: (opts: MonitorOptions) => Promise<number>;
  /** Finishes or undoes a checkpoint whose command died; the caller holds the lock. */
  readonly recoverCheckpoint: (record: ContainerRecord) => Promise<void>;
}
