import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compressionForPath, compressionFromMagic } from '../../src/checkpoint/archive/format.ts';
import { SPARE_BYTES, UnpackRoom, spareBytes } from '../../src/checkpoint/archive/input.ts';
import { formatBytes } from '../../src/host/units.ts';
import { extractTar } from '../../src/checkpoint/archive/tar.ts';
import { assertNothingLeft, freshDir, gnuTar, makeTestRoot, removeTestRoot } from './tar-fixtures.ts';

before(() => makeTestRoot('archive-input-test'));
after(removeTestRoot);

const MiB = 1024 * 1024;

/** A small archive of one file of `mib` MiB of zeros: the shape of a decompression bomb. */
function bomb(mib: number, flags: string[], ext: string): string {
  const dir = freshDir('bomb');
  const zeros = path.join(dir, 'zeros');
  spawnSync('touch', [zeros]);
  truncateSync(zeros, mib * MiB);
  const file = path.join(dir, `bomb.${ext}`);
  gnuTar(['-c', '-f', file, ...flags, '-C', dir, 'zeros']);
  return file;
}

describe('archive formats', () => {
  test('compression by name, and by the first bytes', () => {
    assert.equal(compressionForPath('/x/A.TAR.ZST'), 'zstd');
    assert.equal(compressionForPath('a.tgz'), 'gzip');
    assert.throws(() => compressionForPath('a.zip'), /must end in one of \.tar, /);
    assert.equal(compressionFromMagic(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
    assert.equal(compressionFromMagic(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
    assert.equal(compressionFromMagic(Buffer.from('checkpoint/')), 'none');
    assert.equal(compressionFromMagic(Buffer.alloc(0)), 'none');
    assert.throws(() => compressionFromMagic(Buffer.from('BZh91AY')), /bzip2/);
  });

  test('sizes read as people read them', () => {
    assert.equal(formatBytes(512), '512 bytes');
    assert.equal(formatBytes(160 * 1024), '160.0 KiB');
    assert.equal(formatBytes(4 * 1024 * MiB), '4.0 GiB');
  });
});

describe('decompression bombs', () => {
  for (const [label, flags, ext] of [['zstd', ['--zstd'], 'tar.zst'], ['gzip', ['-z'], 'tar.gz']] as const) {
    test(`a small ${label} archive of a big zero file, over the limit, from a file and from a stream`, async () => {
      const file = bomb(32, [...flags], ext);
      const dest = path.join(freshDir('bomb-dest'), 'dest');
      const message = new RegExp(`^Error: cannot extract ${file.replaceAll('.', '\\.')}: it would unpack to at least [\\d.]+ MiB, more than the limit of 1\\.0 MiB \\(${dest}.* has [\\d.]+ \\w+ free, of which 64\\.0 MiB is kept spare\\)$`);
      await assert.rejects(extractTar(file, dest, { maxBytes: MiB }), message);
      assertNothingLeft(dest);
      await assert.rejects(extractTar(createReadStream(file), dest, { maxBytes: MiB }), /^Error: cannot extract the archive stream: it would unpack to at least/);
      assertNothingLeft(dest);
    });
  }

  test('a plain archive bigger than the limit is refused before tar runs', async () => {
    const dir = freshDir('plain-big');
    const big = path.join(dir, 'big.tar');
    gnuTar(['-c', '-f', big, '-C', dir, '.']);
    truncateSync(big, 8 * MiB); // past its end: zeros, which tar reads as the end marker
    const dest = path.join(freshDir('plain-dest'), 'dest');
    await assert.rejects(extractTar(big, dest, { maxBytes: MiB }), /it would unpack to at least 8\.0 MiB, more than the limit of 1\.0 MiB/);
    assertNothingLeft(dest);
  });

  test('within the limit it unpacks', async () => {
    const dest = path.join(freshDir('fits'), 'dest');
    await extractTar(bomb(2, ['--zstd'], 'tar.zst'), dest, { maxBytes: 4 * MiB });
  });

  const asRoot = { skip: process.getuid?.() !== 0 && 'needs root (mount)' };

  /** Runs `body` with a tmpfs of `mib` MiB mounted on a fresh folder. */
  async function withSmallFs(mib: number, body: (dir: string) => Promise<void>): Promise<void> {
    const dir = freshDir('small-fs');
    assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]).status, 0);
    try {
      await body(dir);
    } finally {
      spawnSync('umount', [dir]);
    }
  }

  test('the free space is a limit too: a small filesystem keeps its spare room', asRoot, async () => {
    // 520 MiB: an eighth is more than the most kept spare, 64 MiB; 460 MiB of zeros do not fit.
    await withSmallFs(520, async (small) => {
      const dest = path.join(small, 'dest');
      await assert.rejects(extractTar(bomb(460, ['--zstd'], 'tar.zst'), dest), /it would unpack to at least [\d.]+ MiB, more than the room there is \(.*dest has 520\.0 MiB free, of which 64\.0 MiB is kept spare\)/);
      assertNothingLeft(dest);
    });
  });

  // Issue 15: with a flat 64 MiB kept spare, a 1 MiB archive was refused on a 16 MiB state directory.
  test('the spare room scales with the filesystem: a 1 MiB archive unpacks on 16 MiB, and the room left is kept', asRoot, async () => {
    assert.deepEqual([spareBytes(16 * MiB), spareBytes(200 * MiB), spareBytes(4096 * MiB), spareBytes(MiB)], [2 * MiB, 25 * MiB, SPARE_BYTES, MiB]);
    await withSmallFs(16, async (small) => {
      const dest = path.join(small, 'dest');
      await extractTar(bomb(1, ['--zstd'], 'tar.zst'), dest);
      assert.equal(statSync(path.join(dest, 'zeros')).size, MiB);
      await assert.rejects(extractTar(bomb(14, ['--zstd'], 'tar.zst'), path.join(small, 'dest2')), /more than the room there is \(.* of which 2\.0 MiB is kept spare\)/);
    });
  });

  test('the free space is looked at again while unpacking (others write there too)', asRoot, async () => {
    await withSmallFs(200, async (small) => {
      const room = await UnpackRoom.of(small);
      assert.equal(await room.guard(MiB), null);
      // Someone else fills the filesystem meanwhile.
      writeFileSync(path.join(small, 'other'), Buffer.alloc(180 * MiB));
      assert.match(String(await room.guard(65 * MiB)), /ran out of room after 65\.0 MiB of it \([\d.]+ MiB free, 25\.0 MiB is kept spare\)/);
    });
  });
});

test('formatBytes: binary units for files and memory, decimal ones where the peer prints those', () => {
  assert.equal(formatBytes(1023), '1023 bytes');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(5_200_000, { si: true }), '5.2 MB');
  assert.equal(formatBytes(999, { si: true }), '999 B');
});
