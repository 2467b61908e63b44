import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extractTar, type ExtractOptions } from '../../src/checkpoint/archive/tar.ts';
import {
  assertNothingLeft, COMPRESSED_FORMATS, freshDir, gnuArchive, gnuTar, listTree, makeTestRoot, makeTree, paxRecord, rawHeader,
  rawTar, removeTestRoot, testRoot, treeNames, unusedPath, withChecksum, writeRawTar, type RawEntry,
} from './tar-fixtures.ts';

// extractTar: what it takes, and what it refuses. A refused archive is
// refused before it is extracted (a damaged stream, an archive too big) or
// after (what GNU tar wrote is checked on disk); either way the destination
// is removed and nothing outside it was written.

before(() => makeTestRoot('tar-test'));
after(removeTestRoot);

const LAYER: ExtractOptions = { rootfsLayer: true };

function dest(): string {
  return path.join(freshDir('dest-parent'), 'dest');
}

/** Extraction must fail with `message`, leaving nothing behind and writing none of `outside`. */
async function assertRefused(archive: string | RawEntry[], message: RegExp, outside: string[] = [], opts: ExtractOptions = {}): Promise<void> {
  const file = typeof archive === 'string' ? archive : writeRawTar(archive);
  const target = dest();
  await assert.rejects(extractTar(file, target, opts), message);
  assertNothingLeft(target, outside);
}

async function extracted(entries: RawEntry[], opts: ExtractOptions = {}): Promise<string> {
  const target = dest();
  await extractTar(writeRawTar(entries), target, opts);
  return target;
}

describe('extractTar: archives GNU tar wrote', () => {
  for (const [label, flags, ext] of COMPRESSED_FORMATS) {
    test(`a ${label} archive, from its file and from a stream`, async () => {
      const file = gnuArchive(makeTree(), path.join(freshDir('gnu'), `a.${ext}`), [...flags]);
      for (const source of [file, createReadStream(file)]) {
        const target = dest();
        await extractTar(source, target);
        assert.deepEqual(listTree(target), treeNames);
        assert.deepEqual(readFileSync(path.join(target, 'checkpoint', 'pages-1.img')), Buffer.alloc(20000, 7));
        assert.equal(statSync(path.join(target, 'config.dump')).mode & 0o777, 0o600);
      }
    });
  }

  for (const format of ['gnu', 'pax', 'ustar'] as const) {
    test(`long names and link names in ${format} format`, async () => {
      const tree = freshDir('long');
      // ustar only has room for a 155-byte prefix + 100-byte name, and 100-byte link names.
      const folder = path.join(...Array.from({ length: 6 }, (_, i) => `folder-with-a-rather-long-name-${i}`));
      const fileName = format === 'ustar' ? 'short' : 'n'.repeat(120);
      mkdirSync(path.join(tree, folder), { recursive: true });
      writeFileSync(path.join(tree, folder, fileName), 'data');
      const linkTarget = format === 'ustar' ? 'target' : 't'.repeat(150);
      symlinkSync(linkTarget, path.join(tree, 'link'));
      const file = path.join(freshDir('long-out'), 'a.tar');
      gnuTar(['-c', '-f', file, `--format=${format}`, '-C', tree, 'link', folder.split('/')[0]]);
      const target = dest();
      await extractTar(file, target, LAYER);
      assert.equal(readFileSync(path.join(target, folder, fileName), 'utf8'), 'data');
      assert.equal(readlinkSync(path.join(target, 'link')), linkTarget);
    });
  }

  test('a base-256 size', async () => {
    const data = Buffer.from('hello');
    const header = rawHeader({ name: 'big' }, 0);
    header.fill(0, 124, 136);
    header[124] = 0x80;
    header[135] = data.length;
    withChecksum(header);
    const file = path.join(freshDir('b256'), 'a.tar');
    writeFileSync(file, Buffer.concat([header, data, Buffer.alloc(512 - data.length), Buffer.alloc(1024)]));
    const target = dest();
    await extractTar(file, target);
    assert.equal(readFileSync(path.join(target, 'big'), 'utf8'), 'hello');
  });

  test('pax headers written by hand, with a harmless global header', async () => {
    // The header's own name is the pax path cut short, as GNU tar writes it for a long name.
    const target = await extracted([
      { name: 'global', type: 'g', data: paxRecord('comment', 'hi') },
      { name: 'PaxHeader', type: 'x', data: paxRecord('path', 'real/name.txt') + paxRecord('size', '3') },
      { name: 'real/na', data: 'abc' },
    ]);
    assert.deepEqual(listTree(target), ['real/', 'real/name.txt']);
    assert.equal(readFileSync(path.join(target, 'real', 'name.txt'), 'utf8'), 'abc');
  });

  test('a pax header or a global one that renames a member is refused, naming it, before tar sees it', async () => {
    await assertRefused([{ name: 'g', type: 'g', data: paxRecord('path', 'renamed-by-global') }, { name: 'plain.txt', data: 'x' }],
      /unsafe archive entry "renamed-by-global": a global pax header sets every member's path/);
    await assertRefused([{ name: 'x', type: 'x', data: paxRecord('path', 'spec.dump') }, { name: 'stasis.json', data: '{}' }],
      /unsafe archive entry "spec\.dump": a pax header or long name renames the member "stasis\.json"/);
    await assertRefused([{ name: '././@LongLink', type: 'L', data: 'checkpoint/pages-1.img\0' }, { name: 'innocent', data: 'x' }],
      /unsafe archive entry "checkpoint\/pages-1\.img": a pax header or long name renames the member "innocent"/);
    await assertRefused([{ name: 'x', type: 'x', data: paxRecord('linkpath', '/etc/shadow') }, { name: 'l', type: '2', linkName: 'safe' }],
      /unsafe archive entry "l": a pax header or long name changes its link target from "safe"/, [], LAYER);
  });

  test('a rootfs layer keeps symlinks (wherever they point), hard links and FIFOs', async () => {
    const layer = freshDir('layer');
    mkdirSync(path.join(layer, 'usr', 'lib'), { recursive: true });
    writeFileSync(path.join(layer, 'usr', 'lib', 'libc.so'), 'elf');
    symlinkSync('lib', path.join(layer, 'usr', 'lib64'));
    symlinkSync('/etc/resolv.conf', path.join(layer, 'resolv'));
    symlinkSync('../../../outside', path.join(layer, 'usr', 'up'));
    execFileSync('ln', [path.join(layer, 'usr', 'lib', 'libc.so'), path.join(layer, 'libc-hardlink')]);
    execFileSync('mkfifo', [path.join(layer, 'pipe')]);
    const file = path.join(freshDir('layer-out'), 'rootfs-diff.tar');
    gnuTar(['-c', '-f', file, '-C', layer, '.']);
    const target = dest();
    await extractTar(file, target, LAYER);
    assert.equal(readlinkSync(path.join(target, 'usr', 'lib64')), 'lib');
    assert.equal(readlinkSync(path.join(target, 'resolv')), '/etc/resolv.conf');
    assert.equal(readlinkSync(path.join(target, 'usr', 'up')), '../../../outside');
    assert.equal(statSync(path.join(target, 'libc-hardlink')).ino, statSync(path.join(target, 'usr', 'lib', 'libc.so')).ino);
    assert.ok(lstatSync(path.join(target, 'pipe')).isFIFO());
    // Not as a checkpoint archive: there, every one of them is refused.
    await assertRefused(file, /unsafe archive entry "[^"]+": (a symlink|a hard link|fifo)/);
  });

  test('xattrs such as trusted.overlay.opaque and security.capability survive', { skip: process.getuid?.() !== 0 && 'needs root' }, async () => {
    const layer = freshDir('xattr');
    mkdirSync(path.join(layer, 'opaque'));
    writeFileSync(path.join(layer, 'ping'), 'elf');
    const python = (script: string, ...args: string[]) => execFileSync('python3', ['-c', script, ...args], { encoding: 'utf8' });
    python('import os, sys; os.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y"); os.setxattr(sys.argv[2], "user.note", b"kept")', path.join(layer, 'opaque'), path.join(layer, 'ping'));
    const file = path.join(freshDir('xattr-out'), 'rootfs-diff.tar');
    gnuTar(['-c', '-f', file, '--xattrs', '--xattrs-include=*', '-C', layer, 'opaque', 'ping']);
    const target = dest();
    await extractTar(file, target, LAYER);
    const read = 'import os, sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())';
    assert.equal(python(read, path.join(target, 'opaque'), 'trusted.overlay.opaque').trim(), 'y');
    assert.equal(python(read, path.join(target, 'ping'), 'user.note').trim(), 'kept');
  });

  test('the destination must be empty; a non-empty one is left as it is', async () => {
    const target = freshDir('full');
    writeFileSync(path.join(target, 'mine'), 'keep me');
    await assert.rejects(extractTar(writeRawTar([{ name: 'a', data: 'x' }]), target), /is not empty/);
    assert.deepEqual(readdirSync(target), ['mine']);
  });

  test('a missing destination is made 0700', async () => {
    const target = await extracted([{ name: 'a', data: 'x' }]);
    assert.equal(statSync(target).mode & 0o777, 0o700);
  });
});

describe('extractTar: damaged archives', () => {
  for (const [label, flags, ext] of COMPRESSED_FORMATS) {
    test(`a ${label} archive cut in half is truncated`, async () => {
      const dir = freshDir('cut');
      const bytes = readFileSync(gnuArchive(makeTree(), path.join(dir, `whole.${ext}`), [...flags]));
      const cut = path.join(dir, `cut.${ext}`);
      writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
      await assertRefused(cut, /truncated/);
    });
  }

  for (const [label, flags, ext] of COMPRESSED_FORMATS.slice(1)) {
    test(`a ${label} archive missing only its last bytes (past the tar data) is truncated`, async () => {
      const dir = freshDir('tail');
      const bytes = readFileSync(gnuArchive(makeTree(), path.join(dir, `whole.${ext}`), [...flags]));
      const cut = path.join(dir, `cut.${ext}`);
      writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
      await assertRefused(cut, new RegExp(`truncated \\(the ${label} stream ends early\\)`));
    });
  }

  test('a plain archive cut between two members is truncated (GNU tar alone takes it)', async () => {
    const bytes = rawTar([{ name: 'a', data: 'x' }, { name: 'b', data: 'y' }]);
    const file = path.join(freshDir('boundary'), 'a.tar');
    writeFileSync(file, bytes.subarray(0, 1024));
    await assertRefused(file, /truncated \(it ends before the end-of-archive marker\)/);
  });

  test('corrupt compressed data', async () => {
    const dir = freshDir('corrupt');
    const bytes = readFileSync(gnuArchive(makeTree(), path.join(dir, 'whole.tar.gz'), ['-z']));
    bytes[bytes.length - 6] ^= 0xff; // in the CRC-32 of the trailer
    writeFileSync(path.join(dir, 'bad.tar.gz'), bytes);
    await assertRefused(path.join(dir, 'bad.tar.gz'), /corrupt: bad gzip data/);
  });

  test('a bad header checksum', async () => {
    const bytes = rawTar([{ name: 'a', data: 'x' }, { name: 'b', data: 'y' }]);
    bytes[1024] ^= 0x01; // first byte of the second header's name
    const file = path.join(freshDir('cksum'), 'a.tar');
    writeFileSync(file, bytes);
    await assertRefused(file, /the tar header at byte 1024 is damaged \(its checksum is wrong\)/);
  });

  test('a file that is not a tar archive, an empty one, an xz one', async () => {
    const dir = freshDir('notar');
    writeFileSync(path.join(dir, 'text.tar'), 'hello world\n'.repeat(100));
    await assertRefused(path.join(dir, 'text.tar'), /not a tar archive: its first 512 bytes are not a tar header/);
    writeFileSync(path.join(dir, 'empty.tar'), '');
    await assertRefused(path.join(dir, 'empty.tar'), /the archive is empty/);
    writeFileSync(path.join(dir, 'a.tar.xz'), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
    await assertRefused(path.join(dir, 'a.tar.xz'), /unsupported archive compression: xz/);
  });

  test('a missing archive names itself', async () => {
    const missing = path.join(testRoot(), 'no-such.tar');
    await assertRefused(missing, /cannot extract .*no-such\.tar: ENOENT/);
  });
});

describe('extractTar: hostile archives write nothing outside and leave nothing', () => {
  for (const opts of [{}, LAYER]) {
    const kind = opts.rootfsLayer ? 'rootfs layer' : 'checkpoint archive';

    test(`${kind}: ../x and a/../../x`, async () => {
      await assertRefused([{ name: '../x', data: 'x' }], /"\.\.\/x": path contains "\.\."/, [path.join(testRoot(), 'x')], opts);
      await assertRefused([{ name: 'a/../../x', data: 'x' }], /path contains "\.\."/, [path.join(testRoot(), 'x')], opts);
    });

    test(`${kind}: a symlink to an outside folder, then a file through it`, async () => {
      const outsideDir = freshDir('outside');
      await assertRefused(
        [{ name: 'evil', type: '2', linkName: outsideDir }, { name: 'evil/passwd', data: 'owned\n' }],
        opts.rootfsLayer ? /"evil\/passwd": its path goes through a symlink/ : /"evil": a symlink to/,
        [path.join(outsideDir, 'passwd')],
        opts,
      );
    });

    test(`${kind}: a chain of harmless-looking symlinks that climbs out`, async () => {
      const outside = unusedPath('chain');
      await assertRefused(
        [{ name: 'd/up', type: '2', linkName: '..' }, { name: 'x', type: '2', linkName: 'd/up/d/up/..' }, { name: 'x/f', data: 'x' }],
        opts.rootfsLayer ? /"x\/f": its path goes through a symlink/ : /"d\/up": a symlink to "\.\."/,
        [outside],
        opts,
      );
    });

    test(`${kind}: "./" as a symlink out`, async () => {
      const outsideDir = freshDir('outside');
      await assertRefused([{ name: './', type: '2', linkName: outsideDir }, { name: 'f', data: 'x' }], /cannot extract/, [path.join(outsideDir, 'f')], opts);
    });

    test(`${kind}: a hard link to /etc/shadow, and one through a symlink out`, async () => {
      await assertRefused([{ name: 'shadow', type: '1', linkName: '/etc/shadow' }], opts.rootfsLayer ? /"shadow": a hard link to "\/etc\/shadow", out of the layer/ : /"shadow": a hard link/, [], opts);
      await assertRefused(
        [{ name: 'evil', type: '2', linkName: '/etc' }, { name: 'host', type: '1', linkName: 'evil/hostname' }],
        opts.rootfsLayer ? /"evil\/hostname": its path goes through a symlink or a file/ : /"evil": a symlink to "\/etc"/,
        [],
        opts,
      );
    });

    test(`${kind}: device nodes`, async () => {
      await assertRefused([{ name: 'null', type: '3', devmajor: 1, devminor: 3 }], /"null": char device not allowed/, [], opts);
      await assertRefused([{ name: 'sda', type: '4', devmajor: 8, devminor: 0 }], /"sda": block device not allowed/, [], opts);
    });

    test(`${kind}: a global pax header that renames into ".."`, async () => {
      await assertRefused(
        [{ name: 'g', type: 'g', data: paxRecord('path', '../escape.txt') }, { name: 'x', data: 'x' }],
        /"\.\.\/escape\.txt": a global pax header sets every member's path/,
        [path.join(testRoot(), 'escape.txt')],
        opts,
      );
    });
  }

  for (const opts of [{}, LAYER]) {
    const kind = opts.rootfsLayer ? 'rootfs layer' : 'checkpoint archive';
    test(`${kind}: an absolute name, a sparse member, a pax-sparse one, a volume label: refused whole, naming the entry`, async () => {
      const outside = unusedPath('absolute');
      // The refused member comes after a good one: nothing of either is left.
      await assertRefused([{ name: 'good', data: 'x' }, { name: outside, data: 'x' }], new RegExp(`"${outside}": an absolute name`), [outside], opts);
      await assertRefused([{ name: 'holes', type: 'S', data: '' }], /"holes": a sparse member/, [], opts);
      await assertRefused([{ name: 'x', type: 'x', data: paxRecord('GNU.sparse.major', '1') + paxRecord('GNU.sparse.minor', '0') }, { name: 'holes', data: '' }],
        /"holes": a sparse member/, [], opts);
      await assertRefused([{ name: 'label', type: 'V' }], /"label": a volume label/, [], opts);
      await assertRefused([{ name: 'dir/', type: '5', data: 'hidden header' }], /"dir\/": a folder header followed by 13 bytes of data/, [], opts);
    });
  }

  test('GNU sparse files, as GNU tar writes them, are refused', async () => {
    const tree = freshDir('sparse');
    execFileSync('truncate', ['-s', '1M', path.join(tree, 'holes')]);
    for (const format of ['gnu', 'pax']) {
      const file = path.join(freshDir('sparse-out'), 'a.tar');
      gnuTar(['-c', '-S', `--format=${format}`, '-f', file, '-C', tree, 'holes']);
      await assertRefused(file, /"[^"]*holes": a sparse member/);
    }
  });

  test('not an archive: zeros and random bytes are refused at once', async () => {
    const dir = freshDir('noise');
    writeFileSync(path.join(dir, 'zeros'), Buffer.alloc(17 << 20));
    await assertRefused(path.join(dir, 'zeros'), /more than 16777216 bytes follow the end-of-archive marker/);
    const fromStream = dest();
    await assert.rejects(extractTar(createReadStream('/dev/zero'), fromStream), /more than 16777216 bytes follow the end-of-archive marker/);
    assertNothingLeft(fromStream);
    writeFileSync(path.join(dir, 'random'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)));
    await assertRefused(path.join(dir, 'random'), /not a tar archive|unsupported archive compression/);
    await assertRefused('/dev/zero', /not an archive: \/dev\/zero is a character device/);
    await assertRefused('/dev/urandom', /not an archive: \/dev\/urandom is a character device/);
  });

  test('checkpoint archive: any symlink, hard link or FIFO', async () => {
    const outside = path.join(testRoot(), 'x');
    await assertRefused([{ name: 'a', type: '2', linkName: '../../x' }], /"a": a symlink to "\.\.\/\.\.\/x"/, [outside]);
    await assertRefused([{ name: 'stasis.json', type: '2', linkName: '/etc/hostname' }], /"stasis\.json": a symlink to "\/etc\/hostname"/);
    await assertRefused([{ name: 'sub/', type: '5' }, { name: 's', type: '2', linkName: 'sub' }, { name: 's/file', data: 'x' }], /"s": a symlink/);
    // GNU tar does not skip data after a symlink header and stumbles on it.
    await assertRefused([{ name: 'l', type: '2', linkName: 'x', data: 'smuggled' }], /"l": a link header followed by 8 bytes of data/);
    await assertRefused([{ name: 'l', type: '2', linkName: 'x', data: 'smuggled' }], /"l": a link header followed by 8 bytes of data/, [], LAYER);
    await assertRefused([{ name: 'f', data: 'x' }, { name: 'h', type: '1', linkName: 'f' }], /a hard link/);
    await assertRefused([{ name: 'pipe', type: '6' }], /"pipe": fifo not allowed here/);
  });

  test('rootfs layer: a file under an in-layer symlink lands inside the layer', async () => {
    // GNU tar follows a relative symlink without ".." that it has already made: it resolves below its own folder.
    const target = await extracted([{ name: 'sub/', type: '5' }, { name: 's', type: '2', linkName: 'sub' }, { name: 's/file', data: 'x' }], LAYER);
    assert.deepEqual(listTree(target), ['s', 'sub/', 'sub/file']);
  });

  test('rootfs layer: a hard link to a symlink that climbs out stays a symlink, written nowhere else', async () => {
    const outside = path.join(testRoot(), 'x');
    const target = await extracted([{ name: 'a/b/s', type: '2', linkName: '../x' }, { name: 'h', type: '1', linkName: 'a/b/s' }], LAYER);
    assert.equal(readlinkSync(path.join(target, 'h')), '../x');
    assert.equal(existsSync(outside), false);
  });

  test('tar errors are reported', async () => {
    // A hard link to a file the archive does not have.
    await assertRefused([{ name: 'h', type: '1', linkName: 'missing' }], /tar failed: .*missing/, [], LAYER);
  });
});
