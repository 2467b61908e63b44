import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { StasisError, errorMessage } from '../../errors.ts';
import { timestampName } from '../../host/clock.ts';

// CRIU's log of a failed dump or restore is the only place that says why:
// it is kept, named in the error, and its error lines are quoted.


/** Keeps CRIU's log of a failed operation in `logsDir`; returns the copy, or null when there was no log. */
export function keepLog(logsDir: string, id: string, logPath: string): string | null {
  if (!existsSync(logPath)) return null;
  const kept = join(logsDir, `${id}-${basename(logPath, '.log')}-${timestampName(new Date())}.log`);
  try {
    mkdirSync(logsDir, { recursive: true, mode: 0o700 });
    copyFileSync(logPath, kept);
    return kept;
  } catch {
    return null;
  }
}

/** The last lines of a CRIU log that report an error, for the message. */
export function criuErrors(logPath: string, max = 5): string[] {
  let text: string;
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return [];
  }
  // CRIU always logs that it cannot raise its own RLIMIT_NOFILE; that is not why anything failed.
  const lines = text.split('\n').filter((line) => /Error|error \(|err:|fail/i.test(line) && !/RLIMIT_NOFILE/.test(line));
  return [...new Set(lines.map((line) => line.trim()))].slice(-max);
}

/** Adds the CRIU log's name and its last error lines to a failure. */
export function withCriuLog(err: unknown, logPath: string | null, what: string, id: string): StasisError {
  // runc names CRIU's log where it was written (a folder now removed): we name the kept copy.
  const base = errorMessage(err).replace(/\s*log file: \S+/g, '');
  const kept = err instanceof StasisError ? { hint: err.hint, exitCode: err.exitCode, code: err.code } : {};
  if (logPath === null) return new StasisError(`${what} ${id} failed: ${base}`, { ...kept, cause: err });
  const lines = criuErrors(logPath);
  const quoted = lines.length > 0 ? `\n${lines.map((l) => `  ${l}`).join('\n')}` : '';
  return new StasisError(`${what} ${id} failed: ${base}\nCRIU log: ${logPath}${quoted}`, { ...kept, cause: err });
}
