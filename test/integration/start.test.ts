// stasis start, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, requires } from '../helpers.ts';

describe('start', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('start');
  after(() => env.cleanup());

  test('start prints the ID and the container runs', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    assert.equal(await env.ok(['start', 'web']), 'web\n');
    assert.equal((await env.json(['info', 'web'])).status, 'running');
    await env.ok(['delete', '-f', 'web']);
  });

  test('a running container cannot be started again', async () => {
    await env.ok(['create', 's1', '--', 'sleep', '100']);
    await env.ok(['start', 's1']);
    const startTwice = await env.run(['start', 's1']);
    assert.equal(startTwice.code, 1);
    assert.match(startTwice.stderr, /cannot start container s1: it is running/);
    await env.ok(['delete', '-f', 's1']);
  });

  test('a stopped container cannot be started again, and says so', async () => {
    await env.ok(['run', '-d', 's2', '--', 'true']);
    await env.run(['wait', 's2']);
    await env.fails(1, ['start', 's2'], /^stasis: cannot start container s2: it is stopped\nhint: a stopped container cannot be started again; create a new one\n$/);
    await env.ok(['delete', 's2']);
  });

  test('start of a missing container', async () => {
    const result = await env.run(['start', 'ghost']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: no such container: ghost/);
  });
});
