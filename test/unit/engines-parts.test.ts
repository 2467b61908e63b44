import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { criuOptionsFromImages, imageEntries, protoFields, rootDirMode, rootTaskPid, withRootDirMode } from '../../src/checkpoint/formats/criu-images.ts';
import { layerWhiteouts, missingParentDirs } from '../../src/checkpoint/formats/layer.ts';
import { classifyMounts, fitRlimits, joinedNamespaces, parseHardLimits, privateFileContent, withoutNamespacePaths } from '../../src/checkpoint/formats/spec-parts.ts';
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
    const modes = imageEntries(bytes, 'files.img').map((entry) => {
      const reg = protoFields(entry.message).find((f) => f.field === 3)?.value;
      return reg instanceof Buffer ? protoFields(reg).find((f) => f.field === 10)?.value : null;
    });
    assert.deepEqual(modes, [0o100755, 0o20666, null, 0o40555, 0o40555]);
    assert.equal(withRootDirMode(bytes, 0o555).changed, 0);
  });

  test('damaged images are errors, not guesses', () => {
    const dir = fresh('images');
    writeCriuImages(dir, { rootMode: 0o755 });
    writeFileSync(join(dir, 'files.img'), readFileSync(join(dir, 'files.img')).subarray(0, 20));
    assert.throws(() => rootDirMode(dir), /files\.img: truncated entry/);
    assert.throws(() => protoFields(Buffer.from([0x08])), /truncated varint/);
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
  const PROC_LIMITS = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max cpu time              unlimited            unlimited            seconds   ',
    'Max processes             96363                96363                processes ',
    'Max open files            20000                20000                files     ',
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');

  test('/proc/self/limits hard limits', () => {
    const hard = parseHardLimits(PROC_LIMITS);
    assert.equal(hard.get('RLIMIT_NOFILE'), 20000);
    assert.equal(hard.get('RLIMIT_NPROC'), 96363);
    assert.equal(hard.get('RLIMIT_CPU'), Infinity);
    assert.equal(hard.size, 4);
  });

  test('rlimits over the local hard limit are lowered, or refused', () => {
    const hard = parseHardLimits(PROC_LIMITS);
    const asked = [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }, { type: 'RLIMIT_NPROC', hard: 4096, soft: 4096 }];
    assert.deepEqual(fitRlimits(asked, hard, true), {
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }, { type: 'RLIMIT_NPROC', hard: 4096, soft: 4096 }],
      lowered: [{ type: 'RLIMIT_NOFILE', from: 1048576, to: 20000 }],
      refused: [],
    });
    assert.deepEqual(fitRlimits(asked, hard, false).refused, [{ type: 'RLIMIT_NOFILE', asked: 1048576, hard: 20000 }]);
  });

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
