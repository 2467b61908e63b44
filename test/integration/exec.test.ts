// stasis exec, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, requires } from '../helpers.ts';

describe('exec', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('exec');
  after(() => env.cleanup());

  test("exec passes --env and --cwd, keeps the process's stdout and stderr apart and exits with its status", async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    await env.ok(['start', 'web']);
    const exec = await env.run(['exec', 'web', '--env', 'GREETING=hi', '--cwd', '/etc', '--', 'sh', '-c', 'echo $GREETING; pwd; echo oops >&2; exit 7']);
    assert.equal(exec.code, 7);
    assert.equal(exec.stdout, 'hi\n/etc\n');
    assert.equal(exec.stderr, 'oops\n');
    await env.ok(['delete', '-f', 'web']);
  });

  test('exec into a created container works (its namespaces exist already)', async () => {
    await env.ok(['create', 'fresh', '--', 'sleep', '100']);
    const exec = await env.run(['exec', 'fresh', '--', 'sh', '-c', 'echo inside; exit 3']);
    assert.equal(exec.code, 3, exec.stderr);
    assert.equal(exec.stdout, 'inside\n');
    assert.equal(exec.stderr, '');
    assert.equal((await env.json(['info', 'fresh'])).status, 'created', 'it is still created');
    await env.ok(['delete', '-f', 'fresh']);
  });

  test('exec gives 127 for a missing command', async () => {
    await env.ok(['run', '-d', 'a9', '--', 'sleep', '100']);
    const result = await env.run(['exec', 'a9', '--', 'nope']);
    assert.equal(result.code, 127);
    await env.ok(['delete', '-f', 'a9']);
  });

  test('exec into a missing container is a stasis failure: 125', async () => {
    const badExec = await env.run(['exec', 'nothere', '--', 'true']);
    assert.equal(badExec.code, 125);
    assert.match(badExec.stderr, /no such container: nothere/);
  });

  test('exec in a -t container has no terminal of its own; exec -t outside a terminal is refused clearly', async () => {
    await env.ok(['run', '-d', '-t', 'tty', '--', 'sh', '-c', 'tty; while true; do sleep 1; done']);
    const exec = await env.run(['exec', 'tty', '--', 'sh', '-c', 'test -t 0 && echo tty || echo no-tty']);
    assert.equal(exec.stdout, 'no-tty\n');
    const execTty = await env.run(['exec', '-t', 'tty', '--', 'true']);
    assert.equal(execTty.code, 125);
    assert.match(execTty.stderr, /^stasis: exec -t needs stasis to run in a terminal/);
    await env.ok(['delete', '-f', 'tty']);
  });
});
