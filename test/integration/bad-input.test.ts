import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestEnv, mountedUnder } from '../helpers.ts';

describe('bad input gives a clear error and changes nothing', () => {
  const env = new TestEnv('badinput');
  after(() => env.cleanup());

  const assertNothingLeft = () => {
    assert.deepEqual(env.containerIds(), []);
    assert.deepEqual(mountedUnder(env.stateDir), []);
  };

  test('invalid IDs are usage errors before any side effect', async () => {
    for (const id of ['../x', 'a/b', '', 'x'.repeat(200), '-rf', '.hidden']) {
      const result = await env.run(['create', id, '--', 'true']);
      assert.equal(result.code, 2, `id ${JSON.stringify(id)}: ${result.stderr}`);
      assert.match(result.stderr, /^stasis: /);
    }
    const run = await env.run(['run', '../x', '--', 'true']);
    assert.equal(run.code, 125, 'run reports its usage errors as 125');
    assert.equal(existsSync(join(env.root, 'x')), false);
    assertNothingLeft();
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
    assertNothingLeft();
  });

  test('a runc failure at create leaves no half-created container or mount', async () => {
    const result = await env.run(['create', 'r1', '--cwd', 'relative/path', '--', 'true']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: /);
    assertNothingLeft();
  });

  test('unknown signal, wrong states, missing containers', async () => {
    await env.ok(['create', 's1', '--', 'sleep', '100']);
    const badSignal = await env.run(['kill', 's1', '-s', 'SIGNOPE']);
    assert.equal(badSignal.code, 2);
    assert.match(badSignal.stderr, /unknown signal "SIGNOPE"/);
    const pauseCreated = await env.run(['pause', 's1']);
    assert.equal(pauseCreated.code, 1);
    assert.match(pauseCreated.stderr, /cannot pause container s1: it is created/);
    await env.ok(['start', 's1']);
    const startTwice = await env.run(['start', 's1']);
    assert.equal(startTwice.code, 1);
    assert.match(startTwice.stderr, /cannot start container s1: it is running/);
    const deleteRunning = await env.run(['delete', 's1']);
    assert.equal(deleteRunning.code, 1);
    assert.match(deleteRunning.stderr, /cannot delete container s1: it is running/);
    assert.match(deleteRunning.stderr, /delete -f s1/);
    await env.ok(['kill', 's1', '-s', 'KILL']);
    await env.run(['wait', 's1']);
    const pauseStopped = await env.run(['pause', 's1']);
    assert.equal(pauseStopped.code, 1);
    assert.match(pauseStopped.stderr, /it is stopped/);
    const killStopped = await env.run(['kill', 's1']);
    assert.equal(killStopped.code, 1);
    await env.ok(['delete', 's1']);
    for (const args of [['info', 'ghost'], ['kill', 'ghost'], ['delete', 'ghost'], ['delete', '-f', 'ghost'], ['start', 'ghost'], ['pause', 'ghost'], ['logs', 'ghost'], ['top', 'ghost']]) {
      const result = await env.run(args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, /^stasis: no such container: ghost/, args.join(' '));
    }
    const wait = await env.run(['wait', 'ghost']);
    assert.equal(wait.code, 125);
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
    const unknownFlag = await env.run(['ps', '--bogus']);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /^stasis: Unknown argument: bogus/);
    assertNothingLeft();
  });
});
