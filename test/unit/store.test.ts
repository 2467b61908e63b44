// The checkpoint store (src/checkpoint/store/): packing older checkpoints into
// chunks, materialising them on read (every chunk checked), removing one
// without breaking another, collecting unneeded chunks, and a store command
// killed at each of its steps: the next one finishes or undoes it, and every
// checkpoint still reads back byte for byte.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CHUNK_BYTES } from '../../src/host/chunks.ts';
import { keepCheckpoint, keptCheckpoints, keptPath, materialiseCopy, withStore } from '../../src/checkpoint/store/store.ts';
import { removeKept } from '../../src/checkpoint/store/remove.ts';
import { storeReport } from '../../src/checkpoint/store/report.ts';
import { readManifest } from '../../src/checkpoint/store/manifest.ts';
import { listChunks, storePaths, chunkPath } from '../../src/checkpoint/store/chunks.ts';
import { openFolder } from '../../src/checkpoint/source.ts';
import type { CheckpointHost } from '../../src/runtime/types.ts';
import { REPO } from '../helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'stasis-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const PAGES = 'checkpoint/pages-1.img';
const DIFF = 'rootfs-diff.tar';

/** A checkpoint folder as stasis writes one (the files the store looks at), under DIR/ID/NAME. */
function writeCheckpoint(dir: string, id: string, name: string, pages: Buffer, diff: Buffer): string {
  const path = join(dir, id, name);
  mkdirSync(join(path, 'checkpoint'), { recursive: true });
  writeFileSync(join(path, 'checkpoint', 'inventory.img'), 'inventory');
  writeFileSync(join(path, PAGES), pages);
  writeFileSync(join(path, DIFF), diff);
  writeFileSync(join(path, 'stasis.json'), JSON.stringify({ id, preDump: false, checkpointedAt: new Date(0).toISOString() }));
  writeFileSync(join(path, 'spec.dump'), '{}');
  return path;
}

/** A second memory image: `chunks` chunks of the first rewritten. */
function changed(pages: Buffer, chunks: number[]): Buffer {
  const copy = Buffer.from(pages);
  for (const c of chunks) randomBytes(CHUNK_BYTES).copy(copy, c * CHUNK_BYTES);
  return copy;
}

interface Two {
  dir: string;
  first: string;
  second: string;
  pages1: Buffer;
  pages2: Buffer;
  diff: Buffer;
}

/** Two checkpoints of c1 kept in a fresh store, 40 chunks of memory of which 2 differ, the second kept last. */
async function twoKept(opts: { keepSecond?: boolean } = {}): Promise<Two> {
  const dir = join(root, `d${++n}`);
  const pages1 = randomBytes(40 * CHUNK_BYTES + 100);
  const pages2 = changed(pages1, [3, 17]);
  const diff = randomBytes(3 * CHUNK_BYTES);
  const first = writeCheckpoint(dir, 'c1', '20260101T000000.000Z', pages1, diff);
  await keepCheckpoint(dir, first);
  const second = writeCheckpoint(dir, 'c1', '20260101T000001.000Z', pages2, diff);
  if (opts.keepSecond !== false) await keepCheckpoint(dir, second);
  return { dir, first, second, pages1, pages2, diff };
}

/** A checkpoint's files as a read gets them (materialised from the store if packed). */
async function readBack(dir: string, path: string): Promise<{ pages: Buffer; diff: Buffer }> {
  if (readManifest(path)?.state !== 'packed') return { pages: readFileSync(join(path, PAGES)), diff: readFileSync(join(path, DIFF)) };
  const into = join(root, `read-${++n}`);
  await materialiseCopy(dir, path, into, path);
  try {
    assert.ok(!existsSync(join(into, 'stasis-store.json')), 'the copy is a plain checkpoint folder');
    return { pages: readFileSync(join(into, PAGES)), diff: readFileSync(join(into, DIFF)) };
  } finally {
    rmSync(into, { recursive: true, force: true });
  }
}

const chunkFiles = (dir: string) => listChunks(storePaths(dir));

describe('the checkpoint store', () => {
  test('a newer checkpoint packs the older one: only the changed chunks are written; both read back byte for byte', async () => {
    const t = await twoKept();
    assert.equal(readManifest(t.first)!.state, 'packed');
    assert.equal(readManifest(t.second)!.state, 'materialised');
    assert.ok(!existsSync(join(t.first, PAGES)) && !existsSync(join(t.first, DIFF)), "the packed one's big files are gone");
    assert.ok(existsSync(join(t.first, 'checkpoint', 'inventory.img')), 'its small files stay');
    assert.deepEqual([...chunkFiles(t.dir).values()], [CHUNK_BYTES, CHUNK_BYTES], 'the two chunks only the first holds');
    const first = await readBack(t.dir, t.first);
    assert.ok(first.pages.equals(t.pages1) && first.diff.equals(t.diff));
    const second = await readBack(t.dir, t.second);
    assert.ok(second.pages.equals(t.pages2));
    const report = await withStore(t.dir, (store) => storeReport(store, 'c1'));
    assert.deepEqual(report.map((r) => r.state), ['packed', 'materialised']);
    assert.ok(report.every((r) => r.ownBytes >= 2 * CHUNK_BYTES && r.ownBytes < 3 * CHUNK_BYTES), JSON.stringify(report));
    assert.equal(report[0].size, report[0].ownBytes + report[0].sharedBytes);
  });

  test('a third checkpoint: the second is packed too, writing only its own changed chunks', async () => {
    const t = await twoKept();
    const third = writeCheckpoint(t.dir, 'c1', '20260101T000002.000Z', changed(t.pages2, [30]), t.diff);
    const kept = await keepCheckpoint(t.dir, third);
    assert.deepEqual(kept.packed, [t.second]);
    assert.equal(kept.chunkBytes, CHUNK_BYTES, 'chunk 30 as the second had it: its other chunks are in the third or in chunk files');
    assert.ok((await readBack(t.dir, t.first)).pages.equals(t.pages1));
    assert.ok((await readBack(t.dir, t.second)).pages.equals(t.pages2));
  });

  test('removing the newest materialises the next newest again, from its files; no chunk is left', async () => {
    const t = await twoKept();
    const removed = await withStore(t.dir, (store) => removeKept(store, keptPath(t.dir, t.second)!));
    assert.equal(removed.materialised, t.first);
    assert.equal(removed.chunkBytesWritten, 0);
    assert.ok(!existsSync(t.second));
    assert.equal(readManifest(t.first)!.state, 'materialised');
    assert.ok(readFileSync(join(t.first, PAGES)).equals(t.pages1));
    assert.equal(chunkFiles(t.dir).size, 0, 'no packed checkpoint needs a chunk file');
  });

  test('removing the older one: its chunks are collected; the newest is untouched', async () => {
    const t = await twoKept();
    const removed = await withStore(t.dir, (store) => removeKept(store, keptPath(t.dir, t.first)!));
    assert.equal(removed.materialised, null);
    assert.equal(removed.chunkBytesFreed, 2 * CHUNK_BYTES);
    assert.equal(chunkFiles(t.dir).size, 0);
    assert.ok(readFileSync(join(t.second, PAGES)).equals(t.pages2));
    assert.deepEqual(keptCheckpoints(t.dir).map((k) => k.path), [t.second]);
  });

  test("removing a materialised one that another container's packed checkpoint relies on writes those chunks first", async () => {
    const t = await twoKept();
    // c2's one checkpoint holds the same memory as c1's second: c1's packed first relies on either's files.
    const other = writeCheckpoint(t.dir, 'c2', '20260101T000005.000Z', t.pages2, t.diff);
    await keepCheckpoint(t.dir, other);
    await withStore(t.dir, (store) => removeKept(store, keptPath(t.dir, other)!));
    await withStore(t.dir, (store) => removeKept(store, keptPath(t.dir, t.second)!));
    assert.ok(readFileSync(join(t.first, PAGES)).equals(t.pages1), 'the first, materialised again, is whole');
    assert.ok(!existsSync(join(t.dir, 'c2')), "c2's emptied folder is gone");
  });

  test('a damaged or missing chunk is refused, naming the checkpoint, the file and the chunk; nothing is left behind', async () => {
    const t = await twoKept();
    const scratch = join(root, `scratch-${++n}`);
    mkdirSync(scratch);
    const host = { checkpointDir: t.dir, scratchDir: scratch } as unknown as CheckpointHost;
    const [hash] = [...chunkFiles(t.dir).keys()];
    const file = chunkPath(storePaths(t.dir), hash);
    const good = readFileSync(file);
    const bad = Buffer.from(good);
    bad[100] ^= 1;
    writeFileSync(file, bad);
    await assert.rejects(openFolder(host, t.first, t.first), (err: Error) => {
      assert.match(err.message, new RegExp(`^checkpoint ${t.first}: chunk ${hash} of ${PAGES} \\(bytes \\d+-\\d+\\) is damaged in the store`));
      return true;
    });
    rmSync(file);
    await assert.rejects(openFolder(host, t.first, t.first), new RegExp(`chunk ${hash} of ${PAGES} .* is missing from the store`));
    assert.deepEqual(readdirSync(scratch), [], 'no temporary folder is left');
    writeFileSync(file, good);
    const opened = await openFolder(host, t.first, t.first);
    assert.ok(readFileSync(join(opened.dir, PAGES)).equals(t.pages1));
    rmSync(opened.temp!, { recursive: true });
  });

  test('a packed folder outside the checkpoint directory is refused', async () => {
    const t = await twoKept();
    const elsewhere = join(root, `elsewhere-${++n}`);
    mkdirSync(elsewhere);
    const host = { checkpointDir: elsewhere, scratchDir: elsewhere } as unknown as CheckpointHost;
    await assert.rejects(openFolder(host, t.first, t.first), /is a packed checkpoint .* outside the checkpoint directory/);
    assert.equal(keptPath(t.dir, root), null);
    assert.equal(keptPath(t.dir, join(t.dir, 'c1')), null);
  });
});

/** Runs a store step in a child process that kills itself at `step`; it must die of SIGKILL. */
function killedAt(step: string, op: 'keep' | 'rm', dir: string, path: string): void {
  const child = spawnSync(process.execPath, [join(REPO, 'test', 'fixtures', 'store', 'step.ts'), op, dir, path], { env: { ...process.env, STASIS_STORE_KILL_AT: step }, encoding: 'utf8' });
  assert.equal(child.signal, 'SIGKILL', `the step ${step} was reached: ${child.stderr}`);
}

/** Whatever a kill left: after the next store command (ls), every checkpoint reads back whole; the store holds no stray file. */
async function nothingLost(t: Two, expect: { first: boolean; second: boolean }): Promise<void> {
  await withStore(t.dir, (store) => storeReport(store, null));
  if (expect.first) assert.ok((await readBack(t.dir, t.first)).pages.equals(t.pages1), 'the first reads back');
  if (expect.second) assert.ok((await readBack(t.dir, t.second)).pages.equals(t.pages2), 'the second reads back');
  for (const k of keptCheckpoints(t.dir)) {
    const manifest = readManifest(k.path)!;
    assert.equal(existsSync(join(k.path, PAGES)), manifest.state === 'materialised', `${k.path} is ${manifest.state} and its files say so`);
    assert.deepEqual(readdirSync(join(k.path, 'checkpoint')).filter((name) => name.endsWith('.rebuild')), []);
  }
  const needed = new Set(keptCheckpoints(t.dir).flatMap((k) => {
    const manifest = readManifest(k.path)!;
    return manifest.state === 'packed' ? manifest.files.flatMap((f) => f.chunks) : [];
  }));
  assert.deepEqual([...chunkFiles(t.dir).keys()].filter((hash) => !needed.has(hash)), [], 'every chunk file is needed by a packed checkpoint');
  const paths = storePaths(t.dir);
  assert.deepEqual(readdirSync(paths.tmp), [], 'no temporary chunk is left');
  assert.deepEqual(readdirSync(paths.trash), [], 'the trash is empty');
}

describe('a store command killed at each step', () => {
  for (const step of ['pack-chunk-written', 'pack-chunks-written', 'pack-recorded', 'pack-file-removed']) {
    test(`keep (packing the older one), killed at ${step}`, async () => {
      const t = await twoKept({ keepSecond: false });
      killedAt(step, 'keep', t.dir, t.second);
      await nothingLost(t, { first: true, second: true });
      // And the next checkpoint packs it as if nothing had happened.
      await keepCheckpoint(t.dir, t.second);
      assert.equal(readManifest(t.first)!.state, 'packed');
      await nothingLost(t, { first: true, second: true });
    });
  }
  for (const [step, target] of [['rematerialise-file', 'second'], ['rematerialise-files', 'second'], ['rm-chunks-written', 'second'], ['rm-moved', 'first'], ['gc-chunk-removed', 'first']] as const) {
    test(`rm of the ${target}, killed at ${step}`, async () => {
      const t = await twoKept();
      killedAt(step, 'rm', t.dir, target === 'first' ? t.first : t.second);
      const gone = !existsSync(target === 'first' ? t.first : t.second);
      await nothingLost(t, { first: target !== 'first' || !gone, second: target !== 'second' || !gone });

    });
  }
});
