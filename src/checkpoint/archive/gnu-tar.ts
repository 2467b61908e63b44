// Every GNU tar command line stasis runs. GNU tar extracts and creates the
// archives because it keeps what a container's layer holds (owners, xattrs
// such as overlayfs's trusted.overlay.opaque and security.capability, FIFOs,
// device nodes), and because it keeps an extraction inside its folder: it
// refuses member names with "..", strips a leading "/", and makes a symlink
// whose target is absolute or has ".." only at the very end (a placeholder
// file stands in until then), so nothing is written through one. The only
// symlinks it follows meanwhile are relative ones without "..", which cannot
// lead out of the folder they are in.

import { once } from 'node:events';
import { Readable, type Writable } from 'node:stream';
import { run, showCommand, spawn, type RunResult } from '../../host/spawn.ts';
import { debugLog } from '../../log.ts';
import type { Compression } from './format.ts';

const OWNERS_AND_XATTRS = ['--numeric-owner', '--xattrs', '--xattrs-include=*'];

const COMPRESSION_FLAGS: Record<Compression, string[]> = {
  none: [],
  gzip: ['-z'],
  zstd: ['--zstd'],
};

// The messages parsed below are translated; read them in English.
const TAR_ENV = { ...process.env, LC_ALL: 'C' };

// Read from the pipe in 1 MiB records, the size of the chunks Node writes:
// with tar's default of 10 KiB, feeding tar from Node took nearly twice as
// long as tar reading the file itself; with this, a fraction longer (bench/README.md).
const READ_BLOCKING_FACTOR = '2048';

/**
 * Extracts the plain tar on `input` into destDir, which must be a fresh
 * folder (tar follows symlinks that already exist there). Resolves, once tar
 * has exited, with what went wrong, or null.
 */
export async function extractFromStream(destDir: string, input: Readable): Promise<string | null> {
  const args = [
    '-x', '-f', '-', '-b', READ_BLOCKING_FACTOR, '-C', destDir,
    ...OWNERS_AND_XATTRS, '--same-permissions', '--no-overwrite-dir',
    // Prints "** Block of NULs **" when it reaches the end-of-archive marker (see below).
    '--block-number',
  ];
  return readProblem(await run('tar', args, { input, env: TAR_ENV }));
}

function readProblem(result: RunResult): string | null {
  const errors = tarErrors(result.stderr);
  if (errors.some((line) => line.endsWith('Unexpected EOF in archive'))) return 'the archive is truncated (tar: Unexpected EOF in archive)';
  if (result.exitCode !== 0) {
    // The refusals that keep writes inside the folder, in the words the checks on disk use.
    for (const line of errors) {
      const dotDot = /^tar: (.*): Member name contains '\.\.'$/.exec(line);
      if (dotDot) return `unsafe archive entry "${dotDot[1]}": path contains ".."`;
      const through = /^tar: (.*): (Cannot .*: Not a directory)$/.exec(line);
      if (through) return `unsafe archive entry "${through[1]}": its path goes through a symlink or a file (tar: ${through[2]})`;
    }
    return `tar failed: ${errors.join('; ') || `exit ${result.exitCode}`}`;
  }
  // GNU tar takes an archive that stops between two members for a whole one,
  // so a copy cut at a record boundary would lose files without a word.
  if (!/\*\* Block of NULs \*\*/.test(result.stdout)) return 'the archive is truncated (it ends before the end-of-archive marker)';
  return null;
}

/** tar's messages, without the closing summary and the notes on names it made relative. */
function tarErrors(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !/^tar: (Exiting with failure status|Error is not recoverable|Removing leading)/.test(line));
}

/**
 * GNU tar's verbose listing of an archive file (compression told by tar),
 * one line per entry, names in C quoting (so a newline in a name is "\\n").
 */
export async function listArchive(file: string): Promise<{ lines: string[]; problem: string | null }> {
  const args = ['-t', '-v', '-f', file, '--force-local', '--numeric-owner', '--quoting-style=c', '--block-number'];
  const result = await run('tar', args, { env: TAR_ENV });
  const lines = result.stdout
    .split('\n')
    .map((line) => line.replace(/^block \d+: /, ''))
    .filter((line) => line !== '' && !line.startsWith('** '));
  return { lines, problem: readProblem(result) };
}

function createArgs(srcDir: string, file: string, compression: Compression): string[] {
  // --force-local: a colon in the name (a timestamp) does not make it a remote host's file.
  return ['-c', '-f', file, ...(file === '-' ? [] : ['--force-local']), '-C', srcDir, ...OWNERS_AND_XATTRS, ...COMPRESSION_FLAGS[compression]];
}

/** "--" so a name like an option stays a name; tar refuses an empty list. */
function nameArgs(names: readonly string[]): string[] {
  return names.length > 0 ? ['--', ...names] : ['-T', '/dev/null'];
}

function createProblem(result: RunResult): string | null {
  if (result.exitCode === 0) return null;
  const errors = tarErrors(result.stderr);
  // A write cut short by a full filesystem: tar says "Wrote only 2048 of 10240 bytes" (or ENOSPC's own words).
  const full = errors.find((line) => /Wrote only \d+ of \d+ bytes|No space left on device/.test(line));
  if (full) return `the disk is full (no space left on device; ${full})`;
  return `tar failed: ${errors.join('; ') || `exit ${result.exitCode}`}`;
}

/** Archives the named entries of srcDir (and what is below them) into file, sorted by name. */
export async function createToFile(srcDir: string, names: readonly string[], file: string, compression: Compression): Promise<string | null> {
  const args = [...createArgs(srcDir, file, compression), '--sort=name', ...nameArgs(names)];
  return createProblem(await run('tar', args, { env: TAR_ENV }));
}

/**
 * Archives exactly the listed entries of srcDir (no recursion: the list names
 * everything) into file, uncompressed. The list goes in on stdin, NUL-separated, so
 * any file name survives.
 */
export async function createListedToFile(srcDir: string, entries: readonly string[], file: string): Promise<string | null> {
  const list = Readable.from([Buffer.from(entries.map((entry) => `${entry}\0`).join(''))]);
  const args = [...createArgs(srcDir, file, 'none'), '--no-recursion', '--null', '--verbatim-files-from', '-T', '-'];
  return createProblem(await run('tar', args, { input: list, env: TAR_ENV }));
}

/**
 * Archives the named entries of srcDir onto `out`, which is left open. What
 * tar wrote before a failure has reached `out` already.
 */
export async function createToStream(srcDir: string, names: readonly string[], out: Writable, compression: Compression): Promise<string | null> {
  const args = [...createArgs(srcDir, '-', compression), '--sort=name', ...nameArgs(names)];
  debugLog(showCommand('tar', args));
  const child = spawn('tar', args, { stdio: ['ignore', 'pipe', 'pipe'], env: TAR_ENV });
  const stderr: Buffer[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  exited.catch(() => undefined); // awaited below; a failed spawn must not count as unhandled meanwhile
  // A reader that goes away (a closed pipe) fails the write and stops tar.
  let failure: Error | null = null;
  const onError = (err: Error) => (failure ??= err);
  out.on('error', onError);
  try {
    let flushed = Promise.resolve();
    for await (const chunk of child.stdout! as AsyncIterable<Buffer>) {
      if (failure) break;
      // Write callbacks fire in order, each once its chunk is flushed: the last one covers all.
      flushed = new Promise((resolve) => out.write(chunk, (err) => resolve(void (err && (failure ??= err)))));
      if (out.writableNeedDrain) await Promise.race([once(out, 'drain').catch(() => undefined), flushed]);
    }
    await flushed;
  } finally {
    out.off('error', onError);
  }
  if (failure) {
    child.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw failure;
  }
  const exitCode = await exited;
  return createProblem({ exitCode, stdout: '', stderr: Buffer.concat(stderr).toString('utf8'), signal: undefined });
}

/**
 * Archives the named entries of srcDir, uncompressed, straight into `out`
 * (a pipe with a descriptor, such as a child's stdin): no copy through this
 * process. `pid` lets the caller read tar's progress (/proc/PID/io); `done`
 * settles with what went wrong, or null, once tar has exited.
 */
export function createIntoPipe(srcDir: string, names: readonly string[], out: Writable, leaveOut: readonly string[] = [], fast?: 'zstd'): { pid: number | undefined; done: Promise<string | null> } {
  // Each path left out is matched whole, from the start of the member's name, as written.
  const leave = leaveOut.length > 0 ? ['--anchored', '--no-wildcards', ...leaveOut.map((path) => `--exclude=${path}`)] : [];
  const args = [...createArgs(srcDir, '-', fast ?? 'none'), '--sort=name', ...leave, ...nameArgs(names)];
  debugLog(showCommand('tar', args));
  // A stream compressed on the way (migrate --compress): zstd's fastest level, on every core.
  const env = fast === 'zstd' ? { ...TAR_ENV, ZSTD_CLEVEL: '1', ZSTD_NBTHREADS: '0' } : TAR_ENV;
  const child = spawn('tar', args, { stdio: ['ignore', out as never, 'pipe'], env });
  const stderr: Buffer[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
  const done = new Promise<string | null>((resolve) => {
    child.on('error', (err) => resolve(`tar failed: ${err.message}`));
    child.on('close', (code, signal) => resolve(createProblem({ exitCode: code ?? (signal ? 128 : 1), stdout: '', stderr: Buffer.concat(stderr).toString('utf8'), signal: signal ?? undefined })));
  });
  return { pid: child.pid, done };
}
