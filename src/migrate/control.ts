import type { ChildProcess } from 'node:child_process';
import { StasisError } from '../errors.ts';
import { debugLog, isDebug } from '../log.ts';
import { LineReader, line, type Message } from './channel.ts';

// The source's end of a move's control channel: the destination's
// `__migrate serve`, one JSON request a line on its stdin, answers (and
// progress lines) on its stdout, what it says on its stderr.

/** The control channel to the destination's `__migrate serve`. */
export class Control {
  private readonly reader: LineReader;
  private stderr = '';
  readonly exited: Promise<number>;

  private readonly child: ChildProcess;
  private readonly shown: string;

  constructor(child: ChildProcess, shown: string) {
    this.child = child;
    this.shown = shown;
    this.reader = new LineReader(child.stdout!);
    let partial = '';
    child.stderr!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const l of lines) {
        // With --debug the other side's debug lines are shown, marked, as they come; the rest is what it said.
        if (!l.startsWith('stasis: debug:')) this.stderr += `${l}\n`;
        else if (isDebug()) debugLog(`(${shown}) ${l.slice('stasis: debug: '.length)}`);
      }
    });
    child.stderr!.on('end', () => {
      if (partial !== '' && !partial.startsWith('stasis: debug:')) this.stderr += partial;
    });
    child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      child.on('error', () => resolve(127));
      child.on('close', (code, signal) => resolve(code ?? (signal ? 137 : 1)));
    });
  }

  /** What the other side said on stderr, as one line. */
  said(): string {
    const lines = this.stderr.trim().split('\n').map((l) => l.replace(/^stasis: /, '').trim()).filter(Boolean);
    return lines.join('; ');
  }

  lost(): StasisError {
    const said = this.said();
    return new StasisError(`the connection to ${this.shown} was lost${said ? `: ${said}` : ''}`, { code: 'peer-lost' });
  }

  send(message: Message): void {
    this.child.stdin!.write(line(message));
  }

  /** Sends a request and waits for its answer; the other side's progress lines before it go to onProgress. */
  async request(message: Message, onProgress: (progress: Record<string, unknown>) => void = () => undefined): Promise<Message> {
    this.send(message);
    for (;;) {
      const answer = await this.reader.next();
      if (answer === null) throw this.lost();
      if (typeof answer.progress === 'object' && answer.progress !== null && !('ok' in answer)) {
        onProgress(answer.progress as Record<string, unknown>);
        continue;
      }
      return answer;
    }
  }

  /** Ends the channel without waiting (an interrupted move: the destination undoes what was not committed). */
  cut(): void {
    this.child.stdin!.end();
  }

  /** Ends the channel (the destination undoes what was not committed) and waits for the other side to finish. */
  async end(timeoutMs = 120_000): Promise<void> {
    this.child.stdin!.end();
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }
}
