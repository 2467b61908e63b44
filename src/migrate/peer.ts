import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { StasisError } from '../errors.ts';
import { showCommand, spawn } from '../host/spawn.ts';
import { debugLog, isDebug } from '../log.ts';

// The other side of a move: stasis run there, over OpenSSH (one master
// connection that every session and the page server's tunnel go through) or,
// for a state directory on this machine, as a child process here.

export type Destination =
  | { kind: 'ssh'; user: string | null; host: string; port: number | null; shown: string }
  | { kind: 'local'; stateDir: string; shown: string };

/** DEST as migrate takes it: `ssh://[user@]host[:port]`, else a local state directory. */
export function parseDestination(value: string): Destination {
  if (value.startsWith('ssh://')) {
    const match = /^ssh:\/\/(?:([^@/:\s]+)@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?\/?$/.exec(value);
    if (!match) throw new StasisError(`${JSON.stringify(value)} is not ssh://[user@]host[:port]`, { code: 'bad-destination' });
    const port = match[3] === undefined ? null : Number(match[3]);
    if (port !== null && (port < 1 || port > 65535)) throw new StasisError(`${value}: port ${port} is out of range`, { code: 'bad-destination' });
    // A host starting with "-" would be an ssh option.
    if (match[2].startsWith('-')) throw new StasisError(`${value}: not a host name`, { code: 'bad-destination' });
    return { kind: 'ssh', user: match[1] ?? null, host: match[2].replace(/^\[|\]$/g, ''), port, shown: value };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) throw new StasisError(`${value}: only ssh:// destinations are known`, { code: 'bad-destination' });
  return { kind: 'local', stateDir: resolve(value), shown: resolve(value) };
}

export interface Peer {
  readonly destination: Destination;
  /** Connects (ssh: the master connection); throws with what ssh said. */
  open(): Promise<void>;
  /** `stasis ARGS` on the other side, its stdin, stdout and stderr piped here. */
  stasis(args: readonly string[]): ChildProcess;
  /** A port on the other side's 127.0.0.1 that reaches this side's 127.0.0.1:localPort. */
  reach(localPort: number): Promise<number>;
  close(): Promise<void>;
}

function words(command: string): string[] {
  return command.split(/\s+/).filter(Boolean);
}

/** Waits for a child to end; its exit code (128+n for a signal) and stderr. */
export function finished(child: ChildProcess): Promise<{ code: number; stderr: string; stdout: string }> {
  return new Promise((resolvePromise) => {
    let stderr = '';
    let stdout = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', (err) => resolvePromise({ code: 127, stderr: `${stderr}${err.message}`, stdout }));
    child.on('close', (code, signal) => resolvePromise({ code: code ?? (signal ? 128 + 9 : 1), stderr, stdout }));
  });
}

export class LocalPeer implements Peer {
  readonly destination: Destination & { kind: 'local' };
  private readonly command: readonly string[];

  constructor(destination: Destination & { kind: 'local' }, command: readonly string[]) {
    this.destination = destination;
    this.command = command;
  }

  async open(): Promise<void> {}

  stasis(args: readonly string[]): ChildProcess {
    const argv = [...this.command.slice(1), '--state-dir', this.destination.stateDir, ...(isDebug() ? ['--debug'] : []), ...args];
    debugLog(showCommand(this.command[0], argv));
    // A process group of its own: a terminal's Ctrl-C reaches migrate, which undoes the move in order.
    return spawn(this.command[0], argv, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  }

  async reach(localPort: number): Promise<number> {
    return localPort;
  }

  async close(): Promise<void> {}
}

/**
 * Over OpenSSH: `ssh -M -N` holds the connection (a child of this process,
 * ended at close), every session goes through it (`-S`), and a remote forward
 * (`-O forward -R`) carries the page server of a lazy move. The ssh command
 * is STASIS_SSH's words (default `ssh`), so `-F FILE`, `-i KEY` and the like
 * can be given there, as with rsync's -e.
 */
export class SshPeer implements Peer {
  private readonly ssh: string[];
  private readonly dir: string;
  private master: ChildProcess | null = null;
  private masterExit: Promise<{ code: number; stderr: string }> | null = null;

  readonly destination: Destination & { kind: 'ssh' };
  private readonly remoteStasis: readonly string[];

  constructor(destination: Destination & { kind: 'ssh' }, sshCommand: string, remoteStasis: readonly string[]) {
    this.destination = destination;
    this.remoteStasis = remoteStasis;
    this.ssh = words(sshCommand);
    if (this.ssh.length === 0) throw new StasisError('STASIS_SSH is empty', { code: 'bad-destination' });
    this.dir = mkdtempSync(join(tmpdir(), 'stasis-ssh-'));
  }

  private get target(): string {
    return this.destination.user === null ? this.destination.host : `${this.destination.user}@${this.destination.host}`;
  }

  private args(extra: readonly string[]): string[] {
    const port = this.destination.port === null ? [] : ['-p', String(this.destination.port)];
    return [...this.ssh.slice(1), '-S', join(this.dir, 'control'), ...port, ...extra];
  }

  async open(): Promise<void> {
    const argv = this.args(['-M', '-N', '-o', 'ControlPersist=no', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3', '-o', 'ExitOnForwardFailure=yes', this.target]);
    debugLog(showCommand(this.ssh[0], argv));
    this.master = spawn(this.ssh[0], argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.masterExit = finished(this.master);
    // Ready once a check through the control socket answers; or the master has given up.
    for (let waited = 0; ; waited += 50) {
      const done = await Promise.race([this.masterExit, new Promise<null>((r) => setTimeout(() => r(null), 50))]);
      if (done !== null) {
        this.master = null;
        throw new StasisError(`cannot connect to ${this.destination.shown}: ${done.stderr.trim() || `ssh exited ${done.code}`}`, { code: 'peer-unreachable' });
      }
      const check = await finished(spawn(this.ssh[0], this.args(['-O', 'check', this.target]), { stdio: ['ignore', 'ignore', 'pipe'] }));
      if (check.code === 0) return;
      if (waited > 60_000) throw new StasisError(`cannot connect to ${this.destination.shown}: no answer in 60 s`, { code: 'peer-unreachable' });
    }
  }

  stasis(args: readonly string[]): ChildProcess {
    // The remote side gets one command line for its shell: each word quoted.
    const remote = showCommand(this.remoteStasis[0], [...this.remoteStasis.slice(1), ...(isDebug() ? ['--debug'] : []), ...args]);
    const argv = this.args(['-o', 'ControlMaster=no', '-T', this.target, '--', remote]);
    debugLog(showCommand(this.ssh[0], argv));
    return spawn(this.ssh[0], argv, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  }

  async reach(localPort: number): Promise<number> {
    const forward = await finished(spawn(this.ssh[0], this.args(['-O', 'forward', '-R', `127.0.0.1:0:127.0.0.1:${localPort}`, this.target]), { stdio: ['ignore', 'pipe', 'pipe'] }));
    const port = Number(forward.stdout.trim());
    if (forward.code !== 0 || !Number.isInteger(port) || port <= 0) {
      throw new StasisError(`cannot open a tunnel to ${this.destination.shown}: ${forward.stderr.trim() || forward.stdout.trim() || `ssh exited ${forward.code}`}`);
    }
    return port;
  }

  async close(): Promise<void> {
    if (this.master !== null) {
      this.master.kill('SIGTERM');
      await this.masterExit;
      this.master = null;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** True while the master connection is up. */
  get connected(): boolean {
    return this.master !== null && this.master.exitCode === null && this.master.signalCode === null;
  }
}
