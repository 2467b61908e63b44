import { debugLog } from '../log.ts';
import { isTerminal } from '../host/stdio.ts';

// Colour and spinners are decided once, per stream, from NO_COLOR /
// FORCE_COLOR / --no-color, whether the stream is a TTY, CI and TERM=dumb.

export interface OutputMode {
  json: boolean;
  quiet: boolean;
  colorFlag: boolean | undefined;
}

let mode: OutputMode = { json: false, quiet: false, colorFlag: undefined };

export function setOutputMode(next: OutputMode): void {
  mode = next;
}

export function outputMode(): OutputMode {
  return mode;
}

/** Whether stasis's stdout (1) or stderr (2) takes colour. */
export function colorEnabled(fd: 1 | 2): boolean {
  if (mode.colorFlag === false) return false;
  if ('NO_COLOR' in process.env && process.env.NO_COLOR !== '') return false;
  const force = process.env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force !== 'false';
  if (mode.colorFlag === true) return true;
  return process.env.TERM !== 'dumb' && isTerminal(fd);
}

export function spinnerAllowed(): boolean {
  return (
    isTerminal(2) &&
    // ora redraws forever on a terminal that reports no width (script(1), some CI shells).
    (process.stderr.columns ?? 0) > 0 &&
    !process.env.CI &&
    process.env.TERM !== 'dumb' &&
    !mode.json &&
    !mode.quiet
  );
}

export interface Spinner {
  step(text: string): void;
  stop(): void;
}

/**
 * An ora spinner on a TTY; elsewhere nothing at all. ora is loaded only when
 * shown. Each step also goes to --debug's log, with its time.
 */
export async function spinner(text: string): Promise<Spinner> {
  if (!spinnerAllowed()) return { step: (next) => debugLog(`step: ${next}`), stop() {} };
  const { default: ora } = await import('ora');
  const instance = ora({ text, stream: process.stderr, color: colorEnabled(2) ? 'cyan' : false as never }).start();
  return {
    step(next) {
      debugLog(`step: ${next}`);
      instance.text = next;
    },
    stop() { instance.stop(); },
  };
}
