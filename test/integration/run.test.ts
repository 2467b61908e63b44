import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { BIN, TestEnv, eventually } from '../helpers.ts';

describe('run: attached, detached, exit codes', () => {
  const env = new TestEnv('run');
  after(() => env.cleanup());

  test('attached run streams stdout and stderr separately and exits with the status', async () => {
    const result = await env.run(['run', '--rm', 'a1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(result.code, 3);
    assert.equal(result.stdout, 'out\n');
    assert.equal(result.stderr, 'err\n');
    assert.deepEqual(env.containerIds(), [], '--rm removed it');
  });

  test('a command that is not found exits 127, one that cannot run 126, and nothing is left', async () => {
    const missing = await env.run(['run', '--rm', 'a2', '--', 'no-such-command']);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /^stasis: .*no-such-command.*not found/m);
    const notExecutable = await env.run(['run', '--rm', 'a3', '--', '/etc/passwd']);
    assert.equal(notExecutable.code, 126);
    assert.match(notExecutable.stderr, /permission denied/);
    assert.deepEqual(env.containerIds(), []);
  });

  test('a container killed by a signal gives 128+N', async () => {
    const child = spawn(process.execPath, env.args(['run', 'a4', '--', 'sleep', '1000']), { stdio: 'ignore' });
    const code = new Promise<number | null>((resolve) => child.on('close', resolve));
    await eventually(async () => (await env.json(['info', 'a4'])).status === 'running', 'a4 running');
    await env.ok(['kill', 'a4', '-s', '9']);
    assert.equal(await code, 137);
    await env.ok(['delete', 'a4']);
  });

  test('run -i passes stdin through', async () => {
    const result = await env.run(['run', '--rm', '-i', 'a5', '--', 'sh', '-c', 'tr a-z A-Z'], { input: 'hello\n' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'HELLO\n');
  });

  test('run -d returns at once with the ID; logs -f ends when the container exits', async () => {
    const started = await env.run(['run', '-d', 'a6', '--', 'sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.2; done']);
    assert.equal(started.stdout, 'a6\n');
    const logs = await env.run(['logs', '-f', 'a6'], { timeoutMs: 20_000 });
    assert.equal(logs.code, 0);
    assert.equal(logs.stdout, 'line 1\nline 2\nline 3\n');
    await env.ok(['delete', 'a6']);
  });

  test('a stasis-side failure of run is 125, a usage error of run too', async () => {
    const badBundle = await env.run(['run', 'a7', '--bundle', '/nonexistent/bundle']);
    assert.equal(badBundle.code, 125);
    assert.match(badBundle.stderr, /^stasis: bundle \/nonexistent\/bundle/);
    const badFlag = await env.run(['run', 'a8', '--no-such-flag']);
    assert.equal(badFlag.code, 125);
    const badExec = await env.run(['exec', 'nothere', '--', 'true']);
    assert.equal(badExec.code, 125);
    assert.match(badExec.stderr, /no such container: nothere/);
    assert.deepEqual(env.containerIds(), []);
  });

  test('exec gives 127 for a missing command', async () => {
    await env.ok(['run', '-d', 'a9', '--', 'sleep', '100']);
    const result = await env.run(['exec', 'a9', '--', 'nope']);
    assert.equal(result.code, 127);
    await env.ok(['delete', '-f', 'a9']);
  });

  test('stasis ps | head -1 prints no EPIPE error', async () => {
    for (let i = 0; i < 3; i++) await env.ok(['create', `p${i}`, '--', 'true']);
    const result = await new Promise<{ out: string; err: string }>((resolve) => {
      const shell = spawn('sh', ['-c', `"${process.execPath}" "${BIN}" --state-dir "${env.stateDir}" ps | head -1`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      shell.stdout.on('data', (d) => (out += d));
      shell.stderr.on('data', (d) => (err += d));
      shell.on('close', () => resolve({ out, err }));
    });
    assert.match(result.out, /^ID\s+STATUS/);
    assert.equal(result.err, '');
    await env.ok(['delete', 'p0', 'p1', 'p2']);
  });
});
