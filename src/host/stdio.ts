import { fstatSync, writeSync } from 'node:fs';
import { libc } from './libc.ts';

// stasis's own output. Under Node it goes through process.stdout and
// process.stderr, as before. Under Bun those two are node:stream objects that
// cost about 15 ms of start-up to make (a compiled `stasis ps` takes about
// 25 ms in all): there each line is written straight to the descriptor, and a
// closed pipe (`stasis ps | head -1`) ends the process quietly, as main()'s
// stream handlers do under Node. Commands that stream through the process
// streams themselves (logs, attached run, exec) call guardStreams() first.

const direct = process.versions.bun !== undefined;

/**
 * Set by a process whose work must outlive its reader (a move's destination
 * side, which undoes what it restored when its source dies): a closed pipe
 * then silences its output instead of ending it.
 */
let outliveReader = false;
let outputGone = false;

/** From now on a closed stdout or stderr drops what is written to it; the process goes on. */
export function outliveClosedOutput(): void {
  outliveReader = true;
}

function closedPipe(): void {
  if (outliveReader) {
    outputGone = true;
    return;
  }
  process.exit(process.exitCode ?? 0);
}

function writeFd(fd: 1 | 2, text: string): void {
  if (outputGone) return;
  const bytes = Buffer.from(text);
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') continue; // a non-blocking pipe that is full: try again
      if (code === 'EPIPE') return closedPipe();
      if (fd === 2) process.exit(1);
      writeFd(2, `stasis: cannot write the output: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
}

export function writeOut(text: string): void {
  if (direct) writeFd(1, text);
  else if (!outputGone) process.stdout.write(text);
}

export function writeErr(text: string): void {
  if (direct) writeFd(2, text);
  else if (!outputGone) process.stderr.write(text);
}

/** Whether fd 0, 1 or 2 is a terminal, without making the process's stream for it. */
export function isTerminal(fd: 0 | 1 | 2): boolean {
  // A pipe or a file (the usual case in scripts) is no terminal: told without loading libc.
  try {
    if (!fstatSync(fd).isCharacterDevice()) return false;
  } catch {
    return false;
  }
  const c = libc();
  if (c !== null) return c.isatty(fd);
  return process.getBuiltinModule('node:tty').isatty(fd);
}

let guarded = false;

/** A closed pipe ends the process quietly; any other failure to write its own output is one line, no stack trace. */
export function guardStreams(): void {
  if (guarded) return;
  guarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || outliveReader) return closedPipe();
      writeErr(`stasis: cannot write ${stream === process.stdout ? 'the output' : 'to stderr'}: ${err.message}\n`);
      process.exit(1);
    });
  }
}

/** Under Node, main() guards the streams at once (they cost nothing extra there). */
export function guardStreamsUnlessDirect(): void {
  if (!direct) guardStreams();
}
