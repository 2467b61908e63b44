// stasis start, on real runc + conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, counterAdvances, eventually, requires } from '../helpers.ts';

describe('start', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('start');
  after(() => env.cleanup());

  test('start prints the ID and the container runs', async () => {
    await env.ok(['create', 'web', '--rootfs', ROOTFS, '--', ...COUNTER]);
    assert.equal(await env.ok(['start', 'web']), 'web\n');
    assert.equal((await env.json(['info', 'web'])).status, 'running');
    await env.ok(['delete', '-f', 'web']);
  });

  test('started through the exec.fifo runc waits on, as runc start would: runc then sees it running', async () => {
    await env.ok(['create', 'fifo', '--', 'sleep', '100']);
    const fifo = join(env.stateDir, 'runc', 'fifo', 'exec.fifo');
    assert.ok(existsSync(fifo), 'runc waits on its fifo');
    const started = await env.run(['--debug', 'start', 'fifo']);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stderr, /started fifo through its exec\.fifo, as runc start would/);
    assert.doesNotMatch(started.stderr, / start fifo\n/, 'no runc start');
    assert.equal(existsSync(fifo), false, 'the fifo is gone, as runc start leaves it');
    const list = spawnSync('runc', ['--root', join(env.stateDir, 'runc'), 'state', 'fifo'], { encoding: 'utf8' });
    assert.equal(JSON.parse(list.stdout).status, 'running', list.stderr);
    const { pid } = await env.json(['info', 'fifo']);
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /^sleep\x00100\x00$/, 'the init ran the container\'s process');
    await env.ok(['delete', '-f', 'fifo']);
  });

  test('a start killed after it let the init go: the fifo left behind is removed by the next start, or by a checkpoint', { skip: requires('criu') }, async () => {
    await env.ok(['create', 'left', '--', ...COUNTER]);
    const runcRoot = join(env.stateDir, 'runc');
    const fifo = join(runcRoot, 'left', 'exec.fifo');
    const { pid } = await env.json(['info', 'left']);
    // What a start killed between its open and its read leaves: the init goes, the fifo stays.
    const fd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    await eventually(() => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'runc:[2:INIT]', 'the init to run the container\'s process');
    closeSync(fd);
    const runcState = () => JSON.parse(spawnSync('runc', ['--root', runcRoot, 'state', 'left'], { encoding: 'utf8' }).stdout).status;
    assert.equal(runcState(), 'created', 'runc takes it for created while the fifo is there');
    const started = await env.run(['--debug', 'start', 'left']);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stderr, /removed left's exec\.fifo: its init had already run the container's process/);
    assert.equal(runcState(), 'running');
    await counterAdvances(env, 'left', 1);
    // A checkpoint of a container in that state (its record says running) removes the fifo first.
    spawnSync('mkfifo', [fifo]);
    assert.equal(runcState(), 'created');
    await env.ok(['checkpoint', 'left', '--leave-running']);
    assert.equal(runcState(), 'running');
    await env.ok(['delete', '-f', 'left']);
  });

  test('a spec with poststart hooks is left to runc start (runc 1.1 runs them at create; later runc at start)', async () => {
    const bundle = env.makeBundle('hooked', ['sleep', '100']);
    const marker = join(env.root, 'poststart-ran');
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    spec.hooks = { poststart: [{ path: '/bin/sh', args: ['sh', '-c', `echo ran > ${marker}`] }] };
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    await env.ok(['create', 'hooked', '--bundle', bundle]);
    const started = await env.run(['--debug', 'start', 'hooked']);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stderr, / start hooked\n/, 'runc start');
    assert.equal(readFileSync(marker, 'utf8'), 'ran\n');
    assert.equal((await env.json(['info', 'hooked'])).status, 'running');
    await env.ok(['delete', '-f', 'hooked']);
  });

  test('a running container cannot be started again', async () => {
    await env.ok(['create', 's1', '--', 'sleep', '100']);
    await env.ok(['start', 's1']);
    const startTwice = await env.run(['start', 's1']);
    assert.equal(startTwice.code, 1);
    assert.match(startTwice.stderr, /cannot start container s1: it is running/);
    await env.ok(['delete', '-f', 's1']);
  });

  test('a stopped container cannot be started again, and says so', async () => {
    await env.ok(['run', '-d', 's2', '--', 'true']);
    await env.run(['wait', 's2']);
    await env.fails(1, ['start', 's2'], /^stasis: cannot start container s2: it is stopped\nhint: a stopped container cannot be started again; create a new one\n$/);
    await env.ok(['delete', 's2']);
  });

  test('start of a missing container', async () => {
    const result = await env.run(['start', 'ghost']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stasis: no such container: ghost/);
  });
});
