// restore of other engines' checkpoints over a fake runc, conmon and CRIU:
// src/checkpoint/restore.ts and restore-foreign.ts through the CheckpointHost
// port, on podman- and containerd-shaped folders built around the decodable
// synthetic CRIU images the fake dump writes (the real engines' archives are
// restored for real in test/integration/engines.test.ts).
import { checkpointContainer } from '../../src/checkpoint/dump.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { restoreContainer } from '../../src/checkpoint/restore.ts';
import { writeCheckpointImage } from '../../src/checkpoint/oci/image.ts';
import { createTar } from '../../src/checkpoint/archive/tar.ts';
import type { CheckpointOptions } from '../../src/runtime/types.ts';
import { writeContainerdDiff, writeCriuImages } from '../fixtures/engines/build.ts';
import { RLIMIT_NAMES } from '../../src/checkpoint/criu/creds.ts';
import { readHostRlimits } from '../../src/checkpoint/policy/trust.ts';
import { syntheticImages } from './criu-encode.ts';
import { FakeHost, flagValue, rejection, writeCriuDump } from './fakes.ts';

const OPTS: CheckpointOptions = { leaveRunning: true, tcpEstablished: false, extUnixSk: false, shellJob: false, fileLocks: false, preDump: false };
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'engines', 'podman');
const STASIS_CAPS = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
const PODMAN_LOG = readFileSync(join(FIXTURES, 'ctr.log'), 'utf8');

type Spec = { process: Record<string, unknown>; mounts: { destination: string; type?: string; source?: string; options?: string[] }[]; annotations?: Record<string, string>; hostname?: string; linux: Record<string, unknown> };

describe('restore of another engine\'s checkpoint (fake runc, conmon and CRIU; real tar)', () => {
  const host = new FakeHost('engines-restore');
  after(() => host.cleanup());
  let images = '';
  let base = '';
  let count = 0;

  before(async () => {
    // Decodable CRIU images of one process in stasis's mount tree, as the fake dump
    // writes them, with rlimits this host grants (an untrusted checkpoint's are checked)
    // and podman's root mode in files.img.
    images = join(host.root, 'images');
    mkdirSync(images);
    const hard = readHostRlimits();
    const rlimits = RLIMIT_NAMES.map((name): [bigint, bigint] => {
      const limit = hard.get(name);
      const value = limit === undefined || limit === 'unlimited' ? 0xffff_ffff_ffff_ffffn : BigInt(Math.min(limit, 1024));
      return [value, value];
    });
    for (const [name, bytes] of syntheticImages({ tasks: [{ pid: 1, comm: 'sleep', rlimits }] })) writeFileSync(join(images, name), bytes);
    writeFileSync(join(images, 'descriptors.json'), JSON.stringify(['/dev/null', 'pipe:[4001]', 'pipe:[4002]']));
    host.runner.on('runc', ['checkpoint'], (call) => {
      writeCriuDump(call);
      for (const name of readdirSync(images)) copyFileSync(join(images, name), join(flagValue(call, '--image-path'), name));
      return {};
    });
    const modes = join(host.root, 'modes');
    writeCriuImages(modes, { rootMode: 0o555 });
    for (const name of ['fs-1.img', 'files.img']) copyFileSync(join(modes, name), join(images, name));
    // The base: /tmp is 1777 and /etc/group exists, as in an image.
    base = host.baseImage('base');
    mkdirSync(join(base, 'tmp'));
    chmodSync(join(base, 'tmp'), 0o1777);
    writeFileSync(join(base, 'etc', 'group'), 'root:x:0:\n');
    mkdirSync(join(base, 'var', 'cache'), { recursive: true });
    writeFileSync(join(base, 'var', 'cache', 'old'), 'old\n');
  });

  /** A podman 4.3 export as unpacked: the fixture's metadata around the fake dump's images. */
  const podmanFolder = (edit: (spec: Spec, dir: string) => void = () => undefined) => {
    const dir = join(host.root, `podman-${count++}`);
    mkdirSync(dir);
    cpSync(images, join(dir, 'checkpoint'), { recursive: true });
    const spec = JSON.parse(readFileSync(join(FIXTURES, 'spec.dump'), 'utf8')) as Spec;
    spec.process.capabilities = { bounding: STASIS_CAPS, effective: STASIS_CAPS, permitted: STASIS_CAPS };
    edit(spec, dir);
    writeFileSync(join(dir, 'spec.dump'), JSON.stringify(spec));
    for (const name of ['config.dump', 'deleted.files', 'network.status', 'ctr.log']) copyFileSync(join(FIXTURES, name), join(dir, name));
    const work = join(host.root, `work-${count++}`);
    mkdirSync(join(work, 'diff', 'tmp'), { recursive: true });
    writeFileSync(join(work, 'diff', 'tmp', 'new.txt'), 'hi\n');
    // podman lists the files it changed without their folders.
    execFileSync('tar', ['-cf', join(dir, 'rootfs-diff.tar'), '-C', join(work, 'diff'), 'tmp/new.txt']);
    mkdirSync(join(work, 'shm'));
    writeFileSync(join(work, 'shm', 'seg'), 'shm\n');
    execFileSync('tar', ['-cf', join(dir, 'devshm-checkpoint.tar'), '-C', join(work, 'shm'), '.']);
    return dir;
  };

  const configOf = (id: string) => JSON.parse(readFileSync(join(host.containerDir(id), 'config.json'), 'utf8')) as Spec;
  const mountAt = (spec: Spec, destination: string) => spec.mounts.find((m) => m.destination === destination);

  test('a podman export: its ID, the base named, private files made, layer modes, log imported', async () => {
    const dir = podmanFolder();
    const missing = await rejection(restoreContainer(host.runtime, undefined, { checkpoint: dir }));
    assert.equal(missing.code, 'foreign-needs-rootfs');
    assert.match(missing.message, new RegExp(`^${dir} \\(made by podman, container ix1 \\(image localhost/busybox:stasis\\)\\) ran on the image localhost/busybox:stasis`));
    const bundle = await rejection(restoreContainer(host.runtime, undefined, { checkpoint: dir, base: { kind: 'bundle', dir: host.bundle('b1') } }));
    assert.equal(bundle.code, 'foreign-bundle');
    assert.equal(bundle.exitCode, 2);
    assert.equal(existsSync(host.containerDir('ix1')), false);

    const result = await restoreContainer(host.runtime, undefined, { checkpoint: dir, base: { kind: 'overlay', dir: base } });
    assert.equal(result.container.id, 'ix1', "podman's name");
    assert.equal(result.trusted, false);
    assert.deepEqual(result.engine, { engine: 'podman', name: 'ix1', image: 'localhost/busybox:stasis', evidence: ['io.container.manager=libpod'] });
    assert.equal(result.container.restoredFrom, dir);
    const containerDir = host.containerDir('ix1');
    const files = join(containerDir, 'engine-files');
    const spec = configOf('ix1');
    for (const [destination, name] of [['/etc/hosts', 'hosts'], ['/etc/hostname', 'hostname'], ['/run/.containerenv', 'containerenv'], ['/dev/shm', 'shm']]) {
      const mount = mountAt(spec, destination);
      assert.equal(mount?.source, join(files, name), destination);
      assert.equal(mount?.type, 'bind');
    }
    assert.deepEqual(mountAt(spec, '/dev/shm')!.options, ['bind', 'rprivate', 'nosuid', 'noexec', 'nodev'], "podman's options, kept");
    assert.equal(readFileSync(join(files, 'hostname'), 'utf8'), 'b587f749c5db\n');
    assert.equal(readFileSync(join(files, 'hosts'), 'utf8'), '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tb587f749c5db\n');
    assert.equal(statSync(join(files, 'shm')).mode & 0o7777, 0o1777);
    assert.equal(readFileSync(join(files, 'shm', 'seg'), 'utf8'), 'shm\n', 'devshm-checkpoint.tar unpacked');
    const upper = join(containerDir, 'upper');
    assert.equal(statSync(upper).mode & 0o7777, 0o555, "the root's mode from files.img");
    assert.equal(statSync(join(upper, 'tmp')).mode & 0o7777, 0o1777, "tmp/ is not in podman's tar: the base's mode");
    assert.equal(readFileSync(join(upper, 'tmp', 'new.txt'), 'utf8'), 'hi\n');
    assert.equal(readFileSync(join(containerDir, 'ctr.log'), 'utf8'), PODMAN_LOG, "podman's log becomes the start of this one");
    assert.equal(spec.process.terminal, false);
    assert.deepEqual(readdirSync(host.stateDir).filter((name) => name.startsWith('.')), [], 'nothing unpacked is left');
  });

  test("a podman export whose image is in the image store needs no --rootfs: found by podman's image ID", async () => {
    const dir = podmanFolder();
    const asked: unknown[] = [];
    const notThere = await rejection(restoreContainer(host.runtime, 'ix-store', { checkpoint: dir, baseImage: async (want) => (asked.push(want), null) }));
    assert.equal(notThere.code, 'foreign-needs-rootfs');
    assert.match(notThere.message, /which is not in the image store/);
    assert.deepEqual(asked, [{ digest: null, id: '27c5858767c6f83e48f61a1947b7efe09247d5667d64e506e9cbdaf1fb5645c7', name: 'localhost/busybox:stasis' }]);
    assert.equal(existsSync(host.containerDir('ix-store')), false);
    const result = await restoreContainer(host.runtime, 'ix-store', { checkpoint: dir, baseImage: async () => base });
    assert.equal(result.container.rootfs.base, base);
    await host.runtime.delete(host.runtime.container('ix-store'), { force: true });
  });

  test('a podman container restored here is checkpointed with its /dev/shm files and restored in place with them', async () => {
    const files = join(host.containerDir('ix1'), 'engine-files');
    writeFileSync(join(files, 'shm', 'later'), 'later\n');
    const checkpoint = await checkpointContainer(host.runtime, 'ix1', { ...OPTS, leaveRunning: false });
    assert.ok(existsSync(join(checkpoint.path, 'devshm-checkpoint.tar')), 'the files of the bind-mounted /dev/shm are carried');
    const result = await restoreContainer(host.runtime, 'ix1', {});
    assert.equal(result.inPlace, true);
    assert.equal(result.trusted, true);
    assert.equal(readFileSync(join(files, 'shm', 'later'), 'utf8'), 'later\n');
    assert.equal(mountAt(configOf('ix1'), '/etc/hosts')!.source, join(files, 'hosts'));
    assert.equal(existsSync(join(host.containerDir('ix1'), 'previous')), false);
    assert.match(readFileSync(join(host.containerDir('ix1'), 'ctr.log'), 'utf8'), /^2026-12-01T09:57:09/, 'in place, the log goes on');
  });

  test('a stasis checkpoint of it, restored elsewhere under a new ID, gets files of its own', async () => {
    const checkpoint = await checkpointContainer(host.runtime, 'ix1', { ...OPTS, imagePath: join(host.root, 'ix1-again') });
    const copy = join(host.root, 'ix1-copy');
    cpSync(checkpoint.path, copy, { recursive: true });
    rmSync(join(copy, 'stasis.sig'));
    const result = await restoreContainer(host.runtime, 'ix1b', { checkpoint: copy, base: { kind: 'overlay', dir: base } });
    assert.equal(result.trusted, false);
    const files = join(host.containerDir('ix1b'), 'engine-files');
    assert.equal(mountAt(configOf('ix1b'), '/etc/hostname')!.source, join(files, 'hostname'));
    assert.equal(readFileSync(join(files, 'shm', 'seg'), 'utf8'), 'shm\n');
  });

  test('an ID the checkpoint names that exists already is refused after reading it; --name-like IDs are the user\'s', async () => {
    const dir = podmanFolder();
    const err = await rejection(restoreContainer(host.runtime, undefined, { checkpoint: dir, base: { kind: 'overlay', dir: base } }));
    assert.equal(err.code, 'duplicate');
    assert.match(err.message, /^container ix1 already exists \(running\)/);
    const result = await restoreContainer(host.runtime, 'other', { checkpoint: dir, base: { kind: 'overlay', dir: base } });
    assert.equal(result.container.id, 'other');
  });

  test('volumes are refused in one error naming each; a --mount grant takes one', async () => {
    const dir = podmanFolder((spec) => {
      spec.mounts.push({ destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind'] });
      spec.mounts.push({ destination: '/cache', type: 'bind', source: '/srv/cache', options: ['rbind'] });
    });
    const err = await rejection(restoreContainer(host.runtime, 'vol', { checkpoint: dir, base: { kind: 'overlay', dir: base } }));
    assert.equal(err.code, 'foreign-volumes');
    assert.match(err.message, /it had volumes the checkpoint does not carry: \/data \(from \/srv\/data where it ran\), \/cache \(from \/srv\/cache where it ran\)$/);
    assert.equal(err.hint, 'give each a folder of yours: --mount type=bind,source=DIR,destination=/data --mount type=bind,source=DIR,destination=/cache');
    const data = join(host.root, 'data');
    mkdirSync(data);
    const partly = await rejection(restoreContainer(host.runtime, 'vol', { checkpoint: dir, base: { kind: 'overlay', dir: base }, userMounts: [{ destination: '/data', source: data }] }));
    assert.match(partly.message, /a volume the checkpoint does not carry: \/cache/);
    await restoreContainer(host.runtime, 'vol', { checkpoint: dir, base: { kind: 'overlay', dir: base }, userMounts: [{ destination: '/data', source: data }, { destination: '/cache', source: data }] });
    assert.equal(mountAt(configOf('vol'), '/data')!.source, data);
  });

  test("podman's capabilities go beyond the policy: refused, naming the grant; granted, restored", async () => {
    const dir = podmanFolder((spec) => {
      spec.process.capabilities = { bounding: [...STASIS_CAPS, 'CAP_NET_RAW'], effective: [...STASIS_CAPS, 'CAP_NET_RAW'], permitted: [...STASIS_CAPS, 'CAP_NET_RAW'] };
    });
    const err = await rejection(restoreContainer(host.runtime, 'caps', { checkpoint: dir, base: { kind: 'overlay', dir: base } }));
    assert.match(err.message, /capability CAP_NET_RAW: in its bounding, effective, permitted sets \(spec\.dump\)/);
    assert.equal(err.hint, 'to grant it: --trust-checkpoint capabilities');
    assert.equal(existsSync(host.containerDir('caps')), false);
    await restoreContainer(host.runtime, 'caps', { checkpoint: dir, base: { kind: 'overlay', dir: base }, trust: ['capabilities'] });
  });

  test('namespaces joined by path become new ones, with a warning; rlimits above this host\'s are lowered', async () => {
    const dir = podmanFolder((spec) => {
      spec.linux.namespaces = [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/pod' }, { type: 'ipc', path: '/var/run/ipcns/pod' }, { type: 'uts' }, { type: 'mount' }];
      spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: Number.MAX_SAFE_INTEGER, soft: Number.MAX_SAFE_INTEGER }];
    });
    const result = await restoreContainer(host.runtime, 'ns', { checkpoint: dir, base: { kind: 'overlay', dir: base } });
    assert.ok(result.warnings.includes('the container joined the network namespace /var/run/netns/pod, the ipc namespace /var/run/ipcns/pod; it is restored into new ones (loopback only)'), result.warnings.join('\n'));
    assert.ok(result.warnings.some((w) => /RLIMIT_NOFILE hard limit \d+ is above this host's/.test(w)), result.warnings.join('\n'));
    const spec = configOf('ns');
    assert.ok((spec.linux.namespaces as { path?: string }[]).every((ns) => ns.path === undefined));
  });

  test('not restorable: a pod, and what is not a checkpoint; each names the path and what it is', async () => {
    const pod = podmanFolder((_spec, dir) => writeFileSync(join(dir, 'pod.dump'), '{}'));
    const err = await rejection(restoreContainer(host.runtime, 'p1', { checkpoint: pod, base: { kind: 'overlay', dir: base } }));
    assert.equal(err.message, `cannot restore from ${pod}: made by podman, container ix1 (image localhost/busybox:stasis): it is a checkpoint of a whole pod, and stasis restores single containers`);
    const junk = join(host.root, 'junk');
    mkdirSync(junk);
    writeFileSync(join(junk, 'notes.txt'), 'hello');
    const archive = join(host.root, 'junk.tar');
    await createTar(junk, archive);
    const notOne = await rejection(restoreContainer(host.runtime, 'p1', { checkpoint: archive }));
    assert.equal(notOne.message, `cannot restore from ${archive}: it is not a checkpoint: it has no checkpoint/inventory.img`);
    assert.equal(existsSync(host.containerDir('p1')), false);
    assert.deepEqual(readdirSync(host.stateDir).filter((name) => name.startsWith('.')), []);
  });

  test('an archive on a stream (stdin): unpacked, restored, restoredFrom says stdin', async () => {
    const archive = join(host.root, 'podman.tar.zst');
    await createTar(podmanFolder(), archive);
    const result = await restoreContainer(host.runtime, 'streamed', { checkpoint: { stream: createReadStream(archive), name: 'stdin' }, base: { kind: 'overlay', dir: base } });
    assert.equal(result.container.restoredFrom, 'stdin');
    assert.equal(result.checkpoint, 'stdin');
    assert.ok(result.timingsMs.unpack !== null);
  });

  test('a checkpoint image: oci-archive:FILE, oci:DIR, and a layout folder without its prefix', async () => {
    const dir = podmanFolder();
    const archive = join(host.root, 'ix.oci.tar');
    await writeCheckpointImage(dir, `oci-archive:${archive}`, { facts: { containerName: 'ix1', rootfsImageName: 'localhost/busybox:stasis' } });
    const layout = join(host.root, 'ix-layout');
    await writeCheckpointImage(dir, `oci:${layout}`, { facts: { containerName: 'ix1', rootfsImageName: 'localhost/busybox:stasis' } });
    for (const [id, checkpoint] of [['img1', `oci-archive:${archive}`], ['img2', `oci:${layout}`], ['img3', layout], ['img4', archive]]) {
      const result = await restoreContainer(host.runtime, id, { checkpoint, base: { kind: 'overlay', dir: base } });
      assert.equal(result.engine.engine, 'podman', checkpoint);
      assert.equal(readFileSync(join(host.containerDir(id), 'upper', 'tmp', 'new.txt'), 'utf8'), 'hi\n');
    }
    const wrong = await rejection(restoreContainer(host.runtime, 'img5', { checkpoint: `oci:${layout}:localhost/nothing:latest` }));
    assert.equal(wrong.code, 'bad-image');
    assert.match(wrong.message, new RegExp(`^cannot restore from oci:${layout}:localhost/nothing:latest: no image named localhost/nothing:latest in it \\(it has localhost/checkpoint-ix1:latest\\)$`));
  });

  test('containerd: the whiteouts of its OCI-layer diff are removed from the layer and become deletions', async () => {
    const dir = podmanFolder((spec, folder) => {
      delete spec.annotations;
      spec.annotations = { 'io.kubernetes.cri.container-name': 'counter', 'io.kubernetes.cri.sandbox-name': 'pod' };
      writeFileSync(join(folder, 'status'), '{}');
    });
    for (const name of ['rootfs-diff.tar', 'deleted.files', 'ctr.log', 'devshm-checkpoint.tar']) rmSync(join(dir, name));
    writeFileSync(join(dir, 'container.log'), '2026-11-30T10:00:01.000000000Z stdout F 0\n');
    writeContainerdDiff(dir, { files: { 'tmp/new.txt': 'hi\n', 'var/cache/.wh..wh..opq': '' }, deleted: ['/etc/group'] });
    const result = await restoreContainer(host.runtime, undefined, { checkpoint: dir, base: { kind: 'overlay', dir: base } });
    assert.equal(result.container.id, 'counter');
    const upper = join(host.containerDir('counter'), 'upper');
    assert.equal(existsSync(join(upper, 'etc', '.wh.group')), false, 'no whiteout marker in the layer');
    assert.equal(existsSync(join(upper, 'var', 'cache', '.wh..wh..opq')), false);
    assert.equal(readFileSync(join(upper, 'tmp', 'new.txt'), 'utf8'), 'hi\n');
    assert.equal(readFileSync(join(host.containerDir('counter'), 'ctr.log'), 'utf8'), '2026-11-30T10:00:01.000000000Z stdout F 0\n');
  });

  test('--tcp-close: the spec names a CRIU configuration file with tcp-close, removed once the restore is done', async () => {
    const result = await restoreContainer(host.runtime, 'tc', { checkpoint: podmanFolder(), base: { kind: 'overlay', dir: base }, tcpClose: true, criuOptions: ['ext-unix-sk'] });
    const file = join(host.containerDir('tc'), 'criu-restore.conf');
    assert.equal(configOf('tc').annotations!['org.criu.config'], file);
    assert.equal(existsSync(file), false, 'read by CRIU during the restore, gone after');
    assert.deepEqual(host.monitor.calls.at(-1)!.restoreArgs, ['--ext-unix-sk'], "the user's CRIU options are added");
    assert.equal(result.container.status, 'running');
    // A checkpoint of it, restored here, does not name the file again.
    await checkpointContainer(host.runtime, 'tc', { ...OPTS, leaveRunning: false });
    await restoreContainer(host.runtime, 'tc', {});
    assert.equal(configOf('tc').annotations!['org.criu.config'], undefined);
    const unknown = await rejection(restoreContainer(host.runtime, 'tc2', { checkpoint: podmanFolder(), criuOptions: ['lazy-pages'] }));
    assert.match(unknown.message, /"lazy-pages" is not a CRIU option stasis restores with/);
  });

  test('no ID and no checkpoint: a usage error', async () => {
    const err = await rejection(restoreContainer(host.runtime, undefined, {}));
    assert.equal(err.code, 'no-id');
    assert.equal(err.exitCode, 2);
  });
});
