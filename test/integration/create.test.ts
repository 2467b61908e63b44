// stasis create (and the create options run shares), on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, CONTAINERS, COUNTER, ROOTFS, TestEnv, eventually, mountedUnder, requires } from '../helpers.ts';

describe('create', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('create');
  after(() => env.cleanup());

  test('create prints the ID; the container is created and the state directory is 0700', async () => {
    assert.equal(await env.ok(['create', 'web', '--rootfs', ROOTFS, '--label', 'tier=front', '--', ...COUNTER]), 'web\n');
    assert.equal(statSync(env.stateDir).mode & 0o777, 0o700, 'the state directory is created 0700');
    assert.equal((await env.json(['info', 'web'])).status, 'created');
    await env.ok(['delete', '-f', 'web']);
  });

  test('the base rootfs is never written and containers share it', async () => {
    await env.ok(['run', '--rm', 'w1', '--', 'sh', '-c', 'echo one > /etc/written; rm /etc/hosts']);
    await env.ok(['run', '--rm', 'w2', '--', 'sh', '-c', 'test ! -e /etc/written && test -e /etc/hosts']);
    assert.equal(existsSync(join(ROOTFS, 'etc', 'written')), false);
    assert.equal(existsSync(join(ROOTFS, 'etc', 'hosts')), true);
  });

  test('invalid IDs are usage errors before any side effect', async () => {
    for (const id of ['../x', 'a/b', '', 'x'.repeat(200), '-rf', '.hidden']) {
      const result = await env.run(['create', id, '--', 'true']);
      assert.equal(result.code, 2, `id ${JSON.stringify(id)}: ${result.stderr}`);
      assert.match(result.stderr, /^stasis: /);
    }
    assert.equal(existsSync(join(env.root, 'x')), false);
    env.assertNothingLeft();
  });

  test('a duplicate ID fails and leaves the first container alone', async () => {
    await env.ok(['create', 'dup', '--', 'sleep', '100']);
    const again = await env.run(['create', 'dup', '--', 'true']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^stasis: container dup already exists/);
    assert.equal((await env.json(['info', 'dup'])).status, 'created');
    await env.ok(['delete', 'dup']);
  });

  test('missing bundle, missing or invalid config.json, unreadable rootfs', async () => {
    const missing = await env.run(['create', 'b1', '--bundle', join(env.root, 'nope')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^stasis: bundle .*nope/);
    const empty = join(env.root, 'empty-bundle');
    mkdirSync(empty);
    const noConfig = await env.run(['create', 'b2', '--bundle', empty]);
    assert.equal(noConfig.code, 1);
    assert.match(noConfig.stderr, /config\.json/);
    writeFileSync(join(empty, 'config.json'), '{ not json');
    const invalid = await env.run(['create', 'b3', '--bundle', empty]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /config\.json is not valid JSON/);
    writeFileSync(join(empty, 'config.json'), '{"ociVersion": "1.0.2"}');
    const notSpec = await env.run(['create', 'b4', '--bundle', empty]);
    assert.match(notSpec.stderr, /not an OCI runtime spec/);
    // Root reads through any file mode, so "unreadable" is a config.json that is a folder.
    const unreadable = join(env.root, 'unreadable-bundle');
    mkdirSync(join(unreadable, 'config.json'), { recursive: true });
    const cannotRead = await env.run(['create', 'b6', '--bundle', unreadable]);
    assert.equal(cannotRead.code, 1);
    assert.match(cannotRead.stderr, /^stasis: bundle .*: cannot read config\.json/);
    const rootfsMissing = await env.run(['create', 'b5', '--rootfs', join(env.root, 'no-rootfs')]);
    assert.equal(rootfsMissing.code, 1);
    assert.match(rootfsMissing.stderr, /rootfs .* is not a directory/);
    env.assertNothingLeft();
  });

  test('a runc failure at create leaves no half-created container or mount', async () => {
    const result = await env.run(['create', 'r1', '--cwd', 'relative/path', '--', 'true']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: /);
    env.assertNothingLeft();
  });

  test('flag combinations are checked before any work', async () => {
    const both = await env.run(['create', 'f1', '--bundle', env.root, '--rootfs', env.root]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--bundle and --rootfs/);
    const badMemory = await env.run(['create', 'f2', '--memory', 'lots', '--', 'true']);
    assert.equal(badMemory.code, 2);
    assert.match(badMemory.stderr, /--memory "lots"/);
    const badMount = await env.run(['create', 'f3', '--bundle', env.root, '--rootfs-mount', 'source=x']);
    assert.equal(badMount.code, 2);
    env.assertNothingLeft();
  });
});

describe('create --bundle and --rootfs-mount', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('bundle');
  after(() => env.cleanup());

  test('--bundle runs the bundle as runc would, writing its rootfs in place', async () => {
    const bundle = env.makeBundle('b', ['sh', '-c', 'echo from-bundle; echo mark > /written']);
    const result = await env.run(['run', 'b1', '--bundle', bundle]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'from-bundle\n');
    assert.equal(readFileSync(join(bundle, 'rootfs', 'written'), 'utf8'), 'mark\n');
    const info = await env.json(['info', 'b1']);
    assert.equal(info.rootfs.kind, 'bundle');
    assert.equal(info.rootfs.userBundle, bundle);
    await env.ok(['delete', 'b1']);
    assert.ok(existsSync(join(bundle, 'config.json')), 'the bundle itself is left alone');
  });

  test('--rootfs-mount mounts before create and unmounts on delete', async () => {
    const bundle = env.makeBundle('m', ['sh', '-c', 'echo changed > /etc/motd; sleep 100']);
    const lower = ROOTFS;
    const upper = join(env.root, 'upper');
    const work = join(env.root, 'work');
    mkdirSync(upper);
    mkdirSync(work);
    await env.ok(['run', '-d', 'm1', '--bundle', bundle, '--rootfs-mount', `type=overlay,source=overlay,options=lowerdir=${lower}:upperdir=${upper}:workdir=${work}`]);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), [join(bundle, 'rootfs')]);
    await eventually(() => existsSync(join(upper, 'etc', 'motd')), 'the write in the upper layer');
    await env.ok(['delete', '-f', 'm1']);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), []);
    assert.equal(existsSync(join(lower, 'etc', 'motd')), false);
  });
});

describe('create: concurrent creates and a create killed half way', { skip: requires(...CONTAINERS) }, () => {
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
    const child = spawn(CLI[0], env.args(['create', 'crashed', '--', 'sleep', '100']), { stdio: 'ignore' });
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
});
