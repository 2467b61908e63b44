import type { UserMount } from '../checkpoint/format/engine-spec.ts';
import type { Trust } from '../checkpoint/policy/trust.ts';
import type { CriuOptions } from '../runtime/criu.ts';

// What `stasis migrate` asks of a move (migrate.ts), and what it reports.

export interface MigrateOptions extends CriuOptions {
  name?: string;
  lazy: boolean;
  /** Pre-copy: a first checkpoint sent while the container runs; at the freeze, only what changed since. */
  precopy?: boolean;
  /** Every tar sent is compressed on the way (zstd's fastest level); the other side reads either. */
  compress?: boolean;
  withRootfs: boolean;
  keep: boolean;
  /** The base's path on the destination (default: the same as here). */
  rootfs?: string;
  userMounts?: UserMount[];
  /** Send no volume contents: each volume's folder must be there already. */
  ignoreVolumes?: boolean;
  trust?: Trust;
  tcpClose: boolean;
}

export interface MigrateResult {
  id: string;
  name: string;
  destination: string;
  lazy: boolean;
  /** Whether what was sent was compressed (--compress); bytes are then the compressed ones. */
  compressed: boolean;
  /** From the freeze until the container ran on the destination: the time the application was stopped. */
  downtimeMs: number;
  /** Bytes sent before the switch (the checkpoint; with --lazy, all but the memory pages). */
  bytes: number;
  /** Memory pages pulled after the switch (--lazy), in bytes. */
  lazyBytes: number | null;
  /**
   * --precopy: the first checkpoint, sent while the container ran (bytes, ms), the size of the one
   * the freeze took, and whether the destination restored the memory on demand from its images.
   */
  precopy: { bytes: number; ms: number; checkpointBytes: number; onDemand: boolean } | null;
  /** Bytes of the checkpoint the destination's checkpoint store held already, so not sent (chunked.ts). */
  fromStore: number;
  totalMs: number;
  timingsMs: { check: number; rootfs: number | null; dump: number; transfer: number; restore: number; pages: number | null };
  /** The checkpoint folder kept here (--keep), else null. */
  checkpoint: string | null;
  warnings: string[];
}

export type MigrateProgress = (phase: string) => void;
