// restore over a fake runc and conmon: src/checkpoint/restore.ts through the CheckpointHost port,
// on checkpoints made by the real checkpoint code (with a fake CRIU dump).
import { checkpointContainer } from '../../src/checkpoint/dump.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { restoreContainer } from '../../src/checkpoint/restore.ts';
import type { CheckpointOptions } from '../../src/runtime/types.ts';
import { FakeHost, rejection, writeCriuDump, writeExit } from './fakes.ts';

const OPTS: CheckpointOptions = {
  leaveRunning: true,
  tcpEstablished: false,
  extUnixSk: false,
  shellJob: false,
  fileLocks: false,
  preDump: false,
};

const RESTORE_LOG = [
  '(00.010000) Warn  (criu/cr-restore.c:2300): Set CLONE_PARENT | CLONE_NEWPID but it might cause restore problem',
  '(00.020000) Error (criu/files-reg.c:2200): File usr/bin/sleep has bad size 1234 (expect 4321)',
  '(00.020100) Error (criu/cr-restore.c:2500): Restoring FAILED.',
  '',
].join('\n');

describe('restore (fake runc, conmon and CRIU)', () => {
  const host = new FakeHost('restore');
  after(() => host.cleanup());
  let image = '';

  before(async () => {
    // A checkpoint of a running bundle container, made by the real checkpoint code.
    await host.createRunning('src', { labels: { app: 'web' } });
    host.runner.on('runc', ['checkpoint'], (call) => {
      writeCriuDump(call);
      return {};
    });
    image = join(host.root, 'image');
    await checkpointContainer(host.runtime, 'src', { ...OPTS, imagePath: image, tcpEstablished: true });
  });

  /** A copy of the good checkpoint, changed by `damage`. */
  const damaged = (name: string, damage: (dir: string) => void) => {
    const dir = join(host.root, name);
    cpSync(image, dir, { recursive: true });
    damage(dir);
    return dir;
  };

  /** Nothing of container `id` is left, and conmon was never asked. */
  const nothingLeft = (id: string, monitorCalls: number) => {
    assert.equal(existsSync(host.containerDir(id)), false, `no folder of ${id}`);
    assert.equal(host.monitor.calls.length, monitorCalls, 'conmon was not started');
    assert.deepEqual(readdirSync(host.stateDir).filter((name) => name.startsWith('.restore')), []);
  };

  test('a restore under a new ID: conmon runs runc restore on the images with the recorded CRIU options', async () => {
    host.runner.reset();
    const result = await restoreContainer(host.runtime, 'copy1', { checkpoint: image });
    const monitor = host.monitor.calls.at(-1)!;
    assert.equal(monitor.id, 'copy1');
    assert.equal(monitor.restoreImage, join(image, 'checkpoint'));
    assert.deepEqual(monitor.restoreArgs, ['--tcp-established']);
    assert.equal(monitor.terminal, false);
    assert.deepEqual(host.runner.allCalls(), [], 'conmon runs runc restore itself');
    assert.equal(result.inPlace, false);
    assert.equal(result.trusted, true, 'signed by this state directory');
    assert.deepEqual(result.warnings, []);
    assert.equal(result.checkpoint, image);
    assert.equal(result.container.status, 'running');
    assert.equal(result.container.restoredFrom, image);
    assert.deepEqual(result.container.labels, { app: 'web' }, "the checkpointed container's labels");
    const spec = JSON.parse(readFileSync(join(host.containerDir('copy1'), 'config.json'), 'utf8'));
    assert.equal(spec.annotations['org.stasis.id'], 'copy1');
    assert.deepEqual(host.events().slice(-2), ['/containers/create copy1', '/tasks/restored copy1']);
  });

  for (const [what, damage, message, withBase] of [
    ['no stasis.json', (dir: string) => rmSync(join(dir, 'stasis.json')), /is not a stasis checkpoint: stasis\.json is missing$/, false],
    ['a garbled stasis.json', (dir: string) => writeFileSync(join(dir, 'stasis.json'), '{"format": 1, "rootfs'), /is not a stasis checkpoint: stasis\.json is unreadable$/, false],
    ['a stasis.json of another format', (dir: string) => writeFileSync(join(dir, 'stasis.json'), '{"format": 2}'), /^the checkpoint's stasis\.json cannot be used:\n {2}format: 2 is not a format this stasis reads \(1\)\n/, false],
    // A changed spec.dump breaks the signature: the checkpoint is foreign, so the bundle must be named.
    ['no spec.dump', (dir: string) => rmSync(join(dir, 'spec.dump')), /: spec\.dump is missing$/, true],
    ['a garbled spec.dump', (dir: string) => writeFileSync(join(dir, 'spec.dump'), 'garbage'), /: spec\.dump is not valid JSON \(.+\)$/, true],
    ['no CRIU images', (dir: string) => rmSync(join(dir, 'checkpoint'), { recursive: true }), /is not a checkpoint: it has no checkpoint\/inventory\.img$/, false],
    ['a damaged CRIU image', (dir: string) => writeFileSync(join(dir, 'checkpoint', 'pstree.img'), 'garbage'), /CRIU image .*pstree\.img is damaged or not a CRIU image/, false],
    ['a descriptors.json that hands CRIU\'s descriptors over', (dir: string) => writeFileSync(join(dir, 'checkpoint', 'descriptors.json'), JSON.stringify(['/dev/null', 'pipe:[1]', 'pipe:[2]', 'pipe:[3]'])), /descriptors\.json/, false],
  ] as const) {
    test(`a checkpoint folder with ${what} is refused and nothing is left`, async () => {
      const dir = damaged(`bad-${what.replace(/\W+/g, '-')}`, damage);
      const calls = host.monitor.calls.length;
      const base = withBase ? { kind: 'bundle' as const, dir: join(host.root, 'bundle-src') } : undefined;
      const err = await rejection(restoreContainer(host.runtime, 'r1', { checkpoint: dir, base }));
      assert.match(err.message, message);
      assert.equal(err.exitCode, 1);
      nothingLeft('r1', calls);
    });
  }

  test('a checkpoint whose spec.dump was changed is no longer trusted: it restores only onto a bundle named for it', async () => {
    const dir = damaged('changed-spec', (d) => {
      const spec = JSON.parse(readFileSync(join(d, 'spec.dump'), 'utf8'));
      spec.annotations = { ...spec.annotations, changed: 'yes' };
      writeFileSync(join(d, 'spec.dump'), JSON.stringify(spec));
    });
    const calls = host.monitor.calls.length;
    const err = await rejection(restoreContainer(host.runtime, 'r3', { checkpoint: dir }));
    assert.match(err.message, /^this checkpoint is of a bundle container \(its bundle was .*bundle-src\) and was not written here: the bundle to restore onto must be named$/);
    nothingLeft('r3', calls);
  });

  test('a checkpoint that does not exist', async () => {
    const err = await rejection(restoreContainer(host.runtime, 'r1', { checkpoint: join(host.root, 'nope') }));
    assert.equal(err.message, `checkpoint ${join(host.root, 'nope')} does not exist`);
  });

  test('the wrong kind of base: a usage error with a code the command words', async () => {
    const calls = host.monitor.calls.length;
    const err = await rejection(restoreContainer(host.runtime, 'r2', { checkpoint: image, base: { kind: 'overlay', dir: host.baseImage('base') } }));
    assert.equal(err.code, 'base-kind-bundle');
    assert.equal(err.exitCode, 2);
    assert.match(err.message, /^this checkpoint is of a bundle container/);
    nothingLeft('r2', calls);
  });

  test('runc restore fails under conmon: the error names the kept restore.log and quotes it, no half-made container', async () => {
    for (let round = 0; round < 2; round++) {
      host.runner.reset();
      host.monitor.failNext('criu failed: type RESTORE errno 0', { 'restore.log': RESTORE_LOG });
      const before = new Set(existsSync(host.runtime.logsDir) ? readdirSync(host.runtime.logsDir) : []);
      const err = await rejection(restoreContainer(host.runtime, 'half', { checkpoint: image }));
      const kept = readdirSync(host.runtime.logsDir).filter((name) => !before.has(name));
      assert.equal(kept.length, 1);
      assert.match(kept[0], /^half-restore-\d{8}T\d{6}\.\d{3}Z\.log$/);
      const keptPath = join(host.runtime.logsDir, kept[0]);
      assert.equal(readFileSync(keptPath, 'utf8'), RESTORE_LOG);
      assert.equal(err.message, [
        'restore half failed: CRIU: File usr/bin/sleep has bad size 1234 (expect 4321)',
        `CRIU log: ${keptPath}`,
        '  (00.020000) Error (criu/files-reg.c:2200): File usr/bin/sleep has bad size 1234 (expect 4321)',
        '  (00.020100) Error (criu/cr-restore.c:2500): Restoring FAILED.',
      ].join('\n'));
      assert.equal(existsSync(host.containerDir('half')), false);
      // runc left no state folder: there is nothing for `runc delete` to do, and it is not run.
      assert.deepEqual(host.runner.runcCalls(), []);
    }
    // The ID is free again.
    const result = await restoreContainer(host.runtime, 'half', { checkpoint: image });
    assert.equal(result.container.status, 'running');
  });

  test('an existing container of that ID is refused before anything is looked at', async () => {
    host.runner.reset();
    const calls = host.monitor.calls.length;
    const err = await rejection(restoreContainer(host.runtime, 'src', { checkpoint: image }));
    assert.equal(err.message, 'container src already exists (running): only a container a checkpoint stopped is restored in place');
    assert.equal(err.hint, 'restore under another ID, or remove it first with `stasis delete -f src`');
    // Without --checkpoint too: the running container is the problem, not a missing checkpoint.
    const inPlace = await rejection(restoreContainer(host.runtime, 'src', {}));
    assert.equal(inPlace.message, err.message);
    assert.equal(host.monitor.calls.length, calls);
    assert.deepEqual(host.runner.allCalls(), []);
    assert.equal(host.record('src').status, 'running');
  });

  test('a container a checkpoint stopped is restored in place from its latest checkpoint', async () => {
    await host.createRunning('inplace');
    host.runner.on('runc', ['checkpoint'], (call) => {
      writeCriuDump(call);
      return {};
    });
    const checkpoint = await checkpointContainer(host.runtime, 'inplace', { ...OPTS, leaveRunning: false });
    const stopped = host.record('inplace');
    assert.equal(stopped.checkpointedStop, true);
    host.runner.reset();
    const result = await restoreContainer(host.runtime, 'inplace', {});
    assert.equal(result.inPlace, true);
    assert.equal(result.checkpoint, checkpoint.path);
    assert.deepEqual(host.runner.runcCalls(), ['delete --force inplace'], "the old runc state goes first");
    const record = host.record('inplace');
    assert.equal(record.status, 'running');
    assert.equal(record.checkpointedStop, false);
    assert.notEqual(record.instance, stopped.instance, 'a new incarnation');
    assert.equal(record.createdAt, stopped.createdAt);
    assert.deepEqual(record.lastCheckpoint, stopped.lastCheckpoint);
    assert.equal(existsSync(join(host.containerDir('inplace'), 'previous')), false);
    assert.ok(!host.events().slice(-1).includes('/containers/create inplace'));
    assert.equal(host.events().at(-1), '/tasks/restored inplace');
  });

  test('a failed restore in place puts the stopped container back as it was', async () => {
    const dir = host.containerDir('inplace');
    // Stop it with a checkpoint again, and leave an exit file of the old incarnation to be set aside.
    const checkpoint = await checkpointContainer(host.runtime, 'inplace', { ...OPTS, leaveRunning: false });
    writeExit(dir, 0);
    const stopped = host.record('inplace');
    const files = readdirSync(dir).sort();
    host.monitor.failNext('criu failed: type RESTORE errno 0', { 'restore.log': RESTORE_LOG });
    const err = await rejection(restoreContainer(host.runtime, 'inplace', {}));
    assert.match(err.message, /^restore inplace failed: CRIU: File usr\/bin\/sleep has bad size 1234 \(expect 4321\)\nCRIU log: /);
    assert.deepEqual(host.record('inplace'), stopped, 'the record is put back');
    // restore.log stays too (its copy is under logs/): reported, as a later failure that
    // comes before CRIU writes a new one would quote this stale log.
    assert.deepEqual(readdirSync(dir).filter((name) => name !== 'restore.log').sort(), files, 'the set-aside files are back, nothing else is left');
    assert.equal(readFileSync(join(dir, 'exit'), 'utf8'), '0');
    const info = await host.runtime.info('inplace');
    assert.equal(info.status, 'stopped');
    assert.equal(info.checkpointed, true);
    assert.equal(info.lastCheckpoint!.path, checkpoint.path);
  });
});

describe('restore of a --rootfs container (fake runc, conmon and CRIU; real tar)', () => {
  const host = new FakeHost('restore-overlay');
  after(() => host.cleanup());

  test('its writable layer goes into the new container\'s own layer, onto a copy of the base that matches', async () => {
    const base = host.baseImage('base');
    await host.createRunning('ov', { rootfs: base, args: ['sleep', '100'] });
    // What the container wrote, in its upper layer (the overlay itself is not mounted: mount is fake).
    writeFileSync(join(host.containerDir('ov'), 'upper', 'made-here'), 'kept\n');
    host.runner.on('runc', ['checkpoint'], (call) => {
      writeCriuDump(call);
      return {};
    });
    const image = join(host.root, 'ov-image');
    const checkpoint = await checkpointContainer(host.runtime, 'ov', { ...OPTS, imagePath: image });
    assert.deepEqual(checkpoint.rootfsChanges, { files: 1, deleted: 0 });
    assert.ok(existsSync(join(image, 'rootfs-diff.tar')));

    const copy = join(host.root, 'base-copy');
    cpSync(base, copy, { recursive: true });
    const result = await restoreContainer(host.runtime, 'ov2', { checkpoint: image, base: { kind: 'overlay', dir: copy } });
    assert.equal(result.container.rootfs.base, copy);
    assert.equal(readFileSync(join(host.containerDir('ov2'), 'upper', 'made-here'), 'utf8'), 'kept\n');
    assert.ok(!existsSync(join(copy, 'made-here')), 'the base copy is not written');

    const other = host.baseImage('other');
    writeFileSync(join(other, 'extra'), 'x');
    const calls = host.monitor.calls.length;
    const differs = await rejection(restoreContainer(host.runtime, 'ov3', { checkpoint: image, base: { kind: 'overlay', dir: other } }));
    assert.equal(differs.code, 'base-differs');
    assert.equal(differs.message, `rootfs ${other} does not match the checkpoint's base ${base} (their files differ)`);
    const wrongKind = await rejection(restoreContainer(host.runtime, 'ov3', { checkpoint: image, base: { kind: 'bundle', dir: host.bundle('b') } }));
    assert.equal(wrongKind.code, 'base-kind-overlay');
    const mounts = await rejection(restoreContainer(host.runtime, 'ov3', { checkpoint: image, rootfsMounts: [{ type: 'tmpfs', source: 'tmpfs', options: [] }] }));
    assert.equal(mounts.code, 'mounts-need-bundle');
    assert.equal(host.monitor.calls.length, calls);
    assert.equal(existsSync(host.containerDir('ov3')), false);
  });
});
