// migrate's pure parts: DEST, the control channel's lines, the lazy-pages daemon's count.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { LineReader } from '../../src/migrate/channel.ts';
import { pulledPages } from '../../src/migrate/lazy.ts';
import { parseDestination } from '../../src/migrate/peer.ts';

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
