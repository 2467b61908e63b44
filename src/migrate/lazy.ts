import { StasisError } from '../errors.ts';
import type { RestoreOptions } from '../checkpoint/restore.ts';
import type { CheckpointHost } from '../runtime/types.ts';

// Post-copy (migrate --lazy): the destination's side.

export interface LazyRestore {
  warnings: string[];
  /** Settles once every page is here (ok), or the transfer broke. */
  done: Promise<{ ok: true } | { ok: false; error: string }>;
  stop(): Promise<void>;
}

export async function restoreLazily(_host: CheckpointHost, _id: string, _opts: RestoreOptions, _port: number): Promise<LazyRestore> {
  throw new StasisError('post-copy restore is not available');
}
