import { closeSync, existsSync, fstatSync, openSync, readSync, watch } from 'node:fs';
import { dirname } from 'node:path';

/** The size of a file, 0 when it does not exist (yet). */
export function fileSize(path: string): number {
  try {
    const fd = openSync(path, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0;
  }
}

/**
 * Yields the complete lines appended to a file after byte `fromOffset`, as
 * they arrive (fs.watch wakes us; a timer covers a file created later), until
 * `done()` is true — checked *before* each read, so the last read still sees
 * whatever was written before `done()` became true. With `watchDir`, the
 * file's folder is watched instead, so that a file appearing beside it (a
 * container's exit file) wakes us as soon as a write to the file does.
 */
export async function* followLines(
  path: string,
  opts: { fromOffset: number; done: () => boolean; pollMs: number; signal?: AbortSignal; watchDir?: boolean },
): AsyncGenerator<string> {
  let offset = opts.fromOffset;
  let pending = '';
  let wake: (() => void) | null = null;
  let watcher: ReturnType<typeof watch> | null = null;
  const poke = () => wake?.();
  opts.signal?.addEventListener('abort', poke);
  try {
    for (;;) {
      const finished = opts.done() || opts.signal?.aborted === true;
      const watched = opts.watchDir ? dirname(path) : path;
      if (watcher === null && existsSync(watched)) watcher = watch(watched, poke);
      if (existsSync(path)) {
        const fd = openSync(path, 'r');
        try {
          const size = fstatSync(fd).size;
          if (size > offset) {
            const buffer = Buffer.alloc(size - offset);
            const read = readSync(fd, buffer, 0, buffer.length, offset);
            offset += read;
            const lines = (pending + buffer.subarray(0, read).toString('utf8')).split('\n');
            pending = lines.pop() ?? '';
            yield* lines;
          }
        } finally {
          closeSync(fd);
        }
      }
      if (finished) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, opts.pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    watcher?.close();
    opts.signal?.removeEventListener('abort', poke);
  }
}
