// stasis delete (rm), on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, cgroupDir, mountedUnder, requires } from '../helpers.ts';

describe('delete', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('delete');
  after(() => env.cleanup());

  test('delete prints the exit status and time, and nothing is left', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    await env.ok(['kill', 'web', '-s', 'KILL']);
    await env.run(['wait', 'web']);
    const deleted = await env.ok(['delete', 'web']);
    assert.match(deleted, /^web exited with status 137 at \d{4}-\d{2}-\d{2}T[\d:.]+Z\n$/);
    assert.equal(env.containerIds().length, 0);
    assert.deepEqual(mountedUnder(env.root), []);
  });

  test('a running container is refused without -f, with a hint', async () => {
    await env.ok(['run', '-d', 's1', '--', 'sleep', '100']);
    const deleteRunning = await env.run(['delete', 's1']);
    assert.equal(deleteRunning.code, 1);
    assert.match(deleteRunning.stderr, /cannot delete container s1: it is running/);
    assert.match(deleteRunning.stderr, /delete -f s1/);
    await env.ok(['delete', '-f', 's1']);
  });

  test('delete -f stops a running, a created and a paused container and leaves nothing behind', async () => {
    await env.ok(['run', '-d', 'fr', '--', 'sh', '-c', 'sleep 100 & sleep 100']);
    await env.ok(['create', 'fc', '--', 'sleep', '100']);
    await env.ok(['run', '-d', 'fp', '--', 'sleep', '100']);
    await env.ok(['pause', 'fp']);
    for (const id of ['fr', 'fc', 'fp']) {
      const info = await env.json(['info', id]);
      const cgroup = cgroupDir(info.pid, 'pids');
      const cgroupsPath = JSON.parse(readFileSync(join(info.stateDir, 'config.json'), 'utf8')).linux.cgroupsPath;
      assert.ok(cgroup.endsWith(cgroupsPath) && existsSync(cgroup), `${id}'s cgroup ${cgroup} is the spec's ${cgroupsPath}`);
      const result = await env.run(['delete', '-f', id]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^${id} exited with status 137 at `));
      assert.throws(() => process.kill(info.pid, 0), `${id}'s process is gone`);
      assert.equal(existsSync(join(env.stateDir, 'runc', id)), false, `runc's state of ${id}`);
      assert.equal(existsSync(cgroup), false, `${id}'s cgroup`);
      assert.equal(existsSync(info.stateDir), false, `${id}'s folder`);
      const exits = await env.ok(['events', '--no-follow', '--topic', '/tasks/exit', id]);
      assert.match(exits, /"status":137/);
    }
  });

  test('delete and delete -f of a missing container', async () => {
    for (const args of [['delete', 'ghost'], ['delete', '-f', 'ghost']]) {
      const result = await env.run(args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, /^stasis: no such container: ghost/, args.join(' '));
    }
  });

  test('concurrent deletes of one container: one succeeds, the other finds it gone', async () => {
    await env.ok(['run', '-d', 'twice', '--', 'sleep', '100']);
    const results = await Promise.all([env.run(['delete', '-f', 'twice']), env.run(['delete', '-f', 'twice'])]);
    assert.deepEqual(results.map((r) => r.code).sort(), [0, 1]);
    assert.match(results.find((r) => r.code === 1)!.stderr, /no such container: twice/);
  });
});
