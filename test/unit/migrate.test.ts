// migrate's pure parts: DEST, the control channel's lines, the lazy-pages daemon's count, when a receiver is up.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { LineReader } from '../../src/migrate/channel.ts';
import { pulledPages } from '../../src/migrate/lazy.ts';
import { parseDestination, type Peer } from '../../src/migrate/peer.ts';
import { startReceiver } from '../../src/migrate/transfer.ts';
import { spawn } from 'node:child_process';

describe('parseDestination', () => {
  test('ssh://[user@]host[:port], IPv6 in brackets', () => {
    assert.deepEqual(parseDestination('ssh://root@hostb:2222'), { kind: 'ssh', user: 'root', host: 'hostb', port: 2222, shown: 'ssh://root@hostb:2222' });
    assert.deepEqual(parseDestination('ssh://hostb'), { kind: 'ssh', user: null, host: 'hostb', port: null, shown: 'ssh://hostb' });
    assert.equal((parseDestination('ssh://[::1]:22') as { host: string }).host, '::1');
  });

  test('a path is a state directory, made absolute', () => {
    assert.deepEqual(parseDestination('/run/stasis-b'), { kind: 'local', stateDir: '/run/stasis-b', shown: '/run/stasis-b' });
    assert.equal((parseDestination('rel/dir') as { stateDir: string }).stateDir, `${process.cwd()}/rel/dir`);
  });

  test('other schemes, option-like hosts, bad ports and paths after the host are refused', () => {
    for (const bad of ['http://h/x', 'ssh://-oProxyCommand=x', 'ssh://h:0', 'ssh://h:70000', 'ssh://h/run/x', 'ssh://', 'ssh://a b']) {
      assert.throws(() => parseDestination(bad), (err: Error & { code?: string }) => err.code === 'bad-destination', bad);
    }
  });
});

describe('LineReader', () => {
  test('one message per line, across chunk boundaries; junk is a not-ok message; null at the end, and after', async () => {
    const stream = new PassThrough();
    const reader = new LineReader(stream);
    stream.write('{"ok":tr');
    stream.write('ue,"a":1}\n\n[1]\nnot json\n{"op":"x"}');
    stream.end('\n');
    assert.deepEqual(await reader.next(), { ok: true, a: 1 });
    assert.equal((await reader.next())!.ok, false);
    assert.match(String((await reader.next())!.error), /^not a message: not json/);
    assert.deepEqual(await reader.next(), { op: 'x' });
    assert.equal(await reader.next(), null);
    assert.equal(await reader.next(), null);
  });
});

describe('pulledPages', () => {
  test('the last count of each task, summed; null before any', () => {
    const log = [
      '(00.214002) uffd: 1-11: uffd_copy: 0x31934000/4096',
      '(00.300000) uffd: 1-11: UFFD transferred pages: (10/100)',
      '(00.310000) uffd: 7-12: UFFD transferred pages: (5/50)',
      '(00.320000) uffd: 1-11: UFFD transferred pages: (60/100)',
    ].join('\n');
    assert.deepEqual(pulledPages(log), { pages: 65, of: 150 });
    assert.equal(pulledPages('(00.1) lazy-pages: started\n'), null);
  });
});

describe('startReceiver', () => {
  /** A peer whose `stasis ARGS` runs `sh -c SCRIPT` (the args in $@); the args it was given are kept. */
  const shellPeer = (script: string) => {
    const given: string[][] = [];
    const peer: Peer = {
      destination: { kind: 'local', stateDir: '/nonexistent', shown: 'test' },
      open: async () => undefined,
      stasis: (args) => (given.push([...args]), spawn('sh', ['-c', script, 'sh', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })),
      reach: async (port) => port,
      close: async () => undefined,
    };
    return { peer, given };
  };

  test('with ready, --ready is passed and the receiver is up once it says so, not before, while it still reads', async () => {
    // It says it started (stderr), then says ready (stdout) only once told to on its input.
    const { peer, given } = shellPeer('echo started >&2; read go; echo \'{"ready":true}\'; cat >/dev/null; echo \'{"bytes":3}\'');
    const receiver = startReceiver(peer, ['__migrate', 'receive', 'T'], true);
    assert.deepEqual(given, [['__migrate', 'receive', 'T', '--ready']]);
    let up = false;
    void receiver.ready.then(() => (up = true));
    await new Promise((resolve) => receiver.child.stderr!.once('data', resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(up, false, 'not ready before it said so');
    receiver.child.stdin!.write('go\n');
    await receiver.ready;
    assert.equal(receiver.child.exitCode, null, 'still running: it waits for the rest of its input');
    receiver.child.stdin!.end('abc');
    assert.equal((await receiver.done).code, 0);
  });

  test('a receiver that ends without a word is ready too (the send then finds it gone)', async () => {
    const { peer } = shellPeer('echo "stasis: refused" >&2; exit 1');
    const receiver = startReceiver(peer, ['x'], true);
    await receiver.ready;
    assert.equal((await receiver.done).code, 1);
  });

  test('without ready (an older stasis there), no --ready and no wait', async () => {
    const { peer, given } = shellPeer('cat >/dev/null');
    const receiver = startReceiver(peer, ['x']);
    assert.deepEqual(given, [['x']]);
    await receiver.ready;
    receiver.child.stdin!.end();
    await receiver.done;
  });
});
