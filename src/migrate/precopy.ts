import { randomBytes } from '../host/digest.ts';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { checkpointHeld } from '../checkpoint/dump.ts';
import { formatBytes } from '../host/units.ts';
import type { CriuOptions } from '../runtime/criu.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { Control } from './control.ts';
import { hashBase, printPages, writeDelta, type BaseSums, type PagePrints } from './delta.ts';
import type { PageHash } from '../host/digest.ts';
import type { Peer } from './peer.ts';
import { cancelReceiver, sendFolder, startReceiver, type Receiver } from './transfer.ts';

// migrate --precopy's two steps: the whole checkpoint sent while the
// container runs, then, at the freeze, what changed since (delta.ts).

type Progress = (phase: string) => void;

/** The first checkpoint, here (its folder) and there (the staged transfer's token). */
export interface PreCopy {
  dir: string;
  token: string;
  bytes: number;
  ms: number;
  /** Its files' sums, when the destination hashed its copy too (CheckReply.deltaBase): the delta is then against them. */
  sums: BaseSums | null;
  /** Those files' pages' prints, with the files themselves removed here (see PagePrints); null where they are kept. */
  prints: PagePrints | null;
}

/**
 * migrate --precopy's first phase, the container running: a checkpoint left
 * running (CRIU freezes it for its local dump only), sent to the destination
 * as a staged transfer that the delta taken at the freeze is rebuilt from.
 * This side hashes it and flushes it to disk (hashBase) while it is sent;
 * with `stage` (the destination reads deltas against the pre-copy's sums)
 * the destination does the same with its copy, and the delta at the freeze
 * is against those sums, so that the rebuild there reads nothing but the
 * changed pages; where the runtime has a fast page hash (Bun), this side
 * then keeps the large files as their pages' prints only. A failure here
 * leaves the container running, and nothing kept.
 */
export async function preCopy(host: CheckpointHost, record: ContainerRecord, peer: Peer, control: Control, criuFlags: CriuOptions & { imagePath?: string; ignoreVolumes: boolean }, progress: Progress, compress: boolean, stage: boolean, pageHash: PageHash | null): Promise<PreCopy> {
  const started = Date.now();
  const token = randomBytes(16).toString('hex');
  const staged = await control.request({ op: 'stage', token });
  if (!staged.ok) throw new StasisError(`${peer.destination.shown}: ${String(staged.error)}`);
  const dir = join(host.scratchDir, `.migrate-pre-${record.id}-${randomBytes(6).toString('hex')}`);
  const receiver = startReceiver(peer, ['__migrate', 'receive', token, ...(stage ? ['--stage'] : [])]);
  try {
    progress('pre-copy: a checkpoint while it runs');
    await checkpointHeld(host, record, { ...criuFlags, imagePath: dir, leaveRunning: true, preDump: false, ignoreVolumes: true }, (step) => progress(`pre-copy: ${step}`));
    progress(`pre-copy: sending it while it runs`);
    const sending = sendFolder(peer, receiver, dir, 'the pre-copy', (sent) => progress(`pre-copy: sending ${formatBytes(sent, { si: true })}`), [], [], compress);
    sending.catch(() => undefined);
    // While tar sends it (tar writes into the pipe itself): flushed here too, and hashed for a destination that reads deltas against the sums.
    const sums = await hashBase(dir, stage);
    // With a fast page hash (and a destination that takes 4 KiB pages against the sums), the files are kept as their pages' prints.
    const prints = sums !== null && pageHash !== null ? await printPages(dir, sums, pageHash) : null;
    const bytes = await sending;
    // tar has read them: their memory goes back before the freeze's dump needs as much.
    for (const path of Object.keys(prints?.files ?? {})) rmSync(join(dir, path), { force: true });
    return { dir, token, bytes, ms: Date.now() - started, sums, prints };
  } catch (err) {
    receiver.child.stdin!.destroy();
    await cancelReceiver(receiver);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Where sendChanges writes the delta of a pre-copy kept in `preDir`. */
export function deltaDirOf(preDir: string): string {
  return `${preDir}-delta`;
}

/**
 * Sends the checkpoint taken at the freeze as what differs from the
 * pre-copy (a delta folder beside it, removed once sent). Returns the bytes
 * sent and the size of the checkpoint they stand for.
 */
export async function sendChanges(host: CheckpointHost, peer: Peer, receiver: Receiver, pre: PreCopy, checkpointPath: string, id: string, progress: Progress, compress: boolean, unit: number): Promise<{ bytes: number; checkpointBytes: number }> {
  // Named after the pre-copy's folder, so that undoing a killed move (its record names that folder) finds it too.
  const deltaDir = deltaDirOf(pre.dir);
  try {
    const delta = writeDelta(pre.dir, checkpointPath, deltaDir, unit, pre.sums, pre.prints);
    progress(`sending what changed: ${formatBytes(delta.sent, { si: true })} of ${formatBytes(delta.total, { si: true })}`);
    const bytes = await sendFolder(peer, receiver, deltaDir, 'what changed since the pre-copy', (sent) => progress(`sending: ${formatBytes(sent, { si: true })}`), [], [], compress);
    return { bytes, checkpointBytes: delta.total };
  } finally {
    rmSync(deltaDir, { recursive: true, force: true });
  }
}
