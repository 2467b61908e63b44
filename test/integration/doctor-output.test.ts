import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TestEnv } from '../helpers.ts';

describe('doctor and output modes', () => {
  const env = new TestEnv('doctor');
  after(() => env.cleanup());

  test('doctor reports every check and exits 0 on a set-up host', async () => {
    const result = await env.run(['doctor']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    for (const name of ['runc', 'conmon', 'criu', 'criu check', 'flock (exit hooks)', 'iptables', 'overlayfs', 'cgroup freezer', 'state directory']) {
      assert.match(result.stdout, new RegExp(`^ok\\s+${name.replace(/[()]/g, '\\$&')}`, 'm'), name);
    }
    const report = await env.json(['doctor']);
    assert.equal(report.ok, true);
    assert.ok(report.checks.every((c: { name: string; ok: boolean; required: boolean }) => typeof c.name === 'string' && (c.ok || !c.required)));
  });

  test('doctor exits 1 and says what to install when a tool is missing', async () => {
    const result = await env.run(['doctor', '--criu', '/nonexistent/criu', '--runc', '/nonexistent/runc']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^FAIL runc\s+\/nonexistent\/runc: not found/m);
    assert.match(result.stdout, /apt-get install runc/);
    assert.match(result.stdout, /^FAIL criu\s+\/nonexistent\/criu: not found/m);
    assert.match(result.stdout, /scripts\/setup\.sh/);
  });

  test('--json errors are JSON on stderr; nothing decorative reaches a pipe', async () => {
    const missing = await env.run(['--json', 'info', 'ghost']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.deepEqual(JSON.parse(missing.stderr), { error: 'no such container: ghost', hint: 'list containers with `stasis ps`' });
    await env.ok(['create', 'plain', '--', 'true']);
    const forced = await env.run(['ps'], { env: { FORCE_COLOR: '1', NO_COLOR: '' } });
    assert.doesNotMatch((await env.run(['ps'])).stdout, /\x1b\[/, 'no colour in a pipe');
    assert.match(forced.stdout, /plain/);
    assert.doesNotMatch((await env.run(['--no-color', 'ps'], { env: { FORCE_COLOR: '1', NO_COLOR: '' } })).stdout, /\x1b\[/, '--no-color wins');
    await env.ok(['delete', 'plain']);
  });

  test('a -t container logs through its terminal; exec -t outside a terminal is refused clearly', async () => {
    await env.ok(['run', '-d', '-t', 'tty', '--', 'sh', '-c', 'tty; while true; do sleep 1; done']);
    const exec = await env.run(['exec', 'tty', '--', 'sh', '-c', 'test -t 0 && echo tty || echo no-tty']);
    assert.equal(exec.stdout, 'no-tty\n');
    const execTty = await env.run(['exec', '-t', 'tty', '--', 'true']);
    assert.equal(execTty.code, 125);
    assert.match(execTty.stderr, /^stasis: exec -t needs stasis to run in a terminal/);
    const logs = await env.run(['logs', 'tty']);
    assert.match(logs.stdout, /\/dev\/pts\/\d+/);
    await env.ok(['delete', '-f', 'tty']);
  });
});
