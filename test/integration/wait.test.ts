// stasis wait, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, requires } from '../helpers.ts';

describe('wait', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('wait');
  after(() => env.cleanup());

  test('wait prints the exit status and exits with it', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    await env.ok(['kill', 'web', '-s', 'KILL']);
    const waited = await env.run(['wait', 'web']);
    assert.equal(waited.stdout, '137\n');
    assert.equal(waited.code, 137);
    const info = await env.json(['info', 'web']);
    assert.equal(info.status, 'stopped');
    assert.equal(info.exit.status, 137);
    await env.ok(['delete', 'web']);
  });

  test('wait on a missing container is 125', async () => {
    const wait = await env.run(['wait', 'ghost']);
    assert.equal(wait.code, 125);
  });
});
