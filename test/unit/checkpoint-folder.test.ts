import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkCheckpointFolder } from '../../src/checkpoint/archive/safety.ts';
import { pagesImageProblems } from '../../src/checkpoint/criu/pagemap.ts';
import { encode, imageFile } from './criu-encode.ts';
import { freshDir, makeTestRoot, removeTestRoot } from './tar-fixtures.ts';

// A checkpoint folder given by the user is checked in place as an unpacked
// archive is (archive/safety.ts), and the pages images are checked against
// their page maps (criu/pagemap.ts), before anything reads them.

before(() => makeTestRoot('checkpoint-folder-test'));
after(removeTestRoot);

/** A checkpoint-like folder: stasis.json, checkpoint/{inventory,pages-1}.img. */
function folder(): string {
  const dir = freshDir('ck');
  mkdirSync(path.join(dir, 'checkpoint'));
  writeFileSync(path.join(dir, 'stasis.json'), '{}');
  writeFileSync(path.join(dir, 'checkpoint', 'inventory.img'), 'x');
  writeFileSync(path.join(dir, 'checkpoint', 'pages-1.img'), Buffer.alloc(8192));
  return dir;
}

describe('checkCheckpointFolder', () => {
  test('folders and regular files pass', () => {
    checkCheckpointFolder(folder());
  });

  test('pages-1.img as a link to a host file is refused, naming the entry; nothing it names is read', () => {
    const dir = folder();
    rmSync(path.join(dir, 'checkpoint', 'pages-1.img'));
    symlinkSync('/etc/hostname', path.join(dir, 'checkpoint', 'pages-1.img'));
    assert.throws(() => checkCheckpointFolder(dir), /^Error: unsafe checkpoint entry "checkpoint\/pages-1\.img": a symlink to "\/etc\/hostname"/);
  });

  test('a link to / inside is refused without walking the host', () => {
    const dir = folder();
    symlinkSync('/', path.join(dir, 'checkpoint', 'root'));
    // Were / walked, the entry count would pass the limit or /proc would throw; the link itself is what is named.
    assert.throws(() => checkCheckpointFolder(dir), /unsafe checkpoint entry "checkpoint\/root": a symlink to "\/"/);
  });

  test('hard links, FIFOs and a tree over the byte limit are refused', () => {
    const hard = folder();
    linkSync(path.join(hard, 'checkpoint', 'pages-1.img'), path.join(hard, 'pages-copy'));
    assert.throws(() => checkCheckpointFolder(hard), /unsafe checkpoint entry "checkpoint\/pages-1\.img": a hard link/);
    const fifo = folder();
    execFileSync('mkfifo', [path.join(fifo, 'checkpoint', 'pipe')]);
    assert.throws(() => checkCheckpointFolder(fifo), /unsafe checkpoint entry "checkpoint\/pipe": fifo/);
    assert.throws(() => checkCheckpointFolder(folder(), { maxBytes: 100 }), /more than the 100 a checkpoint may/);
  });

  test('checkpoint/parent (a checkpoint on a pre-dump) is allowed when its target passes too', () => {
    const parent = folder();
    const child = folder();
    symlinkSync(path.relative(path.join(child, 'checkpoint'), path.join(parent, 'checkpoint')), path.join(child, 'checkpoint', 'parent'));
    checkCheckpointFolder(child);
    // A link beside it, in the parent's images, is not.
    symlinkSync('/etc/passwd', path.join(parent, 'checkpoint', 'pages-2.img'));
    assert.throws(() => checkCheckpointFolder(child), /the parent checkpoint \(checkpoint\/parent\): unsafe checkpoint entry "pages-2\.img"/);
    // Nor is a parent link to a file, or anywhere else than checkpoint/parent.
    const toFile = folder();
    symlinkSync('/etc/passwd', path.join(toFile, 'checkpoint', 'parent'));
    assert.throws(() => checkCheckpointFolder(toFile), /"checkpoint\/parent": it does not name a folder/);
    const elsewhere = folder();
    symlinkSync(path.join(parent, 'checkpoint'), path.join(elsewhere, 'parent'));
    assert.throws(() => checkCheckpointFolder(elsewhere), /unsafe checkpoint entry "parent": a symlink/);
  });
});

/** pagemap-ID.img: a head naming pages_id, then entries { vaddr, compat_nr_pages, flags, nr_pages }. */
function pagemap(pagesId: number, entries: Array<{ pages: number; flags?: number }>): Buffer {
  return imageFile('pagemap', [
    encode([[1, pagesId]]),
    ...entries.map((entry, i) => encode([[1, BigInt(0x400000 + i * 0x100000)], [2, entry.pages], ...(entry.flags === undefined ? [] : [[4, entry.flags] as [number, number]]), [5, BigInt(entry.pages)]])),
  ]);
}

describe('pagesImageProblems', () => {
  const PRESENT = 4;
  const PARENT = 1;
  const LAZY = 2;
  const size = (file: string) => {
    const stat = lstatSync(file, { throwIfNoEntry: false });
    return stat?.isFile() ? stat.size : null;
  };

  test('pages images the size their page maps say pass; pages in the parent or left lazy count nothing', () => {
    const dir = freshDir('images');
    writeFileSync(path.join(dir, 'pagemap-7.img'), pagemap(1, [{ pages: 2, flags: PRESENT }, { pages: 5, flags: PARENT }, { pages: 3, flags: LAZY }, { pages: 1 }]));
    writeFileSync(path.join(dir, 'pages-1.img'), Buffer.alloc(3 * 4096));
    assert.deepEqual(pagesImageProblems(dir, size), []);
  });

  test('a pages image shorter (or longer) than its page map, or missing, is named', () => {
    const dir = freshDir('images');
    writeFileSync(path.join(dir, 'pagemap-7.img'), pagemap(1, [{ pages: 2, flags: PRESENT }]));
    writeFileSync(path.join(dir, 'pages-1.img'), Buffer.alloc(20));
    assert.deepEqual(pagesImageProblems(dir, size), ['pages-1.img holds 20 bytes; pagemap-7.img says it holds 8192 bytes']);
    writeFileSync(path.join(dir, 'pagemap-8.img'), pagemap(2, [{ pages: 1, flags: PRESENT | LAZY }]));
    assert.deepEqual(pagesImageProblems(dir, size), [
      'pages-1.img holds 20 bytes; pagemap-7.img says it holds 8192 bytes',
      'pages-2.img is missing; pagemap-8.img says it holds 4096 bytes',
    ]);
  });
});
