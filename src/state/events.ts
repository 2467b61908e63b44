import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { fileSize, followLines } from './follow.ts';

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
    const fd = openSync(this.path, 'a+', 0o600);
    try {
      // A line torn by a crash or a full disk would swallow this one: start a fresh line.
      const size = fstatSync(fd).size;
      const last = Buffer.alloc(1);
      const torn = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
      writeSync(fd, `${torn ? '\n' : ''}${JSON.stringify(record)}\n`);
    } finally {
      closeSync(fd);
    }
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
    for await (const line of followLines(this.path, { fromOffset: from, done: () => false, pollMs: 500, signal })) {
      const event = parseLines(`${line}\n`).events[0];
      if (event) yield event;
    }
  }

  size(): number {
    return fileSize(this.path);
  }
}

function parseLines(text: string): { events: StasisEvent[]; rest: string } {
  const lines = text.split('\n');
  const rest = lines.pop() ?? '';
  const events: StasisEvent[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    try {
      const event = JSON.parse(line) as unknown;
      if (isEvent(event)) events.push(event);
    } catch {
      // A torn line can only come from a crash mid-write; skip it rather than stop the stream.
    }
  }
  return { events, rest };
}

/** Junk that parses as JSON (`null`, a number, a half-written object) is not an event. */
function isEvent(value: unknown): value is StasisEvent {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Partial<StasisEvent>;
  return typeof e.timestamp === 'string' && typeof e.topic === 'string' && typeof e.id === 'string' && typeof e.event === 'object' && e.event !== null;
}
