import { setTimeout as sleep } from 'node:timers/promises';
import { StasisError } from '../errors.ts';
import { fnv1a } from './hash.ts';

// A lock is a listening socket in Linux's abstract namespace. Only one process
// can bind a name, and the kernel frees it the moment the holder dies, so a
// stasis killed with -9 never leaves a stale lock behind (no pid files to
// second-guess). The name is derived from the state directory's real path.

export interface Lock {
  release(): Promise<void>;
}

/** Linux's limit on a socket name (sun_path), the leading NUL of an abstract name included. */
const MAX_SOCKET_NAME = 107;

function lockName(stateDirRealPath: string, key: string): string {
  const prefix = `\0stasis/${fnv1a(stateDirRealPath)}${fnv1a(`${stateDirRealPath}\0salt`)}/`;
  // IDs may be 128 characters, more than a socket name holds: long keys are
  // hashed (64 bits; a collision would only make two containers share a lock).
  if (Buffer.byteLength(prefix + key) <= MAX_SOCKET_NAME) return prefix + key;
  return `${prefix}h/${fnv1a(key)}${fnv1a(`${key}\0salt`)}`;
}

/** A bound name: closing it frees the lock. */
interface Bound {
  close(): Promise<void>;
}

interface BunListen {
  listen(options: { unix: string; socket: { data(): void } }): { stop(closeActive?: boolean): void; unref(): void };
}

/**
 * Binds the name, or null when another process holds it. Under Bun its own
 * Bun.listen does it: node:net there costs about 20 ms of start-up (its
 * streams), and every command that changes a container takes a lock. Both
 * bind the same kernel name, so Node and compiled stasis share the locks.
 */
async function tryBind(name: string): Promise<Bound | null> {
  const bun = (globalThis as { Bun?: BunListen }).Bun;
  if (bun !== undefined) {
    try {
      const listener = bun.listen({ unix: name, socket: { data: () => undefined } });
      listener.unref();
      return { close: async () => listener.stop(true) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') return null;
      throw err;
    }
  }
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(null);
      else reject(err);
    });
    server.listen({ path: name, exclusive: true }, () => {
      server.unref();
      resolve({ close: () => new Promise<void>((done) => server.close(() => done())) });
    });
  });
}

/** True when some live process holds the lock right now. */
export async function isLocked(stateDirRealPath: string, key: string): Promise<boolean> {
  const bound = await tryBind(lockName(stateDirRealPath, key));
  if (bound === null) return true;
  await bound.close();
  return false;
}

export async function acquireLock(
  stateDirRealPath: string,
  key: string,
  opts: { timeoutMs?: number; what?: string } = {},
): Promise<Lock> {
  const name = lockName(stateDirRealPath, key);
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  let delayMs = 2;
  for (;;) {
    const bound = await tryBind(name);
    if (bound !== null) return { release: () => bound.close() };
    if (Date.now() >= deadline) {
      throw new StasisError(`${opts.what ?? key} is busy: another stasis command is working on it`, {
        hint: 'try again when that command has finished',
      });
    }
    await sleep(delayMs);
    delayMs = Math.min(delayMs * 2, 50);
  }
}
