import type { Options } from 'execa';

// Every external command stasis runs goes through here, so --debug can show
// each runc / criu / conmon command line on stderr.

let debugEnabled = false;

export function setDebug(enabled: boolean): void {
  debugEnabled = enabled;
}

export function debugLog(message: string): void {
  if (debugEnabled) process.stderr.write(`stasis: debug: ${message}\n`);
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

export function showCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map(quote).join(' ');
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  signal: string | undefined;
}

/** Runs a command to completion and captures its output; never throws for a non-zero exit. */
export async function run(file: string, args: readonly string[], opts: Options = {}): Promise<RunResult> {
  debugLog(showCommand(file, args));
  // Loaded on first use: commands that never run a program (ps, logs) skip its start-up cost.
  const { execa } = await import('execa');
  const result = await execa(file, args, { reject: false, stdin: 'ignore', ...opts, encoding: 'utf8' } as Options);
  if (result.failed && result.exitCode === undefined && result.signal === undefined) {
    // Could not be started at all (ENOENT, EACCES).
    throw Object.assign(new Error(result.message), { code: (result as { code?: string }).code });
  }
  return {
    exitCode: result.exitCode ?? (result.signal ? 128 : 1),
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    signal: result.signal,
  };
}
