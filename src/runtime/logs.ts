import { existsSync, readFileSync } from 'node:fs';
import { StasisError } from '../errors.ts';
import { followLines } from '../state/follow.ts';
import type { ContainerRecord, StateStore } from '../state/store.ts';

// conmon's k8s-file log: one record per line, "<RFC3339Nano> <stdout|stderr> <F|P> <text>",
// where P marks a partial line (the text had no newline yet).

export interface LogRecord {
  time: string;
  stream: 'stdout' | 'stderr';
  /** The text, with a newline restored for full (F) records. */
  text: string;
}

export function parseLogLine(line: string): LogRecord | null {
  const first = line.indexOf(' ');
  const second = line.indexOf(' ', first + 1);
  const third = line.indexOf(' ', second + 1);
  if (first < 0 || second < 0) return null;
  const stream = line.slice(first + 1, second);
  if (stream !== 'stdout' && stream !== 'stderr') return null;
  const tag = third < 0 ? line.slice(second + 1) : line.slice(second + 1, third);
  const text = third < 0 ? '' : line.slice(third + 1);
  return { time: line.slice(0, first), stream, text: tag.startsWith('P') ? text : `${text}\n` };
}

function parseRecords(text: string): LogRecord[] {
  const records: LogRecord[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const record = parseLogLine(line);
    if (record) records.push(record);
  }
  return records;
}

/** The last `lines` full lines (partial records attach to the line they begin). */
export function tailRecords(records: LogRecord[], lines: number): LogRecord[] {
  if (lines <= 0) return [];
  let complete = 0;
  for (let i = records.length - 1; i >= 0; i--) {
    if (records[i].text.endsWith('\n')) {
      complete++;
      if (complete > lines) return records.slice(i + 1);
    }
  }
  return records;
}

/** The records in the log now, and the byte offset where they end (to follow from there). */
export function readLog(path: string): { records: LogRecord[]; size: number } {
  if (!existsSync(path)) return { records: [], size: 0 };
  const bytes = readFileSync(path);
  // Only complete lines: a record being written is picked up by the follower.
  const end = bytes.lastIndexOf(0x0a) + 1;
  return { records: parseRecords(bytes.subarray(0, end).toString('utf8')), size: end };
}

/** Streams records appended to a log until `finished()` is true and everything written is read. */
export async function* followLog(path: string, opts: { fromOffset: number; finished: () => boolean }): AsyncGenerator<LogRecord> {
  // conmon writes the exit file only after draining the container's pipes,
  // so once it exists one more read gets the rest. The exit file is beside
  // the log: watching the folder notices it at once.
  for await (const line of followLines(path, { fromOffset: opts.fromOffset, done: opts.finished, pollMs: 100, watchDir: true })) {
    const record = line === '' ? null : parseLogLine(line);
    if (record) yield record;
  }
}

/** What `logs` prints for a container: conmon's log, or the files a passthrough container wrote itself. */
export type ContainerLogs =
  | { kind: 'log'; path: string; records: LogRecord[]; end: number }
  | { kind: 'files'; chunks: { stream: 'stdout' | 'stderr'; text: string }[] };

/** The last `count` lines of a text. */
function lastLines(text: string, count: number): string {
  if (count === 0) return '';
  const lines = text.split('\n');
  const trailing = lines[lines.length - 1] === '' ? lines.pop() : undefined;
  return lines.slice(-count).join('\n') + (trailing === '' ? '\n' : '');
}

/**
 * The captured output of a container (the last `tail` lines). A container
 * whose stdio went to the caller's files or terminal has nothing captured for
 * those streams: that is an error naming where they went.
 */
export function containerLogs(store: StateStore, record: ContainerRecord, tail?: number): ContainerLogs {
  if (record.stdio.mode === 'log') {
    const path = store.logPath(record.id);
    const { records, size } = readLog(path);
    return { kind: 'log', path, records: tail === undefined ? records : tailRecords(records, tail), end: size };
  }
  const chunks: { stream: 'stdout' | 'stderr'; text: string }[] = [];
  for (const [stream, file] of [['stdout', record.stdio.stdout], ['stderr', record.stdio.stderr]] as const) {
    const own = store.logPath(record.id, stream);
    if (file !== null || !existsSync(own)) continue;
    const text = readFileSync(own, 'utf8');
    chunks.push({ stream, text: tail === undefined ? text : lastLines(text, tail) });
  }
  if (record.stdio.stdout !== null && record.stdio.stderr !== null) {
    throw new StasisError(`container ${record.id} writes to ${record.stdio.stdout} and ${record.stdio.stderr}; nothing was captured`);
  }
  if (record.stdio.stdout === null && !existsSync(store.logPath(record.id, 'stdout'))) {
    throw new StasisError(`container ${record.id} was attached to the caller's terminal or stdio; nothing was captured`);
  }
  return { kind: 'files', chunks };
}
