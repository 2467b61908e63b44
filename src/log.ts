// The --debug switch: set once by the command layer, read by every layer that
// runs something worth showing (runc, criu, conmon, tar, mount command lines).
import { writeErr } from './host/stdio.ts';

let debugEnabled = false;

export function setDebug(enabled: boolean): void {
  debugEnabled = enabled;
}

export function isDebug(): boolean {
  return debugEnabled;
}

/**
 * Waits for work whose failure must not hide the outcome at hand (cleanup after
 * an error, an undo, a courtesy), and leaves a trace of that failure under
 * --debug instead of dropping it silently. Resolves to undefined on failure.
 */
export async function bestEffort<T>(what: string, work: Promise<T> | (() => Promise<T>)): Promise<T | undefined> {
  try {
    return await (typeof work === 'function' ? work() : work);
  } catch (err) {
    debugLog(`${what} failed (ignored): ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}

/** With --debug: the message and the milliseconds since the process started. */
export function debugLog(message: string): void {
  if (debugEnabled) writeErr(`stasis: debug: +${Math.round(performance.now())}ms ${message}\n`);
}
