import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestEnv, mountedUnder } from '../helpers.ts';

describe('concurrent commands on one state directory', () => {
  const env = new TestEnv('concurrency');
  after(() => env.cleanup());

  test('20 concurrent creates with distinct IDs all succeed', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `c${i}`);
    const results = await Promise.all(ids.map((id) => env.run(['create', id, '--', 'sleep', '100'])));
    results.forEach((r, i) => assert.equal(r.code, 0, `${ids[i]}: ${r.stderr}`));
    const listed = (await env.json(['ps'])).map((c: { id: string; status: string }) => `${c.id}:${c.status}`).sort();
    assert.deepEqual(listed, ids.map((id) => `${id}:created`).sort());
    const deleted = await env.run(['delete', '-f', ...ids]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout.trim().split('\n').length, 20);
    assert.deepEqual(env.containerIds(), []);
  });

  test('10 concurrent creates of one ID: exactly one succeeds', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => env.run(['create', 'same', '--', 'sleep', '100'])));
    const succeeded = results.filter((r) => r.code === 0);
    assert.equal(succeeded.length, 1, results.map((r) => r.stderr).join(''));
    for (const failed of results.filter((r) => r.code !== 0)) {
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /container same already exists|container same is busy/);
    }
    assert.equal((await env.json(['info', 'same'])).status, 'created');
    await env.ok(['delete', '-f', 'same']);
  });

  test('kill -9 of stasis in the middle of create: ps is honest and delete -f cleans up', async () => {
    const dir = join(env.stateDir, 'containers', 'crashed');
    const child = spawn(process.execPath, env.args(['create', 'crashed', '--', 'sleep', '100']), { stdio: 'ignore' });
    // Kill it as soon as its record exists: after the claim, before the container is complete.
    for (let i = 0; i < 5000 && !existsSync(join(dir, 'state.json')); i++) await sleep(1);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    assert.ok(existsSync(dir), 'the interrupted create left its folder');
    const [info] = await env.json(['ps']);
    assert.equal(info.id, 'crashed');
    assert.ok(['created', 'stopped'].includes(info.status), `status ${info.status}`);
    const ps = await env.ok(['ps']);
    assert.match(ps, /crashed/);
    const removed = await env.run(['delete', '-f', 'crashed']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(existsSync(dir), false);
    assert.deepEqual(mountedUnder(env.stateDir), []);
    const runcList = spawnSync('runc', ['--root', join(env.stateDir, 'runc'), 'list', '-q']).stdout.toString().trim();
    assert.equal(runcList, '');
  });

  test('concurrent deletes of one container: one succeeds, the other finds it gone', async () => {
    await env.ok(['run', '-d', 'twice', '--', 'sleep', '100']);
    const results = await Promise.all([env.run(['delete', '-f', 'twice']), env.run(['delete', '-f', 'twice'])]);
    assert.deepEqual(results.map((r) => r.code).sort(), [0, 1]);
    assert.match(results.find((r) => r.code === 1)!.stderr, /no such container: twice/);
  });
});
