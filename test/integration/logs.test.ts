// stasis logs, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, eventually, requires } from '../helpers.ts';

describe('logs', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('logs');
  after(() => env.cleanup());

  test('logs prints the captured output; --tail 1 prints one line', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    await eventually(async () => (await env.ok(['logs', 'web'])).includes('count 2'), 'counter output');
    assert.equal((await env.ok(['logs', 'web', '--tail', '1'])).trim().split('\n').length, 1);
    await env.ok(['delete', '-f', 'web']);
  });

  test('logs -f ends when the container exits', async () => {
    await env.ok(['run', '-d', 'a6', '--', 'sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.2; done']);
    const logs = await env.run(['logs', '-f', 'a6'], { timeoutMs: 20_000 });
    assert.equal(logs.code, 0);
    assert.equal(logs.stdout, 'line 1\nline 2\nline 3\n');
    await env.ok(['delete', 'a6']);
  });

  test('a -t container logs through its terminal', async () => {
    await env.ok(['run', '-d', '-t', 'tty', '--', 'sh', '-c', 'tty; while true; do sleep 1; done']);
    await eventually(async () => /\/dev\/pts\/\d+/.test((await env.run(['logs', 'tty'])).stdout), 'the tty line in the log');
    const logs = await env.run(['logs', 'tty']);
    assert.match(logs.stdout, /\/dev\/pts\/\d+/);
    await env.ok(['delete', '-f', 'tty']);
  });

  test('logs of a missing container', async () => {
    const result = await env.run(['logs', 'ghost']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: no such container: ghost/);
  });
});
