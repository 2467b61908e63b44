import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { compressionFromMagic } from '../../src/checkpoint/archive/format.ts';
import { createListedToFile } from '../../src/checkpoint/archive/gnu-tar.ts';
import { COMPRESSIONS, createTar, extractTar, pipeTar, readTarEntries } from '../../src/checkpoint/archive/tar.ts';
import { baseEntriesNotSent, rootfsManifest } from '../../src/checkpoint/rootfs-diff.ts';
import { exportToFile } from '../../src/checkpoint/archive/export.ts';
import { readProcStat } from '../../src/host/procfs.ts';
import { COMPRESSED_FORMATS, freshDir, gnuArchive, listTree, makeTestRoot, makeTree, rawTar, removeTestRoot, treeNames } from './tar-fixtures.ts';

before(() => makeTestRoot('tar-create-test'));
after(removeTestRoot);

function collect(): { out: PassThrough; bytes: () => Buffer } {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { out, bytes: () => Buffer.concat(chunks) };
}

describe('createTar', () => {
  for (const ext of ['tar', 'tar.gz', 'tgz', 'tar.zst', 'tar.zstd']) {
    test(`round trip through .${ext}`, async () => {
      const out = freshDir('out');
      const file = path.join(out, `checkpoint.${ext}`);
      await createTar(makeTree(), file);
      assert.deepEqual(readdirSync(out), [`checkpoint.${ext}`], 'temp file left behind');
      const names = (await readTarEntries(file)).map((entry) => entry.name).sort();
      assert.deepEqual(names, treeNames, 'entries must not carry a folder prefix or ./');
      const dest = path.join(out, 'dest');
      await extractTar(file, dest);
      assert.deepEqual(listTree(dest), treeNames);
      assert.deepEqual(readFileSync(path.join(dest, 'checkpoint', 'pages-1.img')), Buffer.alloc(20000, 7));
      assert.equal(statSync(path.join(dest, 'config.dump')).mode & 0o777, 0o600);
    });
  }

  for (const compression of COMPRESSIONS) {
    test(`onto a stream, ${compression}, read back from a stream`, async () => {
      const { out, bytes } = collect();
      await createTar(makeTree(), out, compression);
      assert.equal(out.writableEnded, false, 'the stream is left open');
      assert.equal(compressionFromMagic(bytes()), compression);
      const dest = path.join(freshDir('stream'), 'dest');
      await extractTar(Readable.from([bytes()]), dest);
      assert.deepEqual(listTree(dest), treeNames);
    });
  }

  test('a stream that fails stops tar and is reported', async () => {
    const broken = new Writable({ write: (_chunk, _encoding, callback) => callback(new Error('EPIPE: the reader went away')) });
    await assert.rejects(createTar(makeTree(), broken, 'none'), /the reader went away/);
  });

  test('a stream needs the compression given', async () => {
    await assert.rejects(createTar(makeTree(), new PassThrough(), undefined as never), /a stream needs the compression given/);
  });

  test('names with odd characters survive, and names like options stay names', async () => {
    const tree = freshDir('odd');
    for (const name of ['-v', '--remove-files', 'a b', 'é ü', 'new\nline', 'quote"d', 'arrow -> x']) writeFileSync(path.join(tree, name), name);
    const file = path.join(freshDir('odd-out'), 'odd.tar');
    await createTar(tree, file);
    assert.equal(readdirSync(tree).length, 7, 'the source is untouched');
    const dest = path.join(freshDir('odd-dest'), 'dest');
    await extractTar(file, dest);
    for (const name of readdirSync(tree)) assert.equal(readFileSync(path.join(dest, name), 'utf8'), name);
    assert.deepEqual((await readTarEntries(file)).map((entry) => entry.name).sort(), readdirSync(tree).sort());
  });

  test('archives an empty folder', async () => {
    const file = path.join(freshDir('empty'), 'empty.tar');
    await createTar(freshDir('empty-src'), file);
    assert.deepEqual(await readTarEntries(file), []);
    await extractTar(file, path.join(freshDir('empty-dest'), 'dest'));
  });

  test('refuses an unknown extension, naming the accepted ones', async () => {
    await assert.rejects(createTar(makeTree(), path.join(freshDir('ext'), 'a.zip')), /\.tar, \.tar\.gz, \.tgz, \.tar\.zst, \.tar\.zstd/);
  });

  test('leaves nothing behind when tar fails', async () => {
    const out = freshDir('fail');
    // The output folder is missing, so tar cannot create its temp file.
    await assert.rejects(createTar(makeTree(), path.join(out, 'missing', 'a.tar')), /tar failed/);
    assert.deepEqual(readdirSync(out), []);
  });
});

describe('readTarEntries: GNU tar\'s own listing', () => {
  for (const [label, flags, ext] of COMPRESSED_FORMATS) {
    test(`a ${label} archive`, async () => {
      const tree = makeTree();
      symlinkSync('../spec.dump', path.join(tree, 'nested', 'spec-link'));
      const file = gnuArchive(tree, path.join(freshDir('list'), `a.${ext}`), [...flags]);
      const byName = new Map((await readTarEntries(file)).map((entry) => [entry.name, entry]));
      assert.deepEqual([...byName.keys()].sort(), [...treeNames, 'nested/spec-link'].sort());
      assert.deepEqual(byName.get('checkpoint/pages-1.img'), { name: 'checkpoint/pages-1.img', type: 'file', linkName: '', size: 20000, mode: 0o644 });
      assert.equal(byName.get('config.dump')?.mode, 0o600);
      assert.equal(byName.get('nested/')?.type, 'dir');
      assert.deepEqual({ ...byName.get('nested/spec-link') }, { name: 'nested/spec-link', type: 'symlink', linkName: '../spec.dump', size: 0, mode: 0o777 });
    });
  }

  test('a truncated archive', async () => {
    const file = path.join(freshDir('list-cut'), 'a.tar');
    writeFileSync(file, rawTar([{ name: 'a', data: 'x' }]).subarray(0, 1024));
    await assert.rejects(readTarEntries(file), /truncated/);
  });
});

describe('createListedToFile (the rootfs diff)', () => {
  test('archives exactly the listed entries, whatever their names', async () => {
    const upper = freshDir('upper');
    mkdirSync(path.join(upper, 'dir'));
    writeFileSync(path.join(upper, 'dir', 'listed'), 'x');
    writeFileSync(path.join(upper, 'dir', 'not-listed'), 'x');
    writeFileSync(path.join(upper, '--remove-files'), 'x');
    writeFileSync(path.join(upper, 'new\nline'), 'x');
    const file = path.join(freshDir('diff'), 'rootfs-diff.tar');
    assert.equal(await createListedToFile(upper, ['--remove-files', 'dir', 'dir/listed', 'new\nline'], file), null);
    assert.deepEqual((await readTarEntries(file)).map((entry) => entry.name), ['--remove-files', 'dir/', 'dir/listed', 'new\nline']);
    assert.equal(readdirSync(upper).length, 3, 'the upper layer is untouched');
  });

  test('an empty list makes an empty archive', async () => {
    const file = path.join(freshDir('diff-empty'), 'rootfs-diff.tar');
    assert.equal(await createListedToFile(freshDir('upper-empty'), [], file), null);
    assert.deepEqual(await readTarEntries(file), []);
  });
});

// Issue 17: a Debian tree from mmdebstrap holds device nodes in dev/ (console, null, ...);
// a receiving side refuses devices in what it is sent, so migrate --with-rootfs failed.
// Issue 15: an export killed while its tar ran left .NAME.HEX.tmp beside the archive for good
// (the tar, an orphan, even finished writing it).
test('exportToFile: a temporary file left by a killed export is removed by the next one; a live maker\'s stays', async () => {
  const out = freshDir('export-left');
  const target = path.join(out, 'cp.tar.zst');
  const me = `${process.pid}-${readProcStat(process.pid)!.startTime}`;
  writeFileSync(path.join(out, `.cp.tar.zst.${me}1-abcdef.tmp`), 'a dead maker (a start time that is not this process\'s)');
  writeFileSync(path.join(out, `.cp.tar.zst.${me}-abcdef.tmp`), 'this process: alive');
  writeFileSync(path.join(out, '.cp.tar.zst.abcdef.tmp'), 'no maker named: never touched');
  await exportToFile(makeTree(), { file: target, compression: 'zstd' });
  assert.deepEqual(readdirSync(out).sort(), ['.cp.tar.zst.abcdef.tmp', `.cp.tar.zst.${me}-abcdef.tmp`, 'cp.tar.zst'].sort());
});

describe('sending a base: device nodes and sockets stay behind', () => {
  test('pipeTar leaves out the paths given, matched whole, and nothing else', async () => {
    const base = freshDir('base-leave');
    mkdirSync(path.join(base, 'dev'));
    writeFileSync(path.join(base, 'dev', 'console'), 'x');
    writeFileSync(path.join(base, 'dev', 'console2'), 'x');
    mkdirSync(path.join(base, 'etc'));
    writeFileSync(path.join(base, 'etc', 'dev'), 'x');
    writeFileSync(path.join(base, 'etc', 'a*'), 'x');
    writeFileSync(path.join(base, 'etc', 'ab'), 'x');
    // tar writes into a pipe (a receiver's stdin), as when a move sends a base.
    const file = path.join(freshDir('base-leave-out'), 'base.tar');
    const receiver = spawn('sh', ['-c', 'cat > "$1"', 'sh', file], { stdio: ['pipe', 'ignore', 'inherit'] });
    const closed = new Promise((resolve) => receiver.on('close', resolve));
    await pipeTar(base, receiver.stdin!, () => undefined, [], ['dev/console', 'etc/a*']);
    receiver.stdin!.destroy();
    assert.equal(await closed, 0);
    assert.deepEqual((await readTarEntries(file)).map((entry) => entry.name), ['dev/', 'dev/console2', 'etc/', 'etc/ab', 'etc/dev']);
  });

  test('baseEntriesNotSent finds device nodes and sockets at any depth; the manifest leaves them out', { skip: process.getuid?.() !== 0 && 'needs root (mknod)' }, () => {
    const base = freshDir('base-devices');
    mkdirSync(path.join(base, 'dev', 'sub'), { recursive: true });
    assert.equal(spawnSync('mknod', [path.join(base, 'dev', 'null'), 'c', '1', '3']).status, 0);
    assert.equal(spawnSync('mknod', [path.join(base, 'dev', 'sub', 'loop9'), 'b', '7', '9']).status, 0);
    writeFileSync(path.join(base, 'dev', 'plain'), 'x');
    symlinkSync('/proc/self/fd', path.join(base, 'dev', 'fd'));
    assert.deepEqual(baseEntriesNotSent(base).sort(), ['dev/null', 'dev/sub/loop9']);
    const manifest = rootfsManifest(base).map((line) => line.split('\t')[0]);
    assert.deepEqual(manifest.sort(), ['dev', 'dev/fd', 'dev/plain', 'dev/sub']);
  });
});

// Issue 15: an export onto a full disk said only "tar: ...: Wrote only 2048 of 10240 bytes".
test('an archive that fills the disk says the disk is full, and leaves nothing there', { skip: process.getuid?.() !== 0 && 'needs root (mount)' }, async () => {
  const small = freshDir('full-disk');
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]).status, 0);
  try {
    const src = freshDir('full-disk-src');
    writeFileSync(path.join(src, 'big'), Buffer.alloc(3 * 1024 * 1024, 7));
    await assert.rejects(createTar(src, path.join(small, 'out.tar')), /^Error: cannot create .*out\.tar: the disk is full \(no space left on device; tar: .*\)$/);
    assert.deepEqual(readdirSync(small), [], 'no partial archive');
  } finally {
    spawnSync('umount', [small]);
  }
});
