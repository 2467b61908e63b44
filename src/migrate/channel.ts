import type { Readable } from 'node:stream';

// The control channel of a move: one JSON object per line, each way, on the
// serving process's stdin and stdout. Requests carry `op`; replies `ok`.

export type Message = Record<string, unknown>;

/** The lines of a stream as messages; null at its end (or when it breaks). */
export class LineReader {
  private buffer = '';
  private readonly queue: (Message | null)[] = [];
  private waiting: ((m: Message | null) => void) | null = null;
  private ended = false;

  constructor(stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line === '') continue;
        let message: Message;
        try {
          const parsed: unknown = JSON.parse(line);
          message = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Message) : { ok: false, error: `not a message: ${line.slice(0, 200)}` };
        } catch {
          message = { ok: false, error: `not a message: ${line.slice(0, 200)}` };
        }
        this.push(message);
      }
    });
    const end = () => {
      if (this.ended) return;
      this.ended = true;
      this.push(null);
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  private push(message: Message | null): void {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve(message);
    } else this.queue.push(message);
  }

  /** The next message, or null once the stream has ended (and stays null). */
  next(): Promise<Message | null> {
    if (this.queue.length > 0) {
      const message = this.queue.shift()!;
      if (message === null) this.queue.unshift(null);
      return Promise.resolve(message);
    }
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

export function line(message: Message): string {
  return `${JSON.stringify(message)}\n`;
}
