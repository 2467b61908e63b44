// The image store and its inputs (src/image/), in process: references, the
// bounds on an image's config, users from the image's own files, the spec an
// image gives, and unpacking layouts (whiteouts, order, hostile layers).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSourceRef, parseDockerRef, parseSourceRef, plainHttp } from '../../src/image/ref.ts';
import { imageProcess, resolveUser } from '../../src/image/config.ts';
import { ImageStore } from '../../src/image/store.ts';
import { imagePlan } from '../../src/runtime/create-plan.ts';
import { validateCheckpointMeta } from '../../src/checkpoint/format/meta.ts';
import { rawTar, writeLayout } from '../images-fixtures.ts';

const scratch = mkdtempSync(join(tmpdir(), 'stasis-unit-images-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('image references', () => {
  test('docker://: host required, tag defaults to latest, digests checked', () => {
    assert.deepEqual(parseDockerRef('docker://127.0.0.1:5000/a/b'), { transport: 'docker', registry: '127.0.0.1:5000', repository: 'a/b', tag: 'latest', digest: null });
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(parseDockerRef(`docker://localhost/web@${digest}`), { transport: 'docker', registry: 'localhost', repository: 'web', tag: null, digest });
    assert.equal(formatSourceRef(parseDockerRef('docker://reg.example:443/x/y:v1.2')), 'docker://reg.example:443/x/y:v1.2');
    assert.throws(() => parseDockerRef('docker://busybox'), /names no registry host/);
    assert.throws(() => parseDockerRef('docker://host/UPPER'), /is not valid/);
    assert.throws(() => parseDockerRef('docker://host/x@sha256:12'), /not sha256:<64 hex digits>/);
    assert.throws(() => parseDockerRef('docker://host/x:bad tag'), /tag "bad tag" is not valid/);
    assert.equal(parseSourceRef('/plain/path'), null);
    assert.deepEqual(parseSourceRef('oci:/l:app:1'), { transport: 'oci', path: '/l', reference: 'app:1' });
  });

  test('plain HTTP for loopback only, unless --tls-verify says', () => {
    assert.equal(plainHttp('127.0.0.1:5000', undefined), true);
    assert.equal(plainHttp('127.5.6.7', undefined), true);
    assert.equal(plainHttp('localhost:5000', undefined), true);
    assert.equal(plainHttp('[::1]:5000', undefined), true);
    assert.equal(plainHttp('registry.example:5000', undefined), false);
    assert.equal(plainHttp('127.0.0.1.evil.example', undefined), false);
    assert.equal(plainHttp('registry.example', false), true);
    assert.equal(plainHttp('127.0.0.1:5000', true), false);
  });
});

describe("an image config's fields", () => {
  test('taken as they are when in bounds', () => {
    const p = imageProcess({ config: { Env: ['A=1'], Entrypoint: ['/e'], Cmd: ['c'], WorkingDir: '/w/./x', User: 'app:grp', Volumes: { '/v': {} } } });
    assert.deepEqual(p, { env: ['A=1'], entrypoint: ['/e'], cmd: ['c'], workingDir: '/w/x', user: 'app:grp' });
    assert.deepEqual(imageProcess({}), { env: [], entrypoint: [], cmd: [], workingDir: '', user: '' });
  });

  test('refused out of bounds, naming the field', () => {
    assert.throws(() => imageProcess({ config: { WorkingDir: 'rel' } }), /WorkingDir "rel" is not an absolute path/);
    assert.throws(() => imageProcess({ config: { WorkingDir: '/a/../../b' } }), /has a "\.\." component/);
    assert.throws(() => imageProcess({ config: { User: '0:0:0' } }), /User "0:0:0" is neither/);
    assert.throws(() => imageProcess({ config: { Env: ['=x'] } }), /Env\[0\] "=x" is not NAME=VALUE/);
    assert.throws(() => imageProcess({ config: { Env: Array(1025).fill('A=1') } }), /Env has 1025 entries/);
    assert.throws(() => imageProcess({ config: { Cmd: ['x'.repeat(200_000)] } }), /Cmd\[0\] is 200000 characters long/);
    assert.throws(() => imageProcess({ config: { Cmd: Array(20).fill('x'.repeat(100_000)) } }), /more than 1048576 characters/);
    assert.throws(() => imageProcess({ config: { Entrypoint: 'sh' } }), /Entrypoint is not a list of strings/);
    assert.throws(() => imageProcess({ config: { Cmd: ['a\0b'] } }), /Cmd\[0\] is not a string/);
  });
});

describe("users from the image's own /etc/passwd and /etc/group", () => {
  const rootfs = join(scratch, 'users');
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc', 'group'), 'app:x:1001:\nwheel:x:10:root,app\nnet:x:20:app\n');

  test('names, numbers and groups', () => {
    assert.deepEqual(resolveUser('', rootfs), { uid: 0, gid: 0 });
    assert.deepEqual(resolveUser('app', rootfs), { uid: 1000, gid: 1001, additionalGids: [10, 20] });
    assert.deepEqual(resolveUser('1000', rootfs), { uid: 1000, gid: 1001, additionalGids: [10, 20] });
    assert.deepEqual(resolveUser('app:wheel', rootfs), { uid: 1000, gid: 10 });
    assert.deepEqual(resolveUser('4242:4343', rootfs), { uid: 4242, gid: 4343 });
    assert.deepEqual(resolveUser('4242', rootfs), { uid: 4242, gid: 0 });
    assert.throws(() => resolveUser('ghost', rootfs), /user "ghost" is not in the image's \/etc\/passwd/);
    assert.throws(() => resolveUser('app:ghost', rootfs), /group "ghost" is not in the image's \/etc\/group/);
  });

  test('a /etc/passwd that is a link is not followed', () => {
    const linked = join(scratch, 'users-link');
    mkdirSync(join(linked, 'etc'), { recursive: true });
    writeFileSync(join(scratch, 'host-passwd'), 'evil:x:0:0::/:/bin/sh\n');
    symlinkSync(join(scratch, 'host-passwd'), join(linked, 'etc', 'passwd'));
    assert.throws(() => resolveUser('evil', linked), /\/etc\/passwd is not a regular file/);
  });
});

describe('the spec an image gives', () => {
  const rootfs = join(scratch, 'plan-rootfs');
  mkdirSync(rootfs, { recursive: true });
  const image = { name: 'oci:/x', rootfs, entrypoint: ['/bin/sh', '-c'], cmd: ['echo hi'], env: ['PATH=/bin', 'FOO=1'], workingDir: '/app', user: { uid: 5, gid: 6, additionalGids: [7] } };

  test('Entrypoint then Cmd; the command line replaces Cmd; Env over the defaults', () => {
    const { spec, rootfs: base } = imagePlan('c1', image, []);
    assert.deepEqual(spec.process!.args, ['/bin/sh', '-c', 'echo hi']);
    assert.deepEqual(spec.process!.env, ['PATH=/bin', 'TERM=xterm', 'FOO=1']);
    assert.equal(spec.process!.cwd, '/app');
    assert.deepEqual(spec.process!.user, { uid: 5, gid: 6, additionalGids: [7] });
    assert.deepEqual(base, { kind: 'overlay', base: rootfs, userBundle: null });
    assert.deepEqual(imagePlan('c1', image, ['date']).spec.process!.args, ['/bin/sh', '-c', 'date']);
    assert.deepEqual(imagePlan('c1', { ...image, entrypoint: [] }, ['date', '-u']).spec.process!.args, ['date', '-u']);
  });

  test('no Entrypoint, no Cmd and no command: refused', () => {
    assert.throws(() => imagePlan('c1', { ...image, entrypoint: [], cmd: [] }, []), /names no command/);
  });
});

describe('the image store', () => {
  const layout = join(scratch, 'layout');
  const outside = join(scratch, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim'), 'keep me');

  test('layers in order: files replaced, whiteouts and opaque folders applied, links never followed', async () => {
    const store = new ImageStore(join(scratch, 'store1'));
    const digest = writeLayout(layout, 'layers', [
      rawTar([
        { name: 'a/', type: '5' }, { name: 'a/one', type: '0', data: '1' }, { name: 'a/two', type: '0', data: '2' },
        { name: 'keep', type: '0', data: 'old' }, { name: 'gone', type: '0', data: 'x' },
        { name: 'out', type: '2', linkName: outside },
      ]),
      rawTar([
        { name: 'a/', type: '5', mode: 0o700 }, { name: 'a/.wh..wh..opq', type: '0' }, { name: 'a/three', type: '0', data: '3' },
        { name: 'keep', type: '0', data: 'new' }, { name: '.wh.gone', type: '0' },
        // A whiteout "inside" a link to a host folder: the link is replaced, the host folder untouched.
        { name: 'out/', type: '5' }, { name: 'out/.wh.victim', type: '0' },
      ]),
    ], { Cmd: ['true'] });
    const image = await store.pull(`oci:${layout}:layers`);
    assert.equal(image.digest, digest);
    assert.deepEqual(readdirSync(join(image.rootfs, 'a')), ['three']);
    assert.equal(lstatSync(join(image.rootfs, 'a')).mode & 0o777, 0o700);
    assert.equal(readFileSync(join(image.rootfs, 'keep'), 'utf8'), 'new');
    assert.equal(existsSync(join(image.rootfs, 'gone')), false);
    assert.equal(lstatSync(join(image.rootfs, 'out')).isDirectory(), true);
    assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'keep me');
    assert.deepEqual(readdirSync(join(image.rootfs, 'out')), []);
    // Once per digest: read again, the same folder; found by name, digest and prefix.
    const again = await store.pull(`oci:${layout}:layers`);
    assert.equal(again.dir, image.dir);
    assert.equal(store.find(digest)?.dir, image.dir);
    assert.equal(store.find(digest.slice(7, 15))?.dir, image.dir);
    assert.equal(store.find(image.configDigest)?.dir, image.dir);
    assert.equal(store.find(`oci:${layout}:layers`)?.dir, image.dir);
    store.remove(image);
    assert.deepEqual(store.list(), []);
  });

  test('links in a layer are kept as links (walks do not follow them)', async () => {
    const store = new ImageStore(join(scratch, 'store2'));
    writeLayout(layout, 'links', [rawTar([{ name: 'etc/', type: '5' }, { name: 'run-link', type: '2', linkName: '/run' }, { name: 'etc-link', type: '2', linkName: 'etc' }])], { Cmd: ['true'] });
    const image = await store.pull(`oci:${layout}:links`);
    assert.equal(readlinkSync(join(image.rootfs, 'run-link')), '/run');
    assert.equal(readlinkSync(join(image.rootfs, 'etc-link')), 'etc');
  });

  test('a hostile layer or a damaged blob: refused whole, nothing kept', async () => {
    const root = join(scratch, 'store3');
    const store = new ImageStore(root);
    writeLayout(layout, 'abs', [rawTar([{ name: '/etc/x', type: '0', data: 'x' }])], { Cmd: ['true'] });
    await assert.rejects(store.pull(`oci:${layout}:abs`), /layer 1 \(sha256:[0-9a-f]+\): unsafe archive entry "\/etc\/x": an absolute path/);
    writeLayout(layout, 'dev', [rawTar([{ name: 'sda', type: '4' }])], { Cmd: ['true'] });
    await assert.rejects(store.pull(`oci:${layout}:dev`), /unsafe archive entry "sda": a block device/);
    const digest = writeLayout(layout, 'damaged', [rawTar([{ name: 'f', type: '0', data: 'x' }])], { Cmd: ['true'] });
    const manifest = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8'));
    writeFileSync(join(layout, 'blobs', 'sha256', manifest.layers[0].digest.slice(7)), 'not the layer');
    await assert.rejects(store.pull(`oci:${layout}:damaged`), /the layer 1 blob sha256:[0-9a-f]+ has 13 bytes/);
    await assert.rejects(store.pull('nothing-like-this'), /no image nothing-like-this in/);
    assert.deepEqual(readdirSync(root), []);
  });
});

describe('stasis.json rootfs.image', () => {
  const meta = {
    format: 1, id: 'c1', checkpointedAt: '2026-12-01T09:45:40.163Z', runcVersion: '1', criuVersion: '4',
    rootfs: { kind: 'overlay', base: '/var/lib/stasis/images/x/rootfs', fingerprint: `sha256:${'ab'.repeat(32)}`, userBundle: null },
    restoreArgs: [], criuOptions: [], preDump: false, parentPath: null, command: ['sh'], labels: {},
  };
  test('read back when well formed, refused naming the field otherwise', () => {
    const image = { digest: `sha256:${'1'.repeat(64)}`, configDigest: `sha256:${'2'.repeat(64)}`, name: 'docker://127.0.0.1:5000/x:1' };
    assert.deepEqual(validateCheckpointMeta({ ...meta, rootfs: { ...meta.rootfs, image } }).rootfs.image, image);
    assert.throws(() => validateCheckpointMeta({ ...meta, rootfs: { ...meta.rootfs, image: { ...image, digest: 'sha256:zz' } } }), /rootfs\.image\.digest/);
    assert.throws(() => validateCheckpointMeta({ ...meta, rootfs: { ...meta.rootfs, image: 'x' } }), /rootfs\.image/);
  });
});
