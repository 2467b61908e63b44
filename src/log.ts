// The --debug switch: set once by the command layer, read by every layer that
// runs something worth showing (runc, criu, conmon, tar, mount command lines).
import { writeErr } from './output/stdio.ts';

let debugEnabled = false;

export function setDebug(enabled: boolean): void {
  debugEnabled = enabled;
}

export function isDebug(): boolean {
  return debugEnabled;
}

/** With --debug: the message and the milliseconds since the process started. */
export function debugLog(message: string): void {
  if (debugEnabled) writeErr(`stasis: debug: +${Math.round(performance.now())}ms ${message}\n`);
}
