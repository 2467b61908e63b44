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

/** What a CRIU log says that a CRIU option would have allowed: the option, and what the log shows. */
const OPTION_SIGNS: { pattern: RegExp; flag: string; shows: string }[] = [
  { pattern: /--tcp-established|Connected TCP socket|TCP connection.*established/i, flag: '--tcp-established', shows: 'an established TCP connection' },
  { pattern: /--ext-unix-sk|External socket|unix.*external|Can't dump half of stream unix connection/i, flag: '--ext-unix-sk', shows: 'a unix socket connected outside the container' },
  { pattern: /--file-locks|file locks? .*(held|hold)|Some file locks/i, flag: '--file-locks', shows: 'a file lock' },
  { pattern: /--shell-job|shell.job|session leader .*outside|Found (dangling|external) tty/i, flag: '--shell-job', shows: 'a process of a shell job (its session or terminal is outside the container)' },
];

/** The CRIU option whose absence a log's errors point at, or null. */
export function criuOptionHint(logPath: string): { flag: string; shows: string } | null {
  let text: string;
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return null;
  }
  const errors = text.split('\n').filter((line) => /Error|consider|warn/i.test(line));
  for (const sign of OPTION_SIGNS) {
    if (errors.some((line) => sign.pattern.test(line))) return { flag: sign.flag, shows: sign.shows };
  }
  return null;
}

/** A CRIU log line without its time stamp and source position: "Connected TCP socket, ...". */
function bare(line: string): string {
  return line.replace(/^\(\s*[\d.]+\)\s*(\d+:\s*)?/, '').replace(/^Error \([^)]*\):\s*/, '').trim();
}

/**
 * Adds the CRIU log's name and its last error lines to a failure. runc's
 * "criu failed: type NOTIFY errno 0" says nothing: CRIU's own first error
 * line takes its place, and when the log shows what a CRIU option allows
 * (an established TCP connection...), the hint names the option.
 */
export function withCriuLog(err: unknown, logPath: string | null, what: string, id: string): StasisError {
  // runc names CRIU's log where it was written (a folder now removed): we name the kept copy.
  let base = errorMessage(err).replace(/\s*log file: \S+/g, '');
  const kept = err instanceof StasisError ? { hint: err.hint, exitCode: err.exitCode, code: err.code } : {};
  if (logPath === null) return new StasisError(`${what} ${id} failed: ${base}`, { ...kept, cause: err });
  const lines = criuErrors(logPath);
  // CRIU's own error lines first ("Error (file.c:N): ..."), the one that says why before "Dumping FAILED".
  const ranked = [...lines.filter((line) => /\bError \(/.test(line)), ...lines.filter((line) => !/\bError \(/.test(line))];
  const telling = ranked.map(bare).filter((line) => line !== '' && !/(Dumping|Restoring) FAILED|cgroupd|failed with -1/i.test(line));
  if (telling.length > 0 && /criu failed: type \S+ errno -?\d+/.test(base)) {
    base = base.replace(/(runc (checkpoint|restore) failed: .*?)?criu failed: type \S+ errno -?\d+.*$/s, `CRIU: ${telling[0]}`);
  }
  const option = criuOptionHint(logPath);
  const hint = kept.hint ?? (option ? `CRIU's log shows ${option.shows}: add ${option.flag}` : undefined);
  const quoted = lines.length > 0 ? `\n${lines.map((l) => `  ${l}`).join('\n')}` : '';
  const rlimit = lines.find((line) => RLIMIT_DENIED.test(line));
  if (rlimit !== undefined) {
    return new StasisError(
      `${what} ${id} failed: CRIU cannot read the resource limits of a process of another user: ${errorText(rlimit)} ` +
        '(stasis runs without CAP_SYS_RESOURCE, which CRIU needs for that outside a user namespace)' +
        `\nCRIU log: ${logPath}${quoted}`,
      { ...kept, hint: 'create the container with --userns auto: in a user namespace that maps its users, CRIU can read them (`stasis doctor` says whether this host needs it)', cause: err, code: 'criu-rlimit-denied' },
    );
  }
  return new StasisError(`${what} ${id} failed: ${base}\nCRIU log: ${logPath}${quoted}`, { ...kept, hint, cause: err });
}

/** CRIU's line as it says it: "Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted" without the timestamp. */
function errorText(line: string): string {
  return line.replace(/^\(\s*[\d.]+\)\s*/, '');
}

/** CRIU could not read another user's rlimits (prlimit without CAP_SYS_RESOURCE). */
const RLIMIT_DENIED = /Can't get rlimit \d+: Operation not permitted/;
