import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { IMAGE_MAGIC, IMG_COMMON_MAGIC } from '../../src/checkpoint/criu/images.ts';
import { readTaskMemory } from '../../src/checkpoint/criu/memory.ts';
import { encode } from '../cri-client.ts';

// Synthetic CRIU images (proto2 wire format, criu/include/magic.h framing):
// mm-1.img with one VMA and the argv's addresses, pagemap-1.img with runs, and
// pages-1.img with the present runs' bytes back to back.
const PAGE = 4096;
const PE_LAZY = 2;
const PE_PRESENT = 4;

function image(kind: 'mm' | 'pagemap', entries: Buffer[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  head.writeUInt32LE(IMAGE_MAGIC[kind], 4);
  return Buffer.concat([head, ...entries.flatMap((e) => {
    const size = Buffer.alloc(4);
    size.writeUInt32LE(e.length);
    return [size, e];
  })]);
}

describe('readTaskMemory (mm, pagemap and pages images)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-criu-memory-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const STACK = 0x7ff0_0000_0000n;
  const argv = Buffer.from('sleep\0infinity\0');
  const argStart = STACK + 100n;

  /** Writes a task whose runs are: code (1 page, present), heap (2 pages, present+lazy), stack (1 page, present+lazy, holding argv). */
  function writeTask(folder: string, opts: { lazyInFile: boolean; newFormat: boolean }): void {
    const mm = encode([
      { n: 8, v: argStart },
      { n: 9, v: argStart + BigInt(argv.length) },
      { n: 14, m: encode([{ n: 1, v: 0x400000n }, { n: 2, v: 0x400000n + 64n * 4096n }]) },
      { n: 14, m: encode([{ n: 1, v: STACK }, { n: 2, v: STACK + 32n * 4096n }]) },
    ]);
    const run = (vaddr: bigint, pages: number, flags: number) =>
      encode(opts.newFormat ? [{ n: 1, v: vaddr }, { n: 2, v: 0 }, { n: 4, v: flags }, { n: 5, v: pages }] : [{ n: 1, v: vaddr }, { n: 2, v: pages }, { n: 4, v: flags }]);
    writeFileSync(join(folder, 'mm-1.img'), image('mm', [mm]));
    writeFileSync(join(folder, 'pagemap-1.img'), image('pagemap', [
      encode([{ n: 1, v: 1 }]),
      run(0x400000n, 1, PE_PRESENT),
      run(0x600000n, 2, PE_PRESENT | PE_LAZY),
      run(STACK, 1, PE_PRESENT | PE_LAZY),
    ]));
    const stack = Buffer.alloc(PAGE);
    argv.copy(stack, 100);
    const pages = opts.lazyInFile ? [Buffer.alloc(PAGE, 1), Buffer.alloc(2 * PAGE, 2), stack] : [Buffer.alloc(PAGE, 1)];
    writeFileSync(join(folder, 'pages-1.img'), Buffer.concat(pages));
  }

  test('a plain dump (CRIU 4.2 layout: nr_pages in field 5): argv from the stack page, the bytes written and mapped', () => {
    writeTask(dir, { lazyInFile: true, newFormat: true });
    assert.deepEqual(readTaskMemory(dir, 1), { dumpedBytes: 4 * PAGE, mappedBytes: 96 * PAGE, args: ['sleep', 'infinity'] });
  });

  test('the older layout (nr_pages in field 2) reads the same', () => {
    writeTask(dir, { lazyInFile: true, newFormat: false });
    assert.deepEqual(readTaskMemory(dir, 1).args, ['sleep', 'infinity']);
  });

  test('a --lazy-pages dump (lazy runs not in the file): no argv, never bytes of another run', () => {
    writeTask(dir, { lazyInFile: false, newFormat: true });
    assert.deepEqual(readTaskMemory(dir, 1), { dumpedBytes: PAGE, mappedBytes: 96 * PAGE, args: null });
  });

  test('a pages file of an unexpected size gives no argv rather than a wrong one', () => {
    writeTask(dir, { lazyInFile: true, newFormat: true });
    writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(3 * PAGE + 17));
    assert.equal(readTaskMemory(dir, 1).args, null);
  });
});
