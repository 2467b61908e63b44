// delete and the listing of damaged or half-made containers over a fake runc (src/runtime/remove.ts, view.ts).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeHost, deadPid, rejection, writeExit } from './fakes.ts';

describe('delete (fake runc and conmon)', () => {
  const host = new FakeHost('delete');
  after(() => host.cleanup());

  const runcState = (id: string) => join(host.stateDir, 'runc', id);

  /** runc's kill and delete --force of `id`, as runc would: the container dies, conmon writes its exit file. */
  const killable = (id: string, status = 137) => {
    host.runner.on('runc', ['kill', id], () => {
      writeExit(host.containerDir(id), status);
      return {};
    });
    host.runner.on('runc', ['delete', '--force', id], () => {
      writeExit(host.containerDir(id), status);
      rmSync(runcState(id), { recursive: true, force: true });
      return {};
    });
  };

  test('a stopped container: runc delete --force, the exit from conmon, the folder and runc state removed', async () => {
    await host.createRunning('d1');
    mkdirSync(runcState('d1'), { recursive: true });
    writeExit(host.containerDir('d1'), 4);
    host.runner.reset();
    const result = await host.runtime.delete(host.runtime.container('d1'), { force: false });
    assert.equal(result.id, 'd1');
    assert.equal(result.status, 4);
    assert.match(result.exitedAt, /Z$/);
    assert.deepEqual(host.runner.runcCalls(), ['delete --force d1']);
    assert.equal(existsSync(host.containerDir('d1')), false);
    assert.equal(existsSync(runcState('d1')), false);
    assert.deepEqual(host.events().slice(-3), ['/tasks/exit d1', '/tasks/delete d1', '/containers/delete d1']);
  });

  test('a running container is refused without force, and runc is not asked', async () => {
    await host.createRunning('d2');
    host.runner.reset();
    const err = await rejection(host.runtime.delete(host.runtime.container('d2'), { force: false }));
    assert.equal(err.message, 'cannot delete container d2: it is running');
    assert.equal(err.hint, 'stop it with `stasis kill d2`, or use `stasis delete -f d2`');
    assert.deepEqual(host.runner.runcCalls(), []);
    assert.equal(host.record('d2').status, 'running');
  });

  test('a running container with force: runc kill KILL, then delete --force, in that order; status 137', async () => {
    killable('d2');
    host.runner.reset();
    const result = await host.runtime.delete(host.runtime.container('d2'), { force: true });
    assert.deepEqual(host.runner.runcCalls(), ['kill d2 KILL', 'delete --force d2']);
    assert.equal(result.status, 137);
    assert.equal(existsSync(host.containerDir('d2')), false);
    assert.deepEqual(host.events().slice(-3), ['/tasks/exit d2', '/tasks/delete d2', '/containers/delete d2']);
  });

  test('runc kill fails: delete --force does the killing', async () => {
    await host.createRunning('d3');
    killable('d3');
    host.runner.failRunc(['kill', 'd3'], 'container not running');
    host.runner.reset();
    const result = await host.runtime.delete(host.runtime.container('d3'), { force: true });
    assert.deepEqual(host.runner.runcCalls(), ['kill d3 KILL', 'delete --force d3']);
    assert.equal(result.status, 137);
    assert.equal(existsSync(host.containerDir('d3')), false);
  });

  test('a paused container with force goes straight to delete --force (a SIGKILL would stay pending)', async () => {
    await host.createRunning('d4');
    await host.runtime.container('d4').pause();
    killable('d4');
    host.runner.reset();
    const result = await host.runtime.delete(host.runtime.container('d4'), { force: true });
    assert.deepEqual(host.runner.runcCalls(), ['delete --force d4']);
    assert.equal(result.status, 137);
  });

  test('a created container needs no force', async () => {
    await host.create('d5');
    killable('d5');
    host.runner.reset();
    const result = await host.runtime.delete(host.runtime.container('d5'), { force: false });
    assert.deepEqual(host.runner.runcCalls(), ['kill d5 KILL', 'delete --force d5']);
    assert.equal(result.status, 137);
  });

  test('a missing container: exit code 1, "no such container", and the hint', async () => {
    host.runner.reset();
    for (const force of [false, true]) {
      const err = await rejection(host.runtime.delete(host.runtime.container('ghost'), { force }));
      assert.equal(err.message, 'no such container: ghost');
      assert.equal(err.exitCode, 1);
      assert.equal(err.hint, 'list containers with `stasis ps`');
    }
    assert.deepEqual(host.runner.runcCalls(), []);
  });

  test('an unknown exit status (conmon wrote -1) is reported as null', async () => {
    await host.createRunning('d6');
    writeExit(host.containerDir('d6'), -1);
    const result = await host.runtime.delete(host.runtime.container('d6'), { force: false });
    assert.equal(result.status, null);
    const journal = host.runtime.events().readAll().filter((e) => e.id === 'd6' && e.topic === '/tasks/delete');
    assert.equal(journal[0].event.exitStatus, null);
  });

  test('a container a checkpoint stopped is reported as such, not as an exit', async () => {
    await host.createRunning('d7');
    const at = '2026-01-02T03:04:05.000Z';
    host.runtime.store.write({ ...host.record('d7'), status: 'stopped', pid: null, checkpointedStop: true, lastCheckpoint: { path: '/cp/d7', at } });
    const result = await host.runtime.delete(host.runtime.container('d7'), { force: false });
    assert.deepEqual(result, { id: 'd7', status: null, exitedAt: at, checkpoint: '/cp/d7' });
    assert.ok(!host.events().includes('/tasks/exit d7'), 'no exit is made up');
  });

  test('a container whose process is gone but whose monitor has not written the exit yet: the folder goes after that, with the status', async () => {
    await host.createRunning('d8');
    const dir = host.containerDir('d8');
    // The init is gone (a zombie until conmon reaps it); its monitor writes the exit file into the
    // folder only once told to, after the delete has started, and says outside whether it could.
    const trigger = join(host.root, 'd8-reaped');
    const said = join(host.root, 'd8-monitor-said');
    // A FIFO: the monitor blocks in its read until the test writes, an event, not a poll.
    spawnSync('mkfifo', [trigger]);
    const script = 'read -r _ < "$1"; '
      + 'if printf 137 > "$3/exit.tmp" 2>/dev/null && mv "$3/exit.tmp" "$3/exit"; then echo wrote > "$4"; else echo gone > "$4"; fi';
    const monitor = spawn('sh', ['-c', script, 'fake-conmon', trigger, '--persist-dir', dir, said], { stdio: 'ignore' });
    const monitorExit = new Promise((resolve) => monitor.on('exit', resolve));
    // Until it has exec'd, the child's command line is this process's: not yet the container's monitor.
    while (!readFileSync(`/proc/${monitor.pid}/cmdline`, 'utf8').includes('--persist-dir')) await new Promise((resolve) => setImmediate(resolve));
    writeFileSync(join(dir, 'conmon.pid'), String(monitor.pid));
    host.runtime.store.write({ ...host.record('d8'), pid: deadPid() });
    const deleting = host.runtime.delete(host.runtime.container('d8'), { force: false });
    writeFileSync(trigger, 'reaped\n');
    const result = await deleting;
    await monitorExit;
    assert.equal(readFileSync(said, 'utf8').trim(), 'wrote', 'the monitor wrote its exit file before the folder went');
    assert.equal(result.status, 137);
    assert.equal(existsSync(dir), false);
  });

  for (const [name, content, problem] of [
    ['{}', '{}', /^its record is damaged \(it names (no container|container .*)\); remove it with `stasis delete -f`$/],
    ['garbage', 'garbage', /^its record is damaged \(.*not valid JSON.*\); remove it with `stasis delete -f`$/],
  ] as const) {
    test(`a damaged state.json (${name}) is listed with a note and removed by delete with force`, async () => {
      const id = `damaged-${name === '{}' ? 'empty' : 'garbage'}`;
      await host.createRunning(id);
      writeFileSync(join(host.containerDir(id), 'state.json'), content);
      const listed = (await host.runtime.containers()).find((c) => c.id === id);
      assert.ok(listed, 'listed, not left out');
      assert.equal(listed.status, 'running', 'its process is alive');
      assert.match(listed.note ?? '', problem);
      assert.equal((await host.runtime.info(id)).note, listed.note);

      host.runner.reset();
      const refused = await rejection(host.runtime.delete(host.runtime.container(id), { force: false }));
      assert.equal(refused.message, `cannot delete container ${id}: it is running`);
      assert.deepEqual(host.runner.runcCalls(), []);

      writeExit(host.containerDir(id), 137);
      const result = await host.runtime.delete(host.runtime.container(id), { force: true });
      assert.equal(result.status, 137);
      assert.deepEqual(host.runner.runcCalls(), [`delete --force ${id}`]);
      assert.equal(existsSync(host.containerDir(id)), false);
      assert.ok(!(await host.runtime.containers()).some((c) => c.id === id));
      assert.equal(host.events().at(-1), `/containers/delete ${id}`);
    });
  }

  test('a folder without a record (a create killed before it wrote one) is listed as stopped and removed', async () => {
    mkdirSync(host.containerDir('half'), { recursive: true });
    const [listed] = (await host.runtime.containers()).filter((c) => c.id === 'half');
    assert.equal(listed.status, 'stopped');
    assert.equal(listed.note, 'create was interrupted; remove it with `stasis delete -f`');
    host.runner.reset();
    const result = await host.runtime.delete(host.runtime.container('half'), { force: false });
    assert.equal(result.status, null);
    // runc never made a state folder for it: nothing for `runc delete` to do.
    assert.deepEqual(host.runner.runcCalls(), []);
    assert.equal(existsSync(host.containerDir('half')), false);
  });

  test('a restore whose command holds the lock is listed as being created, even when the holder lets go while it is listed', async () => {
    await host.createRunning('held');
    // A restore under way: its record says creating; conmon's pid file names a running process (this one).
    host.runtime.store.write({ ...host.record('held'), status: 'creating', pid: null, restoredFrom: '/cp/held' });
    // The lock held when asked first, and let go at once after (its holder, another command's recovery, done).
    const store = host.runtime.store;
    const isLocked = store.isLocked.bind(store);
    let asked = 0;
    store.isLocked = async (id: string) => (id === 'held' && asked++ === 0 ? true : isLocked(id));
    try {
      const [listed] = (await host.runtime.containers()).filter((c) => c.id === 'held');
      assert.equal(listed.status, 'creating', `listed ${listed.status}: ${listed.note ?? ''}`);
    } finally {
      store.isLocked = isLocked;
    }
  });

  test('a record left "creating" by a create that died before conmon started: delete -f removes it at once', async () => {
    await host.create('dead-create');
    const record = host.record('dead-create');
    // As a create killed between writing its record and starting conmon leaves it.
    host.runtime.store.write({ ...record, status: 'creating', pid: null });
    rmSync(join(host.containerDir('dead-create'), 'pid'));
    rmSync(join(host.containerDir('dead-create'), 'conmon.pid'));
    const [listed] = (await host.runtime.containers()).filter((c) => c.id === 'dead-create');
    assert.equal(listed.status, 'stopped');
    assert.match(listed.note ?? '', /create was interrupted/);
    host.runner.reset();
    const started = Date.now();
    const result = await host.runtime.delete(host.runtime.container('dead-create'), { force: true });
    const took = Date.now() - started;
    assert.equal(result.status, null);
    assert.deepEqual(host.runner.runcCalls(), ['delete --force dead-create']);
    assert.equal(existsSync(host.containerDir('dead-create')), false);
    assert.ok(took < 3_000, `delete -f took ${took} ms: it waited for an exit that no monitor will ever write`);
  });
});
