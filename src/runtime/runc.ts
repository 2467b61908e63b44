import { StasisError } from '../errors.ts';
import { run, type RunResult } from '../host/spawn.ts';

/**
 * runc prints logrus lines (time=… level=error msg="…"), directly or through
 * conmon; keep just the messages, once each. runc retries some cleanup steps
 * and logs every try ("will retry"): those are not why anything failed.
 */
export function runcMessage(stderr: string): string {
  const messages: string[] = [];
  for (const line of stderr.split('\n')) {
    const match = /level=(?:error|fatal|warning)\s+msg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (match) messages.push(match[1].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? ' ' : c)).trim());
    else if (line.trim() !== '' && !line.startsWith('time=')) messages.push(line.trim());
  }
  return [...new Set(messages)].filter((m) => !/will retry/.test(m)).join('; ') || 'runc failed without a message';
}

export class Runc {
  readonly binary: string;
  readonly root: string;
  readonly criu: string | null;

  constructor(binary: string, root: string, criu: string | null) {
    this.binary = binary;
    this.root = root;
    this.criu = criu;
  }

  globalArgs(): string[] {
    const args = ['--root', this.root];
    if (this.criu) args.push('--criu', this.criu);
    return args;
  }

  raw(args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
    return run(this.binary, [...this.globalArgs(), ...args], opts).catch((err: NodeJS.ErrnoException) => {
      throw new StasisError(`cannot run ${this.binary}: ${err.message}`, {
        hint: 'install runc (see `stasis doctor`) or point --runc / STASIS_RUNC at it',
      });
    });
  }

  /** Runs a runc command and throws a StasisError with runc's own message when it fails. */
  async call(what: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
    const result = await this.raw(args, opts);
    if (result.exitCode !== 0) {
      throw new StasisError(`${what}: ${runcMessage(result.stderr)}`);
    }
    return result;
  }

  async version(): Promise<string> {
    const result = await this.raw(['--version']);
    return /runc version (\S+)/.exec(result.stdout)?.[1] ?? 'unknown';
  }
}
