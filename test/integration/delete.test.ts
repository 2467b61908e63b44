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

  test('delete -f removes a container whose state.json is damaged, leaving no process, mount, cgroup or runc state', async () => {
    for (const [id, content] of [['empty', '{}'], ['garbled', 'garbage']]) {
      await env.ok(['run', '-d', id, '--', 'sleep', '100']);
      const info = await env.json(['info', id]);
      const cgroup = cgroupDir(info.pid, 'pids');
      const rootfs = join(env.stateDir, 'containers', id, 'rootfs');
      assert.deepEqual(mountedUnder(rootfs), [rootfs], 'its overlay is mounted');
      writeFileSync(join(env.stateDir, 'containers', id, 'state.json'), content);
      const result = await env.run(['delete', '-f', id]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^${id} exited with `));
      assert.throws(() => process.kill(info.pid, 0), `${id}'s process is gone`);
      assert.deepEqual(mountedUnder(join(env.stateDir, 'containers', id)), [], `${id}'s overlay is unmounted`);
      assert.equal(existsSync(cgroup), false, `${id}'s cgroup`);
      assert.equal(existsSync(join(env.stateDir, 'runc', id)), false, `runc's state of ${id}`);
      assert.equal(existsSync(info.stateDir), false, `${id}'s folder`);
    }
    assert.equal(spawnSync('runc', ['--root', join(env.stateDir, 'runc'), 'list', '-q']).stdout.toString().trim(), '');
    env.assertNothingLeft();
  });

  test('delete and delete -f of a missing container', async () => {
    for (const args of [['delete', 'ghost'], ['delete', '-f', 'ghost']]) {
      const result = await env.run(args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, /^stasis: no such container: ghost/, args.join(' '));
    }
  });

  test('delete of a stopped and two missing containers: the stopped one goes, each cause is printed once, exit 1', async () => {
    await env.ok(['run', '-d', 'real', '--', 'true']);
    await env.run(['wait', 'real']);
    const result = await env.run(['delete', 'ghost1', 'real', 'ghost2']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^real exited with status 0 at \S+\n$/, 'the one that could be deleted is');
    assert.equal(result.stderr, [
      'stasis: no such container: ghost1',
      'hint: list containers with `stasis ps`',
      'stasis: no such container: ghost2',
      'hint: list containers with `stasis ps`',
      'stasis: 2 of 3 containers could not be deleted',
      '',
    ].join('\n'));
  });

  test('concurrent deletes of one container: one succeeds, the other finds it gone', async () => {
    await env.ok(['run', '-d', 'twice', '--', 'sleep', '100']);
    const results = await Promise.all([env.run(['delete', '-f', 'twice']), env.run(['delete', '-f', 'twice'])]);
    assert.deepEqual(results.map((r) => r.code).sort(), [0, 1]);
    assert.match(results.find((r) => r.code === 1)!.stderr, /no such container: twice/);
  });
});
