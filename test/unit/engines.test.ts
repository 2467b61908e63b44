import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeEngine, detectEngine, foreignMeta, idFromName, parseKubeletArchiveName } from '../../src/checkpoint/format/engines.ts';
import { layerWhiteouts } from '../../src/checkpoint/archive/layer.ts';
import { readTarEntries } from '../../src/checkpoint/archive/tar.ts';
import { POD, containerdSpec, crioSpec, writeContainerdDiff, writeContainerdFiles, writeCriuImages, writeCrioFiles, writePodmanFolder } from '../fixtures/engines/build.ts';

// The podman folder is a real podman 4.3.1 export's file list and metadata
// (test/fixtures/engines/podman); the CRI-O and containerd folders are built
// from those engines' sources (see test/fixtures/engines/build.ts), as no
// kubelet runs here.

let root: string;
let count = 0;
const fresh = (label: string) => {
  const dir = join(root, `${label}-${count++}`);
  mkdirSync(dir);
  return dir;
};
const podmanSpec = () => JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/engines/podman/spec.dump'), 'utf8'));

function crioFolder(opts: { serviceAccount?: boolean } = {}): string {
  const dir = fresh('crio');
  writeCriuImages(join(dir, 'checkpoint'), { rootMode: 0o755 });
  writeCrioFiles(dir, crioSpec(podmanSpec(), { ...POD, ...opts }), { ...POD, ...opts }, '2026-11-30T10:00:01.000000000Z stdout F 0\n');
  return dir;
}

function containerdFolder(): string {
  const dir = fresh('containerd');
  writeCriuImages(join(dir, 'checkpoint'), { rootMode: 0o755 });
  writeContainerdFiles(dir, containerdSpec(podmanSpec()), POD, '2026-11-30T10:00:01.000000000Z stdout F 0\n');
  writeContainerdDiff(dir, { files: { 'tmp/new.txt': 'hi\n' }, deleted: ['/etc/group'] });
  return dir;
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'stasis-engines-test-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('detectEngine', () => {
  test('a podman export: libpod manager, name and image from config.dump', () => {
    const dir = fresh('podman');
    writePodmanFolder(dir);
    const info = detectEngine(dir);
    assert.deepEqual(info, { engine: 'podman', name: 'ix1', image: 'localhost/busybox:stasis', evidence: ['io.container.manager=libpod'] });
    assert.equal(describeEngine(info), 'made by podman, container ix1 (image localhost/busybox:stasis)');
    assert.equal(describeEngine(detectEngine(dir, { annotations: { 'io.podman.annotations.checkpoint.podman.version': '4.3.1' } })), 'made by podman 4.3.1, container ix1 (image localhost/busybox:stasis)');
  });

  test('CRI-O: the name is io.kubernetes.cri-o.Metadata\'s, not config.dump\'s k8s_… name', () => {
    const { evidence, ...info } = detectEngine(crioFolder());
    assert.deepEqual(info, { engine: 'cri-o', name: 'counter', image: POD.image });
    assert.deepEqual(evidence, ['io.container.manager=cri-o']);
  });

  test('CRI-O without its manager annotation is still CRI-O (its own annotations say so): inspect and restore agree', () => {
    const dir = crioFolder();
    const spec = JSON.parse(readFileSync(join(dir, 'spec.dump'), 'utf8'));
    delete spec.annotations['io.container.manager'];
    writeFileSync(join(dir, 'spec.dump'), JSON.stringify(spec));
    const info = detectEngine(dir);
    assert.equal(info.engine, 'cri-o');
    assert.ok(info.evidence.length > 0 && info.evidence.every((key) => key.startsWith('io.kubernetes.cri-o.')), info.evidence.join());
  });

  test('containerd: no manager, CRI annotations and its status files', () => {
    const { evidence, ...info } = detectEngine(containerdFolder());
    assert.deepEqual(info, { engine: 'containerd', name: 'counter', image: POD.image });
    assert.ok(evidence.some((e) => e.startsWith('io.kubernetes.cri.')), evidence.join());
  });

  test('stasis: stasis.json', () => {
    const dir = fresh('stasis');
    writeCriuImages(join(dir, 'checkpoint'), { rootMode: 0o755 });
    writeFileSync(join(dir, 'stasis.json'), JSON.stringify({ format: 1, id: 'web', rootfs: { base: '/srv/base' } }));
    writeFileSync(join(dir, 'spec.dump'), JSON.stringify({ process: { args: ['sh'] }, annotations: { 'io.container.manager': 'stasis' } }));
    assert.deepEqual(detectEngine(dir), { engine: 'stasis', name: 'web', image: '/srv/base', evidence: ['stasis.json', 'io.container.manager=stasis'] });
  });

  test('what is not a restorable container checkpoint says what it is', () => {
    const empty = fresh('empty');
    assert.match(detectEngine(empty).problem ?? '', /not a checkpoint: it has no checkpoint\/inventory\.img/);
    const layout = fresh('layout');
    writeFileSync(join(layout, 'index.json'), '{}');
    writeFileSync(join(layout, 'oci-layout'), '{}');
    assert.match(detectEngine(layout).problem ?? '', /OCI image layout: give it as oci:DIR/);
    const pre = fresh('pre');
    writePodmanFolder(pre);
    rmSync(join(pre, 'checkpoint'), { recursive: true });
    mkdirSync(join(pre, 'pre-checkpoint'));
    assert.match(detectEngine(pre).problem ?? '', /pre-checkpoint/);
    const pod = fresh('pod');
    writePodmanFolder(pod);
    writeFileSync(join(pod, 'pod.dump'), '{}');
    assert.match(detectEngine(pod).problem ?? '', /whole pod/);
    const other = fresh('other');
    writeCriuImages(join(other, 'checkpoint'), { rootMode: 0o755 });
    writeFileSync(join(other, 'spec.dump'), JSON.stringify({ process: { args: ['sh'] }, annotations: { 'io.container.manager': 'lxc' } }));
    const info = detectEngine(other);
    assert.equal(info.engine, 'unknown');
    assert.match(info.problem ?? '', /names no engine stasis knows/);
  });
});

describe('foreignMeta', () => {
  test('podman: the facts a restore needs', () => {
    const dir = fresh('podman');
    writePodmanFolder(dir);
    const result = foreignMeta(dir, 'podman');
    assert.ok(result.ok, JSON.stringify(result));
    const { meta } = result;
    assert.equal(meta.id, 'ix1');
    assert.deepEqual(meta.command.slice(0, 2), ['sh', '-c']);
    assert.deepEqual(meta.image, { name: 'localhost/busybox:stasis', id: '27c5858767c6f83e48f61a1947b7efe09247d5667d64e506e9cbdaf1fb5645c7', userRequested: 'localhost/busybox:stasis' });
    assert.equal(meta.rootMode, 0o40555);
    assert.deepEqual(meta.rootfs, { kind: 'overlay', diffTar: join(dir, 'rootfs-diff.tar'), diffFormat: 'plain', deleted: ['/etc/group'] });
    assert.deepEqual(meta.mounts.private.map((m) => [m.destination, m.kind, m.fileType]).sort(), [
      ['/dev/shm', 'shm', 'directory'],
      ['/etc/hostname', 'hostname', 'file'],
      ['/etc/hosts', 'hosts', 'file'],
      ['/run/.containerenv', 'containerenv', 'file'],
    ]);
    assert.deepEqual(meta.mounts.volumes, []);
    assert.equal(meta.shmTar, join(dir, 'devshm-checkpoint.tar'));
    assert.equal(meta.log, join(dir, 'ctr.log'));
    assert.deepEqual(meta.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }, { type: 'RLIMIT_NPROC', hard: 32768, soft: 32768 }]);
    assert.deepEqual(meta.namespaces, []);
    assert.deepEqual(meta.criuOptions, []);
    assert.equal(meta.terminal, false);
    assert.equal(meta.hostname, 'b587f749c5db');
  });

  test('CRI-O: pod, kubelet and CRI-O files told from volumes, joined namespaces', () => {
    const result = foreignMeta(crioFolder({ serviceAccount: true }), 'cri-o');
    assert.ok(result.ok, JSON.stringify(result));
    const { meta } = result;
    assert.equal(meta.id, 'counter');
    assert.deepEqual(meta.pod, { name: POD.pod, namespace: POD.namespace, uid: POD.uid });
    assert.deepEqual(meta.mounts.private.map((m) => m.kind).sort(), ['containerenv', 'hostname', 'hosts', 'resolv.conf', 'shm', 'termination-log']);
    assert.deepEqual(meta.mounts.volumes.map((m) => [m.destination, m.fileType]), [['/var/run/secrets/kubernetes.io/serviceaccount', 'directory']]);
    assert.deepEqual(meta.namespaces.map((ns) => [ns.type, ns.external]), [['network', true], ['ipc', false], ['uts', false]]);
    assert.match(meta.log ?? '', /io\.kubernetes\.cri-o\.LogPath$/);
    assert.equal(meta.image.id, POD.imageId);
    assert.equal(meta.rootMode, 0o40755);
    assert.equal(meta.createdAt, POD.created);
  });

  test('containerd: the diff is an OCI layer with whiteouts', async () => {
    const dir = containerdFolder();
    const result = foreignMeta(dir, 'containerd');
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.meta.rootfs.diffFormat, 'oci-layer');
    assert.deepEqual(result.meta.rootfs.deleted, []);
    assert.equal(result.meta.log, join(dir, 'container.log'));
    const whiteouts = layerWhiteouts(await readTarEntries(result.meta.rootfs.diffTar!));
    assert.deepEqual(whiteouts, { deleted: ['/etc/group'], opaque: [], markers: ['etc/.wh.group'] });
  });

  test('errors come back as data', () => {
    const podman = fresh('podman');
    writePodmanFolder(podman);
    assert.deepEqual(foreignMeta(podman, 'stasis'), { ok: false, error: { code: 'wrong-engine', message: "foreignMeta reads podman, CRI-O and containerd checkpoints, not stasis's" } });
    assert.deepEqual(foreignMeta(podman, 'cri-o'), { ok: false, error: { code: 'wrong-engine', message: 'it was made by podman, container ix1 (image localhost/busybox:stasis), not by CRI-O' } });
    writeFileSync(join(podman, 'deleted.files'), '{"not": "a list"}');
    assert.equal((foreignMeta(podman, 'podman') as { error: { code: string } }).error.code, 'damaged');
    const noArgs = fresh('noargs');
    writePodmanFolder(noArgs);
    writeFileSync(join(noArgs, 'spec.dump'), JSON.stringify({ process: {}, annotations: { 'io.container.manager': 'libpod' } }));
    assert.deepEqual(foreignMeta(noArgs, 'podman'), { ok: false, error: { code: 'damaged', message: 'spec.dump has no process.args, so the command is unknown' } });
    const truncated = fresh('truncated');
    writePodmanFolder(truncated);
    writeFileSync(join(truncated, 'checkpoint', 'files.img'), readFileSync(join(truncated, 'checkpoint', 'files.img')).subarray(0, 30));
    const damaged = foreignMeta(truncated, 'podman');
    assert.ok(!damaged.ok && damaged.error.code === 'damaged' && /files\.img is damaged or not a CRIU image: an entry of/.test(damaged.error.message), JSON.stringify(damaged));
    const empty = fresh('empty');
    assert.equal((foreignMeta(empty, 'podman') as { error: { code: string } }).error.code, 'not-restorable');
  });
});

test('the kubelet\'s archive name', () => {
  assert.deepEqual(parseKubeletArchiveName('checkpoint-counters_default-counter-2026-11-30T10:05:00Z.tar'), { pod: 'counters', namespace: 'default', container: 'counter', time: '2026-11-30T10:05:00Z' });
  assert.deepEqual(parseKubeletArchiveName('checkpoint-web-7d9f_kube-system-side-car-2024-02-29T18:28:17+01:00.tar', 'side-car'), { pod: 'web-7d9f', namespace: 'kube-system', container: 'side-car', time: '2024-02-29T18:28:17+01:00' });
  assert.deepEqual(parseKubeletArchiveName('checkpoint-web_kube-system-side-car-2024-02-29T18:28:17Z.tar'), { pod: 'web', namespace: null, container: null, time: '2024-02-29T18:28:17Z' });
  assert.equal(parseKubeletArchiveName('web.tar'), null);
});

test('engine names as stasis IDs', () => {
  assert.equal(idFromName('ix1'), 'ix1');
  assert.equal(idFromName('k8s_counter_counters_default_6b1c/0'), 'k8s_counter_counters_default_6b1c-0');
  assert.equal(idFromName('-x y'), 'x-y');
  assert.equal(idFromName('é'), 'restored');
  assert.equal(idFromName('a'.repeat(200)).length, 128);
});
