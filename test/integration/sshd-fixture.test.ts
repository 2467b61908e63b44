// The sshd fixture itself (test/sshd.ts): a private OpenSSH server per test, in the host's or
// another mount namespace, remote forwards, ControlMaster, and a relay that drops the connection.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { eventually, requires } from '../helpers.ts';
import { freePort, processTree, relayConfig, ssh, startRelay, startSshd, type Proc, type Sshd } from '../sshd.ts';

const HOST = '127.0.0.1';

/** ssh, ssh-keygen, nsenter and unshare are not names requires() knows; they come with sshd and util-linux. */
function tools(...names: string[]): string | false {
  const dirs = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];
  const missing = names.filter((name) => !dirs.some((dir) => existsSync(join(dir, name))));
  return missing.length === 0 ? false : `needs ${missing.join(', ')}`;
}

const SKIP = requires('root', 'sshd') || tools('ssh', 'ssh-keygen');

/** Cleanups, run last first by after(). */
const cleanups: Array<() => unknown> = [];
function later(cleanup: () => unknown): void {
  cleanups.push(cleanup);
}

function run(program: string, args: string[]): string {
  const result = spawnSync(program, args, { encoding: 'utf8', timeout: 30_000 });
  assert.equal(result.status, 0, `${program} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

describe('the sshd fixture', { skip: SKIP }, () => {
  let root: string;
  let sshd: Sshd;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'stasis-test-sshd-'));
    later(() => rmSync(root, { recursive: true, force: true }));
    sshd = await startSshd({ dir: join(root, 'main') });
    later(() => sshd.stop());
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('ssh through its config runs a command, as root, by the name and by the ssh:// destination', async () => {
    assert.match(sshd.destination, /^ssh:\/\/root@127\.0\.0\.1:\d+$/);
    assert.equal(sshd.destination, `ssh://root@127.0.0.1:${sshd.port}`);
    assert.equal(sshd.sshCommand, `ssh -F ${sshd.configFile}`);
    const byName = await ssh(sshd.configFile, [HOST, 'echo hi']);
    assert.equal(byName.code, 0, byName.stderr);
    assert.equal(byName.stdout, 'hi\n');
    const byUrl = await ssh(sshd.configFile, [sshd.destination, 'id -u']);
    assert.equal(byUrl.code, 0, byUrl.stderr);
    assert.equal(byUrl.stdout, '0\n');
    // The command line sshCommand gives works from a shell too.
    const shell = spawnSync('sh', ['-c', `${sshd.sshCommand} ${HOST} echo from-sh`], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(shell.stdout, 'from-sh\n', shell.stderr);
    // The listener is the process it names, and it is sshd.
    assert.equal(comm(sshd.pid), 'sshd');
    assert.equal(Number(readFileSync(join(sshd.dir, 'sshd.pid'), 'utf8')), sshd.pid);
  });

  test('a key it does not know is refused (only the client key gets in)', async () => {
    const other = join(root, 'stranger');
    run('ssh-keygen', ['-q', '-N', '', '-t', 'ed25519', '-f', other]);
    // The fixture's config with the stranger's key in place of the client key.
    const config = join(root, 'stranger.config');
    writeFileSync(config, readFileSync(sshd.configFile, 'utf8').replace(/IdentityFile .*/, `IdentityFile ${other}`));
    const refused = await ssh(config, [HOST, 'true']);
    assert.equal(refused.code, 255, `a stranger's key got in: ${refused.stderr}`);
    assert.match(refused.stderr, /Permission denied/);
  });

  test('two more sshds at once: each its own port, process and host key', async () => {
    const [a, b] = await Promise.all([startSshd({ dir: join(root, 'a') }), startSshd({ dir: join(root, 'b') })]);
    later(() => a.stop());
    later(() => b.stop());
    assert.equal(new Set([sshd.port, a.port, b.port]).size, 3);
    assert.equal(new Set([sshd.pid, a.pid, b.pid]).size, 3);
    assert.notEqual(a.hostKey, b.hostKey);
    const [ra, rb] = await Promise.all([ssh(a.configFile, [HOST, 'echo one']), ssh(b.configFile, [HOST, 'echo two'])]);
    assert.equal(ra.stdout, 'one\n', ra.stderr);
    assert.equal(rb.stdout, 'two\n', rb.stderr);
    // a's config pins a's host key for a's port only: pointed at b's port it refuses to connect.
    const crossed = await ssh(a.configFile, ['-p', String(b.port), HOST, 'true']);
    assert.equal(crossed.code, 255);
    assert.match(crossed.stderr, /Host key verification failed|host key/i);
    await a.stop();
    assert.equal((await ssh(b.configFile, [HOST, 'echo still'])).stdout, 'still\n', 'stopping one leaves the other');
  });

  test("with mountNs its sessions see that mount namespace, the test reaches it over the host's network", { skip: tools('unshare', 'nsenter') }, async () => {
    // A namespace file needs a mount that is not shared to be bind-mounted on.
    const nsDir = join(root, 'ns');
    mkdirSync(nsDir);
    run('mount', ['--bind', nsDir, nsDir]);
    later(() => spawnSync('umount', ['-l', nsDir]));
    run('mount', ['--make-private', nsDir]);
    const nsFile = join(nsDir, 'mnt');
    writeFileSync(nsFile, '');
    const a = join(root, 'ns-a');
    const b = join(root, 'ns-b');
    mkdirSync(a);
    mkdirSync(b);
    writeFileSync(join(a, 'marker'), 'from a\n');
    run('unshare', [`--mount=${nsFile}`, '--propagation', 'private', '--', 'mount', '--bind', a, b]);
    later(() => spawnSync('umount', [nsFile]));
    assert.deepEqual(readdirSync(b), [], 'on the host B is empty');

    const inNs = await startSshd({ dir: join(root, 'in-ns'), mountNs: nsFile });
    later(() => inNs.stop());
    assert.equal(readlinkSync(`/proc/${inNs.pid}/ns/mnt`), `mnt:[${statSync(nsFile).ino}]`, 'sshd runs in that mount namespace');
    assert.equal(readlinkSync(`/proc/${inNs.pid}/ns/net`), readlinkSync('/proc/self/ns/net'), "and in the host's network namespace");
    const cat = await ssh(inNs.configFile, [HOST, `cat ${b}/marker`]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, 'from a\n');
    const ns = await ssh(inNs.configFile, [HOST, 'readlink /proc/self/ns/mnt']);
    assert.equal(ns.stdout.trim(), `mnt:[${statSync(nsFile).ino}]`, 'the session is in it too');
    assert.deepEqual(readdirSync(b), [], 'and on the host B is still empty');
    // The host's own sshd fixture still sees the host's mounts.
    assert.equal((await ssh(sshd.configFile, [HOST, `ls -A ${b} | wc -l`])).stdout.trim(), '0');
  });

  test('ssh -R: the remote side reaches a server on the test side', async () => {
    const server: Server = createServer((socket) => {
      socket.once('data', (data) => socket.end(`pong ${data.toString().trim()}\n`));
    });
    server.listen(0, HOST);
    await once(server, 'listening');
    later(() => new Promise((resolve) => server.close(resolve)));
    const localPort = (server.address() as { port: number }).port;
    const remotePort = await freePort();
    const script = `for i in $(seq 50); do exec 3<>/dev/tcp/127.0.0.1/${remotePort} && break; sleep 0.1; done; echo ping >&3; head -n1 <&3`;
    const result = await ssh(sshd.configFile, ['-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${remotePort}:127.0.0.1:${localPort}`, HOST, `bash -c '${script}'`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'pong ping\n');
  });

  test('ControlMaster: a master kept running, then commands over its socket share its one connection', async () => {
    const socket = join(root, 'cm.sock');
    const master: ChildProcess = spawn('ssh', ['-F', sshd.configFile, '-M', '-S', socket, '-N', HOST], { stdio: ['ignore', 'ignore', 'pipe'] });
    let masterErr = '';
    master.stderr!.on('data', (d: Buffer) => (masterErr += d.toString()));
    const masterExit = once(master, 'exit');
    later(async () => {
      if (master.exitCode === null && master.signalCode === null) {
        master.kill('SIGTERM');
        await masterExit;
      }
    });
    await eventually(async () => (await ssh(sshd.configFile, ['-S', socket, '-O', 'check', HOST])).code === 0, `the master at ${socket} (${masterErr})`);
    const one = await ssh(sshd.configFile, ['-S', socket, HOST, 'echo $SSH_CLIENT']);
    const two = await ssh(sshd.configFile, ['-S', socket, HOST, 'echo $SSH_CLIENT']);
    const apart = await ssh(sshd.configFile, [HOST, 'echo $SSH_CLIENT']);
    assert.equal(one.code, 0, one.stderr);
    const clientPort = (r: { stdout: string }) => r.stdout.trim().split(' ')[1];
    assert.ok(clientPort(one), one.stdout);
    assert.equal(clientPort(two), clientPort(one), 'both went over the master connection');
    assert.notEqual(clientPort(apart), clientPort(one), 'a command without -S makes its own connection');
    const exit = await ssh(sshd.configFile, ['-S', socket, '-O', 'exit', HOST]);
    assert.equal(exit.code, 0, exit.stderr);
    await masterExit;
    // A -N master told to exit has no session status to give: OpenSSH exits 255, not by a signal.
    assert.equal(master.signalCode, null, masterErr);
    assert.equal(existsSync(socket), false, 'the master removed its socket');
  });

  test('the relay forwards ssh, counts bytes up, and cutAfter drops a running transfer (ssh exits 255)', async () => {
    const relay = await startRelay(sshd.port);
    later(() => relay.close());
    const config = relayConfig(sshd, relay);
    const through = await ssh(config, [HOST, 'echo through the relay']);
    assert.equal(through.code, 0, through.stderr);
    assert.equal(through.stdout, 'through the relay\n');
    assert.ok(relay.bytesUp > 0 && relay.bytesDown > 0);

    const start = relay.bytesUp;
    const allowance = 2 * 1024 * 1024;
    relay.cutAfter(start + allowance);
    const child = spawn('ssh', ['-F', config, HOST, 'cat > /dev/null'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => {}); // EPIPE once ssh is gone
    const exited = once(child, 'exit');
    let done = false;
    void exited.then(() => (done = true));
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let fed = 0;
    const limit = 256 * 1024 * 1024;
    while (!done && fed < limit) {
      // Not events.once(stdin, 'drain'): that rejects on the EPIPE the cut brings.
      if (!child.stdin!.write(chunk)) await Promise.race([new Promise((resolve) => child.stdin!.once('drain', resolve)), exited]);
      fed += chunk.length;
    }
    const [code] = (await exited) as [number | null];
    assert.equal(code, 255, `ssh after the cut: ${stderr}`);
    assert.ok(fed < limit, 'the transfer was cut before the stream ended');
    assert.equal(relay.bytesUp, start + allowance, 'exactly the allowance went up');
    // Cut is for good: a new connection through the relay fails too, the sshd itself is fine.
    assert.equal((await ssh(config, ['-o', 'ConnectTimeout=5', HOST, 'true'])).code, 255);
    assert.equal((await ssh(sshd.configFile, [HOST, 'echo direct'])).stdout, 'direct\n');
  });

  test('cut() drops an idle session at once', async () => {
    const relay = await startRelay(sshd.port);
    later(() => relay.close());
    const child = spawn('ssh', ['-F', relayConfig(sshd, relay), HOST, 'echo up; sleep 300'], { stdio: ['ignore', 'pipe', 'pipe'] });
    later(() => child.exitCode === null && child.kill('SIGKILL'));
    const exited = once(child, 'exit');
    await once(child.stdout!, 'data');
    const cutAt = Date.now();
    relay.cut();
    const [code] = (await exited) as [number | null];
    assert.equal(code, 255);
    assert.ok(Date.now() - cutAt < 10_000, 'ssh noticed the cut at once');
  });

  test('stop() ends sshd and the sessions under it, and frees the port', async () => {
    const own = await startSshd({ dir: join(root, 'stopped') });
    later(() => own.stop());
    const session = spawn('ssh', ['-F', own.configFile, HOST, 'sleep 300'], { stdio: 'ignore' });
    later(() => session.exitCode === null && session.kill('SIGKILL'));
    const sessionExit = once(session, 'exit');
    const tree = await eventually(() => {
      const procs = processTree(own.pid);
      return procs.some((p) => comm(p.pid) === 'sleep') ? procs : null;
    }, 'the sleep session under sshd') as Proc[];
    assert.ok(tree.length >= 3, `listener, its connection's processes and the shell: ${tree.map((p) => `${p.pid} ${comm(p.pid)}`).join(', ')}`);
    await own.stop();
    for (const proc of tree) {
      const now = existsSync(`/proc/${proc.pid}/stat`) ? readFileSync(`/proc/${proc.pid}/stat`, 'utf8') : '';
      const fields = now.slice(now.lastIndexOf(')') + 2).split(' ');
      const same = now !== '' && fields[19] === proc.start;
      assert.ok(!same || fields[0] === 'Z', `process ${proc.pid} (${comm(proc.pid)}) still runs`);
    }
    assert.equal(await canConnect(own.port), false, 'nothing listens on its port');
    const [code] = (await sessionExit) as [number | null];
    assert.equal(code, 255, 'the client saw its connection go');
    await own.stop(); // twice is fine
  });
});
