import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeMessage, splitImageEntries } from '../../src/checkpoint/criu/images.ts';
import { criuOptionsFromImages, rootDirMode, rootTaskPid, withRootDirMode } from '../../src/checkpoint/criu/inventory.ts';
import { fixParentDirs, layerWhiteouts, missingParentDirs, opaqueDeletions, removeWhiteoutMarkers } from '../../src/checkpoint/archive/layer.ts';
import { engineFiles, makeEngineFiles, ownEngineMounts, safeBindOptions } from '../../src/checkpoint/format/engine-files.ts';
import { exportTarget } from '../../src/checkpoint/archive/export.ts';
import { criuStatsLines } from '../../src/checkpoint/criu/stats.ts';
import type { StasisError } from '../../src/errors.ts';
import { classifyMounts, joinedNamespaces, privateFileContent, withoutNamespacePaths } from '../../src/checkpoint/format/engine-spec.ts';
import { image, proto, writeCriuImages } from '../fixtures/engines/build.ts';

let root: string;
let count = 0;
const fresh = (label: string) => {
  const dir = join(root, `${label}-${count++}`);
  mkdirSync(dir);
  return dir;
};

before(() => {
  root = mkdtempSync(join(tmpdir(), 'stasis-engine-parts-test-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('CRIU images', () => {
  test('the root mode is files.img\'s entry for fs-<init>.img\'s root_id', () => {
    for (const mode of [0o555, 0o755, 0o700]) {
      const dir = fresh('images');
      writeCriuImages(dir, { rootMode: mode });
      assert.equal(rootTaskPid(dir), 1);
      assert.equal(rootDirMode(dir), 0o40000 | mode);
    }
  });

  test('no fs image, or a root entry without a mode: null', () => {
    const dir = fresh('images');
    writeCriuImages(dir, { rootMode: 0o755 });
    rmSync(join(dir, 'fs-1.img'));
    assert.equal(rootDirMode(dir), null);
    const noMode = fresh('images');
    writeCriuImages(noMode, { rootMode: 0o755 });
    writeFileSync(join(noMode, 'files.img'), image([0x54564319, 0x56303138], [proto([[1, 1], [2, 6], [3, proto([[1, 6], [6, '/']])]])]));
    assert.equal(rootDirMode(noMode), null);
  });

  test('withRootDirMode rewrites only the "/" directory entries, in place', () => {
    const dir = fresh('images');
    writeCriuImages(dir, { rootMode: 0o755 });
    const before = readFileSync(join(dir, 'files.img'));
    const { bytes, changed } = withRootDirMode(before, 0o555);
    assert.equal(changed, 2);
    assert.equal(bytes.length, before.length);
    writeFileSync(join(dir, 'files.img'), bytes);
    assert.equal(rootDirMode(dir), 0o40555);
    // The other entries decode as before.
    const modes = splitImageEntries(bytes, 'files', 'files.img').map((entry) => decodeMessage(entry, 'files.img', 'file_entry').message(3, 'reg')?.uint32(10) ?? null);
    assert.deepEqual(modes, [0o100755, 0o20666, null, 0o40555, 0o40555]);
    assert.equal(withRootDirMode(bytes, 0o555).changed, 0);
  });

  test('damaged images are errors, not guesses', () => {
    const dir = fresh('images');
    writeCriuImages(dir, { rootMode: 0o755 });
    writeFileSync(join(dir, 'files.img'), readFileSync(join(dir, 'files.img')).subarray(0, 20));
    assert.throws(() => rootDirMode(dir), /files\.img is damaged or not a CRIU image: an entry of \d+ bytes at offset \d+ runs past the end/);
    assert.throws(() => decodeMessage(Buffer.from([0x08]), 'x.img', 'entry'), /x\.img is damaged or not a CRIU image: entry: ends inside a varint/);
  });

  test('CRIU options a dump leaves traces of', () => {
    const dir = fresh('images');
    writeCriuImages(dir, { rootMode: 0o755, extra: ['tcp-stream-5e1f.img', 'filelocks.img'] });
    assert.deepEqual(criuOptionsFromImages(dir), ['tcp-established', 'file-locks']);
    writeFileSync(join(dir, 'filelocks.img'), image([0x54564319, 0x1], []));
    assert.deepEqual(criuOptionsFromImages(dir), ['tcp-established']);
  });
});

describe('spec parts', () => {
  test('bind mounts: engine files by destination, volumes otherwise; rbind counts', () => {
    const spec = {
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/etc/hosts', type: 'bind', source: '/x/hosts', options: ['bind'] },
        { destination: '/data', source: '/srv/data', options: ['rbind', 'rw'] },
        { destination: '/run/secrets', type: 'bind', source: '/x/secrets' },
      ],
    };
    const result = classifyMounts(spec, [{ source: '/srv/data', destination: '/data', file_type: 'directory' }]);
    assert.deepEqual(result.private.map((m) => [m.destination, m.kind, m.fileType]), [['/etc/hosts', 'hosts', 'file'], ['/run/secrets', 'secrets', 'directory']]);
    assert.deepEqual(result.volumes.map((m) => [m.destination, m.source, m.fileType]), [['/data', '/srv/data', 'directory']]);
  });

  test('joined namespaces are reported and can be made new ones', () => {
    const spec = { linux: { namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/cni-1' }, { type: 'ipc', path: '/var/run/ipcns/1' }] } };
    assert.deepEqual(joinedNamespaces(spec), [{ type: 'network', path: '/var/run/netns/cni-1', external: true }, { type: 'ipc', path: '/var/run/ipcns/1', external: false }]);
    assert.deepEqual(withoutNamespacePaths(spec).linux.namespaces, [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }]);
    assert.deepEqual(spec.linux.namespaces[1], { type: 'network', path: '/var/run/netns/cni-1' }, 'the original is left alone');
  });

  test('recreated files: loopback hosts, the host name', () => {
    assert.equal(privateFileContent('hosts', { hostname: 'web' }), '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tweb\n');
    assert.equal(privateFileContent('hostname', { hostname: 'web' }), 'web\n');
    assert.equal(privateFileContent('resolv.conf', { hostname: 'web' }), '');
  });
});

describe('diff layers', () => {
  test('folders a diff uses but does not list keep the base\'s modes', () => {
    const base = fresh('base');
    mkdirSync(join(base, 'tmp'));
    chmodSync(join(base, 'tmp'), 0o1777);
    mkdirSync(join(base, 'var', 'lib'), { recursive: true });
    chmodSync(join(base, 'var'), 0o750);
    const dirs = missingParentDirs(['tmp/new.txt', 'var/lib/', 'var/lib/app/d/f', './etc/passwd'], base);
    assert.deepEqual(dirs.map((d) => [d.path, d.mode.toString(8)]), [['tmp', '1777'], ['var', '750']]);
  });

  test('OCI whiteouts become deletions and opaque folders', () => {
    const entries = [
      { name: './', type: 'dir' as const, linkName: '', size: 0, mode: 0o755 },
      { name: './etc/.wh.group', type: 'file' as const, linkName: '', size: 0, mode: 0o644 },
      { name: 'var/cache/.wh..wh..opq', type: 'file' as const, linkName: '', size: 0, mode: 0o644 },
      { name: 'tmp/new.txt', type: 'file' as const, linkName: '', size: 3, mode: 0o644 },
    ];
    assert.deepEqual(layerWhiteouts(entries), { deleted: ['/etc/group'], opaque: ['/var/cache'], markers: ['etc/.wh.group', 'var/cache/.wh..wh..opq'] });
  });
});

describe('putting a diff into a layer', () => {
  test('fixParentDirs gives folders tar made the base\'s mode and owner; not a symlink, not a missing one', () => {
    const layer = fresh('layer');
    mkdirSync(join(layer, 'tmp', 'sub'), { recursive: true });
    symlinkSync('/etc', join(layer, 'link'));
    const calls: string[] = [];
    const fixed = fixParentDirs(layer, [
      { path: 'tmp', mode: 0o1777, uid: 0, gid: 0 },
      { path: 'tmp/sub', mode: 0o750, uid: 5, gid: 6 },
      { path: 'link', mode: 0o700, uid: 0, gid: 0 },
      { path: 'gone', mode: 0o700, uid: 0, gid: 0 },
      { path: '../escape', mode: 0o777, uid: 0, gid: 0 },
    ], { chmod: (path, mode) => calls.push(`chmod ${path.slice(layer.length)} ${mode.toString(8)}`), lchown: (path, uid, gid) => calls.push(`chown ${path.slice(layer.length)} ${uid}:${gid}`) });
    assert.equal(fixed, 2);
    assert.deepEqual(calls, ['chown /tmp 0:0', 'chmod /tmp 1777', 'chown /tmp/sub 5:6', 'chmod /tmp/sub 750']);
  });

  test('removeWhiteoutMarkers removes marker files, never a folder, nothing outside', () => {
    const layer = fresh('layer');
    mkdirSync(join(layer, 'etc', '.wh.dir'), { recursive: true });
    writeFileSync(join(layer, 'etc', '.wh.group'), '');
    const removed: string[] = [];
    assert.equal(removeWhiteoutMarkers(layer, ['etc/.wh.group', 'etc/.wh.dir', 'etc/.wh.none', '../.wh.x'], (path) => removed.push(path)), 1);
    assert.deepEqual(removed, [join(layer, 'etc', '.wh.group')]);
  });

  test('opaqueDeletions: what the base has in the folder and the layer does not, at any depth', () => {
    const base = fresh('base');
    const layer = fresh('layer');
    for (const path of ['var/cache/a', 'var/cache/keep/old', 'var/cache/keep/new', 'var/other']) {
      mkdirSync(join(base, path, '..'), { recursive: true });
      writeFileSync(join(base, path), 'base');
    }
    mkdirSync(join(base, 'var', 'cache', 'dir'));
    mkdirSync(join(layer, 'var', 'cache', 'keep'), { recursive: true });
    writeFileSync(join(layer, 'var', 'cache', 'keep', 'new'), 'layer');
    assert.deepEqual(opaqueDeletions(base, layer, '/var/cache'), ['/var/cache/a', '/var/cache/dir', '/var/cache/keep/old']);
    assert.deepEqual(opaqueDeletions(base, layer, 'var/none'), []);
    assert.deepEqual(opaqueDeletions(base, layer, '../x'), []);
  });
});

describe('engine files', () => {
  const mounts = classifyMounts({
    mounts: [
      { destination: '/etc/hosts', type: 'bind', source: '/x/hosts', options: ['bind', 'rprivate', 'shared', 'weird=1'] },
      { destination: '/dev/shm', type: 'bind', source: '/x/shm', options: ['bind', 'nosuid'] },
      { destination: '/run/secrets', type: 'bind', source: '/x/secrets', options: ['rbind', 'ro'] },
      { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind'] },
    ],
  }).private;

  test('one file per private destination in engine-files/, options kept only when harmless', () => {
    const files = engineFiles(mounts, '/state/containers/c1');
    assert.deepEqual(files, [
      { kind: 'hosts', destination: '/etc/hosts', source: '/state/containers/c1/engine-files/hosts', directory: false, options: ['bind', 'rprivate'] },
      { kind: 'shm', destination: '/dev/shm', source: '/state/containers/c1/engine-files/shm', directory: true, options: ['bind', 'nosuid'] },
      { kind: 'secrets', destination: '/run/secrets', source: '/state/containers/c1/engine-files/secrets', directory: true, options: ['rbind', 'ro'] },
    ]);
    assert.deepEqual(safeBindOptions(['rshared', 'shared', 'ro', 'nodev']), ['ro', 'nodev']);
  });

  test('made in the container folder: hosts, shm 1777 from an unpacked folder, secrets a folder', () => {
    const dir = fresh('container');
    const shm = fresh('shm');
    writeFileSync(join(shm, 'seg'), 'x');
    makeEngineFiles(dir, engineFiles(mounts, dir), { hostname: 'web' }, shm);
    assert.equal(readFileSync(join(dir, 'engine-files', 'hosts'), 'utf8'), '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tweb\n');
    assert.equal(statSync(join(dir, 'engine-files', 'shm')).mode & 0o7777, 0o1777);
    assert.equal(readFileSync(join(dir, 'engine-files', 'shm', 'seg'), 'utf8'), 'x');
    assert.ok(statSync(join(dir, 'engine-files', 'secrets')).isDirectory());
    // Again, with nothing to make: the folder goes.
    makeEngineFiles(dir, [], { hostname: 'web' }, null);
    assert.equal(existsSync(join(dir, 'engine-files')), false);
  });

  test('a stasis spec\'s own engine files are found by their engine-files/ source', () => {
    const own = ownEngineMounts({ mounts: [
      { destination: '/etc/hosts', type: 'bind', source: '/run/stasis/containers/ix1/engine-files/hosts', options: ['bind'] },
      { destination: '/etc/hostname', type: 'bind', source: '/srv/my-hostname', options: ['bind'] },
    ] });
    assert.deepEqual(own.map((m) => m.destination), ['/etc/hosts']);
  });
});

describe('export targets', () => {
  const now = new Date('2026-12-01T10:58:13.123Z');

  test('a folder gets checkpoint-ID-TIME with the compression\'s ending (checkpointctl list finds checkpoint-*)', () => {
    const dir = fresh('exports');
    assert.deepEqual(exportTarget(dir, 'web', undefined, now), { file: join(dir, 'checkpoint-web-20261201T105813.123Z.tar.zst'), compression: 'zstd' });
    assert.deepEqual(exportTarget(dir, 'web', 'gzip', now), { file: join(dir, 'checkpoint-web-20261201T105813.123Z.tar.gz'), compression: 'gzip' });
    assert.deepEqual(exportTarget(dir, 'web', 'none', now), { file: join(dir, 'checkpoint-web-20261201T105813.123Z.tar'), compression: 'none' });
  });

  test('a name: its ending, or -c, or zstd; a conflict and a missing folder are errors with codes', () => {
    const dir = fresh('exports');
    assert.equal(exportTarget(join(dir, 'a.tar.gz'), 'web', undefined, now).compression, 'gzip');
    assert.equal(exportTarget(join(dir, 'a.tar.gz'), 'web', 'gzip', now).compression, 'gzip');
    assert.equal(exportTarget(join(dir, 'plain'), 'web', undefined, now).compression, 'zstd');
    assert.equal(exportTarget(join(dir, 'plain'), 'web', 'none', now).compression, 'none');
    assert.throws(() => exportTarget(join(dir, 'a.tar'), 'web', 'zstd', now), (err: StasisError) => err.code === 'export-compression-conflict' && /the name says an uncompressed tar, but zstd was asked for/.test(err.message));
    assert.throws(() => exportTarget(join(dir, 'no', 'a.tar'), 'web', undefined, now), (err: StasisError) => err.code === 'export-folder-missing');
    for (const name of ['a.zip', 'a.tar.xz', 'a.tar.bz2']) {
      assert.throws(() => exportTarget(join(dir, name), 'web', undefined, now), (err: StasisError) => err.code === 'export-format', name);
    }
  });

  test('--print-stats lines: labels, microseconds, the total', () => {
    assert.deepEqual(criuStatsLines('dump', { freezingTimeUs: 600, pagesWritten: 34 }, 485), [
      'CRIU dump statistics:',
      '  freezing time               600 us',
      '  pages written               34',
      '  stasis checkpoint in total  485 ms',
    ]);
    assert.deepEqual(criuStatsLines('restore', null, 9), ['CRIU restore statistics:', '  (CRIU wrote no statistics)', '  stasis restore in total  9 ms']);
  });
});
