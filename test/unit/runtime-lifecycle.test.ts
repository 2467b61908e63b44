// start, pause, resume, kill, exits and waiting over a fake runc (src/runtime/lifecycle.ts, exit.ts, exit-hook.ts).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { monitorDone, waitExit } from '../../src/runtime/exit.ts';
import type { RuntimeContext } from '../../src/runtime/context.ts';
import { join } from 'node:path';
import { FakeHost, deadPid, rejection, writeExit } from './fakes.ts';

describe('start (fake runc)', () => {
  const host = new FakeHost('start');
  after(() => host.cleanup());

  test('start runs runc start and records running and /tasks/start', async () => {
    await host.create('s1');
    host.runner.reset();
    const info = await host.runtime.container('s1').start();
    assert.equal(info.status, 'running');
    assert.deepEqual(host.runner.runcCalls(), ['start s1']);
    assert.equal(host.record('s1').status, 'running');
    assert.deepEqual(host.events().slice(-1), ['/tasks/start s1']);
  });

  test("runc start fails: the error has runc's message, the record stays created, no event", async () => {
    await host.create('s2');
    host.runner.reset();
    host.runner.failRunc(['start'], 'cannot start an already running container', { once: true });
    const events = host.events().length;
    const err = await rejection(host.runtime.container('s2').start());
    assert.equal(err.message, 'start s2: cannot start an already running container');
    assert.equal(err.exitCode, 1);
    assert.deepEqual(host.runner.runcCalls(), ['start s2']);
    assert.equal(host.record('s2').status, 'created');
    assert.equal((await host.runtime.info('s2')).status, 'created');
    assert.equal(host.events().length, events);
  });

  test('a stopped container is not started again, and runc is not asked', async () => {
    await host.createRunning('s3');
    writeExit(host.containerDir('s3'), 0);
    host.runner.reset();
    const err = await rejection(host.runtime.container('s3').start());
    assert.equal(err.message, 'cannot start container s3: it is stopped');
    assert.equal(err.hint, 'a stopped container cannot be started again; create a new one');
    assert.deepEqual(host.runner.runcCalls(), []);
  });

  test('a running container is not started twice', async () => {
    const err = await rejection(host.runtime.container('s1').start());
    assert.equal(err.message, 'cannot start container s1: it is running');
    assert.equal(err.hint, undefined);
  });

  test('a container whose process is gone without an exit file is stopped', async () => {
    await host.create('s4');
    const record = host.record('s4');
    host.runtime.store.write({ ...record, pid: deadPid() });
    const info = await host.runtime.info('s4');
    assert.equal(info.status, 'stopped');
    assert.equal(info.pid, null);
    assert.equal(info.exit, null);
    const err = await rejection(host.runtime.container('s4').start());
    assert.equal(err.message, 'cannot start container s4: it is stopped');
  });

  test('a missing container', async () => {
    const err = await rejection(host.runtime.container('ghost').start());
    assert.equal(err.message, 'no such container: ghost');
    assert.equal(err.exitCode, 1);
  });
});

describe('pause and resume (fake runc)', () => {
  const host = new FakeHost('pause');
  after(() => host.cleanup());

  test('pause, then resume: runc pause and resume, the record and the events follow', async () => {
    await host.createRunning('p1');
    host.runner.reset();
    await host.runtime.container('p1').pause();
    assert.equal(host.record('p1').status, 'paused');
    await host.runtime.container('p1').resume();
    assert.equal(host.record('p1').status, 'running');
    assert.deepEqual(host.runner.runcCalls(), ['pause p1', 'resume p1']);
    assert.deepEqual(host.events().slice(-2), ['/tasks/paused p1', '/tasks/resumed p1']);
  });

  test('runc pause fails: the record is rolled back to running', async () => {
    host.runner.failRunc(['pause'], 'container not running', { once: true });
    const events = host.events().length;
    const err = await rejection(host.runtime.container('p1').pause());
    assert.equal(err.message, 'pause p1: container not running');
    assert.equal(host.record('p1').status, 'running');
    assert.equal(host.events().length, events);
  });

  test('runc resume fails: the record is rolled back to paused', async () => {
    await host.runtime.container('p1').pause();
    host.runner.failRunc(['resume'], 'unable to thaw: device or resource busy', { once: true });
    const events = host.events().length;
    const err = await rejection(host.runtime.container('p1').resume());
    assert.equal(err.message, 'resume p1: unable to thaw: device or resource busy');
    assert.equal(host.record('p1').status, 'paused');
    assert.equal((await host.runtime.info('p1')).status, 'paused');
    assert.equal(host.events().length, events);
  });

  test('wrong states are refused before runc is asked', async () => {
    await host.create('p2');
    host.runner.reset();
    assert.equal((await rejection(host.runtime.container('p2').pause())).message, 'cannot pause container p2: it is created');
    assert.equal((await rejection(host.runtime.container('p2').resume())).message, 'cannot resume container p2: it is created, not paused');
    assert.deepEqual(host.runner.runcCalls(), []);
  });
});

describe('kill, exits and wait (fake runc and conmon)', () => {
  const host = new FakeHost('kill');
  after(() => host.cleanup());

  test('kill passes the signal and --all to runc; a failure carries its message', async () => {
    await host.createRunning('k1');
    host.runner.reset();
    await host.runtime.container('k1').kill('SIGTERM', { all: false });
    await host.runtime.container('k1').kill('SIGKILL', { all: true });
    host.runner.failRunc(['kill'], 'container not running', { once: true });
    const err = await rejection(host.runtime.container('k1').kill('SIGHUP', { all: false }));
    assert.equal(err.message, 'kill k1: container not running');
    assert.deepEqual(host.runner.runcCalls(), ['kill k1 SIGTERM', 'kill --all k1 SIGKILL', 'kill k1 SIGHUP']);
  });

  test('kill of a stopped container is refused without calling runc', async () => {
    writeExit(host.containerDir('k1'), 143);
    host.runner.reset();
    const err = await rejection(host.runtime.container('k1').kill('SIGTERM', { all: false }));
    assert.equal(err.message, 'cannot kill container k1: it is not running');
    assert.deepEqual(host.runner.runcCalls(), []);
  });

  test("conmon's exit file is the exit: status and time; -1 (unknown) is null, not a number", async () => {
    await host.createRunning('x1');
    writeExit(host.containerDir('x1'), 3);
    const info = await host.runtime.info('x1');
    assert.equal(info.status, 'stopped');
    assert.equal(info.pid, null);
    assert.equal(info.exit!.status, 3);
    assert.match(info.exit!.exitedAt, /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/);

    await host.createRunning('x2');
    writeExit(host.containerDir('x2'), -1);
    const unknown = await host.runtime.info('x2');
    assert.equal(unknown.status, 'stopped');
    assert.equal(unknown.exit!.status, null);
  });

  test("the exit hook records the exit once, for this incarnation only, and --rm's removal", async () => {
    await host.createRunning('h1');
    const { instance } = host.record('h1');
    writeExit(host.containerDir('h1'), 5);
    await host.runtime.recordExit('h1', 'an-earlier-instance');
    assert.equal(host.record('h1').exit, null, 'a late report of an earlier container of this ID is ignored');
    await host.runtime.recordExit('h1', instance);
    const record = host.record('h1');
    assert.equal(record.status, 'stopped');
    assert.equal(record.exit!.status, 5);
    await host.runtime.recordExit('h1', instance);
    assert.equal(host.events().filter((e) => e === '/tasks/exit h1').length, 1, 'one /tasks/exit');

    // An OOM kill is reported too.
    await host.createRunning('h2');
    writeExit(host.containerDir('h2'), 137);
    writeFileSync(join(host.containerDir('h2'), 'oom'), '');
    await host.runtime.recordExit('h2', host.record('h2').instance);
    assert.deepEqual(host.events().slice(-2), ['/tasks/oom h2', '/tasks/exit h2']);

    await host.createRunning('h3', { autoRemove: true });
    writeExit(host.containerDir('h3'), 0);
    host.runner.reset();
    await host.runtime.recordExit('h3', host.record('h3').instance);
    assert.equal(existsSync(host.containerDir('h3')), false, '--rm: removed on exit');
    assert.deepEqual(host.runner.runcCalls(), ['delete --force h3']);
    assert.deepEqual(host.events().slice(-3), ['/tasks/exit h3', '/tasks/delete h3', '/containers/delete h3']);
  });

  test('waitExit: the exit file, a checkpoint stop, a removal, a monitor that went away', async () => {
    await host.createRunning('w1');
    setTimeout(() => writeExit(host.containerDir('w1'), 9), 30);
    const exited = await host.runtime.waitExit('w1', { timeoutMs: 5_000 });
    assert.equal(typeof exited === 'object' && exited !== null ? exited.status : exited, 9);

    await host.createRunning('w2');
    host.runtime.store.write({ ...host.record('w2'), status: 'stopped', pid: null, checkpointedStop: true });
    assert.equal(await host.runtime.waitExit('w2', { timeoutMs: 5_000 }), 'checkpointed');

    assert.equal(await host.runtime.waitExit('ghost', { timeoutMs: 5_000 }), 'removed');

    // Its process and its monitor are gone, and no exit file was written: nothing will ever come.
    await host.createRunning('w3');
    host.runtime.store.write({ ...host.record('w3'), pid: deadPid() });
    const started = Date.now();
    assert.equal(await host.runtime.waitExit('w3', { timeoutMs: 5_000 }), null);
    assert.ok(Date.now() - started < 2_000, 'it does not wait for the timeout');

    // Still running: the timeout ends the wait.
    await host.createRunning('w4');
    assert.equal(await host.runtime.waitExit('w4', { timeoutMs: 100 }), null);
  });

  test('a monitor that writes the exit file and goes between the read of the file and the look at it: the exit is read, not lost', async () => {
    for (const [id, wait] of [
      ['w5', (ctx: RuntimeContext) => waitExit(ctx, 'w5', { timeoutMs: 5_000 })],
      ['w6', (ctx: RuntimeContext) => monitorDone(ctx, 'w6', 5_000)],
    ] as const) {
      await host.createRunning(id);
      const dir = host.containerDir(id);
      host.runtime.store.write({ ...host.record(id), pid: deadPid() });
      // A monitor of this container: a process whose command line names the folder as conmon's persist dir.
      const monitor = spawn('sh', ['-c', 'read -r _', 'fake-conmon', '--persist-dir', dir], { stdio: ['pipe', 'ignore', 'ignore'] });
      while (!readFileSync(`/proc/${monitor.pid}/cmdline`, 'utf8').includes('--persist-dir')) await new Promise((resolve) => setImmediate(resolve));
      writeFileSync(join(dir, 'conmon.pid'), String(monitor.pid));
      // The event: the first read of the exit file finds none, and just after it the monitor writes it and is gone.
      const store = host.runtime.store;
      let reads = 0;
      const racing = new Proxy(store, {
        get(target, key) {
          if (key !== 'readContainerFile') return Reflect.get(target, key, target);
          return (cid: string, name: string) => {
            const file = target.readContainerFile(cid, name);
            if (name === 'exit' && reads++ === 0) {
              writeExit(dir, 3);
              writeFileSync(join(dir, 'conmon.pid'), String(deadPid()));
            }
            return file;
          };
        },
      });
      const ctx = { ...(host.runtime as unknown as { ctx: RuntimeContext }).ctx, store: racing };
      try {
        const exited = await wait(ctx);
        assert.equal(typeof exited === 'object' && exited !== null ? exited.status : exited, 3, id);
      } finally {
        monitor.stdin!.end();
      }
    }
  });
});
