// run/create --image (oci:, oci-archive:, docker://), images, rmi, and
// checkpoint images pushed to and pulled from a registry, on real runc, CRIU,
// conmon, skopeo and a docker-registry of the test's own on 127.0.0.1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, counterAdvances, requires } from '../helpers.ts';
import { rawTar, startRegistry, tarOf, writeLayout, type Registry } from '../images-fixtures.ts';

const APP_SCRIPT = [
  'echo "foo=$FOO bar=$BAR"',
  'echo "cwd=$(pwd)"',
  'echo "ids=$(id -u):$(id -g) groups=$(id -G)"',
  'cat hello.txt',
  'test -e /old.txt && echo old-present || echo old-gone',
  'echo "data=$(ls /data | tr "\\n" " ")"',
  'echo "links=$(readlink /etc-link) $(readlink /host-run)"',
].join('; ');

/** A layer over the busybox rootfs: a user and groups, a working folder, a file and a folder the next layer deletes and hides. */
function firstLayer(): Buffer {
  return rawTar([
    { name: 'etc/passwd', type: '0', data: 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/app:/bin/sh\n' },
    { name: 'etc/group', type: '0', data: 'root:x:0:\ngrp:x:2345:\nextra:x:3456:other,app\n' },
    { name: 'old.txt', type: '0', data: 'old\n' },
    { name: 'data/', type: '5' },
    { name: 'data/a', type: '0', data: 'a' },
    { name: 'data/b', type: '0', data: 'b' },
    // Links to folders, inside and outside the tree: kept as links, never followed (Bun's recursive readdir would).
    { name: 'etc-link', type: '2', linkName: 'etc' },
    { name: 'host-run', type: '2', linkName: '/run' },
  ]);
}

function secondLayer(): Buffer {
  return rawTar([
    { name: 'app/', type: '5', mode: 0o777 },
    { name: 'app/hello.txt', type: '0', data: 'hello from the image\n' },
    { name: '.wh.old.txt', type: '0' },
    { name: 'data/', type: '5' },
    { name: 'data/.wh..wh..opq', type: '0' },
    { name: 'data/c', type: '0', data: 'c' },
  ]);
}

describe('run --image, images, rmi, and checkpoint images in a registry', { skip: requires(...CONTAINERS, 'criu', 'skopeo', 'docker-registry') }, () => {
  const env = new TestEnv('images');
  const layout = join(env.root, 'layout');
  const archive = join(env.root, 'app.oci.tar');
  const imageDir = join(env.root, 'images');
  let registry: Registry;
  let appDigest: string;
  let counterDigest: string;
  const img = (args: string[], dir = imageDir) => ['--image-dir', dir, ...args];

  before(async () => {
    const base = tarOf(ROOTFS);
    appDigest = writeLayout(layout, 'app:1', [base, firstLayer(), secondLayer()], {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FOO=from-image', 'BAR=bar-image'],
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: [APP_SCRIPT],
      WorkingDir: '/app',
      User: 'app',
      // Ignored: nothing in an image may change the host.
      Volumes: { '/host': {} },
      Labels: { 'org.opencontainers.runc.hooks': 'x' },
    });
    counterDigest = writeLayout(layout, 'counter:1', [base], { Cmd: COUNTER });
    const tar = spawnSync('tar', ['-C', layout, '-cf', archive, '.']);
    assert.equal(tar.status, 0, tar.stderr.toString());
    mkdirSync(join(env.root, 'registry'));
    registry = await startRegistry(join(env.root, 'registry'));
    for (const [tag, name] of [['app:1', 'app:1'], ['counter:1', 'counter:1']]) {
      const copy = spawnSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${registry.address}/test/${name}`], { encoding: 'utf8' });
      assert.equal(copy.status, 0, copy.stderr);
    }
  });
  after(async () => {
    await registry?.stop();
    await env.cleanup();
  });

  test('oci: the config is used as podman uses it; layers applied in order with their whiteouts', async () => {
    const out = await env.ok(img(['run', '--rm', 'app1', '--image', `oci:${layout}:app:1`]));
    assert.match(out, /^foo=from-image bar=bar-image$/m);
    assert.match(out, /^cwd=\/app$/m);
    assert.match(out, /^ids=1234:2345 groups=2345 3456$/m);
    assert.match(out, /^hello from the image$/m);
    assert.match(out, /^old-gone$/m);
    assert.match(out, /^data=c $/m);
    assert.match(out, /^links=etc \/run$/m);
    // -e over the image's Env, the command's words replace Cmd after the Entrypoint, --cwd over WorkingDir.
    const over = await env.ok(img(['run', '--rm', 'app2', '--image', `oci:${layout}:app:1`, '-e', 'FOO=flag', '--cwd', '/data', '--', 'echo "$FOO $BAR $(pwd)"']));
    assert.equal(over.trim(), 'flag bar-image /data');
    const images = await env.json(img(['images']));
    assert.equal(images.length, 1);
    assert.equal(images[0].digest, appDigest);
    assert.deepEqual(images[0].config.entrypoint, ['/bin/sh', '-c']);
  });

  test('oci-archive: the same image is not unpacked again; images lists it under both names', async () => {
    const out = await env.ok(img(['run', '--rm', 'app3', '--image', `oci-archive:${archive}:app:1`, '--', 'cat hello.txt']));
    assert.equal(out.trim(), 'hello from the image');
    const images = await env.json(img(['images']));
    assert.equal(images.length, 1);
    assert.deepEqual(images[0].names, [`oci:${layout}:app:1`, `oci-archive:${archive}:app:1`]);
    assert.deepEqual(readdirSync(imageDir).filter((name) => name.startsWith('.')), [], 'no temporary folders left in the store');
  });

  test('docker://: pulled from the registry (plain HTTP on 127.0.0.1) into another store', async () => {
    const other = join(env.root, 'images-docker');
    const out = await env.ok(img(['run', '--rm', 'app4', '--image', `docker://${registry.address}/test/app:1`, '--', 'echo "$FOO"; cat hello.txt'], other));
    assert.equal(out, 'from-image\nhello from the image\n');
    const table = await env.ok(img(['images'], other));
    assert.match(table, new RegExp(`^docker://${registry.address}/test/app:1\\s+${appDigest.slice(7, 19)}\\s`, 'm'));
    assert.equal((await env.ok(img(['images', '-q'], other))).trim(), appDigest);
    // --tls-verify asks for TLS, which this registry does not speak: skopeo's error, and nothing made.
    await env.fails(125, img(['run', '--rm', 'app5', '--image', `docker://${registry.address}/test/counter:1`, '--tls-verify'], other), /cannot pull docker:\/\/.*skopeo copy failed/);
    assert.deepEqual(env.containerIds(), []);
    await env.fails(125, img(['run', 'app6', '--image', 'docker://nohost/x', '--rootfs', ROOTFS]), /--image and --rootfs cannot be used together/);
    await env.fails(2, img(['create', 'app6', '--image', 'docker://nohost/x', '--bundle', ROOTFS]), /--image and --bundle cannot be used together/);
    await env.fails(125, img(['run', 'app6', '--image', 'docker://no-registry-host']), /is not a registry reference: it names no registry host/);
  });

  test('rmi refuses an image a container uses, naming it; then removes it', async () => {
    await env.ok(img(['create', 'user1', '--image', `oci:${layout}:app:1`, '--', 'true']));
    const refused = await env.fails(1, img(['rmi', appDigest.slice(7, 19)]), /image .* is in use by container user1/);
    assert.match(refused.stderr, /hint: delete it first/);
    await env.ok(['delete', '-f', 'user1']);
    assert.equal((await env.ok(img(['rmi', `oci-archive:${archive}:app:1`]))).trim(), appDigest);
    assert.deepEqual(await env.json(img(['images'])), []);
    await env.fails(1, img(['rmi', appDigest]), /no image sha256:.* in /);
  });

  test('a checkpoint pushed to the registry restores from docker:// in another state dir, without --rootfs', async () => {
    await env.ok(img(['run', '-d', 'ctr', '--image', `docker://${registry.address}/test/counter:1`]));
    const before = await counterAdvances(env, 'ctr', 2);
    const pushed = (await env.ok(img(['checkpoint', 'ctr', '--create-image', `docker://${registry.address}/ckpt/ctr:1`]))).trim();
    assert.equal(pushed, `docker://${registry.address}/ckpt/ctr:1`);
    // (.store is the checkpoint store's own folder: docs/checkpoint-store.md.)
    assert.deepEqual(readdirSync(env.checkpointDir).filter((name) => name.startsWith('.') && name !== '.store'), [], 'the pushed layout is removed');
    // The annotations the engines read, on the registry's manifest.
    const manifest = JSON.parse(spawnSync('skopeo', ['inspect', '--raw', '--tls-verify=false', pushed], { encoding: 'utf8' }).stdout);
    assert.equal(manifest.annotations['io.kubernetes.cri-o.annotations.checkpoint.name'], 'ctr');
    assert.equal(manifest.annotations['io.podman.annotations.checkpoint.rootfsImageName'], `${registry.address}/test/counter:1`);
    assert.equal(manifest.annotations['io.stasis.checkpoint.rootfsImageDigest'], counterDigest);

    for (const round of [1, 2]) {
      const other = new TestEnv(`images-restore-${round}`);
      try {
        await other.ok(img(['restore', `moved${round}`, '--checkpoint', pushed]));
        await counterAdvances(other, `moved${round}`, before);
        const info = await other.json(['info', `moved${round}`]);
        assert.equal(info.rootfs.base, join(imageDir, counterDigest.slice(7), 'rootfs'));
        await other.ok(['delete', '-f', `moved${round}`]);
      } finally {
        await other.cleanup();
      }
    }

    // Another host's store without the image: the restore asks for it, then pulls the one named.
    const elsewhere = new TestEnv('images-restore-elsewhere');
    const emptyStore = join(elsewhere.root, 'images');
    try {
      const missing = await elsewhere.fails(1, img(['restore', 'far', '--checkpoint', pushed], emptyStore), /the checkpoint's base image docker:\/\/.*counter:1 \(sha256:[0-9a-f]{64}\) is not in the image store/);
      assert.match(missing.stderr, /hint: name it with --image REF/);
      elsewhere.assertNothingLeft();
      await elsewhere.ok(img(['restore', 'far', '--checkpoint', pushed, '--image', `docker://${registry.address}/test/counter:1`], emptyStore));
      await counterAdvances(elsewhere, 'far', before);
      await elsewhere.ok(['delete', '-f', 'far']);
    } finally {
      await elsewhere.cleanup();
    }
  });

  test('a hostile image is refused whole, naming the entry; nothing is kept', async () => {
    const store = join(env.root, 'images-hostile');
    // The refusal is the second layer's: a small first one will do.
    const base = rawTar([{ name: 'etc/', type: '5' }, { name: 'etc/hostname', type: '0', data: 'base\n' }]);
    const cases: [string, Buffer, RegExp][] = [
      ['dotdot', rawTar([{ name: 'etc/../../escape', type: '0', data: 'x' }]), /layer 2 \(sha256:[0-9a-f]+\): unsafe archive entry "etc\/\.\.\/\.\.\/escape": path contains "\.\."/],
      ['absolute', rawTar([{ name: '/etc/cron.d/evil', type: '0', data: 'x' }]), /unsafe archive entry "\/etc\/cron.d\/evil": an absolute path/],
      ['device', rawTar([{ name: 'dev/mem', type: '3' }]), /unsafe archive entry "dev\/mem": a char device/],
      ['hardlink', rawTar([{ name: 'passwd', type: '1', linkName: '../../etc/shadow' }]), /layer 2 \(sha256:[0-9a-f]+\): unsafe archive entry "passwd": a hard link to "\.\.\/\.\.\/etc\/shadow", out of the layer/],
    ];
    for (const [name, layer, why] of cases) {
      writeLayout(layout, `hostile-${name}`, [base, layer], { Cmd: ['true'] });
      await env.fails(125, img(['run', '--rm', `h-${name}`, '--image', `oci:${layout}:hostile-${name}`], store), why);
    }
    const badConfigs: [string, Record<string, unknown>, RegExp][] = [
      ['workdir', { Cmd: ['true'], WorkingDir: '/app/../../..' }, /WorkingDir "\/app\/\.\.\/\.\.\/\.\." has a "\.\." component/],
      ['user', { Cmd: ['true'], User: '../../etc' }, /User "\.\.\/\.\.\/etc" is neither NAME\[:GROUP\] nor UID\[:GID\]/],
      ['env', { Cmd: ['true'], Env: Array.from({ length: 2000 }, (_, i) => `V${i}=x`) }, /Env has 2000 entries \(at most 1024\)/],
    ];
    for (const [name, config, why] of badConfigs) {
      writeLayout(layout, `bad-${name}`, [rawTar([{ name: 'x', type: '0', data: 'x' }])], config);
      await env.fails(125, img(['run', '--rm', `b-${name}`, '--image', `oci:${layout}:bad-${name}`], store), why);
    }
    assert.deepEqual(existsSync(store) ? readdirSync(store) : [], [], 'no image and no temporary folder kept');
    assert.deepEqual(env.containerIds().filter((id) => id.startsWith('h-') || id.startsWith('b-')), []);
  });
});
