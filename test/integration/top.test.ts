// stasis top, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, requires } from '../helpers.ts';

describe('top', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('top');
  after(() => env.cleanup());

  test("top lists the container's processes", async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    const top = await env.json(['top', 'web']);
    assert.ok(top.some((p: { command: string }) => p.command.startsWith('sh -c')), JSON.stringify(top));
    await env.ok(['delete', '-f', 'web']);
  });

  test('top of a missing container', async () => {
    const result = await env.run(['top', 'ghost']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: no such container: ghost/);
  });
});
