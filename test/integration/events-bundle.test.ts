import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestEnv, eventually, mountedUnder, ROOTFS } from '../helpers.ts';

describe('events', () => {
  const env = new TestEnv('events');
  after(() => env.cleanup());

  test('follows new events, filters by topic and ID, replays with --since', async () => {
    await env.ok(['run', '--rm', 'before', '--', 'true']);
    const follower = spawn(process.execPath, env.args(['events', '--json', '--topic', '/tasks/start', '--topic', '/tasks/exit', 'e1']), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    follower.stdout.on('data', (d) => (out += d));
    const closed = new Promise((resolve) => follower.on('close', resolve));
    try {
      await sleep(400);
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
});

describe('bundles and rootfs mounts', () => {
  const env = new TestEnv('bundle');
  after(() => env.cleanup());

  test('--bundle runs the bundle as runc would, writing its rootfs in place', async () => {
    const bundle = env.makeBundle('b', ['sh', '-c', 'echo from-bundle; echo mark > /written']);
    const result = await env.run(['run', 'b1', '--bundle', bundle]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'from-bundle\n');
    assert.equal(readFileSync(join(bundle, 'rootfs', 'written'), 'utf8'), 'mark\n');
    const info = await env.json(['info', 'b1']);
    assert.equal(info.rootfs.kind, 'bundle');
    assert.equal(info.rootfs.userBundle, bundle);
    await env.ok(['delete', 'b1']);
    assert.ok(existsSync(join(bundle, 'config.json')), 'the bundle itself is left alone');
  });

  test('--rootfs-mount mounts before create and unmounts on delete', async () => {
    const bundle = env.makeBundle('m', ['sh', '-c', 'echo changed > /etc/motd; sleep 100']);
    const lower = ROOTFS;
    const upper = join(env.root, 'upper');
    const work = join(env.root, 'work');
    mkdirSync(upper);
    mkdirSync(work);
    await env.ok(['run', '-d', 'm1', '--bundle', bundle, '--rootfs-mount', `type=overlay,source=overlay,options=lowerdir=${lower}:upperdir=${upper}:workdir=${work}`]);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), [join(bundle, 'rootfs')]);
    await eventually(() => existsSync(join(upper, 'etc', 'motd')), 'the write in the upper layer');
    await env.ok(['delete', '-f', 'm1']);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), []);
    assert.equal(existsSync(join(lower, 'etc', 'motd')), false);
  });
});
