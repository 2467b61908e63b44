// A private OpenSSH server per test, and a TCP relay that can drop its connections.
//
//   const sshd = await startSshd({ dir: env.root });          // or { dir, mountNs: '/tmp/x/mnt' }
//   after(() => sshd.stop());
//   spawn('ssh', ['-F', sshd.configFile, '127.0.0.1', 'echo hi']);
//   // or the URL form: spawn('ssh', ['-F', sshd.configFile, sshd.destination, 'true'])
//
//   const relay = await startRelay(sshd.port);
//   after(() => relay.close());
//   const config = relayConfig(sshd, relay);                  // a client config whose Port is the relay's
//   relay.cutAfter(1 << 20);                                  // the connection drops after 1 MiB up
//
// Each server has its own folder, port, host key and client key, so several run at once. It listens
// on 127.0.0.1 only and lets root in with the client key only. The system's sshd and its
// /etc/ssh/sshd_config are not touched: the server reads only the config written into `dir`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const SSHD = '/usr/sbin/sshd';
const NSENTER = 'nsenter';
const HOST = '127.0.0.1';

export interface Sshd {
  /** The TCP port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** `ssh://root@127.0.0.1:PORT`. */
  readonly destination: string;
  /** An ssh client config (`ssh -F`) for `Host 127.0.0.1`: port, user root, the client key, the pinned host key, BatchMode. No ControlMaster/ControlPath. */
  readonly configFile: string;
  /** `ssh -F CONFIGFILE` (for a program that takes an ssh command line). */
  readonly sshCommand: string;
  /** The listening sshd's process id. */
  readonly pid: number;
  /** The folder holding its keys, configs and pid file. */
  readonly dir: string;
  /** The host's public key, `ssh-ed25519 AAAA...` (what known_hosts pins). */
  readonly hostKey: string;
  /** The client's private key file (what `IdentityFile` names). */
  readonly identityFile: string;
  /** The known_hosts file of configFile. */
  readonly knownHostsFile: string;
  /** What sshd has written to its stderr so far (it runs with -e, LogLevel ERROR). */
  log(): string;
  /** SIGTERMs the server and every process under it (its sessions), SIGKILL after a while; resolves when all are gone. Idempotent. */
  stop(): Promise<void>;
}

export interface Relay {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Client→server bytes forwarded so far, over all connections. */
  readonly bytesUp: number;
  /** Server→client bytes forwarded so far, over all connections. */
  readonly bytesDown: number;
  /** How many connections it has accepted (including refused ones after a cut). */
  readonly connections: number;
  /** Resets every open connection, both sides at once, and resets every new one from now on (a dropped network). */
  cut(): void;
  /** Cuts once `bytesUp` client→server bytes have been forwarded in all (exactly that many reach the server). */
  cutAfter(bytesUp: number): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

// ------------------------------------------------------------------ helpers

/** Single-quotes a word for sh when it needs it. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** An ssh_config/sshd_config value: quoted when it has spaces. */
function configValue(value: string): string {
  if (/["\n]/.test(value)) throw new Error(`unusable path in an ssh config: ${JSON.stringify(value)}`);
  return /\s/.test(value) ? `"${value}"` : value;
}

function run(program: string, args: string[]): void {
  const result = spawnSync(program, args, { encoding: 'utf8', timeout: 30_000 });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${program} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
}

/** A port that was free on 127.0.0.1 a moment ago (bound with port 0, then closed). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error('no port from bind(0)'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolveConnect) => {
    const socket = createConnection({ host: HOST, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolveConnect(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.on('connect', () => done(true));
    socket.on('error', () => done(false));
  });
}

async function sshTrue(configFile: string): Promise<{ ok: boolean; stderr: string }> {
  try {
    const result = await ssh(configFile, ['-o', 'ConnectTimeout=5', HOST, 'true'], { timeoutMs: 15_000 });
    return { ok: result.code === 0, stderr: result.stderr };
  } catch (err) {
    return { ok: false, stderr: String(err) };
  }
}

export interface SshResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `ssh -F configFile ARGS` to completion (stdin: `input`, or none). */
export function ssh(configFile: string, args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<SshResult> {
  return new Promise((resolveSsh, reject) => {
    const child = spawn('ssh', ['-F', configFile, ...args], { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      resolveSsh({ code, signal: sig, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------------ the process tree under sshd

export interface Proc {
  pid: number;
  ppid: number;
  /** Field 22 of /proc/PID/stat: with the pid, names one process even if the pid is reused. */
  start: string;
  state: string;
}

function readProc(pid: number): Proc | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "PID (COMM) STATE PPID ..." where COMM may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pid, state: fields[0], ppid: Number(fields[1]), start: fields[19] };
}

function allProcs(): Proc[] {
  const procs: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const proc = readProc(Number(name));
    if (proc) procs.push(proc);
  }
  return procs;
}

/** `root` and every process under it, by the ppid chain. */
export function processTree(root: number): Proc[] {
  const procs = allProcs();
  const children = new Map<number, Proc[]>();
  for (const proc of procs) {
    const list = children.get(proc.ppid);
    if (list) list.push(proc);
    else children.set(proc.ppid, [proc]);
  }
  const top = procs.find((p) => p.pid === root);
  if (!top) return [];
  const tree: Proc[] = [];
  const queue = [top];
  while (queue.length > 0) {
    const proc = queue.shift()!;
    tree.push(proc);
    queue.push(...(children.get(proc.pid) ?? []));
  }
  return tree;
}

/** Whether that very process (pid and start time) still runs (a zombie counts as gone). */
function alive(proc: Proc): boolean {
  const now = readProc(proc.pid);
  return now !== null && now.start === proc.start && now.state !== 'Z' && now.state !== 'X';
}

function signal(proc: Proc, sig: NodeJS.Signals): void {
  if (!alive(proc)) return;
  try {
    process.kill(proc.pid, sig);
  } catch {
    // gone meanwhile
  }
}

/**
 * Ends `root` and everything under it. The tree is read again on each round, from every process
 * already known too, so children that were reparented when their parent died (to init) are
 * still found, as are sessions forked while stopping.
 */
async function killTree(root: number, exited: () => boolean, timeoutMs = 5_000): Promise<void> {
  const known = new Map<string, Proc>();
  const collect = () => {
    const roots = [root, ...[...known.values()].filter(alive).map((p) => p.pid)];
    for (const pid of new Set(roots)) {
      for (const proc of processTree(pid)) known.set(`${proc.pid}:${proc.start}`, proc);
    }
  };
  collect();
  const deadline = Date.now() + timeoutMs;
  let sig: NodeJS.Signals = 'SIGTERM';
  for (;;) {
    collect();
    const living = [...known.values()].filter(alive);
    if (living.length === 0 && exited()) return;
    if (Date.now() > deadline) {
      if (sig === 'SIGKILL') throw new Error(`sshd ${root}: processes still running after SIGKILL: ${living.map((p) => p.pid).join(' ')}`);
      sig = 'SIGKILL';
    }
    for (const proc of living) signal(proc, sig);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ sshd

/** Whether this sshd knows `PerSourcePenalties` (OpenSSH >= 9.8): it must be off, or tests that drop connections get 127.0.0.1 penalised. */
let penaltiesKnown: boolean | undefined;

function sshdKnowsPenalties(dir: string, base: string): boolean {
  if (penaltiesKnown === undefined) {
    const probe = join(dir, 'sshd_config.probe');
    writeFileSync(probe, `${base}PerSourcePenalties no\n`);
    penaltiesKnown = spawnSync(SSHD, ['-t', '-f', probe], { timeout: 30_000 }).status === 0;
  }
  return penaltiesKnown;
}

function clientConfig(port: number, identityFile: string, knownHostsFile: string): string {
  return [
    `Host ${HOST}`,
    `  HostName ${HOST}`,
    `  Port ${port}`,
    `  User root`,
    `  IdentityFile ${configValue(identityFile)}`,
    `  IdentitiesOnly yes`,
    `  IdentityAgent none`,
    `  UserKnownHostsFile ${configValue(knownHostsFile)}`,
    `  GlobalKnownHostsFile /dev/null`,
    `  StrictHostKeyChecking yes`,
    `  CheckHostIP no`,
    `  UpdateHostKeys no`,
    `  BatchMode yes`,
    `  PreferredAuthentications publickey`,
    `  PasswordAuthentication no`,
    `  KbdInteractiveAuthentication no`,
    `  LogLevel ERROR`,
    '',
  ].join('\n');
}

/** Writes a client config in `dir` for reaching `sshd` at `port` (its own, or a relay's); returns the file. */
function writeClientConfig(sshd: { dir: string; hostKey: string; identityFile: string }, port: number, name: string): { configFile: string; knownHostsFile: string } {
  const knownHostsFile = join(sshd.dir, `${name}.known_hosts`);
  const configFile = join(sshd.dir, `${name}.config`);
  writeFileSync(knownHostsFile, `[${HOST}]:${port} ${sshd.hostKey}\n`);
  writeFileSync(configFile, clientConfig(port, sshd.identityFile, knownHostsFile));
  return { configFile, knownHostsFile };
}

/**
 * Starts a private sshd for a test, in `dir` (which must exist; it and its files are the
 * fixture's). With `mountNs` (a mount namespace file, as `unshare --mount=FILE` leaves), sshd
 * runs in that mount namespace (nsenter --mount), in the host's network namespace: the test
 * reaches it at 127.0.0.1:port, its sessions see the other mount namespace. `dir` must then be
 * visible at the same path inside that namespace.
 */
export async function startSshd(opts: { dir: string; mountNs?: string; timeoutMs?: number }): Promise<Sshd> {
  const dir = resolve(opts.dir);
  const mountNs = opts.mountNs === undefined ? undefined : resolve(opts.mountNs);
  mkdirSync(dir, { recursive: true });
  const hostKeyFile = join(dir, 'ssh_host_ed25519_key');
  const identityFile = join(dir, 'id_ed25519');
  const authorizedKeys = join(dir, 'authorized_keys');
  const pidFile = join(dir, 'sshd.pid');
  const configFileSshd = join(dir, 'sshd_config');
  if (!existsSync(hostKeyFile)) run('ssh-keygen', ['-q', '-N', '', '-t', 'ed25519', '-C', 'stasis-test-host', '-f', hostKeyFile]);
  if (!existsSync(identityFile)) run('ssh-keygen', ['-q', '-N', '', '-t', 'ed25519', '-C', 'stasis-test-client', '-f', identityFile]);
  writeFileSync(authorizedKeys, readFileSync(`${identityFile}.pub`, 'utf8'), { mode: 0o600 });
  const hostKey = readFileSync(`${hostKeyFile}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');

  // The privilege separation folder, in the namespace sshd runs in.
  if (mountNs) run(NSENTER, [`--mount=${mountNs}`, '--', 'mkdir', '-p', '-m', '0755', '/run/sshd']);
  else mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const base = [
    `ListenAddress ${HOST}`,
    `HostKey ${configValue(hostKeyFile)}`,
    `AuthorizedKeysFile ${configValue(authorizedKeys)}`,
    // StrictModes would refuse authorized_keys under a world-writable /tmp (it checks every parent folder).
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    `PidFile ${configValue(pidFile)}`,
    'PermitUserEnvironment no',
    'AllowTcpForwarding yes',
    'AllowStreamLocalForwarding yes',
    'GatewayPorts no',
    'X11Forwarding no',
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    // Room for parallel tests and multiplexed sessions (the defaults are 10:30:100 and 10).
    'MaxStartups 100',
    'MaxSessions 100',
    'LogLevel ERROR',
    '',
  ].join('\n');
  const config = base + (sshdKnowsPenalties(dir, `Port 22\n${base}`) ? 'PerSourcePenalties no\n' : '');

  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastError = '';
  for (let attempt = 1; attempt <= 8; attempt++) {
    const port = await freePort();
    writeFileSync(configFileSshd, `Port ${port}\n${config}`);
    const { configFile, knownHostsFile } = writeClientConfig({ dir, hostKey, identityFile }, port, 'ssh');
    const argv = [SSHD, '-D', '-e', '-f', configFileSshd];
    // nsenter execs sshd in place (no --fork for a mount namespace): the child's pid is sshd's.
    const child: ChildProcess = mountNs ? spawn(NSENTER, [`--mount=${mountNs}`, '--', ...argv], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let exited = false;
    let spawnError: Error | null = null;
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = new Promise<void>((resolveExit) => {
      child.on('exit', () => {
        exited = true;
        resolveExit();
      });
      child.on('error', (err) => {
        spawnError = err;
        exited = true;
        resolveExit();
      });
    });
    const stopChild = async () => {
      if (child.pid !== undefined) await killTree(child.pid, () => exited);
      await exit;
    };

    // Ready: the port takes connections, and an ssh session (which checks the pinned host key, so
    // it is this sshd and no other process that took the port) runs `true`.
    let ready = false;
    while (!exited && Date.now() < deadline) {
      if (await canConnect(port)) {
        const probe = await sshTrue(configFile);
        if (probe.ok && !exited) {
          ready = true;
          break;
        }
        lastError = probe.stderr;
      }
      await sleep(exited ? 0 : 50);
    }
    if (!ready) {
      await stopChild();
      if (spawnError) throw spawnError;
      // Another process took the port between bind(0) and sshd's bind: try another.
      if (/Address already in use|Cannot bind any address/.test(stderr) && Date.now() < deadline) {
        lastError = stderr;
        continue;
      }
      throw new Error(`sshd did not start on ${HOST}:${port}${exited ? ` (exited: ${child.exitCode ?? child.signalCode})` : ' (timed out)'}\nsshd: ${stderr}\nssh: ${lastError}`);
    }

    const pid = child.pid!;
    const written = Number(readFileSync(pidFile, 'utf8').trim());
    if (written !== pid) {
      await stopChild();
      throw new Error(`sshd's pid file says ${written}, its process is ${pid}`);
    }
    let stopping: Promise<void> | null = null;
    return {
      port,
      destination: `ssh://root@${HOST}:${port}`,
      configFile,
      sshCommand: `ssh -F ${shellWord(configFile)}`,
      pid,
      dir,
      hostKey,
      identityFile,
      knownHostsFile,
      log: () => stderr,
      stop: () => (stopping ??= stopChild()),
    };
  }
  throw new Error(`sshd could not bind a port on ${HOST}: ${lastError}`);
}

// ------------------------------------------------------------------ relay

/**
 * A TCP relay on 127.0.0.1 (a free port) to 127.0.0.1:targetPort. cut() drops every connection
 * as a network would fail: both sides are reset at once (TCP RST, no orderly close), and new
 * connections are reset as soon as they are accepted.
 */
export async function startRelay(targetPort: number): Promise<Relay> {
  const pairs = new Set<{ client: Socket; server: Socket }>();
  let bytesUp = 0;
  let bytesDown = 0;
  let connections = 0;
  let cutting = false;
  let limit = Infinity;

  const reset = (socket: Socket) => {
    if (socket.destroyed) return;
    try {
      socket.resetAndDestroy(); // RST (a socket still connecting is reset once connected)
    } catch {
      socket.destroy();
    }
  };
  const cut = () => {
    cutting = true;
    for (const pair of pairs) {
      reset(pair.client);
      reset(pair.server);
    }
    pairs.clear();
  };

  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    connections++;
    client.on('error', () => {});
    if (cutting) {
      reset(client);
      return;
    }
    const upstream = createConnection({ host: HOST, port: targetPort });
    upstream.on('error', () => {});
    const pair = { client, server: upstream };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
    upstream.on('connect', () => client.resume());
    // Half-closes pass through (ssh's EOF on stdin is a channel message, but keep TCP honest).
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('data', (chunk: Buffer) => {
      if (cutting) return;
      const room = limit - bytesUp;
      if (chunk.length >= room) {
        // Forward exactly up to the limit, then cut once it is handed to the kernel.
        const part = chunk.subarray(0, Math.max(0, room));
        bytesUp += part.length;
        cutting = true;
        client.pause();
        if (part.length === 0) cut();
        else upstream.write(part, () => cut());
        return;
      }
      bytesUp += chunk.length;
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutting) return;
      bytesDown += chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
  });

  const port = await new Promise<number>((resolvePort, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.off('error', reject);
      const address = server.address();
      resolvePort(typeof address === 'object' && address ? address.port : 0);
    });
  });

  let closing: Promise<void> | null = null;
  return {
    port,
    get bytesUp() {
      return bytesUp;
    },
    get bytesDown() {
      return bytesDown;
    },
    get connections() {
      return connections;
    },
    cut,
    cutAfter(n: number) {
      limit = n;
      if (bytesUp >= n) cut();
    },
    close() {
      closing ??= new Promise<void>((resolveClose) => {
        for (const pair of pairs) {
          pair.client.destroy();
          pair.server.destroy();
        }
        pairs.clear();
        server.close(() => resolveClose());
      });
      return closing;
    },
  };
}

/**
 * Writes another client config for `sshd`, in its folder, whose Port is the relay's (known_hosts
 * entries are keyed by [host]:port, so it has its own known_hosts with the same host key for the
 * relay's port). Returns the config file: `ssh -F FILE 127.0.0.1 ...`.
 */
export function relayConfig(sshd: Sshd, relay: Relay): string {
  return writeClientConfig(sshd, relay.port, `relay-${relay.port}`).configFile;
}
