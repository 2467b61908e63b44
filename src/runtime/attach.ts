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
// it. When stasis's stdin ends, socat leaves, conmon closes the pipe, and
// the container reads EOF.

/** Whether the container's stdin can be fed this way here. */
export function canAttachStdin(): boolean {
  return which('socat') !== null;
}

/** Starts copying stasis's stdin into the container's; the caller stops it when the container is gone. */
export function feedStdin(store: StateStore, id: string): ChildProcess | null {
  const socat = which('socat');
  if (socat === null) return null;
  const args = ['-u', 'STDIN', `UNIX-CONNECT:${join(store.containerDir(id), 'attach')},type=5`];
  debugLog(showCommand(socat, args));
  const child = spawn(socat, args, { stdio: ['inherit', 'ignore', 'ignore'] });
  child.on('error', () => undefined);
  return child;
}
