import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkEntriesSafe, createTar, extractTar, readTarEntries, type TarEntry } from '../../src/checkpoint/tar.ts';

let root: string;
let counter = 0;

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'stasis-tar-test-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A fresh empty folder under the test root. */
function freshDir(label: string): string {
  const dir = path.join(root, `${label}-${counter++}`);
  mkdirSync(dir);
  return dir;
}

function gnuTar(args: string[]): void {
  execFileSync('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

// --- hand-made tar bytes ------------------------------------------------------

type RawEntry = { name: string; type?: string; linkName?: string; data?: string | Buffer; devmajor?: number; devminor?: number };

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function rawHeader(entry: RawEntry, size: number): Buffer {
  const header = Buffer.alloc(512);
  header.write(entry.name, 0, 100, 'utf8');
  header.write(octal(entry.type === '5' ? 0o755 : 0o644, 8), 100, 'latin1');
  header.write(octal(0, 8), 108, 'latin1');
  header.write(octal(0, 8), 116, 'latin1');
  header.write(octal(size, 12), 124, 'latin1');
  header.write(octal(0, 12), 136, 'latin1');
  header.write(entry.type ?? '0', 156, 'latin1');
  header.write(entry.linkName ?? '', 157, 100, 'utf8');
  header.write('ustar\u000000', 257, 'latin1');
  header.write(octal(entry.devmajor ?? 0, 8), 329, 'latin1');
  header.write(octal(entry.devminor ?? 0, 8), 337, 'latin1');
  return withChecksum(header);
}

function withChecksum(header: Buffer): Buffer {
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}

function rawTar(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    blocks.push(rawHeader(entry, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** One pax record; its length prefix counts itself, so settle it by iteration. */
function paxRecord(key: string, value: string): string {
  let length = 0;
  while (`${length} ${key}=${value}\n`.length !== length) length = `${length} ${key}=${value}\n`.length;
  return `${length} ${key}=${value}\n`;
}

function writeRawTar(entries: RawEntry[]): string {
  const file = path.join(freshDir('raw'), 'archive.tar');
  writeFileSync(file, rawTar(entries));
  return file;
}

// --- a small checkpoint-like tree -----------------------------------------------

function makeTree(): string {
  const dir = freshDir('tree');
  mkdirSync(path.join(dir, 'checkpoint'));
  writeFileSync(path.join(dir, 'checkpoint', 'inventory.img'), Buffer.from([1, 2, 3, 4]));
  writeFileSync(path.join(dir, 'checkpoint', 'pages-1.img'), Buffer.alloc(20000, 7));
  writeFileSync(path.join(dir, 'spec.dump'), '{"ociVersion":"1.0.2"}\n');
  writeFileSync(path.join(dir, 'config.dump'), '{"id":"abc"}\n', { mode: 0o600 });
  mkdirSync(path.join(dir, 'nested', 'deeper'), { recursive: true });
  writeFileSync(path.join(dir, 'nested', 'deeper', 'file'), 'x');
  symlinkSync('../spec.dump', path.join(dir, 'nested', 'spec-link'));
  return dir;
}

const treeNames = [
  'checkpoint/', 'checkpoint/inventory.img', 'checkpoint/pages-1.img', 'config.dump',
  'nested/', 'nested/deeper/', 'nested/deeper/file', 'nested/spec-link', 'spec.dump',
];

function listTree(dir: string, prefix = ''): string[] {
  const names: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    const stat = lstatSync(full);
    names.push(`${prefix}${name}${stat.isDirectory() ? '/' : ''}`);
    if (stat.isDirectory()) names.push(...listTree(full, `${prefix}${name}/`));
  }
  return names.sort();
}

function gnuArchive(tree: string, file: string, extra: string[] = []): string {
  gnuTar(['-c', '-f', file, '-C', tree, ...extra, ...readdirSync(tree).sort()]);
  return file;
}

// --------------------------------------------------------------------------------

describe('readTarEntries', () => {
  for (const [label, flags, ext] of [
    ['plain', [], 'tar'],
    ['gzip', ['-z'], 'tar.gz'],
    ['zstd', ['--zstd'], 'tar.zst'],
  ] as const) {
    test(`reads a ${label} archive made by GNU tar`, async () => {
      const tree = makeTree();
      const file = gnuArchive(tree, path.join(freshDir('gnu'), `a.${ext}`), [...flags]);
      const entries = await readTarEntries(file);
      assert.deepEqual(entries.map((e) => e.name).sort(), treeNames);
      const byName = new Map(entries.map((e) => [e.name, e]));
      assert.equal(byName.get('checkpoint/pages-1.img')?.size, 20000);
      assert.equal(byName.get('checkpoint/pages-1.img')?.type, 'file');
      assert.equal(byName.get('config.dump')?.mode, 0o600);
      assert.equal(byName.get('nested/')?.type, 'dir');
      assert.deepEqual(
        { type: byName.get('nested/spec-link')?.type, linkName: byName.get('nested/spec-link')?.linkName },
        { type: 'symlink', linkName: '../spec.dump' },
      );
    });
  }

  for (const format of ['gnu', 'pax', 'ustar'] as const) {
    test(`reads long names and link names in ${format} format`, async () => {
      const tree = freshDir('long');
      // ustar only has room for a 155-byte prefix + 100-byte name, and 100-byte link names.
      const folder = path.join(...Array.from({ length: 6 }, (_, i) => `folder-with-a-rather-long-name-${i}`));
      const fileName = format === 'ustar' ? 'short' : `${'n'.repeat(120)}`;
      mkdirSync(path.join(tree, folder), { recursive: true });
      writeFileSync(path.join(tree, folder, fileName), 'data');
      const linkTarget = format === 'ustar' ? 'target' : `${'t'.repeat(150)}`;
      symlinkSync(linkTarget, path.join(tree, 'link'));
      const file = path.join(freshDir('long-out'), 'a.tar');
      gnuTar(['-c', '-f', file, `--format=${format}`, '-C', tree, 'link', folder.split('/')[0]]);
      const entries = await readTarEntries(file);
      const names = entries.map((e) => e.name);
      assert.ok(names.includes(`${folder}/${fileName}`), `missing long name in ${names.join(', ')}`);
      assert.equal(entries.find((e) => e.name === 'link')?.linkName, linkTarget);
      assert.equal(entries.find((e) => e.name === `${folder}/${fileName}`)?.size, 4);
    });
  }

  test('reads a base-256 size', async () => {
    const data = Buffer.from('hello');
    const header = rawHeader({ name: 'big' }, 0);
    header.fill(0, 124, 136);
    header[124] = 0x80;
    header[135] = data.length;
    withChecksum(header);
    const file = path.join(freshDir('b256'), 'a.tar');
    writeFileSync(file, Buffer.concat([header, data, Buffer.alloc(512 - data.length), Buffer.alloc(1024)]));
    assert.deepEqual(await readTarEntries(file), [{ name: 'big', type: 'file', linkName: '', size: 5, mode: 0o644 }]);
  });

  test('reads pax headers written by hand, ignoring a harmless global header', async () => {
    const file = writeRawTar([
      { name: 'global', type: 'g', data: paxRecord('comment', 'hi') },
      { name: 'PaxHeader', type: 'x', data: paxRecord('path', 'real/name.txt') + paxRecord('size', '3') },
      { name: 'ignored', data: 'abc' },
    ]);
    // The ustar size field says 3 as well; the pax one wins either way.
    assert.deepEqual((await readTarEntries(file)).map((e) => [e.name, e.size]), [['real/name.txt', 3]]);
  });

  test('refuses a global pax header that renames entries', async () => {
    const file = writeRawTar([{ name: 'g', type: 'g', data: paxRecord('path', '../escape.txt') }, { name: 'x' }]);
    await assert.rejects(readTarEntries(file), /global pax header sets "path"/);
  });

  test('refuses a bad header checksum with its offset', async () => {
    const bytes = rawTar([{ name: 'a', data: 'x' }, { name: 'b', data: 'y' }]);
    bytes[1024] ^= 0x01; // first byte of the second header's name
    const file = path.join(freshDir('cksum'), 'a.tar');
    writeFileSync(file, bytes);
    await assert.rejects(readTarEntries(file), /not a tar archive: bad header checksum at offset 1024/);
  });

  test('refuses a file that is not a tar archive', async () => {
    const file = path.join(freshDir('notar'), 'a.tar');
    writeFileSync(file, 'hello world\n'.repeat(100));
    await assert.rejects(readTarEntries(file), /bad header checksum at offset 0/);
  });

  test('refuses data attached to a symlink entry', async () => {
    const file = writeRawTar([{ name: 'l', type: '2', linkName: 'x', data: 'smuggled' }]);
    await assert.rejects(readTarEntries(file), /symlink entry "l" carries 8 bytes/);
  });

  for (const [label, flags, ext] of [
    ['plain', [], 'tar'],
    ['gzip', ['-z'], 'tar.gz'],
    ['zstd', ['--zstd'], 'tar.zst'],
  ] as const) {
    test(`refuses a ${label} archive cut in half as truncated`, async () => {
      const dir = freshDir('cut');
      const whole = gnuArchive(makeTree(), path.join(dir, `whole.${ext}`), [...flags]);
      const bytes = readFileSync(whole);
      const cut = path.join(dir, `cut.${ext}`);
      writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
      await assert.rejects(readTarEntries(cut), /truncated/);
      await assert.rejects(extractTar(cut, path.join(dir, 'dest')), /truncated/);
      assert.equal(existsSync(path.join(dir, 'dest')), false);
    });
  }

  test('refuses an archive without its end-of-archive marker', async () => {
    const bytes = rawTar([{ name: 'a', data: 'x' }]);
    const file = path.join(freshDir('noend'), 'a.tar');
    writeFileSync(file, bytes.subarray(0, 1024));
    await assert.rejects(readTarEntries(file), /truncated/);
  });
});

describe('checkEntriesSafe', () => {
  const file = (name: string): TarEntry => ({ name, type: 'file', linkName: '', size: 0, mode: 0o644 });
  const symlink = (name: string, linkName: string): TarEntry => ({ name, type: 'symlink', linkName, size: 0, mode: 0o777 });

  test('accepts ordinary entries, leading ./ and in-root symlinks', () => {
    checkEntriesSafe([
      { name: './', type: 'dir', linkName: '', size: 0, mode: 0o755 },
      file('./checkpoint/inventory.img'),
      symlink('usr/lib64', 'lib'),
      symlink('lib', 'usr/lib'),
      symlink('a/b/c', '../../x'),
      symlink('here', '.'),
      { name: 'hard', type: 'hardlink', linkName: './checkpoint/inventory.img', size: 0, mode: 0o644 },
    ]);
  });

  test('refuses what would leave the root, naming the entry', () => {
    const cases: Array<[TarEntry[], RegExp]> = [
      [[file('/etc/passwd')], /"\/etc\/passwd": absolute path/],
      [[file('../x')], /"\.\.\/x": path contains "\.\."/],
      [[file('a/../../x')], /"a\/\.\.\/\.\.\/x": path contains/],
      [[file('./')], /"\.\/": empty name/],
      [[symlink('evil', '/etc'), file('evil/passwd')], /"evil": symlink target "\/etc" leaves/],
      [[symlink('a', '../../x')], /"a": symlink target "\.\.\/\.\.\/x" leaves/],
      [[symlink('d/up', '..'), symlink('x', 'd/up/d/up/..')], /"x": symlink target/],
      [[symlink('loop', 'loop/x')], /"loop": symlink target/],
      [[symlink('s', 'sub'), file('s/file')], /"s\/file": its path goes through the symlink "s"/],
      [[{ name: 'h', type: 'hardlink', linkName: '/etc/shadow', size: 0, mode: 0 }], /"h": hardlink target "\/etc\/shadow": absolute path/],
      [[{ name: 'h', type: 'hardlink', linkName: 'a/../../x', size: 0, mode: 0 }], /"h": hardlink target .* contains "\.\."/],
      [[symlink('a/b/s', '../x'), { name: 'h', type: 'hardlink', linkName: 'a/b/s', size: 0, mode: 0 }], /"h": hardlink to the symlink "a\/b\/s"/],
      [[{ name: 'null', type: 'char', linkName: '', size: 0, mode: 0 }], /"null": char device not allowed/],
      [[{ name: 'sda', type: 'block', linkName: '', size: 0, mode: 0 }], /"sda": block device not allowed/],
      [[{ name: 'pipe', type: 'fifo', linkName: '', size: 0, mode: 0 }], /"pipe": fifo not allowed/],
      [[{ name: 'sparse', type: 'other', linkName: '', size: 0, mode: 0 }], /"sparse": unsupported entry type/],
    ];
    for (const [entries, message] of cases) {
      assert.throws(() => checkEntriesSafe(entries), message);
    }
  });

  test('allowDevices lets device nodes and fifos through', () => {
    checkEntriesSafe(
      [
        { name: 'dev/null', type: 'char', linkName: '', size: 0, mode: 0o666 },
        { name: 'pipe', type: 'fifo', linkName: '', size: 0, mode: 0o600 },
      ],
      { allowDevices: true },
    );
  });

  test('sees the traps in archives read from disk', async () => {
    const evil = writeRawTar([{ name: 'evil', type: '2', linkName: '/etc' }, { name: 'evil/passwd', data: 'root::0:0::/:/bin/sh\n' }]);
    checkEntriesSafe([]); // an empty archive is fine
    await assert.rejects(async () => checkEntriesSafe(await readTarEntries(evil)), /"evil": symlink target "\/etc"/);
  });
});

describe('extractTar', () => {
  /** Extraction must fail naming the entry, write nothing inside dest and nothing next to it. */
  async function assertRefused(entries: RawEntry[], message: RegExp, outsideFile: string): Promise<void> {
    const archive = writeRawTar(entries);
    const dest = path.join(freshDir('dest-parent'), 'dest');
    await assert.rejects(extractTar(archive, dest), message);
    assert.equal(existsSync(dest), false, 'destination was created');
    assert.equal(existsSync(outsideFile), false, `${outsideFile} was written`);
  }

  test('refuses an absolute path', async () => {
    const outside = path.join(root, `absolute-${counter++}`);
    await assertRefused([{ name: outside, data: 'x' }], /absolute path/, outside);
  });

  test('refuses ../x', async () => {
    const outside = path.join(root, 'x');
    await assertRefused([{ name: '../x', data: 'x' }], /"\.\.\/x": path contains "\.\."/, outside);
  });

  test('refuses a symlink to an outside folder followed by a file through it', async () => {
    const outsideDir = freshDir('outside');
    await assertRefused(
      [{ name: 'evil', type: '2', linkName: outsideDir }, { name: 'evil/passwd', data: 'owned\n' }],
      /"evil": symlink target .* leaves the extraction root/,
      path.join(outsideDir, 'passwd'),
    );
  });

  test('refuses a relative symlink that climbs out', async () => {
    await assertRefused([{ name: 'a', type: '2', linkName: '../../x' }], /"a": symlink target "\.\.\/\.\.\/x"/, path.join(root, 'x'));
  });

  test('refuses a safe-looking symlink used as a path', async () => {
    const outsideDir = freshDir('outside');
    await assertRefused(
      [{ name: 'sub/', type: '5' }, { name: 's', type: '2', linkName: 'sub' }, { name: 's/file', data: 'x' }],
      /"s\/file": its path goes through the symlink "s"/,
      path.join(outsideDir, 'file'),
    );
  });

  test('refuses a hardlink to /etc/shadow', async () => {
    await assertRefused([{ name: 'shadow', type: '1', linkName: '/etc/shadow' }], /"shadow": hardlink target "\/etc\/shadow"/, path.join(root, 'shadow'));
  });

  test('refuses a device node unless allowed', async () => {
    const entries: RawEntry[] = [{ name: 'null', type: '3', devmajor: 1, devminor: 3 }];
    await assertRefused(entries, /"null": char device not allowed/, path.join(root, 'null'));
    const dest = path.join(freshDir('dev'), 'dest');
    await extractTar(writeRawTar([{ name: 'pipe', type: '6' }]), dest, { allowDevices: true });
    assert.ok(lstatSync(path.join(dest, 'pipe')).isFIFO());
  });

  test('reports tar errors', async () => {
    // Passes our check (hardlink inside the root) but its target does not exist.
    const archive = writeRawTar([{ name: 'h', type: '1', linkName: 'missing' }]);
    await assert.rejects(extractTar(archive, path.join(freshDir('tarerr'), 'dest')), /tar failed: .*missing/s);
  });
});

describe('createTar', () => {
  for (const ext of ['tar', 'tar.gz', 'tgz', 'tar.zst', 'tar.zstd']) {
    test(`round trip through .${ext}`, async () => {
      const tree = makeTree();
      const out = freshDir('out');
      const file = path.join(out, `checkpoint.${ext}`);
      await createTar(tree, file);
      assert.deepEqual(readdirSync(out), [`checkpoint.${ext}`], 'temp file left behind');

      const entries = await readTarEntries(file);
      assert.deepEqual(entries.map((e) => e.name).sort(), treeNames, 'entries must not carry a folder prefix or ./');

      const dest = path.join(out, 'dest');
      await extractTar(file, dest);
      assert.deepEqual(listTree(dest), treeNames);
      assert.deepEqual(readFileSync(path.join(dest, 'checkpoint', 'pages-1.img')), Buffer.alloc(20000, 7));
      assert.equal(statSync(path.join(dest, 'config.dump')).mode & 0o777, 0o600);
      assert.equal(readlinkSync(path.join(dest, 'nested', 'spec-link')), '../spec.dump');
    });
  }

  test('archives an empty folder', async () => {
    const file = path.join(freshDir('empty'), 'empty.tar');
    await createTar(freshDir('empty-src'), file);
    assert.deepEqual(await readTarEntries(file), []);
  });

  test('refuses an unknown extension, naming the accepted ones', async () => {
    await assert.rejects(createTar(makeTree(), path.join(freshDir('ext'), 'a.zip')), /\.tar, \.tar\.gz, \.tgz, \.tar\.zst, \.tar\.zstd/);
  });

  test('leaves nothing behind when tar fails', async () => {
    const tree = makeTree();
    const out = freshDir('fail');
    // The output folder is missing, so tar cannot create its temp file.
    await assert.rejects(createTar(tree, path.join(out, 'missing', 'a.tar')), /tar failed/);
    assert.deepEqual(readdirSync(out), []);
  });
});
