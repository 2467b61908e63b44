import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { showCommand, spawn } from '../host/spawn.ts';
import { which } from '../host/which.ts';
import { debugLog } from '../log.ts';
import type { StateStore } from '../state/store.ts';

// An attached `run` passes its stdin to the container without giving the
// container stasis's own descriptor (which CRIU could not carry): conmon
// holds the container's stdin as a pipe and takes data from clients of its
// attach socket, a SOCK_SEQPACKET socket in the container's folder. Node
// cannot open that kind of socket; socat can, and copies stasis's stdin into
// it. When stasis's stdin ends, socat shuts its side for writing, conmon
// closes the pipe, and the container reads EOF.
//
// socat must not leave at that EOF (as `socat -u` does): conmon also copies
// the container's output to each attach client, and a copy that fails
// (EPIPE, the client gone) makes conmon 2.1 drop the client so that its
// following EOF no longer closes the container's stdin: the container then
// waits for ever (seen with `echo hi | stasis run r1 -- cat`, about one run
// in ten). So socat stays, reading that copy into /dev/null, until conmon
// closes the socket or we end it when the container is gone.

/** Whether the container's stdin can be fed this way here. */
export function canAttachStdin(): boolean {
  return which('socat') !== null;
}

/** Starts copying stasis's stdin into the container's; the caller stops it when the container is gone. */
export function feedStdin(store: StateStore, id: string): ChildProcess | null {
  const socat = which('socat');
  if (socat === null) return null;
  // -t: how long socat waits for the other direction after our EOF (it is ended before that).
  const args = ['-t', '1000000', 'STDIO', `UNIX-CONNECT:${join(store.containerDir(id), 'attach')},type=5`];
  debugLog(showCommand(socat, args));
  const child = spawn(socat, args, { stdio: ['inherit', 'ignore', 'ignore'] });
  child.on('error', () => undefined);
  return child;
}
