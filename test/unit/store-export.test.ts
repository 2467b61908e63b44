// An export for a receiver that said what its store holds (checkpoint ls --chunks, then
// checkpoint --export --have): the have-list and its parsing, bad input included; the archive
// carrying only the chunks the receiver lacks, rebuilt on restore from them and the store; and
// every way such an archive can be wrong (a chunk changed or missing, a bad header, entries the
// marker does not list, chunks without the marker) refused whole, leaving nothing behind.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CHUNK_BYTES } from '../../src/host/chunks.ts';
import { keepCheckpoint } from '../../src/checkpoint/store/store.ts';
import { formatHaveList, parseHaveList, readHaveList, storeHaveList } from '../../src/checkpoint/store/have.ts';
import { CHUNKED_MARKER, CHUNKS_SUFFIX, writeChunkedTree } from '../../src/checkpoint/store/transfer.ts';
import { createTar } from '../../src/checkpoint/archive/tar.ts';
import { openCheckpoint } from '../../src/checkpoint/source.ts';
import type { CheckpointHost } from '../../src/runtime/types.ts';
import { PAGES, checkpointFolder } from './store-fixtures.ts';

const root = mkdtempSync(join(tmpdir(), 'stasis-export-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const hash = (c: string) => c.repeat(64);


describe('the have-list', () => {
  test('written sorted and once each; read back; a store lists its chunks', async () => {
    const text = formatHaveList([hash('b'), hash('a'), hash('b')]);
    assert.equal(text, `stasis-have 1 ${CHUNK_BYTES} 2\n${hash('a')}\n${hash('b')}\n`);
    assert.deepEqual([...parseHaveList(text, 'L')], [hash('a'), hash('b')]);
    assert.equal(formatHaveList([]), `stasis-have 1 ${CHUNK_BYTES} 0\n`);
    assert.equal(parseHaveList(formatHaveList([]), 'L').size, 0);
    assert.equal(await storeHaveList(join(root, 'no-such-dir')), `stasis-have 1 ${CHUNK_BYTES} 0\n`);
    const store = join(root, `s${++n}`);
    await keepCheckpoint(store, checkpointFolder(join(store, 'c1', 'T1'), randomBytes(3 * CHUNK_BYTES)));
    assert.equal(parseHaveList(await storeHaveList(store), 'L').size, 3);
  });

  test('anything else is refused, saying what is wrong', () => {
    const ok = `stasis-have 1 ${CHUNK_BYTES} 2\n${hash('a')}\n${hash('b')}\n`;
    const bad: [string, RegExp][] = [
      ['', /it is empty/],
      [ok.slice(0, -1), /last line is cut short/],
      [`stasis-have 1 ${CHUNK_BYTES}\n`, /first line is not/],
      [`stasis-have 2 ${CHUNK_BYTES} 0\n`, /format 2/],
      ['stasis-have 1 4096 0\n', /chunks of 4096 bytes/],
      [`stasis-have 1 ${CHUNK_BYTES} 3\n${hash('a')}\n${hash('b')}\n`, /says 3 chunks and lists 2/],
      [`stasis-have 1 ${CHUNK_BYTES} 1\n${hash('A')}\n`, /line 2 is not a SHA-256/],
      [`stasis-have 1 ${CHUNK_BYTES} 1\n${'a'.repeat(63)}\n`, /line 2 is not a SHA-256/],
      [`stasis-have 1 ${CHUNK_BYTES} 2\n${hash('b')}\n${hash('a')}\n`, /line 3 is not after line 2/],
      [`stasis-have 1 ${CHUNK_BYTES} 2\n${hash('a')}\n${hash('a')}\n`, /line 3 is not after line 2/],
      [`stasis-have 1 ${CHUNK_BYTES} 1\n${hash('a')}\n\n`, /says 1 chunks and lists 2/],
      [`stasis-have 1 ${CHUNK_BYTES} 1\r\n${hash('a')}\n`, /first line is not/],
    ];
    for (const [text, why] of bad) assert.throws(() => parseHaveList(text, 'L'), (err: Error) => why.test(err.message) && err.message.startsWith('L is not a have-list'), JSON.stringify(text));
    assert.throws(() => readHaveList(join(root, 'missing')), /--have .*missing: no such file/);
    assert.throws(() => readHaveList(root), /it is a folder/);
    const file = join(root, `have${++n}`);
    writeFileSync(file, ok);
    assert.equal(readHaveList(file).size, 2);
  });
});

/** The receiver's store holding a first checkpoint; a second one with one chunk changed, exported for it as a plain tar. */
async function setUp() {
  const dir = join(root, `d${++n}`);
  const pages1 = randomBytes(30 * CHUNK_BYTES + 77);
  const pages2 = Buffer.from(pages1);
  randomBytes(CHUNK_BYTES).copy(pages2, 7 * CHUNK_BYTES);
  const storeDir = join(dir, 'store');
  await keepCheckpoint(storeDir, checkpointFolder(join(storeDir, 'c1', 'T1'), pages1));
  const have = parseHaveList(await storeHaveList(storeDir), 'have');
  const tree = join(dir, 'tree');
  const written = writeChunkedTree(checkpointFolder(join(dir, 'second'), pages2), tree, have);
  const scratch = join(dir, 'scratch');
  mkdirSync(scratch);
  const host = { scratchDir: scratch, checkpointDir: storeDir } as unknown as CheckpointHost;
  const archive = async (from = tree) => {
    const file = join(dir, `a${++n}.tar`);
    await createTar(from, file, 'none');
    return file;
  };
  return { dir, storeDir, pages2, tree, written, scratch, host, archive };
}

const leftovers = (scratch: string) => readdirSync(scratch);

describe('an export with --have, restored', () => {
  test('one changed chunk travels; the restore rebuilds the file from it and the store', async () => {
    const s = await setUp();
    assert.equal(s.written.summary.files.length, 1);
    assert.equal(s.written.reused, 29 * CHUNK_BYTES + 77);
    assert.ok(existsSync(join(s.tree, `${PAGES}${CHUNKS_SUFFIX}`)) && !existsSync(join(s.tree, PAGES)));
    const file = await s.archive();
    assert.ok(statSync(file).size < 3 * CHUNK_BYTES, `${statSync(file).size} bytes`);
    const steps: string[] = [];
    const opened = await openCheckpoint(s.host, file, (step) => steps.push(step));
    assert.ok(readFileSync(join(opened.dir, PAGES)).equals(s.pages2));
    assert.ok(!existsSync(join(opened.dir, `${PAGES}${CHUNKS_SUFFIX}`)) && !existsSync(join(opened.dir, CHUNKED_MARKER)));
    assert.ok(steps.some((step) => /rebuilding/.test(step)), steps.join(', '));
    rmSync(opened.temp!, { recursive: true });
  });

  test('a have-list holding none of its chunks: the export is the plain folder', async () => {
    const s = await setUp();
    const out = join(s.dir, 'plain');
    const written = writeChunkedTree(join(s.dir, 'second'), out, new Set([hash('e')]));
    assert.equal(written.summary.files.length, 0);
    assert.ok(existsSync(join(out, PAGES)));
  });

  /** The archive of the tree after `spoil`, refused on restore with `why`, leaving no folder. */
  async function refused(spoil: (s: Awaited<ReturnType<typeof setUp>>) => void, why: RegExp, host?: (s: Awaited<ReturnType<typeof setUp>>) => CheckpointHost) {
    const s = await setUp();
    spoil(s);
    const file = await s.archive();
    await assert.rejects(openCheckpoint(host?.(s) ?? s.host, file, () => undefined), (err: Error) => {
      assert.match(err.message, /^cannot restore from /);
      assert.match(err.message, why);
      return true;
    });
    assert.deepEqual(leftovers(s.scratch), [], 'nothing is left of the refused archive');
  }

  const chunks = (s: { tree: string }) => join(s.tree, `${PAGES}${CHUNKS_SUFFIX}`);
  const rewrite = (path: string, change: (b: Buffer) => Buffer) => writeFileSync(path, change(readFileSync(path)));

  test('a chunk changed on the way is refused', () => refused((s) => rewrite(chunks(s), (b) => {
    b[b.length - 10] ^= 1;
    return b;
  }), /pages-1\.img\.stasis-chunks .*chunk 7 does not have its hash/));

  test('a chunk the store lacks is refused, naming the chunk and the file', () => refused(() => undefined, /pages-1\.img\.stasis-chunks .*chunk 0 \([0-9a-f]{64}\) is not in this host's checkpoint store/, (s) => {
    const other = join(s.dir, 'other-store');
    mkdirSync(other);
    return { scratchDir: s.scratch, checkpointDir: other } as unknown as CheckpointHost;
  }));

  test('a header that is not JSON, or does not fit the body, is refused', async () => {
    await refused((s) => rewrite(chunks(s), (b) => Buffer.concat([Buffer.from('{nope\n'), b.subarray(b.indexOf(0x0a) + 1)])), /its header is not JSON/);
    await refused((s) => rewrite(chunks(s), (b) => b.subarray(0, b.length - 1)), /bytes of chunks, not the/);
    await refused((s) => rewrite(chunks(s), (b) => {
      const header = JSON.parse(b.subarray(0, b.indexOf(0x0a)).toString());
      header.size += CHUNK_BYTES;
      return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), b.subarray(b.indexOf(0x0a) + 1)]);
    }), /chunk hashes do not fit its size/);
  });

  test('chunks without the marker, entries it does not list, a marker naming other files: refused', async () => {
    await refused((s) => rmSync(join(s.tree, CHUNKED_MARKER)), /holds checkpoint\/pages-1\.img\.stasis-chunks but no stasis-chunked\.json/);
    await refused((s) => writeFileSync(join(s.tree, `spec.dump${CHUNKS_SUFFIX}`), readFileSync(chunks(s))), /spec\.dump\.stasis-chunks is not one of the files/);
    await refused((s) => writeFileSync(join(s.tree, CHUNKED_MARKER), JSON.stringify({ format: 1, chunkBytes: CHUNK_BYTES, files: [{ path: 'stasis.json', size: 1, fromStore: 0, chunksFromStore: 0 }] })), /lists "stasis\.json", not a memory image/);
    await refused((s) => writeFileSync(join(s.tree, CHUNKED_MARKER), '[]'), /format undefined/);
    await refused((s) => {
      const marker = JSON.parse(readFileSync(join(s.tree, CHUNKED_MARKER), 'utf8'));
      marker.files[0].fromStore -= 1;
      writeFileSync(join(s.tree, CHUNKED_MARKER), JSON.stringify(marker));
    }, /its header and stasis-chunked\.json disagree/);
    await refused((s) => {
      rmSync(chunks(s));
      writeFileSync(join(s.tree, PAGES), 'x');
    }, /pages-1\.img\.stasis-chunks is missing/);
    await refused((s) => writeFileSync(join(s.tree, PAGES), 'whole'), /pages-1\.img is there whole too/);
  });

  test('the tree of such an archive given as a folder is refused, not read as a checkpoint', async () => {
    const s = await setUp();
    // As unpacked by hand: copies, not the links the sender's tree holds.
    const copy = join(s.dir, 'by-hand');
    cpSync(s.tree, copy, { recursive: true });
    await assert.rejects(openCheckpoint(s.host, copy, () => undefined), /^StasisError: cannot restore from .*by-hand: it holds stasis-chunked\.json, what an export with --have carries/);
    rmSync(join(copy, CHUNKED_MARKER));
    await assert.rejects(openCheckpoint(s.host, copy, () => undefined), /it holds checkpoint\/pages-1\.img\.stasis-chunks/);
    assert.ok(existsSync(chunks({ tree: copy })), "the user's folder is left as it was");
  });
});
