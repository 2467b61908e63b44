// stasis run: attached, detached, exit codes, and the create options as run passes them (real runc + conmon).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, CONTAINERS, TestEnv, cgroupDir, cgroupLimit, eventually, mountedUnder, requires } from '../helpers.ts';

describe('run', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('run');
  after(() => env.cleanup());

  test('attached run streams stdout and stderr separately and exits with the status', async () => {
    const result = await env.run(['run', '--rm', 'a1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(result.code, 3);
    assert.equal(result.stdout, 'out\n');
    assert.equal(result.stderr, 'err\n');
    assert.deepEqual(env.containerIds(), [], '--rm removed it');
  });

  test('a state directory that a killed first command left half made (containers/ but no sockets/) still works', async () => {
    const half = new TestEnv('run-half');
    try {
      mkdirSync(join(half.stateDir, 'containers'), { recursive: true, mode: 0o700 });
      const result = await half.run(['run', '--rm', 'h1', '--', 'echo', 'ran']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'ran\n');
      assert.ok(existsSync(join(half.stateDir, 'sockets')));
    } finally {
      await half.cleanup();
    }
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
    const child = spawn(CLI[0], env.args(['run', 'a4', '--', 'sleep', '1000']), { stdio: 'ignore' });
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

  test('a plain attached run passes its stdin to the container (EOF when it ends), through the monitor', { skip: requires('socat') }, async () => {
    const cat = await env.run(['run', 'r1', '--', 'cat'], { input: 'hi\n' });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, 'hi\n');
    // Captured as a plain run's output is: logs has it too.
    assert.equal(await env.ok(['logs', 'r1']), 'hi\n');
    await env.ok(['delete', 'r1']);
    const lines = await env.run(['run', '--rm', 'r2', '--', 'sh', '-c', 'wc -l'], { input: 'a\nb\nc\n' });
    assert.equal(lines.stdout.trim(), '3');
    // No stdin at all: the container reads EOF at once.
    const empty = await env.run(['run', '--rm', 'r3', '--', 'sh', '-c', 'read x; echo "got [$x]"']);
    assert.equal(empty.stdout, 'got []\n');
  });

  test('an attached run whose stdin stays open is still checkpointable, and says so when it is', { skip: requires('socat', 'criu') }, async () => {
    const child = spawn(CLI[0], env.args(['run', 'r4', '--', 'sh', '-c', 'while true; do echo tick; sleep 0.2; done']), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      await eventually(async () => (await env.ok(['logs', 'r4'])).includes('tick'), 'the first tick');
      await env.ok(['checkpoint', 'r4']);
      assert.equal(await exited, 0);
      assert.match(stderr, /container r4 was checkpointed; restore it with `stasis restore r4`/);
      await env.ok(['restore', 'r4']);
      assert.equal((await env.json(['info', 'r4'])).status, 'running');
    } finally {
      child.stdin!.end();
      child.kill();
      await env.run(['delete', '-f', 'r4']);
    }
  });

  test('run -d returns at once with the ID', async () => {
    const started = await env.run(['run', '-d', 'a6', '--', 'sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.2; done']);
    assert.equal(started.stdout, 'a6\n');
    assert.equal((await env.run(['wait', 'a6'])).code, 0);
    await env.ok(['delete', 'a6']);
  });

  test('--rm -d removes the container when it exits', async () => {
    await env.ok(['run', '-d', '--rm', 'gone', '--', 'true']);
    await eventually(() => !existsSync(join(env.stateDir, 'containers', 'gone')), 'removal of the container');
    const events = await env.ok(['events', '--no-follow', '--topic', '/containers/delete', 'gone']);
    assert.match(events, /\/containers\/delete gone/);
  });

  test('a stasis-side failure of run is 125, a usage error of run too', async () => {
    const badBundle = await env.run(['run', 'a7', '--bundle', '/nonexistent/bundle']);
    assert.equal(badBundle.code, 125);
    assert.match(badBundle.stderr, /^stasis: bundle \/nonexistent\/bundle/);
    const badFlag = await env.run(['run', 'a8', '--no-such-flag']);
    assert.equal(badFlag.code, 125);
    const run = await env.run(['run', '../x', '--', 'true']);
    assert.equal(run.code, 125, 'run reports its usage errors as 125');
    assert.equal(existsSync(join(env.root, 'x')), false);
    assert.deepEqual(env.containerIds(), []);
  });

  test('options reach the spec and the cgroup', async () => {
    const out = join(env.root, 'out.txt');
    await env.ok(['run', '-d', 'opts', '--memory', '64m', '--pids-limit', '20', '-e', 'A=1', '-e', 'B=two words', '--cwd', '/tmp', '--', 'sleep', '100']);
    const spec = JSON.parse(readFileSync(join(env.stateDir, 'containers', 'opts', 'config.json'), 'utf8'));
    assert.equal(spec.linux.resources.memory.limit, 64 * 1024 * 1024);
    assert.equal(spec.linux.resources.pids.limit, 20);
    const { pid } = await env.json(['info', 'opts']);
    assert.equal(cgroupLimit(cgroupDir(pid, 'memory'), 'memory'), String(64 * 1024 * 1024));
    assert.equal(cgroupLimit(cgroupDir(pid, 'pids'), 'pids'), '20');
    const shown = await env.run(['exec', 'opts', '--', 'sh', '-c', 'echo "$A|$B|$(pwd)"']);
    assert.equal(shown.stdout, '1|two words|/tmp\n');
    await env.ok(['delete', '-f', 'opts']);

    // Attached: the stream without a file comes straight to run's own stderr.
    const attached = await env.run(['run', '--rm', 'tofile', '--stdout', out, '--', 'sh', '-c', 'echo to-file; echo to-err >&2']);
    assert.equal(attached.code, 0);
    assert.equal(attached.stderr, 'to-err\n');
    assert.equal(readFileSync(out, 'utf8'), 'to-file\n');
    // Detached: the stream without a file is captured for logs.
    await env.ok(['run', '-d', 'tofile2', '--stdout', out, '--', 'sh', '-c', 'echo again; echo to-err >&2']);
    assert.equal((await env.run(['wait', 'tofile2'])).code, 0);
    const logs = await env.run(['logs', 'tofile2']);
    assert.equal(logs.stderr, 'to-err\n', 'stderr is captured');
    assert.equal(readFileSync(out, 'utf8'), 'to-file\nagain\n', '--stdout appends');
    await env.ok(['delete', 'tofile2']);

    const input = join(env.root, 'in.txt');
    writeFileSync(input, 'line one\nline two\n');
    const fromFile = await env.run(['run', '--rm', 'fromfile', '--stdin', input, '--', 'wc', '-l']);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout.trim(), '2');
  });

  test('an ID of 128 characters works for run -d, ps and delete -f', async () => {
    const id = `long-${'x'.repeat(123)}`;
    assert.equal(id.length, 128);
    assert.equal(await env.ok(['run', '-d', id, '--', 'sleep', '100']), `${id}\n`);
    const listed = (await env.json(['ps'])).filter((c: { id: string }) => c.id === id);
    assert.deepEqual(listed.map((c: { id: string; status: string }) => `${c.id} ${c.status}`), [`${id} running`]);
    assert.match(await env.ok(['ps']), new RegExp(`^${id}\\s+running\\s+\\d+`, 'm'));
    const deleted = await env.run(['delete', '-f', id]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, new RegExp(`^${id} exited with status 137 at `));
    assert.ok(!env.containerIds().includes(id));
    assert.deepEqual(mountedUnder(join(env.stateDir, 'containers', id)), []);
  });
});
