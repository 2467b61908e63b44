// checkpoint over a fake runc (and so a fake CRIU): src/checkpoint/dump.ts through the CheckpointHost port.
import { checkpointContainer } from '../../src/checkpoint/dump.ts';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { readCheckpointImage } from '../../src/checkpoint/oci/image.ts';
import { readTarEntries } from '../../src/checkpoint/archive/tar.ts';
import { checkpointHeld } from '../../src/checkpoint/dump.ts';
import type { CheckpointOptions } from '../../src/runtime/types.ts';
import { FakeHost, flagValue, rejection, runcError, writeCriuDump, type Call } from './fakes.ts';

const OPTS: CheckpointOptions = {
  leaveRunning: false,
  tcpEstablished: false,
  extUnixSk: false,
  shellJob: false,
  fileLocks: false,
  preDump: false,
};


const CRIU_LOG = [
  '(00.001000) Version: 4.2.1 (gitid 0)',
  '(00.002000) Error (criu/sockets.c:530): unix: Connected socket 0x1234 is external',
  '(00.002100) Error (criu/cr-dump.c:1794): Dumping FAILED.',
  '(00.002200) Warn  (compel/src/lib/infect.c:128): RLIMIT_NOFILE error (ignored)',
  '',
].join('\n');

describe('checkpoint (fake runc and CRIU)', () => {
  const host = new FakeHost('checkpoint');
  after(() => host.cleanup());

  /** runc checkpoint as it goes when CRIU dumps: the images, the stats and CRIU's log in the work folder. */
  const dumpSucceeds = (onDump: (call: Call) => void = () => undefined) =>
    host.runner.on('runc', ['checkpoint'], (call) => {
      writeCriuDump(call);
      onDump(call);
      return {};
    });

  const checkpointEntries = (id: string) => (existsSync(join(host.checkpointDir, id)) ? readdirSync(join(host.checkpointDir, id)) : []);

  test('a checkpoint: pause, runc checkpoint into a partial folder, renamed; the container is recorded as stopped by it', async () => {
    await host.createRunning('c1', { labels: { app: 'counter' } });
    host.runner.reset();
    dumpSucceeds();
    const result = await checkpointContainer(host.runtime, 'c1', { ...OPTS, tcpEstablished: true });

    const calls = host.runner.runcCalls();
    assert.equal(calls[0], 'pause c1');
    const dump = host.runner.calls.filter((c) => c.file === 'runc')[1];
    const workDir = flagValue(dump, '--work-path');
    assert.deepEqual(dump.args, ['checkpoint', '--image-path', join(workDir, 'checkpoint'), '--work-path', workDir, '--tcp-established', 'c1']);
    assert.match(workDir, new RegExp(`^${join(host.checkpointDir, 'c1')}/\\.\\d{8}T\\d{6}\\.\\d{3}Z\\.partial-\\d+$`));
    assert.deepEqual(calls.slice(2), ['--version'], 'no resume: CRIU stopped the container');

    assert.equal(result.path, join(host.checkpointDir, 'c1', checkpointEntries('c1')[0]));
    assert.deepEqual(checkpointEntries('c1'), [result.path.split('/').at(-1)], 'only the final folder, no partial one');
    assert.equal(result.leftRunning, false);
    assert.equal(result.rootfsChanges, null, 'a bundle rootfs is not carried');
    // stasis-store.json: kept under the checkpoint directory, it is indexed in the checkpoint store.
    assert.deepEqual(readdirSync(result.path).sort(), ['checkpoint', 'config.dump', 'dump.log', 'spec.dump', 'stasis-store.json', 'stasis.json', 'stasis.sig', 'stats-dump']);
    const meta = JSON.parse(readFileSync(join(result.path, 'stasis.json'), 'utf8'));
    assert.equal(meta.id, 'c1');
    assert.equal(meta.runcVersion, '1.1.5-fake');
    assert.equal(meta.criuVersion, 'unknown');
    assert.deepEqual(meta.restoreArgs, ['--tcp-established']);
    assert.deepEqual(meta.labels, { app: 'counter' });
    assert.equal(meta.rootfs.kind, 'bundle');
    assert.match(meta.rootfs.fingerprint, /^sha256:[0-9a-f]{64}$/);
    const spec = JSON.parse(readFileSync(join(result.path, 'spec.dump'), 'utf8'));
    assert.equal(spec.annotations['io.kubernetes.cri.container-name'], 'c1');

    const record = host.record('c1');
    assert.equal(record.status, 'stopped');
    assert.equal(record.checkpointing, false);
    assert.equal(record.checkpointedStop, true);
    assert.equal(record.pid, null);
    assert.equal(record.lastCheckpoint!.path, result.path);
    assert.equal(record.exit, null, 'a checkpoint is not an exit');
    assert.equal(host.events().at(-1), '/tasks/checkpointed c1');
  });

  test('runc pause fails: nothing is dumped or thawed, the record is not left checkpointing', async () => {
    await host.createRunning('c2');
    host.runner.reset();
    host.runner.failRunc(['pause'], 'unable to freeze: device or resource busy', { once: true });
    const events = host.events().length;
    const err = await rejection(checkpointContainer(host.runtime, 'c2', OPTS));
    assert.equal(err.message, 'checkpoint c2 failed: pause c2: unable to freeze: device or resource busy');
    assert.deepEqual(host.runner.runcCalls(), ['pause c2']);
    const record = host.record('c2');
    assert.equal(record.checkpointing, false);
    assert.equal(record.status, 'running');
    assert.deepEqual(checkpointEntries('c2'), []);
    assert.equal(host.events().length, events);
  });

  test("runc checkpoint fails: the error names the kept CRIU log and quotes its errors; the container is thawed", async () => {
    await host.createRunning('c3');
    host.runner.reset();
    let workDir = '';
    host.runner.on('runc', ['checkpoint'], (call) => {
      workDir = flagValue(call, '--work-path');
      writeFileSync(join(workDir, 'dump.log'), CRIU_LOG);
      return { exitCode: 1, stderr: runcError(`criu failed: type NOTIFY errno 0\nlog file: ${join(workDir, 'dump.log')}`) };
    }, { once: true });
    const err = await rejection(checkpointContainer(host.runtime, 'c3', { ...OPTS, leaveRunning: true }));

    const logs = readdirSync(host.runtime.logsDir).filter((name) => name.startsWith('c3-dump-'));
    assert.equal(logs.length, 1, 'the log is kept under the logs folder');
    const kept = join(host.runtime.logsDir, logs[0]);
    assert.match(kept, /\/logs\/c3-dump-\d{8}T\d{6}\.\d{3}Z\.log$/);
    assert.equal(readFileSync(kept, 'utf8'), CRIU_LOG);
    assert.equal(err.message, [
      // runc's "criu failed: type NOTIFY errno 0" gives way to CRIU's own first error line.
      'checkpoint c3 failed: CRIU: unix: Connected socket 0x1234 is external',
      `CRIU log: ${kept}`,
      '  (00.002000) Error (criu/sockets.c:530): unix: Connected socket 0x1234 is external',
      '  (00.002100) Error (criu/cr-dump.c:1794): Dumping FAILED.',
    ].join('\n'));
    assert.equal(err.hint, "CRIU's log shows a unix socket connected outside the container: add --ext-unix-sk");
    assert.ok(!err.message.includes(workDir), 'the removed work folder is not named');

    const calls = host.runner.runcCalls();
    assert.equal(calls[0], 'pause c3');
    assert.match(calls[1], /^checkpoint .* --leave-running c3$/);
    assert.deepEqual(calls.slice(2).sort(), ['--version', 'resume c3'], 'the container is thawed');
    assert.equal(calls.at(-1), 'resume c3');
    const record = host.record('c3');
    assert.equal(record.checkpointing, false);
    assert.equal(record.status, 'running');
    assert.equal(record.lastCheckpoint, null);
    assert.deepEqual(checkpointEntries('c3'), [], 'no partial image is left');
  });

  // CRIU's own words when it could not stop a task within its timeout (the CI run of fef040f).
  const SEIZE_LOG = [
    '(00.001000) Version: 4.2.1 (gitid 0)',
    '(10.004804) Error (criu/cr-dump.c:1655): Timeout reached. Try to interrupt: 0',
    '(10.005177) Error (compel/src/lib/infect.c:262): Unseizable non-zombie 1707 found, state D, err -1/4',
    '(10.007747) Error (criu/cr-dump.c:1975): Dumping FAILED.',
    '',
  ].join('\n');
  const seizeTimesOut = (times: number) => {
    let left = times;
    host.runner.on('runc', ['checkpoint'], (call) => {
      const workDir = flagValue(call, '--work-path');
      if (left-- <= 0) {
        writeCriuDump(call);
        return {};
      }
      writeFileSync(join(workDir, 'dump.log'), SEIZE_LOG);
      return { exitCode: 1, stderr: runcError(`criu failed: type NOTIFY errno 0\nlog file: ${join(workDir, 'dump.log')}`) };
    });
  };

  test('CRIU could not stop a task in time: undone, thawed and taken once more, which succeeds', async () => {
    await host.createRunning('c14');
    host.runner.reset();
    seizeTimesOut(1);
    const steps: string[] = [];
    const result = await checkpointContainer(host.runtime, 'c14', { ...OPTS, leaveRunning: true }, (step) => steps.push(step));
    const calls = host.runner.runcCalls().filter((c) => c !== '--version');
    assert.equal(calls.length, 6, calls.join(', '));
    assert.deepEqual([calls[0], calls[2], calls[3], calls[5]], ['pause c14', 'resume c14', 'pause c14', 'resume c14']);
    assert.match(calls[1], /^checkpoint .* c14$/);
    assert.match(calls[4], /^checkpoint .* c14$/);
    assert.ok(steps.includes('CRIU could not stop every task in time: once more'), steps.join(' / '));
    assert.ok(existsSync(join(result.path, 'checkpoint', 'inventory.img')));
    assert.deepEqual(checkpointEntries('c14'), [result.path.split('/').at(-1)], 'only the second attempt\'s folder');
    assert.equal(host.record('c14').status, 'running');
    assert.equal(host.record('c14').lastCheckpoint!.path, result.path);
  });

  test('CRIU could not stop a task in time, twice: the second failure is reported, the container thawed, no third try', async () => {
    await host.createRunning('c15');
    host.runner.reset();
    seizeTimesOut(2);
    const err = await rejection(checkpointContainer(host.runtime, 'c15', OPTS));
    assert.match(err.message, /^checkpoint c15 failed: CRIU: Timeout reached\. Try to interrupt: 0/);
    assert.equal(host.runner.runcCalls().filter((c) => c.startsWith('checkpoint ')).length, 2);
    assert.equal(host.runner.runcCalls().at(-1), 'resume c15');
    assert.equal(host.record('c15').status, 'running');
    assert.equal(host.record('c15').checkpointing, false);
    assert.deepEqual(checkpointEntries('c15'), []);
  });

  test('a failed dump without a CRIU log says so plainly', async () => {
    host.runner.failRunc(['checkpoint'], 'criu not found', { once: true });
    const err = await rejection(checkpointContainer(host.runtime, 'c3', OPTS));
    assert.equal(err.message, 'checkpoint c3 failed: runc checkpoint failed: criu not found');
    assert.equal(host.record('c3').status, 'running');
  });

  test('--leave-running and the thaw fails: the checkpoint is kept, the error says it is frozen, the record says paused', async () => {
    await host.createRunning('c4');
    host.runner.reset();
    dumpSucceeds();
    host.runner.failRunc(['resume'], 'unable to thaw: no such file or directory', { once: true });
    const err = await rejection(checkpointContainer(host.runtime, 'c4', { ...OPTS, leaveRunning: true }));
    const [folder] = checkpointEntries('c4');
    const path = join(host.checkpointDir, 'c4', folder);
    assert.equal(err.message, `checkpoint c4: the checkpoint is in ${path}, but the container could not be thawed and is still frozen: resume c4: unable to thaw: no such file or directory`);
    assert.equal(err.hint, 'try `stasis resume c4`');
    assert.ok(existsSync(join(path, 'checkpoint', 'inventory.img')));
    const record = host.record('c4');
    assert.equal(record.status, 'paused');
    assert.equal(record.checkpointing, false);
    assert.equal(record.checkpointedStop, false);
    assert.equal(record.lastCheckpoint!.path, path);
    assert.equal((await host.runtime.info('c4')).status, 'paused');
  });

  test('--leave-running: resumed after the dump, still running', async () => {
    await host.createRunning('c5');
    host.runner.reset();
    dumpSucceeds();
    const result = await checkpointContainer(host.runtime, 'c5', { ...OPTS, leaveRunning: true });
    assert.equal(result.leftRunning, true);
    assert.equal(host.runner.runcCalls().at(-1), 'resume c5');
    const record = host.record('c5');
    assert.equal(record.status, 'running');
    assert.equal(record.checkpointedStop, false);
    assert.equal(record.pid, process.pid);
  });

  test('a tty container is refused before it is touched', async () => {
    await host.createRunning('c6', { tty: true });
    host.runner.reset();
    const err = await rejection(checkpointContainer(host.runtime, 'c6', OPTS));
    assert.equal(err.message, 'cannot checkpoint container c6: it has a terminal, and runc cannot checkpoint a container with a terminal');
    assert.equal(err.code, 'tty');
    assert.deepEqual(host.runner.runcCalls(), []);
    assert.equal(host.record('c6').checkpointing, false);
    assert.deepEqual(checkpointEntries('c6'), []);
  });

  test('paused, created, passthrough-stdio and missing containers are refused', async () => {
    await host.createRunning('c7');
    await host.runtime.container('c7').pause();
    await host.create('c8');
    await host.createRunning('c9', { stdout: join(host.root, 'c9.out') });
    host.runner.reset();
    assert.equal((await rejection(checkpointContainer(host.runtime, 'c7', OPTS))).message, 'cannot checkpoint container c7: it was paused with `stasis pause`; resume it first');
    assert.equal((await rejection(checkpointContainer(host.runtime, 'c8', OPTS))).message, 'cannot checkpoint container c8: it is created');
    const passthrough = await rejection(checkpointContainer(host.runtime, 'c9', OPTS));
    assert.equal(passthrough.code, 'stdio-passthrough');
    assert.equal((await rejection(checkpointContainer(host.runtime, 'ghost', OPTS))).message, 'no such container: ghost');
    assert.deepEqual(host.runner.runcCalls(), []);
  });

  test('--image-path that is not empty is refused; an empty one is used as it is', async () => {
    const full = join(host.root, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'something'), '');
    host.runner.reset();
    const err = await rejection(checkpointContainer(host.runtime, 'c5', { ...OPTS, imagePath: full }));
    assert.equal(err.code, 'image-path-not-empty');
    assert.deepEqual(host.runner.runcCalls(), []);

    const empty = join(host.root, 'empty');
    mkdirSync(empty);
    dumpSucceeds();
    const result = await checkpointContainer(host.runtime, 'c5', { ...OPTS, imagePath: empty, leaveRunning: true });
    assert.equal(result.path, empty);
    assert.ok(existsSync(join(empty, 'checkpoint', 'inventory.img')));
    assert.deepEqual(readdirSync(host.root).filter((name) => name.includes('partial')), []);
  });

  // Once runc checkpoint has succeeded without --leave-running, CRIU has killed the
  // container; a failure in the steps after it (the second writeMetadata, the rename: a
  // full disk, say) must not lose the dump: the next command finishes the checkpoint.
  test('a failure after a successful dump keeps the dump of the container CRIU stopped', async () => {
    await host.createRunning('c10');
    host.runner.reset();
    dumpSucceeds((call) => {
      // What makes the last metadata write fail after the dump: a folder where config.dump goes (EISDIR).
      const workDir = flagValue(call, '--work-path');
      rmSync(join(workDir, 'config.dump'));
      mkdirSync(join(workDir, 'config.dump'));
      // CRIU kills the dumped container; conmon then writes its exit file.
      writeFileSync(join(host.containerDir('c10'), 'exit'), '137');
    });
    const failed = await rejection(checkpointContainer(host.runtime, 'c10', OPTS));
    assert.match(failed.message, /the dump is complete in/);
    // Any command on the container finishes it.
    await host.runtime.info('c10');
    const [folder] = checkpointEntries('c10');
    assert.ok(folder !== undefined && existsSync(join(host.checkpointDir, 'c10', folder, 'checkpoint', 'inventory.img')), 'the dump is kept');
    assert.equal(host.record('c10').checkpointedStop, true, 'the record says a checkpoint stopped it');
  });

  test('--pre-dump and --parent-path are checked before the container is touched', async () => {
    host.runner.reset();
    const noParent = await rejection(checkpointContainer(host.runtime, 'c5', { ...OPTS, parentPath: join(host.root, 'nothing') }));
    assert.equal(noParent.code, 'bad-parent');
    // The kernel's soft-dirty tracking is asked of CRIU, which is not installed here: no tracking.
    const preDump = await rejection(checkpointContainer(host.runtime, 'c5', { ...OPTS, preDump: true }));
    assert.equal(preDump.code, 'no-soft-dirty');
    assert.deepEqual(host.runner.runcCalls(), []);
  });
});

describe('checkpoint archives and images (fake runc and CRIU; real tar)', () => {
  const host = new FakeHost('checkpoint-export');
  after(() => host.cleanup());
  let base = '';
  const dumpSucceeds = () =>
    host.runner.on('runc', ['checkpoint'], (call) => {
      writeCriuDump(call);
      return {};
    });

  test('--export into a folder: checkpoint-ID-TIME.tar.zst there; -c gzip: .tar.gz', async () => {
    base = host.baseImage('base');
    await host.createRunning('e1', { rootfs: base, args: ['sleep', '100'] });
    writeFileSync(join(host.containerDir('e1'), 'upper', 'made'), 'x\n');
    dumpSucceeds();
    const dir = join(host.root, 'exports');
    mkdirSync(dir);
    const first = await checkpointContainer(host.runtime, 'e1', { ...OPTS, leaveRunning: true, exportPath: dir });
    assert.match(first.exported!, new RegExp(`^${dir}/checkpoint-e1-\\d{8}T\\d{6}\\.\\d{3}Z\\.tar\\.zst$`));
    assert.equal(first.image, null);
    assert.deepEqual(readFileSync(first.exported!).subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'zstd');
    const second = await checkpointContainer(host.runtime, 'e1', { ...OPTS, leaveRunning: true, exportPath: dir, compression: 'gzip' });
    assert.match(second.exported!, /\.tar\.gz$/);
    const names = (await readTarEntries(second.exported!)).map((entry) => entry.name);
    assert.ok(names.includes('rootfs-diff.tar') && names.includes('stasis.json'), names.join(' '));
  });

  test('--ignore-rootfs leaves the rootfs changes out of the archive, not out of the folder', async () => {
    const archive = join(host.root, 'ignored.tar');
    const result = await checkpointContainer(host.runtime, 'e1', { ...OPTS, leaveRunning: true, exportPath: archive, ignoreRootfs: true });
    const names = (await readTarEntries(archive)).map((entry) => entry.name);
    assert.ok(!names.includes('rootfs-diff.tar') && !names.includes('deleted.files'), names.join(' '));
    assert.ok(names.includes('checkpoint/'));
    assert.ok(existsSync(join(result.path, 'rootfs-diff.tar')));
  });

  test('--export - : the archive onto a stream, zstd unless told; exported says -', async () => {
    const chunks: Buffer[] = [];
    const out = new PassThrough();
    out.on('data', (chunk: Buffer) => chunks.push(chunk));
    const result = await checkpointContainer(host.runtime, 'e1', { ...OPTS, leaveRunning: true, exportStream: out });
    assert.equal(result.exported, '-');
    const bytes = Buffer.concat(chunks);
    assert.deepEqual(bytes.subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    const file = join(host.root, 'streamed.tar.zst');
    writeFileSync(file, bytes);
    assert.ok((await readTarEntries(file)).some((entry) => entry.name === 'spec.dump'));
  });

  test('--create-image: an oci-archive with the checkpoint, its reference in the result and the journal', async () => {
    const archive = join(host.root, 'e1.oci.tar');
    const result = await checkpointContainer(host.runtime, 'e1', { ...OPTS, leaveRunning: true, createImage: `oci-archive:${archive}`, podmanImage: { name: 'localhost/busybox', id: 'ab'.repeat(32) } });
    assert.equal(result.image, `oci-archive:${archive}`);
    const read = await readCheckpointImage(`oci-archive:${archive}`, join(host.root, 'e1-read'));
    assert.equal(read.refName, 'localhost/checkpoint-e1:latest');
    assert.equal(read.annotations['io.podman.annotations.checkpoint.rootfsImageName'], 'localhost/busybox');
    assert.equal(read.annotations['io.podman.annotations.checkpoint.rootfsImageID'], 'ab'.repeat(32));
    assert.equal(read.annotations['org.criu.checkpoint.runtime.version'], '1.1.5-fake');
    const config = JSON.parse(readFileSync(join(host.root, 'e1-read', 'config.dump'), 'utf8'));
    assert.equal(config.rootfsImageName, 'localhost/busybox', "the image's copy names the podman image");
    assert.equal(JSON.parse(readFileSync(join(result.path, 'config.dump'), 'utf8')).rootfsImageName, base, 'the folder is not changed');
    assert.match(readFileSync(join(host.stateDir, 'events.jsonl'), 'utf8').trim().split('\n').at(-1)!, new RegExp(`"image":"oci-archive:${archive}"`));
  });

  test('--create-image --base-image: config.dump names the registry image and a status.dump is added, for containerd\'s CRI restore', async () => {
    const archive = join(host.root, 'e1-cri.oci.tar');
    const ref = '127.0.0.1:5000/busybox@sha256:' + 'cd'.repeat(32);
    const result = await checkpointContainer(host.runtime, 'e1', { ...OPTS, leaveRunning: true, createImage: `oci-archive:${archive}`, baseImage: ref });
    const read = await readCheckpointImage(`oci-archive:${archive}`, join(host.root, 'e1-cri-read'));
    // containerd 2.1 takes an image as a checkpoint by this annotation (checkIfCheckpointOCIImage).
    assert.equal(read.annotations['org.criu.checkpoint.container.name'], 'e1');
    const config = JSON.parse(readFileSync(join(host.root, 'e1-cri-read', 'config.dump'), 'utf8'));
    assert.equal(config.rootfsImageRef, ref, 'containerd pulls rootfsImageRef');
    assert.equal(config.rootfsImageName, ref);
    const status = JSON.parse(readFileSync(join(host.root, 'e1-cri-read', 'status.dump'), 'utf8'));
    assert.deepEqual(status.metadata, { name: 'e1' });
    assert.deepEqual(status.image, { image: ref });
    assert.deepEqual(status.annotations, {}, 'containerd writes into this map: it must be there');
    assert.deepEqual(status.labels, {});
    assert.ok(!existsSync(join(result.path, 'status.dump')), 'the folder is not changed');
  });

  test('a bad --export folder or --create-image target is refused before the container is touched', async () => {
    host.runner.reset();
    const folder = await rejection(checkpointContainer(host.runtime, 'e1', { ...OPTS, exportPath: join(host.root, 'none', 'a.tar') }));
    assert.equal(folder.code, 'export-folder-missing');
    const conflict = await rejection(checkpointContainer(host.runtime, 'e1', { ...OPTS, exportPath: join(host.root, 'a.tar.gz'), compression: 'zstd' }));
    assert.equal(conflict.code, 'export-compression-conflict');
    const full = join(host.root, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'x'), '');
    const image = await rejection(checkpointContainer(host.runtime, 'e1', { ...OPTS, createImage: `oci:${full}` }));
    assert.equal(image.code, 'bad-image-target');
    assert.match(image.message, /is neither empty nor an OCI image layout/);
    assert.deepEqual(host.runner.runcCalls(), []);
    assert.equal(host.record('e1').status, 'running');
  });

  // migrate's dumps (checkpointHeld, the container's lock held by the caller).
  test('a move\'s dump (stayFrozen): no resume, the record says paused, no journal line yet', async () => {
    await host.createRunning('m1');
    host.runner.reset();
    dumpSucceeds();
    const result = await host.runtime.withContainer('m1', (record) => checkpointHeld(host.runtime, record, { ...OPTS, leaveRunning: true, stayFrozen: true }));
    const dump = host.runner.calls.filter((c) => c.file === 'runc')[1];
    assert.ok(dump.args.includes('--leave-running'));
    assert.ok(!host.runner.runcCalls().includes('resume m1'), 'left frozen');
    assert.equal(host.record('m1').status, 'paused');
    assert.equal(result.pagesServed, undefined);
    assert.ok(!readFileSync(join(host.stateDir, 'events.jsonl'), 'utf8').includes('"topic":"/tasks/checkpointed","id":"m1"'));
  });

  test('a lazy dump: returned once runc says ready on its status descriptor, from the folder CRIU still writes its log into; pagesServed settles when runc ends', async () => {
    await host.createRunning('m2');
    host.runner.reset();
    let finish = () => undefined as void;
    host.runner.on('runc', ['checkpoint'], async (call, opts) => {
      writeCriuDump(call);
      opts.onStatus?.('\0');
      await new Promise<void>((resolve) => (finish = resolve));
      return {};
    });
    const result = await host.runtime.withContainer('m2', (record) => checkpointHeld(host.runtime, record, { ...OPTS, leaveRunning: true, stayFrozen: true, lazyPort: 40123 }));
    const dump = host.runner.calls.filter((c) => c.file === 'runc')[1];
    assert.deepEqual(dump.args.slice(dump.args.indexOf('--lazy-pages')), ['--lazy-pages', '--page-server', '127.0.0.1:40123', '--status-fd', '3', 'm2']);
    assert.ok(dump.args.includes('--leave-running'), 'the processes stay here, frozen, until the other side has every page');
    assert.match(result.path, /\.partial-\d+$/);
    assert.ok(existsSync(join(result.path, 'stasis.json')) && existsSync(join(result.path, 'stasis.sig')));
    assert.equal(host.record('m2').status, 'paused');
    let settled = false;
    void result.pagesServed!.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled, false, 'still serving pages');
    finish();
    assert.equal((await result.pagesServed!).exitCode, 0);
  });

  test('a lazy dump whose runc ends before it is ready fails, and the container is thawed', async () => {
    await host.createRunning('m3');
    host.runner.reset();
    host.runner.failRunc(['checkpoint'], 'criu failed: type NOTIFY errno 0');
    const err = await rejection(host.runtime.withContainer('m3', (record) => checkpointHeld(host.runtime, record, { ...OPTS, leaveRunning: true, stayFrozen: true, lazyPort: 40124 })));
    assert.match(err.message, /runc checkpoint failed: criu failed: type NOTIFY errno 0/);
    assert.equal(host.runner.runcCalls().at(-1), 'resume m3');
    assert.equal(host.record('m3').status, 'running');
    const left = existsSync(join(host.checkpointDir, 'm3')) ? readdirSync(join(host.checkpointDir, 'm3')) : [];
    assert.deepEqual(left, [], 'no partial folder left');
  });
});
