import { StasisError } from '../errors.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { Peer } from './peer.ts';

// Post-copy (migrate --lazy): the source's side.

export interface LazyDump {
  /** The checkpoint folder: everything but the memory pages. */
  path: string;
  /** The destination's port that reaches the page server here. */
  remotePort: number;
  /** Waits until the destination has pulled every page (the dump then ends). */
  finish(): Promise<{ ok: boolean; bytes: number | null; error?: string }>;
  /** Stops the page server and lets the container go on here. */
  abort(): Promise<void>;
}

export async function dumpLazily(
  _host: CheckpointHost,
  _record: ContainerRecord,
  _peer: Peer,
  _flags: { tcpEstablished: boolean; extUnixSk: boolean; shellJob: boolean; fileLocks: boolean },
  _progress: (step: string) => void,
): Promise<LazyDump> {
  throw new StasisError('post-copy is not available yet');
}
