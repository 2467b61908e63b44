// stasis pause and stasis resume, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, eventually, requires } from '../helpers.ts';

describe('pause and resume', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('pause');
  after(() => env.cleanup());

  test('pause freezes the container (no output while paused); resume thaws it', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    await eventually(async () => (await env.ok(['logs', 'web'])).includes('count 2'), 'counter output');
    await env.ok(['pause', 'web']);
    assert.equal((await env.json(['info', 'web'])).status, 'paused');
    const frozen = await env.ok(['logs', 'web']);
    // A fact, not a wait for output that should not come: its cgroup is frozen.
    const { pid } = await env.json(['info', 'web']);
    const freezer = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1] === 'freezer')!.split(':')[2];
    assert.equal(readFileSync(`/sys/fs/cgroup/freezer${freezer}/freezer.state`, 'utf8').trim(), 'FROZEN');
    assert.equal(await env.ok(['logs', 'web']), frozen, 'no output while paused');
    await env.ok(['resume', 'web']);
    assert.equal((await env.json(['info', 'web'])).status, 'running');
    await env.ok(['delete', '-f', 'web']);
  });

  test('a created or stopped container cannot be paused', async () => {
    await env.ok(['create', 's1', '--', 'sleep', '100']);
    const pauseCreated = await env.run(['pause', 's1']);
    assert.equal(pauseCreated.code, 1);
    assert.match(pauseCreated.stderr, /cannot pause container s1: it is created/);
    await env.ok(['start', 's1']);
    await env.ok(['kill', 's1', '-s', 'KILL']);
    await env.run(['wait', 's1']);
    const pauseStopped = await env.run(['pause', 's1']);
    assert.equal(pauseStopped.code, 1);
    assert.match(pauseStopped.stderr, /it is stopped/);
    await env.ok(['delete', 's1']);
  });

  test('pause of a missing container', async () => {
    const result = await env.run(['pause', 'ghost']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: no such container: ghost/);
  });
});
