// stasis events, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CLI, CONTAINERS, COUNTER, ROOTFS, TestEnv, eventually, hasInotify, requires } from '../helpers.ts';

describe('events', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('events');
  after(() => env.cleanup());

  test('follows new events, filters by topic and ID, replays with --since', async () => {
    await env.ok(['run', '--rm', 'before', '--', 'true']);
    const follower = spawn(CLI[0], env.args(['events', '--json', '--topic', '/tasks/start', '--topic', '/tasks/exit', 'e1']), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    follower.stdout.on('data', (d) => (out += d));
    const closed = new Promise((resolve) => follower.on('close', resolve));
    try {
      // Ready once it watches the journal: it has taken the journal's size, and events after it are followed.
      await eventually(() => hasInotify(follower.pid!), 'the follower to watch the journal', 10_000);
      assert.equal((await env.run(['run', '--rm', 'e1', '--', 'sh', '-c', 'exit 4'])).code, 4);
      await env.ok(['run', '--rm', 'other', '--', 'true']);
      await eventually(() => out.includes('/tasks/exit'), 'the exit event', 10_000);
    } finally {
      follower.kill('SIGINT');
      await closed;
    }
    assert.equal(follower.exitCode, 0, 'events ends cleanly on SIGINT');
    const events = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(events.map((e) => `${e.topic} ${e.id}`), ['/tasks/start e1', '/tasks/exit e1']);
    assert.equal(events[1].event.status, 4);
    assert.match(events[1].timestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z$/);
    assert.ok(!out.includes('"before"'), 'past events only with --since');

    const text = await env.ok(['events', '--no-follow', '--since', '10m', '--topic', '/tasks/exit']);
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[1], /^\S+Z \/tasks\/exit e1 \{"pid":\d+,"status":4,"exitedAt":"[^"]+"\}$/);

    const future = new Date(Date.now() + 3_600_000).toISOString();
    assert.equal(await env.ok(['events', '--no-follow', '--since', future]), '');
    const until = await env.ok(['events', '--no-follow', '--until', '2000-01-01T00:00:00Z']);
    assert.equal(until, '');
    const bad = await env.run(['events', '--since', 'yesterday']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--since "yesterday"/);
  });

  test('the journal records each step of a lifecycle, in order', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--label', 'tier=front', '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    await env.ok(['pause', 'web']);
    await env.ok(['resume', 'web']);
    await env.run(['exec', 'web', '--env', 'GREETING=hi', '--cwd', '/etc', '--', 'sh', '-c', 'echo $GREETING; pwd; echo oops >&2; exit 7']);
    await env.ok(['kill', 'web', '-s', 'KILL']);
    await env.run(['wait', 'web']);
    await env.ok(['delete', 'web']);
    const topics = (await env.ok(['events', '--no-follow', 'web'])).trim().split('\n').map((l) => l.split(' ')[1]);
    assert.deepEqual(topics, ['/containers/create', '/tasks/create', '/tasks/start', '/tasks/paused', '/tasks/resumed', '/tasks/exec-started', '/tasks/exit', '/tasks/delete', '/containers/delete']);
  });
});
