import { randomBytes } from '../host/digest.ts';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { checkpointHeld } from '../checkpoint/dump.ts';
import { formatBytes } from '../host/units.ts';
import type { CriuOptions } from '../runtime/criu.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { Control } from './control.ts';
import { hashBase, printPages, writeDelta, type BaseSums, type PagePrints } from './delta.ts';
import type { PageHash } from '../host/digest.ts';
import type { Peer } from './peer.ts';
import { cancelReceiver, sendFailed, sendFolder, startReceiver, type Receiver } from './transfer.ts';
import { sendPages, type PageStreamStats } from './pagestream.ts';
import { followPages } from './follow.ts';
import { PageServerCut, servePages } from './pageserver.ts';
import type { CheckpointHost, CheckpointOptions, CheckpointResult } from '../runtime/types.ts';
import { debugLog } from '../log.ts';
import { privateResident, warmMemory } from '../host/warm.ts';

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
export interface PreCopyOptions {
  /** The folder it is dumped into (the move has marked it as its own). */
  dir: string;
  compress: boolean;
  /** The destination hashes its copy as it arrives (CheckReply.deltaBase). */
  stage: boolean;
  /** Where the runtime has a fast page hash, and the destination takes 4 KiB pages against the sums. */
  pageHash: PageHash | null;
  /** A catch-up round, where the destination reads page streams (catchUpRound). */
  catchUp: boolean;
  /** The destination's receivers say when they are up (CheckReply.receiverReady): each dump waits for that. */
  ready: boolean;
  /** The destination reads page sections of version 2 (CheckReply.pageFollow): the catch-up round's pages go as CRIU writes them. */
  follow: boolean;
}

export async function preCopy(host: CheckpointHost, record: ContainerRecord, peer: Peer, control: Control, criuFlags: CriuOptions & { imagePath?: string; ignoreVolumes: boolean }, progress: Progress, opts: PreCopyOptions): Promise<PreCopy> {
  const { dir, compress, stage, pageHash } = opts;
  const started = Date.now();
  const token = randomBytes(16).toString('hex');
  const staged = await control.request({ op: 'stage', token });
  if (!staged.ok) throw new StasisError(`${peer.destination.shown}: ${String(staged.error)}`);
  const receiver = startReceiver(peer, ['__migrate', 'receive', token, ...(stage ? ['--stage'] : [])], opts.ready);
  try {
    // Its start-up (ssh, the stasis there) would otherwise compete with the dump for the processors.
    await receiver.ready;
    // The dump writes about the container's memory into the page cache: memory freed just now, where a VM's host takes back what is not (host/warm.ts).
    progress('pre-copy: making memory ready for the dump');
    const warmStarted = Date.now();
    const warmed = warmMemory(privateResident(host.containerPids(record.id)), host.scratchDir);
    debugLog(`${warmed} bytes written and freed for the dump in ${Date.now() - warmStarted} ms`);
    progress('pre-copy: a checkpoint while it runs');
    await checkpointHeld(host, record, { ...criuFlags, imagePath: dir, leaveRunning: true, preDump: false, ignoreVolumes: true }, (step) => progress(`pre-copy: ${step}`));
    progress(`pre-copy: sending it while it runs`);
    const sending = sendFolder(peer, receiver, dir, 'the pre-copy', (sent) => progress(`pre-copy: sending ${formatBytes(sent, { si: true })}`), [], [], compress);
    sending.catch(() => undefined);
    // While tar sends it (tar writes into the pipe itself): flushed here too, and hashed for a destination that reads deltas against the sums.
    const sums = await hashBase(dir, stage);
    // With a fast page hash (and a destination that takes 4 KiB pages against the sums), the files are kept as their pages' prints.
    const prints = sums !== null && pageHash !== null ? await printPages(dir, sums, pageHash) : null;
    let bytes = await sending;
    // tar has read them: their memory goes back before the freeze's dump needs as much.
    for (const path of Object.keys(prints?.files ?? {})) rmSync(join(dir, path), { force: true });
    const pre: PreCopy = { dir, token, bytes, ms: 0, sums, prints };
    if (opts.catchUp && sums !== null && prints !== null) bytes += await catchUpRound(host, record, peer, pre, criuFlags, progress, opts.ready, opts.follow);
    return { ...pre, bytes, ms: Date.now() - started };
  } catch (err) {
    receiver.child.stdin!.destroy();
    await cancelReceiver(receiver);
    rmSync(dir, { recursive: true, force: true });
    rmSync(deltaDirOf(dir), { recursive: true, force: true });
    throw err;
  }
}

/**
 * A catch-up round (the compiled stasis, to a destination that reads page
 * streams): what the container changed while the pre-copy went, taken with
 * it running (CRIU freezes it for the local dump only) and sent as pages into
 * the destination's copy, so that the freeze sends only what changed since
 * this round, which is shorter than the whole memory's transfer. `pre`'s sums
 * and prints become those of this round's dump. Returns the bytes sent.
 */
async function catchUpRound(host: CheckpointHost, record: ContainerRecord, peer: Peer, pre: PreCopy, criuFlags: CriuOptions & { imagePath?: string; ignoreVolumes: boolean }, progress: Progress, ready: boolean, follow: boolean): Promise<number> {
  const round = deltaDirOf(pre.dir);
  // Up before the dump; a fresh token names nothing there (the pages go into the pre-copy's).
  const receiver = startReceiver(peer, ['__migrate', 'receive', randomBytes(16).toString('hex'), '--base', pre.token, '--update-base'], ready);
  try {
    await receiver.ready;
    progress('pre-copy: catching up: a checkpoint while it runs');
    const stdin = receiver.child.stdin!;
    const what = 'what changed during the pre-copy';
    const onBytes = (sent: number) => progress(`pre-copy: catching up: sending ${formatBytes(sent, { si: true })}`);
    const cpOpts: CheckpointOptions = { ...criuFlags, imagePath: round, leaveRunning: true, preDump: false, ignoreVolumes: true };
    const cpProgress = (step: string) => progress(`pre-copy: catching up: ${step}`);
    let paged: PageStreamStats;
    let prints: Pick<PagePrints, 'files' | 'blocks'> | null = null;
    if (follow) {
      // Its pages go as CRIU writes them, and are printed on the way: the round is shorter, and so is what changes during it.
      const followed = await dumpFollowed(host, record, cpOpts, cpProgress, pre, peer, receiver, what, onBytes, true);
      if (followed.error !== null) throw followed.error;
      paged = followed.paged!;
      prints = followed.paged!.prints;
    } else {
      await checkpointHeld(host, record, cpOpts, cpProgress);
      try {
        paged = await sendPages(pre.dir, round, pre.sums!, pre.prints, stdin, onBytes, true);
      } catch (err) {
        // The receiver's own words, where it said why it went.
        stdin.destroy();
        throw sendFailed(peer, what, await receiver.done, err);
      }
    }
    stdin.end();
    const result = await receiver.done;
    if (result.code !== 0) throw sendFailed(peer, what, result, null);
    debugLog(`catch-up round: ${paged.sent} bytes of changed pages in ${paged.files.length} files`);
    // This round's dump is the base now: its files by their chained names, its pages' prints (the same seed).
    const next = prints ?? (await printPages(round, paged.sums, pre.prints!.hash, pre.prints!.seed));
    Object.assign(pre.sums!, paged.sums);
    Object.assign(pre.prints!.files, next.files);
    Object.assign(pre.prints!.blocks, next.blocks);
    return paged.sent;
  } catch (err) {
    receiver.child.stdin!.destroy();
    await cancelReceiver(receiver);
    throw err;
  } finally {
    rmSync(round, { recursive: true, force: true });
  }
}

/** Where sendChanges writes the delta of a pre-copy kept in `preDir`. */
export function deltaDirOf(preDir: string): string {
  return `${preDir}-delta`;
}

/**
 * Sends the checkpoint taken at the freeze as what differs from the
 * pre-copy: with `stream` (a destination that reads it, and sums taken on
 * both sides), the changed pages as they are found, then the rest as a tar
 * (pagestream.ts); else a delta folder beside the pre-copy's, removed once
 * sent. Returns the bytes sent and the size of the checkpoint they stand for.
 */
export async function sendChanges(host: CheckpointHost, peer: Peer, receiver: Receiver, pre: PreCopy, checkpointPath: string, id: string, progress: Progress, compress: boolean, unit: number, stream: boolean, followed: PageStreamStats | null = null): Promise<{ bytes: number; checkpointBytes: number }> {
  if (stream && pre.sums !== null) {
    // The changed pages go as they are found (or went while CRIU wrote them: `followed`), and are written there as they arrive; then the rest, as a tar without those files.
    const stdin = receiver.child.stdin!;
    let paged: PageStreamStats;
    if (followed !== null) paged = followed;
    else {
      try {
        paged = await sendPages(pre.dir, checkpointPath, pre.sums, pre.prints, stdin, (sent) => progress(`sending what changed: ${formatBytes(sent, { si: true })}`));
      } catch (err) {
        stdin.destroy();
        throw sendFailed(peer, 'what changed since the pre-copy', await receiver.done, err);
      }
      debugLog(`the changed pages of ${paged.files.length} files are in the pipe: ${paged.sent} bytes of ${paged.total}`);
    }
    const bytes = await sendFolder(peer, receiver, checkpointPath, 'what changed since the pre-copy', (sent) => progress(`sending: ${formatBytes(paged.sent + sent, { si: true })}`), [], paged.files, false);
    debugLog(`the rest of the checkpoint sent, and the destination has it`);
    return { bytes, checkpointBytes: paged.total };
  }
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

/** What dumpFollowed sent: the pages, and with a catch-up round's prints the new dump's. */
export type FollowedPages = PageStreamStats & { prints: Pick<PagePrints, 'files' | 'blocks'> | null };

/**
 * A dump (checkpointHeld with `opts`) whose page images are compared with the
 * pre-copy and their changed pages sent into the receiver as CRIU writes them
 * (follow.ts, to a destination with CheckReply.pageFollow). A failed dump
 * throws its own error, the follower stopped first. A send that failed once
 * the dump was complete is returned with the checkpoint (a dump at the freeze
 * leaves the container frozen: the caller's undo thaws it).
 */
export async function dumpFollowed(host: CheckpointHost, record: ContainerRecord, opts: CheckpointOptions, progress: Progress, pre: PreCopy, peer: Peer, receiver: Receiver, what: string, onBytes: (sent: number) => void, chain: boolean, served = false): Promise<{ cp: CheckpointResult; dumpedAt: number; paged: FollowedPages | null; error: StasisError | null }> {
  let dumpDone: (dir: string) => void = () => undefined;
  let dumpFailed: (err: unknown) => void = () => undefined;
  const done = new Promise<string>((resolve, reject) => {
    dumpDone = resolve;
    dumpFailed = reject;
  });
  done.catch(() => undefined);
  const stdin = receiver.child.stdin!;
  const follower = followPages(pre.dir, done, pre.sums!, pre.prints, stdin, onBytes, chain, served);
  follower.result.catch(() => undefined);
  // Served: CRIU sends the pages to stasis instead of writing them (pageserver.ts).
  const server = follower.sink === null ? null : await servePages(follower.imagesDir, follower.sink);
  /** Closes the page server, and says why it failed: null where it served (or was never used). */
  const serverFailure = async (): Promise<unknown> => {
    server?.close();
    return server === null ? null : await server.done.then(() => null, (e: unknown) => e);
  };
  /** The server's failure as the move reports it: the receiver there is no longer written to. */
  const sendError = async (failure: unknown): Promise<StasisError> => {
    stdin.destroy();
    return failure instanceof StasisError ? failure : sendFailed(peer, what, await receiver.done, failure);
  };
  let cp: CheckpointResult;
  try {
    cp = await checkpointHeld(host, record, { ...opts, onDumping: follower.onDumping, pageServerPort: server?.port }, progress);
  } catch (err) {
    const failure = await serverFailure();
    dumpFailed(err);
    // It writes nothing more once this returns.
    await follower.result.catch(() => undefined);
    // Where the page server gave up first (the receiver there gone, say), that is why CRIU failed; where CRIU cut it, CRIU's error says why.
    if (failure !== null && !(failure instanceof PageServerCut)) throw await sendError(failure);
    throw err;
  }
  const dumpedAt = Date.now();
  // CRIU had its close command answered, so the server is done: anything else leaves the container frozen for the caller's undo.
  const failure = await serverFailure();
  if (failure !== null) {
    dumpFailed(failure);
    await follower.result.catch(() => undefined);
    return { cp, dumpedAt, paged: null, error: await sendError(failure) };
  }
  dumpDone(cp.path);
  try {
    const paged = await follower.result;
    debugLog(`the changed pages of ${paged.files.length} files followed and sent: ${paged.sent} bytes of ${paged.total}, ${Date.now() - dumpedAt} ms after the dump`);
    return { cp, dumpedAt, paged, error: null };
  } catch (err) {
    stdin.destroy();
    return { cp, dumpedAt, paged: null, error: sendFailed(peer, what, await receiver.done, err) };
  }
}
