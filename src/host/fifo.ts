// Reading a FIFO that may have no writer yet. Opening it for reading blocks
// until a writer comes; done in-process, that open sits in a libuv worker
// thread, and Node then cannot exit even on SIGTERM (measured: it hangs in
// its exit until killed). `cat` opens it instead, in its own process group
// (a Ctrl-C on the terminal reaches stasis, which ends cat), and its output
// is the stream read.

import { constants } from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import { StasisError, signalExitCode } from '../errors.ts';
import { spawn } from './spawn.ts';

const STOPPING: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * The bytes of the FIFO at `path`, once a writer has come: resolves when the
 * first byte is there (or the writer closed without writing). Until then
 * `onWaiting` has been called, and SIGINT, SIGTERM or SIGHUP end the wait
 * with a StasisError whose exit code is the signal's (128+n), cat ended.
 */
export async function openFifo(path: string, onWaiting: () => void): Promise<Readable> {
  // The handlers come first: a signal sent once cat runs must find them.
  let stopped: NodeJS.Signals | null = null;
  let stop: (signal: NodeJS.Signals) => void = (signal) => (stopped ??= signal);
  const onSignal = (signal: NodeJS.Signals) => stop(signal);
  for (const signal of STOPPING) process.on(signal, onSignal);
  try {
    const child = spawn('cat', ['--', path], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    // Through a stream of our own: once cat exits, Node resumes (and so drops) a child's
    // stdout that nothing reads yet, and the archive is read only later.
    const stream = child.stdout!.pipe(new PassThrough({ highWaterMark: 1024 * 1024 }));
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      if (code !== 0 && code !== null) stream.destroy(new Error(`cannot read ${path}: ${stderr.trim() || `cat exited ${code}`}`));
    });
    await new Promise<void>((resolve, reject) => {
      stream.once('readable', () => resolve());
      child.once('error', reject);
      stop = (signal) => {
        child.kill('SIGKILL');
        stream.destroy();
        reject(new StasisError(`stopped waiting for a writer on the FIFO ${path} (${signal})`, { exitCode: signalExitCode(constants.signals[signal]) }));
      };
      if (stopped !== null) stop(stopped);
      else onWaiting();
    });
    return stream;
  } finally {
    for (const signal of STOPPING) process.off(signal, onSignal);
  }
}
