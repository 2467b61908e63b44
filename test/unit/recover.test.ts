// A checkpoint or a create whose command died, finished or undone by the next command
// (src/checkpoint/recover.ts, src/runtime/records.ts), over a fake runc.
import { checkpointContainer } from '../../src/checkpoint/dump.ts';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { replaceFile } from '../../src/checkpoint/format/layout.ts';
import { join } from 'node:path';
import { recoverCheckpoint } from '../../src/checkpoint/recover.ts';
import type { CheckpointHost } from '../../src/runtime/types.ts';
import { FakeHost, deadPid } from './fakes.ts';
import { DUMP_CONFIG_FILE } from '../../src/runtime/criu-config.ts';

describe('recovery of a checkpoint whose command died (fake runc)', () => {
  const host = new FakeHost('recover');
  after(() => host.cleanup());

  /**
   * Leaves container `id` as a `stasis checkpoint` killed half way leaves it:
   * the record marked, and the partial image folder with what the dump had written.
   */
  const interrupted = (id: string, opts: { complete: boolean; leaveRunning: boolean; containerAlive: boolean }) => {
    const finalPath = join(host.checkpointDir, id, '20260102T030405.000Z');
    const workDir = join(host.checkpointDir, id, `.20260102T030405.000Z.partial-4242`);
    mkdirSync(join(workDir, 'checkpoint'), { recursive: true });
    writeFileSync(join(workDir, 'stasis.json'), '{"format": 1}');
    writeFileSync(join(workDir, 'checkpoint', 'inventory.img'), 'fake');
    // CRIU writes its statistics last, when the dump has succeeded.
    if (opts.complete) writeFileSync(join(workDir, 'stats-dump'), 'fake');
    const record = host.record(id);
    host.runtime.store.write({
      ...record,
      pid: opts.containerAlive ? record.pid : deadPid(),
      checkpointing: true,
      checkpointWork: { workDir, finalPath, leaveRunning: opts.leaveRunning, at: '2026-01-02T03:04:05.000Z' },
    });
    return { workDir, finalPath };
  };

  test('a dump that completed and stopped the container becomes its checkpoint', async () => {
    await host.createRunning('done');
    const { workDir, finalPath } = interrupted('done', { complete: true, leaveRunning: false, containerAlive: false });
    host.runner.reset();
    const info = await host.runtime.info('done');
    assert.equal(info.status, 'stopped');
    assert.equal(info.checkpointed, true);
    assert.deepEqual(info.lastCheckpoint, { path: finalPath, at: '2026-01-02T03:04:05.000Z' });
    assert.ok(existsSync(join(finalPath, 'checkpoint', 'inventory.img')), 'renamed to its final folder');
    assert.equal(existsSync(workDir), false);
    const record = host.record('done');
    assert.equal(record.checkpointing, false);
    assert.equal(record.checkpointWork, null);
    assert.equal(record.pid, null);
    assert.deepEqual(host.runner.runcCalls(), [], 'nothing to thaw');
    const [event] = host.runtime.events().readAll().filter((e) => e.id === 'done' && e.topic === '/tasks/checkpointed');
    assert.deepEqual(event.event, { path: finalPath, exported: null, leftRunning: false, recovered: true });
  });

  test('killed while it wrote the metadata again after the dump: the first stands, complete, and the half-written copy goes', async () => {
    await host.createRunning('rewriting');
    const { workDir, finalPath } = interrupted('rewriting', { complete: true, leaveRunning: false, containerAlive: false });
    // What a replaceFile killed between its write and its rename leaves.
    writeFileSync(join(workDir, 'stasis.json.stasis-tmp'), '{"form');
    // And the CRIU configuration the dump named, taken out again only after the dump.
    writeFileSync(join(workDir, DUMP_CONFIG_FILE), 'network-lock skip\n');
    await host.runtime.info('rewriting');
    assert.deepEqual(readdirSync(finalPath).sort(), ['checkpoint', 'stasis.json', 'stats-dump']);
    assert.equal(readFileSync(join(finalPath, 'stasis.json'), 'utf8'), '{"format": 1}');
  });

  test('the metadata written again after the dump replaces each file whole: one read before still reads it complete', () => {
    const dir = join(host.root, 'replace');
    mkdirSync(dir);
    writeFileSync(join(dir, 'stasis.json'), '{"first": true}');
    // An open descriptor sees the file it opened: rewritten in place (truncated, then written), it would see the cut.
    const fd = openSync(join(dir, 'stasis.json'), 'r');
    try {
      replaceFile(dir, 'stasis.json', '{"second": true}');
      assert.equal(readFileSync(fd, 'utf8'), '{"first": true}');
    } finally {
      closeSync(fd);
    }
    assert.equal(readFileSync(join(dir, 'stasis.json'), 'utf8'), '{"second": true}');
    assert.deepEqual(readdirSync(dir), ['stasis.json']);
  });

  test('killed after the rename, before the record was saved: the final folder is kept as the checkpoint', async () => {
    await host.createRunning('renamed');
    const { workDir, finalPath } = interrupted('renamed', { complete: true, leaveRunning: false, containerAlive: false });
    renameSync(workDir, finalPath);
    host.runner.reset();
    const info = await host.runtime.info('renamed');
    assert.equal(info.status, 'stopped');
    assert.equal(info.checkpointed, true);
    assert.deepEqual(info.lastCheckpoint, { path: finalPath, at: '2026-01-02T03:04:05.000Z' });
    assert.ok(existsSync(join(finalPath, 'checkpoint', 'inventory.img')), 'still there');
    assert.equal(host.record('renamed').checkpointing, false);
  });

  test('a dump cut short is removed and the container, still running, is thawed', async () => {
    await host.createRunning('cut');
    const { workDir, finalPath } = interrupted('cut', { complete: false, leaveRunning: false, containerAlive: true });
    host.runner.reset();
    const info = await host.runtime.info('cut');
    assert.equal(info.status, 'running');
    assert.equal(info.checkpointed, false);
    assert.equal(info.lastCheckpoint, null);
    assert.equal(existsSync(workDir), false);
    assert.equal(existsSync(finalPath), false);
    assert.deepEqual(host.runner.runcCalls(), ['resume cut']);
    assert.equal(host.record('cut').checkpointing, false);
    assert.ok(!host.events().includes('/tasks/checkpointed cut'));
  });

  // The kill -9 test's evidence before this: a runc checkpoint the killed stasis was starting was
  // not found by the recovery, which removed the partial folder and said running; the dump then
  // ran and ended the container. The runc a checkpoint starts is noted before it can act, and the
  // recovery waits for that process: here, while it is waited for, the dump completes (CRIU's
  // statistics appear and the container is gone), and that is what is kept.
  test('a noted runc checkpoint is waited for, by PID and start time, and what it leaves decides', async () => {
    await host.createRunning('noted');
    const { workDir, finalPath } = interrupted('noted', { complete: false, leaveRunning: false, containerAlive: false });
    const record = host.record('noted');
    const started = { step: 'dump' as const, pid: 4242, startTime: 777 };
    record.checkpointWork = { ...record.checkpointWork!, started };
    host.runtime.store.write(record);
    const waitedFor: unknown[] = [];
    const waiting: CheckpointHost = Object.create(host.runtime, {
      waitForExit: {
        value: async (process: { pid: number; startTime: number }) => {
          waitedFor.push(process);
          writeFileSync(join(workDir, 'stats-dump'), 'fake');
        },
      },
    });
    host.runner.reset();
    await recoverCheckpoint(waiting, host.record('noted'));
    assert.deepEqual(waitedFor, [started]);
    const after = host.record('noted');
    assert.equal(after.checkpointing, false);
    assert.equal(after.status, 'stopped');
    assert.equal(after.checkpointedStop, true);
    assert.deepEqual(after.lastCheckpoint, { path: finalPath, at: '2026-01-02T03:04:05.000Z' });
    assert.ok(existsSync(join(finalPath, 'stats-dump')));
    assert.deepEqual(host.runner.runcCalls(), [], 'nothing to thaw');
  });

  test('a checkpoint notes each runc it starts (pause, then dump) in its record before that runc runs', async () => {
    await host.createRunning('notes');
    host.runner.reset();
    const seen: unknown[] = [];
    const note = (step: string) => (call: { args: string[] }) => {
      seen.push([step, host.record('notes').checkpointWork?.started ?? null]);
      if (step === 'dump') {
        const work = call.args[call.args.indexOf('--work-path') + 1];
        mkdirSync(join(work, 'checkpoint'), { recursive: true });
      }
      return { exitCode: 1, stderr: 'level=error msg="criu failed: made to fail by the test"\n' };
    };
    host.runner.on('runc', ['pause'], (call) => (note('pause')(call), {}), { once: true });
    host.runner.on('runc', ['checkpoint'], note('dump'), { once: true });
    await assert.rejects(checkpointContainer(host.runtime, 'notes', { leaveRunning: false, preDump: false, tcpEstablished: false, fileLocks: false, extUnixSk: false, shellJob: false }));
    assert.deepEqual(seen, [
      ['pause', { step: 'pause', pid: 4_194_305, startTime: 1 }],
      ['dump', { step: 'dump', pid: 4_194_305, startTime: 1 }],
    ]);
    assert.equal(host.record('notes').checkpointWork, null, 'cleared once the failed dump is undone');
  });

  test('a completed --leave-running dump of a running container is kept, and the container thawed', async () => {
    await host.createRunning('kept');
    const { finalPath } = interrupted('kept', { complete: true, leaveRunning: true, containerAlive: true });
    host.runner.reset();
    // Any command that takes the lock recovers first: here, pause.
    host.runner.failRunc(['resume'], 'container not paused', { once: true });
    await host.runtime.container('kept').pause();
    assert.deepEqual(host.runner.runcCalls(), ['resume kept', 'pause kept'], '"not paused" is no failure: it was not frozen');
    const record = host.record('kept');
    assert.equal(record.status, 'paused');
    assert.deepEqual(record.lastCheckpoint, { path: finalPath, at: '2026-01-02T03:04:05.000Z' });
    assert.equal(record.checkpointedStop, false);
  });

  test('a thaw that fails leaves the record saying paused', async () => {
    await host.createRunning('frozen');
    interrupted('frozen', { complete: false, leaveRunning: true, containerAlive: true });
    host.runner.failRunc(['resume'], 'unable to thaw: device or resource busy', { once: true });
    const info = await host.runtime.info('frozen');
    assert.equal(info.status, 'paused');
    assert.equal(host.record('frozen').checkpointing, false);
  });

  test('delete -f recovers first: a completed dump is kept as the checkpoint it reports', async () => {
    await host.createRunning('gone');
    const { finalPath } = interrupted('gone', { complete: true, leaveRunning: false, containerAlive: false });
    const result = await host.runtime.delete(host.runtime.container('gone'), { force: true });
    assert.deepEqual(result, { id: 'gone', status: null, exitedAt: '2026-01-02T03:04:05.000Z', checkpoint: finalPath });
    assert.ok(existsSync(join(finalPath, 'checkpoint', 'inventory.img')), 'the checkpoint outlives the container');
  });

  test('a move killed before it asked to switch: its dumps go, the record names the old checkpoint, the container is thawed', async () => {
    await host.createRunning('mover');
    const previous = { path: join(host.checkpointDir, 'mover', 'older'), at: '2026-01-01T00:00:00.000Z' };
    const dump = join(host.runtime.scratchDir, '.migrate-out-mover-abc');
    const pre = join(host.runtime.scratchDir, '.migrate-pre-mover-abc');
    for (const dir of [dump, pre, `${pre}-delta`, previous.path]) mkdirSync(dir, { recursive: true });
    host.runtime.store.write({
      ...host.record('mover'),
      status: 'paused',
      lastCheckpoint: { path: dump, at: '2026-01-02T00:00:00.000Z' },
      migrating: { to: 'hostb', previous, scratch: [dump, pre, `${pre}-delta`], committing: false },
    });
    host.runner.reset();
    const info = await host.runtime.info('mover');
    assert.equal(info.status, 'running');
    assert.equal(info.note, undefined);
    assert.deepEqual(info.lastCheckpoint, previous);
    assert.equal(host.record('mover').migrating, null);
    for (const dir of [dump, pre, `${pre}-delta`]) assert.equal(existsSync(dir), false, `${dir} removed`);
    assert.ok(existsSync(previous.path), 'the older checkpoint stays');
    assert.deepEqual(host.runner.runcCalls(), ['resume mover']);
  });

  test('a move killed once it asked to switch stays frozen here, and ps says what to do; resume clears it', async () => {
    await host.createRunning('switching');
    const dump = join(host.runtime.scratchDir, '.migrate-out-switching-abc');
    mkdirSync(dump, { recursive: true });
    host.runtime.store.write({
      ...host.record('switching'),
      status: 'paused',
      lastCheckpoint: { path: dump, at: '2026-01-02T00:00:00.000Z' },
      migrating: { to: 'hostb', previous: null, scratch: [dump], committing: true },
    });
    host.runner.reset();
    const info = await host.runtime.info('switching');
    assert.equal(info.status, 'paused');
    assert.match(info.note ?? '', /a move to hostb was cut off at the switch: if it runs there, stasis delete -f switching here; if not, stasis resume switching/);
    assert.deepEqual(host.runner.runcCalls(), [], 'nothing thawed: it may run there');
    assert.ok(existsSync(dump));
    await host.runtime.container('switching').resume();
    assert.equal(host.record('switching').migrating, null);
    assert.equal((await host.runtime.info('switching')).note, undefined);
  });
});

describe('a create whose command died after conmon started the container (fake conmon)', () => {
  const host = new FakeHost('recover-create');
  after(() => host.cleanup());

  test('the next command completes the record: created, with its pid and /tasks/create', async () => {
    await host.create('late');
    const record = host.record('late');
    // As a create killed between conmon's report and writing it leaves it: conmon's pid file, a record still 'creating'.
    host.runtime.store.write({ ...record, status: 'creating', pid: null });
    const events = host.events().length;
    const info = await host.runtime.info('late');
    assert.equal(info.status, 'created');
    assert.equal(info.pid, process.pid);
    assert.equal(info.note, undefined);
    assert.equal(host.record('late').status, 'created');
    assert.deepEqual(host.events().slice(events), ['/tasks/create late']);
  });

  test('one that died before conmon started stays as it is, for delete -f', async () => {
    await host.create('early');
    host.runtime.store.write({ ...host.record('early'), status: 'creating', pid: null });
    rmSync(join(host.containerDir('early'), 'pid'));
    const info = await host.runtime.info('early');
    assert.equal(info.status, 'stopped');
    assert.equal(info.note, 'create was interrupted; remove it with `stasis delete -f`');
    assert.equal(host.record('early').status, 'creating');
  });
});
