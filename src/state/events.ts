import { appendFileSync, existsSync, readFileSync } from 'node:fs';
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
      events.push(JSON.parse(line) as StasisEvent);
    } catch {
      // A torn line can only come from a crash mid-write; skip it rather than stop the stream.
    }
  }
  return { events, rest };
}
