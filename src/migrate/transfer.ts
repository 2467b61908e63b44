import type { ChildProcess } from 'node:child_process';
import { StasisError, errorMessage } from '../errors.ts';
import { pipeTar } from '../checkpoint/archive/tar.ts';
import { finished, type Peer } from './peer.ts';

// What a move sends besides its control channel: a folder (the checkpoint,
// or a base rootfs) as a plain tar, into `stasis __migrate receive|rootfs` there.

/** `stasis ARGS` there, waiting for a tar on its stdin: started early, so that its start-up overlaps the dump. */
export interface Receiver {
  child: ChildProcess;
  done: Promise<{ code: number; stderr: string; stdout: string }>;
  /**
   * Settles once the receiver says it is up (started with --ready: its first
   * line), has ended, or has said nothing for READY_WAIT_MS; at once for one
   * started without it.
   */
  ready: Promise<void>;
}

/** The longest a move waits for a receiver to say it is up before it goes on regardless. */
const READY_WAIT_MS = 10_000;

/** `ready`: pass --ready (a destination whose check says CheckReply.receiverReady) so that `ready` waits for its word. */
export function startReceiver(peer: Peer, args: string[], ready = false): Receiver {
  const child = peer.stasis(ready ? [...args, '--ready'] : args);
  child.stdin!.on('error', () => undefined);
  const done = finished(child);
  const up = !ready
    ? Promise.resolve()
    : new Promise<void>((resolve) => {
        let seen = '';
        const listen = (chunk: Buffer) => {
          seen += chunk.toString();
          if (seen.includes('\n')) {
            child.stdout!.off('data', listen);
            resolve();
          }
        };
        child.stdout!.on('data', listen);
        done.then(() => resolve(), () => resolve());
        // Only a speed-up: one that stays silent (a wrapper there that reads first) is waited for no longer than this.
        setTimeout(resolve, READY_WAIT_MS).unref();
      });
  return { child, done, ready: up };
}

/** Ends a receiver that will get nothing (an empty input makes it fail and keep nothing). */
export async function cancelReceiver(receiver: Receiver): Promise<void> {
  receiver.child.stdin!.end();
  await Promise.race([receiver.done, new Promise((r) => setTimeout(r, 10_000).unref())]);
}

/** Streams a folder as a plain tar to a receiver, tar writing into its pipe directly; the bytes sent. */
export async function sendFolder(peer: Peer, receiver: Receiver, dir: string, what: string, onBytes: (sent: number) => void, exclude: readonly string[] = [], leaveOut: readonly string[] = [], compress = false): Promise<number> {
  const stdin = receiver.child.stdin!;
  let sent = 0;
  let sendError: unknown = null;
  try {
    sent = await pipeTar(dir, stdin, onBytes, exclude, leaveOut, compress ? 'zstd' : undefined);
  } catch (err) {
    sendError = err;
  }
  // tar has its own copy of the pipe; ours goes, so the receiver sees the end.
  stdin.destroy();
  const result = await receiver.done;
  if (result.code !== 0 || sendError !== null) throw sendFailed(peer, what, result, sendError);
  // The other side counts what it read: tar's own count is sampled, and a small folder is sent between samples.
  const received = /"bytes":(\d+)/.exec(result.stdout);
  return received ? Number(received[1]) : sent;
}

/** A send that failed, in the receiver's words where it said any. */
export function sendFailed(peer: Peer, what: string, result: { code: number; stderr: string }, sendError: unknown): StasisError {
  const said = result.stderr.trim().split('\n').map((l) => l.replace(/^stasis: /, '')).filter(Boolean).join('; ');
  return new StasisError(`sending ${what} to ${peer.destination.shown} failed: ${said || (sendError ? errorMessage(sendError) : `exit ${result.code}`)}`, { code: 'send-failed' });
}
