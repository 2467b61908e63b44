import { appendFileSync, closeSync, existsSync, openSync, readSync, fstatSync, watch, readFileSync } from 'node:fs';

export type Topic =
  | '/containers/create'
  | '/containers/delete'
  | '/tasks/create'
  | '/tasks/start'
  | '/tasks/exit'
  | '/tasks/delete'
  | '/tasks/paused'
  | '/tasks/resumed'
  | '/tasks/checkpointed'
  | '/tasks/restored'
  | '/tasks/oom'
  | '/tasks/exec-started';

export const TOPICS: readonly Topic[] = [
  '/containers/create', '/containers/delete', '/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete',
  '/tasks/paused', '/tasks/resumed', '/tasks/checkpointed', '/tasks/restored', '/tasks/oom', '/tasks/exec-started',
];

export interface StasisEvent {
  timestamp: string;
  topic: Topic;
  id: string;
  event: Record<string, unknown>;
}

/**
 * The event journal: one JSON line per event, appended with O_APPEND in a
 * single write so concurrent writers never interleave.
 */
export class EventJournal {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  append(topic: Topic, id: string, event: Record<string, unknown> = {}): StasisEvent {
    const record: StasisEvent = { timestamp: new Date().toISOString(), topic, id, event };
    appendFileSync(this.path, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    return record;
  }

  /** The recorded events; with `endOffset`, only those in the journal's first endOffset bytes. */
  readAll(endOffset?: number): StasisEvent[] {
    if (!existsSync(this.path)) return [];
    const bytes = readFileSync(this.path);
    const text = (endOffset === undefined ? bytes : bytes.subarray(0, endOffset)).toString('utf8');
    return parseLines(text.endsWith('\n') ? text : `${text}\n`).events;
  }

  /** Yields events appended after byte offset `from`, until `signal` aborts. */
  async *follow(from: number, signal: AbortSignal): AsyncGenerator<StasisEvent> {
    let offset = from;
    let pending = '';
    let wake: (() => void) | null = null;
    let watcher: ReturnType<typeof watch> | null = null;
    const poke = () => { wake?.(); };
    signal.addEventListener('abort', poke);
    try {
      for (;;) {
        if (signal.aborted) return;
        if (watcher === null && existsSync(this.path)) {
          watcher = watch(this.path, poke);
        }
        if (existsSync(this.path)) {
          const fd = openSync(this.path, 'r');
          try {
            const size = fstatSync(fd).size;
            if (size > offset) {
              const buffer = Buffer.alloc(size - offset);
              readSync(fd, buffer, 0, buffer.length, offset);
              offset = size;
              const parsed = parseLines(pending + buffer.toString('utf8'));
              pending = parsed.rest;
              for (const event of parsed.events) yield event;
            }
          } finally {
            closeSync(fd);
          }
        }
        // fs.watch wakes us on appends; the timeout covers a journal created later.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 500);
          wake = () => { clearTimeout(timer); resolve(); };
        });
        wake = null;
      }
    } finally {
      watcher?.close();
      signal.removeEventListener('abort', poke);
    }
  }

  size(): number {
    try {
      const fd = openSync(this.path, 'r');
      try { return fstatSync(fd).size; } finally { closeSync(fd); }
    } catch {
      return 0;
    }
  }
}

function parseLines(text: string): { events: StasisEvent[]; rest: string } {
  const lines = text.split('\n');
  const rest = lines.pop() ?? '';
  const events: StasisEvent[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    try {
      events.push(JSON.parse(line) as StasisEvent);
    } catch {
      // A torn line can only come from a crash mid-write; skip it rather than stop the stream.
    }
  }
  return { events, rest };
}
