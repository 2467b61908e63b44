// Stands in for node:assert inside the bundle (scripts/build.mjs maps yargs'
// `import { notStrictEqual, strictEqual } from 'assert'` here). Loading the
// real module costs ~5 ms of start-up for two argument checks; yargs only uses
// them to catch its own programming errors.

export function strictEqual(actual: unknown, expected: unknown, message?: string): void {
  if (!Object.is(actual, expected)) throw new Error(message ?? `expected ${String(expected)}, got ${String(actual)}`);
}

export function notStrictEqual(actual: unknown, expected: unknown, message?: string): void {
  if (Object.is(actual, expected)) throw new Error(message ?? `expected a value other than ${String(expected)}`);
}
