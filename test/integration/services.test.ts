import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestEnv, eventually } from '../helpers.ts';
import { OtherHost, SOCKETS_DUMPABLE, SOCKETS_REASON, buildFixtures, makeBase, skipUnless } from '../services-fixtures.ts';

// Real services through checkpoint and restore: each is checkpointed and
// restored twice in place and twice into a new ID (from a --leave-running
// image, the second time of a container that was itself restored), and what
// is asserted after each restore is the service's own answer. The programs
// are the C sources in test/fixtures/services, built static with gcc into
// this file's temporary folder and copied into /srv of a copy of the base
// rootfs, which the containers use with --rootfs.
//
// What these need besides stasis itself is checked up front, and a test that
// cannot run says why (t.skip) instead of passing: gcc and a C library for
// static linking, and a CRIU that can dump TCP and UDP sockets on this kernel
// (4.1 fails on Linux >= 6.16 with "Can't get 1:16 opt"; 4.2 can).

async function pidOf(env: TestEnv | OtherHost, id: string): Promise<number> {
  const info = await env.json(['info', id]);
  assert.equal(info.status, 'running', `${id} is running`);
  return info.pid as number;
}

/** The numbers of every `<word> N` line in a log. */
function numbers(log: string, word: string): number[] {
  return [...log.matchAll(new RegExp(`^${word} (\\d+)$`, 'gm'))].map((m) => Number(m[1]));
}

/** The log (a clone's carries the original's up to the checkpoint) never goes back: no restart. */
function neverRestarts(values: number[]): boolean {
  return values.length > 0 && values.every((value, i) => i === 0 || value >= values[i - 1]);
}

function last(values: number[]): number {
  return values.length === 0 ? -1 : values[values.length - 1];
}

/** Runs `check` against the original and a clone, then in place: twice. See the file's comment. */
async function roundTrips(
  env: TestEnv,
  id: string,
  flags: string[],
  check: (id: string, when: string) => Promise<void>,
  opts: { beforeRound?: (round: number) => Promise<void> } = {},
): Promise<void> {
  for (const round of [1, 2]) {
    await opts.beforeRound?.(round);
    const image = join(env.root, `${id}-snap${round}`);
    await env.ok(['checkpoint', id, '--leave-running', '--image-path', image, ...flags]);
    const clone = `${id}-clone${round}`;
    assert.equal(await env.ok(['restore', clone, '--checkpoint', image]), `${clone}\n`);
    // The clone first: it must go on from the image, before the original moves further.
    await check(clone, `round ${round}: restored as ${clone}`);
    await check(id, `round ${round}: left running`);
    await env.ok(['delete', '-f', clone]);
    rmSync(image, { recursive: true, force: true });
    await env.ok(['checkpoint', id, ...flags]);
    assert.equal((await env.json(['info', id])).status, 'stopped');
    assert.equal(await env.ok(['restore', id]), `${id}\n`);
    await check(id, `round ${round}: restored in place`);
  }
}

describe('real services survive checkpoint and restore', () => {
  const env = new TestEnv('services');
  const binDir = join(env.root, 'bin');
  let missing: string | null = 'not built yet';
  let base = '';
  before(() => {
    missing = buildFixtures(binDir);
    if (missing === null) base = makeBase(join(env.root, 'base'), binDir);
  });
  after(() => env.cleanup());

  /** The answer of the HTTP counter in `id` on 127.0.0.1:PORT, asked from inside the container. */
  async function hits(host: TestEnv | OtherHost, id: string, port: number, path: string): Promise<number> {
    const wget = await host.run(['exec', id, '--', 'timeout', '5', 'wget', '-qO-', `http://127.0.0.1:${port}${path}`]);
    assert.equal(wget.code, 0, `wget http://127.0.0.1:${port}${path} in ${id} exited ${wget.code}: ${wget.stderr}`);
    const answer = /^hits (\d+) (\S+)\n$/.exec(wget.stdout);
    assert.ok(answer, `answer of ${id}:${port}: ${JSON.stringify(wget.stdout)}`);
    assert.equal(answer[2], path);
    return Number(answer[1]);
  }

  test('an HTTP server on 127.0.0.1 and one on 0.0.0.0 answer at once after each restore, and count on', async (t) => {
    if (!skipUnless(t, missing === null, missing!) || !skipUnless(t, SOCKETS_DUMPABLE, SOCKETS_REASON)) return;
    await env.ok(['run', '-d', 'web', '--rootfs', base, '--', 'sh', '-c', '/srv/httpcount 127.0.0.1 8080 & exec /srv/httpcount 0.0.0.0 8081']);
    await eventually(async () => {
      const log = await env.ok(['logs', 'web']);
      return log.includes('listening on 0.0.0.0:8081') && log.includes('listening on 127.0.0.1:8080');
    }, 'both servers listening');
    // The count each container's servers have reached; a clone starts from its original's.
    const counted = new Map<string, [number, number]>([['web', [await hits(env, 'web', 8080, '/a'), await hits(env, 'web', 8081, '/b')]]]);
    await roundTrips(env, 'web', [], async (id, when) => {
      const from = counted.get(id) ?? counted.get('web')!;
      // No retries: a restored server must answer as soon as restore has returned.
      const now: [number, number] = [await hits(env, id, 8080, '/a'), await hits(env, id, 8081, '/b')];
      assert.deepEqual(now, [from[0] + 1, from[1] + 1], `${when}: the same servers answered, counting on`);
      counted.set(id, now);
      // From the host too, into the container's network namespace.
      const pid = await pidOf(env, id);
      const fromHost = spawnSync('nsenter', [`--net=/proc/${pid}/ns/net`, join(base, 'bin', 'busybox'), 'timeout', '5', 'wget', '-qO-', 'http://127.0.0.1:8081/host'], { encoding: 'utf8' });
      assert.equal(fromHost.stdout, `hits ${now[1] + 1} /host\n`, `${when}: from the host: ${fromHost.stderr}`);
      counted.set(id, [now[0], now[1] + 1]);
    });
    await env.ok(['delete', '-f', 'web']);
  });

  test('a UDP echo server answers after each restore, counting on', async (t) => {
    if (!skipUnless(t, missing === null, missing!) || !skipUnless(t, SOCKETS_DUMPABLE, SOCKETS_REASON)) return;
    await env.ok(['run', '-d', 'echo', '--rootfs', base, '--', '/srv/udpecho', 'server', '9001']);
    await eventually(async () => (await env.ok(['logs', 'echo'])).includes('udp echo on'), 'the server listening');
    const ask = async (id: string): Promise<number> => {
      const client = await env.run(['exec', id, '--', '/srv/udpecho', 'client', '127.0.0.1', '9001', 'hello']);
      assert.equal(client.code, 0, `udpecho client in ${id}: ${client.stderr}`);
      const answer = /^echo (\d+) hello\n$/.exec(client.stdout);
      assert.ok(answer, `answer of ${id}: ${JSON.stringify(client.stdout)}`);
      return Number(answer[1]);
    };
    const counted = new Map([['echo', await ask('echo')]]);
    await roundTrips(env, 'echo', [], async (id, when) => {
      const now = await ask(id);
      assert.equal(now, (counted.get(id) ?? counted.get('echo')!) + 1, `${when}: the same server answered`);
      counted.set(id, now);
    });
    await env.ok(['delete', '-f', 'echo']);
  });

  test('an established TCP connection on 127.0.0.1 goes on after --leave-running and after restores (--tcp-established)', async (t) => {
    if (!skipUnless(t, missing === null, missing!) || !skipUnless(t, SOCKETS_DUMPABLE, SOCKETS_REASON)) return;
    // The client is the container's init: if its connection breaks, the container ends.
    await env.ok(['run', '-d', 'conn', '--rootfs', base, '--', 'sh', '-c', '/srv/tcpstream server 9000 & exec /srv/tcpstream client 127.0.0.1 9000']);
    const streamed = async (id: string) => {
      const log = await env.ok(['logs', id]);
      assert.doesNotMatch(log, /stream broken|fatal/, `${id}: ${log.slice(-300)}`);
      return { log, seq: last(numbers(log, 'stream')) };
    };
    await eventually(async () => (await streamed('conn')).seq > 3, 'the stream to start');
    const connectedLine = /^connected from \d+$/gm;
    await roundTrips(env, 'conn', ['--tcp-established'], async (id, when) => {
      const before = (await streamed(id)).seq;
      await eventually(async () => (await streamed(id)).seq > before + 3, `${when}: ${id}'s stream to go on`);
      const { log } = await streamed(id);
      // The original connected once; a clone's log carries the original's (logs travel with a
      // checkpoint) and goes on from it, never connecting again nor starting the stream over.
      assert.equal((log.match(connectedLine) ?? []).length, 1, `${when}: no new connection`);
      assert.ok(neverRestarts(numbers(log, 'stream')), `${when}: ${id}'s stream goes on from the checkpoint`);
      assert.equal((await env.json(['info', id])).status, 'running');
    });
    await env.ok(['delete', '-f', 'conn']);
  });

  test('a parent and child keep passing a counter over a unix socketpair', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    await env.ok(['run', '-d', 'pair', '--rootfs', base, '--', '/srv/sockpair']);
    const counter = async (id: string) => {
      const log = await env.ok(['logs', id]);
      assert.doesNotMatch(log, /pair broken|fatal/, log.slice(-300));
      return last(numbers(log, 'pair'));
    };
    await eventually(async () => (await counter('pair')) > 3, 'the counter to start');
    await roundTrips(env, 'pair', [], async (id, when) => {
      const before = await counter(id);
      await eventually(async () => (await counter(id)) > before + 3, `${when}: ${id}'s counter to go on`);
      const counts = numbers(await env.ok(['logs', id]), 'pair');
      assert.ok(neverRestarts(counts), `${when}: ${id}'s counter goes on from the checkpoint (${counts.join(' ')})`);
    });
    await env.ok(['delete', '-f', 'pair']);
  });

  test('a flock(2) lock is still held after restore with --file-locks', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    await env.ok(['run', '-d', 'locker', '--rootfs', base, '--', '/srv/lockhold', 'hold', '/tmp/service.lock']);
    await eventually(async () => (await env.ok(['logs', 'locker'])).includes('locked /tmp/service.lock'), 'the lock to be taken');
    const held = async (id: string, when: string) => {
      const attempt = await env.run(['exec', id, '--', '/srv/lockhold', 'try', '/tmp/service.lock']);
      assert.equal(attempt.stdout, 'busy\n', `${when}: another process cannot take the lock in ${id}`);
      assert.equal(attempt.code, 1);
      const before = last(numbers(await env.ok(['logs', id]), 'holding'));
      await eventually(async () => last(numbers(await env.ok(['logs', id]), 'holding')) > before, `${when}: ${id}'s holder to go on`);
    };
    await held('locker', 'before any checkpoint');
    const without = await env.run(['checkpoint', 'locker']);
    assert.equal(without.code, 1);
    assert.match(without.stderr, /--file-locks/, 'CRIU says what is missing');
    assert.equal((await env.json(['info', 'locker'])).status, 'running', 'a refused dump changes nothing');
    // Each clone has its own layer, so its own lock file, which it holds.
    await roundTrips(env, 'locker', ['--file-locks'], held);
    await env.ok(['delete', '-f', 'locker']);
  });

  test('processes started with exec survive, exec after exec, checkpoint after checkpoint', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    await env.ok(['run', '-d', 'tree', '--rootfs', base, '--', 'sh', '-c', 'while true; do sleep 0.2; done']);
    const writers: number[] = [];
    const progress = async (id: string): Promise<number[]> => {
      const cat = await env.run(['exec', id, '--', 'cat', ...writers.map((n) => `/tmp/exec-${n}`)]);
      assert.equal(cat.code, 0, `${id}: ${cat.stderr}`);
      return cat.stdout.trim().split('\n').map(Number);
    };
    /** Every process of `id` must live in its init's time namespace, or the next restore fails. */
    const sameTimeNamespace = async (id: string, when: string) => {
      const init = await pidOf(env, id);
      const expected = readlinkSync(`/proc/${init}/ns/time`);
      for (const proc of await env.json<{ pid: number; command: string }[]>(['top', id])) {
        let actual: string;
        try {
          actual = readlinkSync(`/proc/${proc.pid}/ns/time`);
        } catch {
          continue; // gone since top listed it (a sleep)
        }
        assert.equal(actual, expected, `${when}: ${proc.command} (pid ${proc.pid}) is in the time namespace ${actual}, its container's init in ${expected}`);
      }
    };
    await roundTrips(env, 'tree', [], async (id, when) => {
      const before = await progress(id);
      await eventually(async () => (await progress(id)).every((value, i) => value > before[i] + 2), `${when}: every exec'd writer in ${id} to go on`);
      await sameTimeNamespace(id, when);
    }, {
      beforeRound: async (round) => {
        writers.push(round);
        // A background writer outliving its exec, as `sh -c 'cmd &'` leaves one.
        await env.ok(['exec', 'tree', '--', 'sh', '-c', `(n=0; while true; do n=$((n+1)); echo $n > /tmp/exec-${round}; sleep 0.1; done) >/dev/null 2>&1 </dev/null &`]);
        await eventually(async () => (await progress('tree')).every((value) => value > 1), `writer ${round} to start`);
        await sameTimeNamespace('tree', `exec before round ${round}`);
      },
    });
    await env.ok(['delete', '-f', 'tree']);
  });

  test('512 MiB of touched memory comes back intact (checksum)', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    await env.ok(['run', '-d', 'mem', '--rootfs', base, '--', '/srv/bigmem', '512']);
    const filled = await eventually(async () => /^filled 512 MiB sum ([0-9a-f]{16})$/m.exec(await env.ok(['logs', 'mem']))?.[1], 'the memory to be filled', 60_000);
    await roundTrips(env, 'mem', [], async (id, when) => {
      const sums = async () => [...(await env.ok(['logs', id])).matchAll(/^check sum ([0-9a-f]{16})$/gm)].map((m) => m[1]);
      const before = (await sums()).length;
      await env.ok(['kill', id, '-s', 'USR1']);
      const now = await eventually(async () => ((await sums()).length > before ? await sums() : null), `${when}: ${id}'s checksum`, 30_000);
      assert.equal(now![now!.length - 1], filled, `${when}: every page came back`);
    });
    await env.ok(['delete', '-f', 'mem']);
  });

  test('a same-size change of a mapped file of the base is refused before CRIU runs', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    const ownBase = makeBase(join(env.root, 'changed-base'), binDir);
    await env.ok(['run', '-d', 'mapped', '--rootfs', ownBase, '--', 'sh', '-c', 'while true; do echo tick; sleep 0.2; done']);
    await eventually(async () => (await env.ok(['logs', 'mapped'])).includes('tick'), 'the shell to run');
    await env.ok(['checkpoint', 'mapped']);
    // One byte in the middle of busybox (which sh maps), far from its ELF
    // build-ID note, so CRIU's own build-ID check passes; same size, same mtime.
    const busybox = join(ownBase, 'bin', 'busybox');
    const original = readFileSync(busybox);
    const { atime, mtime } = statSync(busybox);
    const changed = Buffer.from(original);
    changed[Math.floor(changed.length / 2)] ^= 0xff;
    writeFileSync(busybox, changed);
    utimesSync(busybox, atime, mtime);
    const refused = await env.run(['restore', 'mapped']);
    assert.equal(refused.code, 1, `the changed base was accepted: ${refused.stderr}`);
    assert.match(refused.stderr, /does not match the checkpoint's base/);
    assert.doesNotMatch(refused.stderr, /CRIU log/, 'refused before CRIU ran');
    assert.equal((await env.json(['info', 'mapped'])).status, 'stopped');
    // The same file put back: the checkpoint restores.
    writeFileSync(busybox, original);
    utimesSync(busybox, atime, mtime);
    await env.ok(['restore', 'mapped']);
    assert.equal((await env.json(['info', 'mapped'])).status, 'running');
    await env.ok(['delete', '-f', 'mapped']);
  });

  test('an exported HTTP server goes on on another host (own mount and network namespace, state dir, copy of the base)', async (t) => {
    if (!skipUnless(t, missing === null, missing!) || !skipUnless(t, SOCKETS_DUMPABLE, SOCKETS_REASON)) return;
    await env.ok(['run', '-d', 'mover', '--rootfs', base, '--', 'sh', '-c', 'echo moved-with-me > /srv/state; exec /srv/httpcount 127.0.0.1 8080']);
    await eventually(async () => (await env.ok(['logs', 'mover'])).includes('listening on'), 'the server listening');
    let count = await hits(env, 'mover', 8080, '/here');
    const archive = join(env.root, 'mover.tar.zst');
    assert.equal((await env.ok(['checkpoint', 'mover', '--export', archive])).trim(), archive);
    await env.ok(['delete', 'mover']);
    const other = new OtherHost(env, 'other-host', base);
    try {
      // A checkpoint from another state directory names its base only if it is in the image
      // folder; this one's base is a test folder, so the other host names its copy.
      assert.equal(await other.ok(['restore', 'moved', '--checkpoint', archive, '--rootfs', base]), 'moved\n');
      assert.ok(!(await env.ok(['ps', '-q'])).includes('moved'), 'not on this host');
      assert.equal(await hits(other, 'moved', 8080, '/there'), ++count, 'the same server answers there');
      assert.equal(await other.ok(['exec', 'moved', '--', 'cat', '/srv/state']), 'moved-with-me\n');
      for (const round of [1, 2]) {
        await other.ok(['checkpoint', 'moved']);
        await other.ok(['restore', 'moved']);
        assert.equal(await hits(other, 'moved', 8080, `/round${round}`), ++count, `round ${round} there`);
      }
      await other.ok(['delete', '-f', 'moved']);
    } finally {
      await other.cleanup();
    }
  });
});
