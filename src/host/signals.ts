import { constants } from 'node:os';
import { usageError } from '../errors.ts';

/** Accepts TERM, SIGTERM, sigterm or 15; returns the canonical name runc takes. */
export function parseSignal(value: string): { name: string; number: number } {
  const table = constants.signals as Record<string, number>;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) {
    const number = Number(trimmed);
    const name = Object.keys(table).find((key) => table[key] === number);
    if (name) return { name, number };
    if (number >= 34 && number <= 64) return { name: String(number), number };
  } else {
    const upper = trimmed.toUpperCase();
    const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
    if (name in table) return { name, number: table[name] };
  }
  throw usageError(`unknown signal ${JSON.stringify(value)}`, 'use a name like TERM, KILL, HUP or a number like 9');
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * While a foreground child runs (an attached container, an exec'd process),
 * the signals a user sends stasis are passed to it instead of ending stasis.
 * Returns the function that stops forwarding.
 */
export function forwardSignals(forward: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of FORWARDED) process.on(signal, forward);
  return () => {
    for (const signal of FORWARDED) process.off(signal, forward);
  };
}
