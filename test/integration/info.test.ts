// stasis info, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, requires } from '../helpers.ts';

describe('info', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('info');
  after(() => env.cleanup());

  test('info of a created container: status, pid, labels, command, no exit, not restored, created at', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--label', 'tier=front', '--', ...COUNTER]);
    const info = await env.json(['info', 'web']);
    assert.equal(info.status, 'created');
    assert.ok(info.pid > 0);
    assert.deepEqual(info.labels, { tier: 'front' });
    assert.deepEqual(info.command, COUNTER);
    assert.equal(info.exit, null);
    assert.equal(info.restoredFrom, null);
    assert.match(info.createdAt, /^\d{4}-\d{2}-\d{2}T/);
    await env.ok(['delete', '-f', 'web']);
  });

  test("the bundle of a --bundle container is the user's bundle folder", async () => {
    const bundle = env.makeBundle('userbundle', ['sleep', '100']);
    await env.ok(['create', 'bun', '--bundle', bundle]);
    const info = await env.json(['info', 'bun']);
    assert.equal(info.bundle, bundle);
    assert.equal(info.rootfs.userBundle, bundle);
    assert.notEqual(info.stateDir, bundle, 'stasis keeps its own files in its state directory');
    await env.ok(['delete', '-f', 'bun']);
  });

  test('a missing container; with --json the error is JSON on stderr and nothing is on stdout', async () => {
    const plain = await env.run(['info', 'ghost']);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /^stasis: no such container: ghost/);
    const missing = await env.run(['--json', 'info', 'ghost']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.deepEqual(JSON.parse(missing.stderr), { error: 'no such container: ghost', hint: 'list containers with `stasis ps`' });
  });
});
