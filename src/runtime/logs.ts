import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, watch } from 'node:fs';

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

export function readLog(path: string): LogRecord[] {
  if (!existsSync(path)) return [];
  return parseRecords(readFileSync(path, 'utf8'));
}

/** Streams records appended to a log until `finished()` is true and everything written is read. */
export async function* followLog(path: string, opts: { fromOffset: number; finished: () => boolean }): AsyncGenerator<LogRecord> {
  let offset = opts.fromOffset;
  let pending = '';
  let wake: (() => void) | null = null;
  let watcher: ReturnType<typeof watch> | null = null;
  try {
    for (;;) {
      // Checked before reading so that the last read sees all output (conmon
      // writes the exit file only after draining the container's pipes).
      const finished = opts.finished();
      if (watcher === null && existsSync(path)) watcher = watch(path, () => wake?.());
      if (existsSync(path)) {
        const fd = openSync(path, 'r');
        try {
          const size = fstatSync(fd).size;
          if (size > offset) {
            const buffer = Buffer.alloc(size - offset);
            const read = readSync(fd, buffer, 0, buffer.length, offset);
            offset += read;
            const text = pending + buffer.subarray(0, read).toString('utf8');
            const cut = text.lastIndexOf('\n');
            pending = text.slice(cut + 1);
            yield* parseRecords(text.slice(0, cut + 1));
          }
        } finally {
          closeSync(fd);
        }
      }
      if (finished) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        wake = () => { clearTimeout(timer); resolve(); };
      });
      wake = null;
    }
  } finally {
    watcher?.close();
  }
}

export function logSize(path: string): number {
  try {
    const fd = openSync(path, 'r');
    try { return fstatSync(fd).size; } finally { closeSync(fd); }
  } catch {
    return 0;
  }
}
