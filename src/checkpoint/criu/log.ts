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
  // runc's "criu failed: type NOTIFY errno 0" says nothing: CRIU's own first error line says why.
  const headline = lines.length > 0 ? base.replace(/criu failed: type \S+ errno -?\d+/, `CRIU: ${errorText(lines[0])}`) : base;
  const rlimit = lines.find((line) => RLIMIT_DENIED.test(line));
  if (rlimit !== undefined) {
    return new StasisError(
      `${what} ${id} failed: CRIU cannot read the resource limits of a process of another user: ${errorText(rlimit)} ` +
        '(stasis runs without CAP_SYS_RESOURCE, which CRIU needs for that outside a user namespace)' +
        `\nCRIU log: ${logPath}${quoted}`,
      { ...kept, hint: 'create the container with --userns auto: in a user namespace that maps its users, CRIU can read them (`stasis doctor` says whether this host needs it)', cause: err, code: 'criu-rlimit-denied' },
    );
  }
  return new StasisError(`${what} ${id} failed: ${headline}\nCRIU log: ${logPath}${quoted}`, { ...kept, cause: err });
}

/** CRIU's line as it says it: "Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted" without the timestamp. */
function errorText(line: string): string {
  return line.replace(/^\(\s*[\d.]+\)\s*/, '');
}

/** CRIU could not read another user's rlimits (prlimit without CAP_SYS_RESOURCE). */
const RLIMIT_DENIED = /Can't get rlimit \d+: Operation not permitted/;
