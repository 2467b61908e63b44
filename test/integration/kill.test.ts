// stasis kill, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, requires } from '../helpers.ts';

describe('kill', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('kill');
  after(() => env.cleanup());

  test('kill -s KILL stops the container with status 137', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    await env.ok(['kill', 'web', '-s', 'KILL']);
    assert.equal((await env.run(['wait', 'web'])).code, 137);
    const info = await env.json(['info', 'web']);
    assert.equal(info.status, 'stopped');
    assert.equal(info.exit.status, 137);
    await env.ok(['delete', 'web']);
  });

  test('an unknown signal is a usage error; a stopped container cannot be killed', async () => {
    await env.ok(['create', 's1', '--', 'sleep', '100']);
    const badSignal = await env.run(['kill', 's1', '-s', 'SIGNOPE']);
    assert.equal(badSignal.code, 2);
    assert.match(badSignal.stderr, /unknown signal "SIGNOPE"/);
    await env.ok(['start', 's1']);
    await env.ok(['kill', 's1', '-s', 'KILL']);
    await env.run(['wait', 's1']);
    const killStopped = await env.run(['kill', 's1']);
    assert.equal(killStopped.code, 1);
    await env.ok(['delete', 's1']);
  });

  test('kill of a missing container', async () => {
    const result = await env.run(['kill', 'ghost']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: no such container: ghost/);
  });
});
