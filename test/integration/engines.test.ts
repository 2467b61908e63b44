import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeEngine, detectEngine, foreignMeta } from '../../src/checkpoint/format/engines.ts';
import { parseProcLimits } from '../../src/checkpoint/policy/trust.ts';
import { readCheckpointImage } from '../../src/checkpoint/oci/image.ts';
import { createTar, extractTar } from '../../src/checkpoint/archive/tar.ts';
import { ROOTFS, TestEnv, counterAdvances, eventually, lastCount, pipeline } from '../helpers.ts';
import { POD, containerdSpec, crioSpec, kubeletArchiveName, writeContainerdDiff, writeContainerdFiles, writeCrioFiles } from '../fixtures/engines/build.ts';

// Other engines' checkpoints, for real where the engine runs here (podman
// 4.3), built where it cannot (CRI-O and containerd, written for the kubelet):
// those archives are a real stasis checkpoint's CRIU images and rootfs diff,
// with the metadata files those engines write around them, built from their
// sources as checkpointctl reads them (test/fixtures/engines/build.ts), and
// checked with checkpointctl where it is installed.
//
// Another engine's checkpoint is untrusted: podman gives its containers more
// capabilities than stasis's policy (CAP_MKNOD, CAP_NET_RAW), so restoring
// one takes --trust-checkpoint capabilities (PODMAN_CAPS).

const PODMAN_CAPS = ['--trust-checkpoint', 'capabilities'];
const has = (binary: string) => spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0;
const NO_PODMAN = has('podman') ? false : 'podman is not installed';
const COUNTING = (prefix: string) => ['sh', '-c', `${prefix} i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done`];
const CHANGES = 'echo hi > /tmp/new.txt; echo shm > /dev/shm/seg; rm -f /etc/group;';

/** podman with a private configuration and storage under `root` (loopback only, cgroupfs, limits this host grants). */
class Podman {
  readonly root: string;
  readonly env: NodeJS.ProcessEnv;
  constructor(root: string) {
    this.root = root;
    for (const dir of ['graph', 'run', 'tmp', 'cni']) mkdirSync(join(root, dir), { recursive: true });
    const hard = parseProcLimits(readFileSync('/proc/self/limits', 'utf8')).get('RLIMIT_NOFILE');
    const nofile = Math.min(typeof hard === 'number' ? hard : 1048576, 1048576);
    // podman asks for 1048576 of both; runc cannot raise a limit without CAP_SYS_RESOURCE.
    writeFileSync(join(root, 'containers.conf'), [
      '[containers]', 'netns = "none"', `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]`,
      '[network]', `network_config_dir = "${root}/cni"`,
      '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', `events_logfile_path = "${root}/events.log"`,
      `tmp_dir = "${root}/tmp"`, `static_dir = "${root}/graph/libpod"`, `volume_path = "${root}/graph/volumes"`, '',
    ].join('\n'));
    writeFileSync(join(root, 'storage.conf'), `[storage]\ndriver = "overlay"\ngraphroot = "${root}/graph"\nrunroot = "${root}/run"\n`);
    this.env = { ...process.env, CONTAINERS_CONF: join(root, 'containers.conf'), CONTAINERS_STORAGE_CONF: join(root, 'storage.conf') };
  }

  ok(args: string[]): string {
    const result = spawnSync('podman', args, { env: this.env, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    if (result.status !== 0) throw new Error(`podman ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
    return result.stdout;
  }

  cleanup(): void {
    spawnSync('podman', ['rm', '-a', '-f', '-t', '0'], { env: this.env });
    spawnSync('podman', ['rmi', '-a', '-f'], { env: this.env });
  }
}

async function podmanCounter(podman: Podman, name: string): Promise<void> {
  podman.ok(['run', '-d', '--name', name, 'localhost/busybox:stasis', ...COUNTING(CHANGES)]);
  await eventually(() => lastCount(podman.ok(['logs', name])) >= 2, `${name} to count`);
}


async function unpack(archive: string, dir: string): Promise<string> {
  await extractTar(archive, dir);
  return dir;
}

describe('podman 4.3: export archives and checkpoint images', { skip: NO_PODMAN }, () => {
  const env = new TestEnv('engines-podman');
  let podman: Podman;
  let exported: string;
  let imageId: string;
  before(async () => {
    podman = new Podman(join(env.root, 'podman'));
    const rootfsTar = join(env.root, 'busybox.tar');
    spawnSync('tar', ['-C', ROOTFS, '-cf', rootfsTar, '.']);
    podman.ok(['import', rootfsTar, 'localhost/busybox:stasis']);
    imageId = podman.ok(['image', 'inspect', '--format', '{{.Id}}', 'localhost/busybox:stasis']).trim();
    await podmanCounter(podman, 'ix1');
    exported = join(env.root, 'ix1.tar.zst');
    podman.ok(['container', 'checkpoint', '--export', exported, 'ix1']);
  });
  after(async () => {
    podman?.cleanup();
    await env.cleanup();
  });

  test('a real --export archive: detected, and the facts a restore needs', async () => {
    const dir = await unpack(exported, join(env.root, 'ix1-unpacked'));
    const info = detectEngine(dir);
    assert.deepEqual(info, { engine: 'podman', name: 'ix1', image: 'localhost/busybox:stasis', evidence: ['io.container.manager=libpod'] });
    const result = foreignMeta(dir, 'podman');
    assert.ok(result.ok, JSON.stringify(result));
    const { meta } = result;
    assert.equal(meta.id, 'ix1');
    assert.equal(meta.image.id, imageId);
    assert.equal(meta.rootMode, 0o40555, "podman's overlay root is 0555");
    assert.deepEqual(meta.mounts.private.map((m) => m.kind).sort(), ['containerenv', 'hostname', 'hosts', 'shm']);
    assert.deepEqual(meta.mounts.volumes, []);
    assert.deepEqual(meta.rootfs.deleted, ['/etc/group']);
    assert.ok(meta.rootfs.diffTar && meta.shmTar && meta.log, JSON.stringify(meta));
    assert.match(readFileSync(meta.log, 'utf8'), /stdout F count 0\n/);
    assert.match(spawnSync('tar', ['-tf', meta.shmTar]).stdout.toString(), /seg/);
  });

  test('podman\'s --create-image, saved as oci-archive and oci-dir, read back', async () => {
    await podmanCounter(podman, 'ix2');
    podman.ok(['container', 'checkpoint', '--create-image', 'localhost/ix2-checkpoint:latest', 'ix2']);
    const archive = join(env.root, 'ix2.oci.tar');
    podman.ok(['save', '--format', 'oci-archive', '-o', archive, 'localhost/ix2-checkpoint:latest']);
    podman.ok(['save', '--format', 'oci-dir', '-o', join(env.root, 'ix2-oci'), 'localhost/ix2-checkpoint:latest']);
    for (const ref of [`oci-archive:${archive}`, `oci:${join(env.root, 'ix2-oci')}`]) {
      const dest = join(env.root, `read-${ref.startsWith('oci:') ? 'dir' : 'archive'}`);
      const read = await readCheckpointImage(ref, dest);
      assert.equal(read.refName, 'localhost/ix2-checkpoint:latest');
      assert.equal(read.annotations['io.podman.annotations.checkpoint.name'], 'ix2');
      const info = detectEngine(dest, { annotations: read.annotations });
      assert.equal(describeEngine(info), `made by podman ${podman.ok(['version', '--format', '{{.Client.Version}}']).trim()}, container ix2 (image localhost/busybox:stasis)`);
      assert.ok(foreignMeta(dest, 'podman').ok);
    }
  });

  test('stasis checkpoint --create-image --podman-image: podman load, then podman container restore IMAGE', async () => {
    await env.ok(['run', '-d', 'sx1', '--rootfs', ROOTFS, '--', ...COUNTING('')]);
    await eventually(async () => lastCount(await env.ok(['logs', 'sx1'])) >= 2, 'sx1 to count');
    const archive = join(env.root, 'sx1.oci.tar');
    const result = await env.json(['checkpoint', 'sx1', '--image-path', join(env.root, 'sx1-ckpt'), '--create-image', `oci-archive:${archive}`, '--podman-image', `localhost/busybox:stasis@${imageId}`]);
    assert.equal(result.image, `oci-archive:${archive}`);
    assert.equal(result.path, join(env.root, 'sx1-ckpt'));
    const atCheckpoint = lastCount(await env.ok(['logs', 'sx1']));
    assert.match(podman.ok(['load', '-i', archive]), /Loaded image: localhost\/checkpoint-sx1:latest/);
    podman.ok(['container', 'restore', 'localhost/checkpoint-sx1:latest']);
    const after = await eventually(() => {
      const value = lastCount(podman.ok(['logs', 'sx1']));
      return value > atCheckpoint + 1 ? value : 0;
    }, 'sx1 to count on under podman');
    assert.ok(after > atCheckpoint);
    assert.doesNotMatch(podman.ok(['logs', 'sx1']), /count 0\n/, 'it went on, it did not start again');
    assert.equal(podman.ok(['exec', 'sx1', 'cat', '/proc/1/cmdline']).split('\0')[0], 'sh');
    podman.ok(['rm', '-f', '-t', '0', 'sx1']);
    // stasis restores the same image in place: its "/" is the 0555 podman wanted.
    assert.equal(await env.ok(['restore', 'sx1', '--checkpoint', `oci-archive:${archive}`]), 'sx1\n');
    assert.equal(await env.ok(['exec', 'sx1', '--', 'stat', '-c', '%a', '/']), '555\n');
    await counterAdvances(env, 'sx1', atCheckpoint);
    await env.ok(['delete', '-f', 'sx1']);
  });

  test('stasis restore of the podman archive', async () => {
    const missing = await env.run(['restore', '--checkpoint', exported]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /localhost\/busybox:stasis/);
    assert.match(missing.stderr, /--rootfs/);
    const policy = await env.run(['restore', '--checkpoint', exported, '--rootfs', ROOTFS]);
    assert.equal(policy.code, 1);
    assert.match(policy.stderr, /capability CAP_(MKNOD|NET_RAW).*\n[^]*hint: to grant it: --trust-checkpoint capabilities/);
    assert.ok(!env.containerIds().includes('ix1'), 'a refused restore leaves nothing');
    const restored = await env.run(['restore', '--checkpoint', exported, '--rootfs', ROOTFS, ...PODMAN_CAPS]);
    assert.equal(restored.stdout, 'ix1\n', restored.stderr);
    // The policy's routine replacements in one line; the details are under --debug and in checkpoint-inspect.
    const replaced = restored.stderr.split('\n').filter((line) => /^stasis: warning: stasis's policy replaced the checkpoint's /.test(line));
    assert.equal(replaced.length, 1, restored.stderr);
    assert.match(replaced[0], /noNewPrivileges.*seccomp|seccomp.*noNewPrivileges/);
    assert.doesNotMatch(restored.stderr, /noNewPrivileges off|linux\.seccomp|linux\.maskedPaths|linux\.readonlyPaths/);
    const logs = await env.ok(['logs', 'ix1']);
    assert.match(logs, /^count 0\n/, "podman's ctr.log is imported");
    const atRestore = lastCount(logs);
    await eventually(async () => lastCount(await env.ok(['logs', 'ix1'])) > atRestore + 1, 'ix1 to count on');
    const exec = (...args: string[]) => env.ok(['exec', 'ix1', '--', ...args]);
    assert.equal(await exec('cat', '/tmp/new.txt'), 'hi\n');
    assert.equal(await exec('cat', '/dev/shm/seg'), 'shm\n');
    assert.equal(await exec('stat', '-c', '%a', '/'), '555\n');
    assert.equal(await exec('stat', '-c', '%a', '/tmp'), '1777\n');
    assert.equal((await env.run(['exec', 'ix1', '--', 'ls', '/etc/group'])).code, 1);
    assert.equal(await exec('cat', '/etc/hostname'), `${podman.ok(['inspect', '--format', '{{.Config.Hostname}}', 'ix1']).trim()}\n`);
    const info = await env.json(['info', 'ix1']);
    assert.equal(info.restoredFrom, exported);
  });

  test('a podman container restored here: checkpointed and restored in place twice, then through a pipe into another state directory', async () => {
    let count = lastCount(await env.ok(['logs', 'ix1']));
    for (let round = 0; round < 2; round++) {
      const path = (await env.ok(['checkpoint', 'ix1'])).trim();
      assert.ok(existsSync(join(path, 'devshm-checkpoint.tar')), '/dev/shm is a bind mount: its files are carried');
      const restored = await env.json(['restore', 'ix1']);
      assert.equal(restored.inPlace, true);
      assert.equal(restored.trusted, true);
      count = await counterAdvances(env, 'ix1', count);
      assert.equal(await env.ok(['exec', 'ix1', '--', 'cat', '/dev/shm/seg']), 'shm\n');
    }
    const other = new TestEnv('engines-podman-other');
    try {
      const [out, into] = await pipeline(env, ['checkpoint', 'ix1', '--leave-running', '--export', '-'], other, ['restore', '--checkpoint', '-', '--rootfs', ROOTFS, ...PODMAN_CAPS]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(into.code, 0, into.stderr);
      assert.equal(into.stdout, 'ix1\n', 'the ID recorded in the checkpoint');
      await counterAdvances(other, 'ix1', count);
      assert.equal(await other.ok(['exec', 'ix1', '--', 'cat', '/dev/shm/seg', '/tmp/new.txt']), 'shm\nhi\n');
      assert.equal(await other.ok(['exec', 'ix1', '--', 'stat', '-c', '%a', '/', '/tmp']), '555\n1777\n');
    } finally {
      await other.cleanup();
    }
  });

  test("podman's spellings: --import, -n, --json's engine; a file that is not an archive is named", async () => {
    const restored = await env.json(['restore', '--import', exported, '-n', 'ix1n', '--rootfs', ROOTFS, ...PODMAN_CAPS]);
    assert.equal(restored.id, 'ix1n');
    assert.equal(restored.trusted, false);
    assert.deepEqual(restored.engine, { engine: 'podman', name: 'ix1', image: 'localhost/busybox:stasis', evidence: ['io.container.manager=libpod'] });
    assert.ok(restored.warnings.some((w: string) => /seccomp/.test(w)), restored.warnings.join('\n'));
    await env.fails(2, ['restore', 'a', '-n', 'b', '--checkpoint', exported], /two IDs given: a and --name b/);
    await env.fails(2, ['restore'], /restore needs the ID of a container a checkpoint stopped, or --checkpoint PATH/);
    const text = join(env.root, 'notes.txt');
    writeFileSync(text, 'just some text, long enough to be more than a header would need to look at\n'.repeat(20));
    const notArchive = await env.fails(1, ['restore', 'n1', '--checkpoint', text], new RegExp(`^stasis: cannot extract ${text}: `));
    assert.doesNotMatch(notArchive.stderr, /at .*\.ts:/);
    await env.ok(['delete', '-f', 'ix1n']);
  });

  test('stasis restore of podman\'s checkpoint image and of a stasis one', async () => {
    assert.equal(await env.ok(['restore', 'ix2r', '--checkpoint', `oci-archive:${join(env.root, 'ix2.oci.tar')}`, '--rootfs', ROOTFS, ...PODMAN_CAPS]), 'ix2r\n');
    assert.equal((await env.json(['info', 'ix2r'])).status, 'running');
    await env.ok(['run', '-d', 'sx2', '--rootfs', ROOTFS, '--', ...COUNTING('')]);
    await eventually(async () => lastCount(await env.ok(['logs', 'sx2'])) >= 2, 'sx2 to count');
    const image = `oci-archive:${join(env.root, 'sx2.oci.tar')}`;
    assert.equal((await env.ok(['checkpoint', 'sx2', '--create-image', image])).trim(), image);
    await env.ok(['delete', '-f', 'sx2']);
    assert.equal(await env.ok(['restore', '--checkpoint', image]), 'sx2\n');
  });

  test('volumes, pods and what is not a checkpoint: errors name the file', async () => {
    const data = join(env.root, 'data');
    mkdirSync(data);
    podman.ok(['run', '-d', '--name', 'ix3', '-v', `${data}:/data`, 'localhost/busybox:stasis', ...COUNTING('')]);
    const withVolume = join(env.root, 'ix3.tar');
    podman.ok(['container', 'checkpoint', '--export', withVolume, '-c', 'none', 'ix3']);
    const volume = await env.run(['restore', '--checkpoint', withVolume, '--rootfs', ROOTFS, ...PODMAN_CAPS]);
    assert.equal(volume.code, 1);
    assert.match(volume.stderr, /\/data/);
    const podDir = await unpack(exported, join(env.root, 'pod'));
    writeFileSync(join(podDir, 'pod.dump'), '{}');
    const podArchive = join(env.root, 'pod.tar');
    await createTar(podDir, podArchive);
    const pod = await env.run(['restore', '--checkpoint', podArchive, '--rootfs', ROOTFS, ...PODMAN_CAPS]);
    assert.equal(pod.code, 1);
    assert.match(pod.stderr, new RegExp(`${podArchive}.*made by podman, container ix1.*whole pod`, 's'));
    const junkDir = join(env.root, 'junk');
    mkdirSync(junkDir);
    writeFileSync(join(junkDir, 'notes.txt'), 'hello');
    const junk = join(env.root, 'junk.tar');
    await createTar(junkDir, junk);
    const notCheckpoint = await env.run(['restore', 'j1', '--checkpoint', junk]);
    assert.equal(notCheckpoint.code, 1);
    assert.match(notCheckpoint.stderr, new RegExp(`${junk}.*not a checkpoint`, 's'));
  });
});

describe('kubelet archives from CRI-O and containerd (built around real CRIU images)', () => {
  const env = new TestEnv('engines-kubelet');
  const archives: Record<'cri-o' | 'containerd', string> = { 'cri-o': '', containerd: '' };
  before(async () => {
    await env.ok(['run', '-d', 'kc', '--rootfs', ROOTFS, '--', ...COUNTING('echo hi > /tmp/new.txt; rm -f /etc/group;')]);
    await eventually(async () => lastCount(await env.ok(['logs', 'kc'])) >= 2, 'kc to count');
    const stasisDir = (await env.ok(['checkpoint', 'kc', '--image-path', join(env.root, 'kc-ckpt')])).trim();
    const spec = JSON.parse(readFileSync(join(stasisDir, 'spec.dump'), 'utf8'));
    const log = readFileSync(join(env.stateDir, 'containers', 'kc', 'ctr.log'), 'utf8');
    const deleted = JSON.parse(readFileSync(join(stasisDir, 'deleted.files'), 'utf8'));
    for (const engine of ['cri-o', 'containerd'] as const) {
      const dir = join(env.root, `${engine}-folder`);
      mkdirSync(dir);
      cpSync(join(stasisDir, 'checkpoint'), join(dir, 'checkpoint'), { recursive: true });
      for (const name of ['stats-dump', 'dump.log']) copyFileSync(join(stasisDir, name), join(dir, name));
      if (engine === 'cri-o') {
        // CRI-O: plain rootfs-diff.tar and deleted.files, as podman's.
        for (const name of ['rootfs-diff.tar', 'deleted.files']) copyFileSync(join(stasisDir, name), join(dir, name));
        writeCrioFiles(dir, crioSpec(spec), POD, log);
      } else {
        writeContainerdFiles(dir, containerdSpec(spec), POD, log);
        writeContainerdDiff(dir, { plainTar: join(stasisDir, 'rootfs-diff.tar'), deleted });
      }
      const outDir = join(env.root, `${engine}-kubelet`);
      mkdirSync(outDir);
      archives[engine] = join(outDir, kubeletArchiveName());
      await createTar(dir, archives[engine]);
    }
  });
  after(() => env.cleanup());

  test('checkpointctl reads the built archives as those engines\' own', { skip: has('checkpointctl') ? false : 'checkpointctl is not installed' }, () => {
    for (const [engine, label] of [['cri-o', 'CRI-O'], ['containerd', 'containerd']] as const) {
      const shown = spawnSync('checkpointctl', ['show', archives[engine]], { encoding: 'utf8' });
      assert.equal(shown.status, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`\\bcounter\\b.*${POD.image}.*\\b${label}\\b`), shown.stdout);
      const listed = spawnSync('checkpointctl', ['list', join(env.root, `${engine}-kubelet`)], { encoding: 'utf8' });
      assert.match(listed.stdout, new RegExp(`${POD.namespace}\\s+${POD.pod}\\s+counter\\s+${label}`), listed.stdout);
    }
  });

  test('detectEngine and foreignMeta on them', async () => {
    for (const engine of ['cri-o', 'containerd'] as const) {
      const dir = await unpack(archives[engine], join(env.root, `${engine}-unpacked`));
      const { evidence, ...detected } = detectEngine(dir);
      assert.deepEqual(detected, { engine, name: 'counter', image: POD.image });
      assert.ok(evidence.length > 0, `${engine}: the detector says why`);
      const result = foreignMeta(dir, engine);
      assert.ok(result.ok, JSON.stringify(result));
      assert.equal(result.meta.id, 'counter');
      assert.deepEqual(result.meta.pod, { name: POD.pod, namespace: POD.namespace, uid: POD.uid });
      assert.equal(result.meta.rootMode, 0o40755, "stasis's layer root, where these images were dumped");
      assert.equal(result.meta.rootfs.diffFormat, engine === 'containerd' ? 'oci-layer' : 'plain');
      assert.ok(result.meta.mounts.private.some((m) => m.kind === 'termination-log'));
      assert.deepEqual(result.meta.mounts.volumes, []);
      assert.match(readFileSync(result.meta.log!, 'utf8'), /stdout F count 0\n/);
    }
  });

  test('stasis restore of both kubelet archives', async () => {
    assert.equal(await env.ok(['restore', 'k-crio', '--checkpoint', archives['cri-o'], '--rootfs', ROOTFS]), 'k-crio\n');
    assert.equal(await env.ok(['restore', '--checkpoint', archives.containerd, '--rootfs', ROOTFS]), 'counter\n');
    for (const id of ['k-crio', 'counter']) {
      const logs = await env.ok(['logs', id]);
      assert.match(logs, /^count 0\n/, `${id}: the engine's log is imported`);
      const atRestore = lastCount(logs);
      await eventually(async () => lastCount(await env.ok(['logs', id])) > atRestore + 1, `${id} to count on`);
      assert.equal(await env.ok(['exec', id, '--', 'cat', '/tmp/new.txt']), 'hi\n');
      assert.equal(await env.ok(['exec', id, '--', 'stat', '-c', '%a', '/tmp']), '1777\n');
      assert.equal((await env.run(['exec', id, '--', 'ls', '/etc/group'])).code, 1, `${id}: the deletion is applied`);
    }
  });
});
