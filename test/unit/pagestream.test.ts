// migrate --precopy's page stream (src/migrate/pagestream.ts): the changed pages at the freeze, or in a
// catch-up round, sent as they are found and written into the destination's copy of the pre-copy as they
// arrive. What arrives is input from elsewhere: a wrong stream is refused, and leaves no half-written file
// that could pass for the pre-copy's.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { DELTA_CHUNK, hashBase, printPages, type BaseSums } from '../../src/migrate/delta.ts';
import { sendPages } from '../../src/migrate/pagestream.ts';
import { receivePages } from '../../src/migrate/pagereceive.ts';
import { followPages } from '../../src/migrate/follow.ts';
import { appendFileSync, renameSync } from 'node:fs';
import type { PageHash } from '../../src/host/digest.ts';

const root = mkdtempSync(join(tmpdir(), 'stasis-pagestream-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const PAGES = 'checkpoint/pages-1.img';
const TAIL = Buffer.from('what follows: the tar');

/** A page hash for Node (the compiled stasis uses Bun's xxHash3): 64 bits of a seeded SHA-256. */
const testHash: PageHash = (data, seed) => createHash('sha256').update(seed.toString()).update(data).digest().readBigUInt64LE();

/** The pre-copy as the sender kept it and as the destination has it, and the checkpoint at the freeze. */
async function setUp(change: (pages: Buffer) => Buffer): Promise<{ sent: string; there: string; next: string; sums: BaseSums }> {
  const dir = join(root, String(++n));
  const sent = join(dir, 'pre');
  mkdirSync(join(sent, 'checkpoint'), { recursive: true });
  writeFileSync(join(sent, PAGES), randomBytes(40 * DELTA_CHUNK + 123));
  writeFileSync(join(sent, 'checkpoint', 'core-1.img'), 'small');
  const there = join(dir, 'there');
  cpSync(sent, there, { recursive: true });
  const next = join(dir, 'next');
  cpSync(sent, next, { recursive: true });
  writeFileSync(join(next, PAGES), change(readFileSync(join(next, PAGES))));
  const sums = (await hashBase(sent))!;
  assert.deepEqual(await hashBase(there), sums);
  return { sent, there, next, sums };
}

/** What sendPages wrote, collected, with `tail` after it (the tar, in a move). */
async function collect(send: (out: Writable) => Promise<unknown>, tail = TAIL): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const out = new Writable({ highWaterMark: 64 * 1024, write: (chunk: Buffer, _enc, done) => (chunks.push(chunk), setImmediate(done)) });
  await send(out);
  return Buffer.concat([...chunks, tail]);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The stream in small pieces, as a pipe delivers it. */
const piecewise = (data: Buffer, size = 1000) => Readable.from((function* () {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
})());

function changeSome(pages: Buffer): Buffer {
  pages[5 * DELTA_CHUNK + 7] ^= 0xff;
  pages[6 * DELTA_CHUNK] ^= 0xff;
  pages[pages.length - 1] ^= 0xff;
  return Buffer.concat([pages, randomBytes(3 * DELTA_CHUNK + 9)]);
}

describe('migrate --precopy page stream', () => {
  for (const withPrints of [false, true]) {
    test(`only the changed pages go, and the copy there becomes the new file byte for byte (${withPrints ? 'against prints' : 'against the kept copy'})`, async () => {
      const parts = await setUp(changeSome);
      const prints = withPrints ? await printPages(parts.sent, parts.sums, testHash) : null;
      // With prints the sender keeps no copy (the files are removed before the freeze).
      if (withPrints) rmSync(join(parts.sent, PAGES));
      let stats: Awaited<ReturnType<typeof sendPages>> | null = null;
      const stream = await collect(async (out) => (stats = await sendPages(parts.sent, parts.next, parts.sums, prints, out, () => undefined)));
      assert.deepEqual(stats!.files, [PAGES]);
      // Pages 5 and 6 (one run), the old last page, the three new ones and the new short last page; not the other 36.
      assert.ok(stats!.sent < 7 * DELTA_CHUNK, `${stats!.sent} bytes sent`);
      assert.equal(stats!.sent + TAIL.length, stream.length);
      const got = await receivePages(parts.there, parts.sums, piecewise(stream), 1 << 30);
      assert.deepEqual(got.files, [PAGES]);
      assert.equal(got.bytes, stats!.sent);
      assert.deepEqual(await readAll(got.rest), TAIL, 'what follows the pages is handed on whole');
      assert.ok(readFileSync(join(parts.there, PAGES)).equals(readFileSync(join(parts.next, PAGES))));
    });
  }

  test('a file that shrank is cut to its new size; an unchanged one sends its name and no pages', async () => {
    const parts = await setUp((pages) => pages.subarray(0, 30 * DELTA_CHUNK + 5));
    const stream = await collect((out) => sendPages(parts.sent, parts.next, parts.sums, null, out, () => undefined), Buffer.alloc(0));
    assert.ok(stream.length < DELTA_CHUNK + 200, `${stream.length} bytes`);
    await receivePages(parts.there, parts.sums, piecewise(stream), 1 << 30);
    assert.ok(readFileSync(join(parts.there, PAGES)).equals(readFileSync(join(parts.next, PAGES))));
  });

  test('a catch-up round names each file by its new contents on both sides, and the next round goes against that name', async () => {
    const parts = await setUp(changeSome);
    let stats: Awaited<ReturnType<typeof sendPages>> | null = null;
    const stream = await collect(async (out) => (stats = await sendPages(parts.sent, parts.next, parts.sums, null, out, () => undefined, true)), Buffer.alloc(0));
    const got = await receivePages(parts.there, parts.sums, piecewise(stream), 1 << 30, true);
    assert.deepEqual(got.sums, stats!.sums);
    assert.notEqual(got.sums[PAGES], parts.sums[PAGES]);
    // The next round, against the catch-up's dump: refused against the old name, taken against the new one.
    const third = join(root, String(++n));
    cpSync(parts.next, third, { recursive: true });
    const pages = readFileSync(join(third, PAGES));
    pages[DELTA_CHUNK] ^= 1;
    writeFileSync(join(third, PAGES), pages);
    const next = await collect((out) => sendPages(parts.next, third, { ...parts.sums, ...stats!.sums }, null, out, () => undefined), Buffer.alloc(0));
    await assert.rejects(receivePages(parts.there, parts.sums, piecewise(next), 1 << 30), /not the one the sender compared against/);
    assert.ok(existsSync(join(parts.there, PAGES)), 'a refused header writes nothing');
    await receivePages(parts.there, { ...parts.sums, ...got.sums }, piecewise(next), 1 << 30);
    assert.ok(readFileSync(join(parts.there, PAGES)).equals(pages));
  });

  describe('a wrong stream is refused', () => {
    /** A stream with one run (index, count, the bytes) for PAGES, from the header `head`. */
    const forged = (head: object, runs: Buffer[], end = true) => Buffer.concat([
      Buffer.from(`STASIS-PAGES 1\n${JSON.stringify(head)}\n`),
      ...runs,
      ...(end ? [Buffer.alloc(8), Buffer.from('\n')] : []),
    ]);
    const run = (index: number, count: number, bytes = count * DELTA_CHUNK) => {
      const h = Buffer.alloc(8);
      h.writeUInt32LE(index, 0);
      h.writeUInt32LE(count, 4);
      return Buffer.concat([h, Buffer.alloc(bytes, 7)]);
    };
    const cases: Array<[string, (sums: BaseSums) => Buffer, RegExp, boolean]> = [
      ['not a page stream', () => Buffer.from('ustar...'), /does not start with the page section/, false],
      ['an empty input', () => Buffer.alloc(0), /the input is empty/, false],
      ['a file the pre-copy here has no sum for', (s) => forged({ path: 'checkpoint/core-1.img', size: 10, base: s[PAGES] }, []), /is not a file of the pre-copy here/, false],
      ['a path out of the folder', (s) => forged({ path: '../../etc/passwd', size: 10, base: s[PAGES] }, []), /is not a file of the pre-copy here/, false],
      ['another base', () => forged({ path: PAGES, size: 10, base: 'f'.repeat(64) }, []), /not the one the sender compared against/, false],
      ['pages past the end of the file', (s) => forged({ path: PAGES, size: 2 * DELTA_CHUNK, base: s[PAGES] }, [run(1, 2)]), /not increasing pages/, true],
      ['pages out of order', (s) => forged({ path: PAGES, size: 41 * DELTA_CHUNK, base: s[PAGES] }, [run(5, 1), run(3, 1)]), /not increasing pages/, true],
      ['a stream cut in a run', (s) => forged({ path: PAGES, size: 41 * DELTA_CHUNK, base: s[PAGES] }, [run(5, 2).subarray(0, 100)], false), /ends early/, true],
      ['a stream cut after a file', (s) => Buffer.concat([forged({ path: PAGES, size: 41 * DELTA_CHUNK, base: s[PAGES] }, [run(5, 1), Buffer.alloc(8)], false)]), /ends early/, true],
      ['a file sent twice', (s) => Buffer.concat([forged({ path: PAGES, size: 41 * DELTA_CHUNK, base: s[PAGES] }, [Buffer.alloc(8)], false), Buffer.from(`${JSON.stringify({ path: PAGES, size: 1, base: s[PAGES] })}\n`)]), /comes twice/, true],
      ['a header that is not JSON', () => Buffer.from('STASIS-PAGES 1\n{nope\n'), /not JSON/, false],
    ];
    for (const [name, make, why, written] of cases) {
      test(name, async () => {
        const parts = await setUp((pages) => pages);
        const before = readFileSync(join(parts.there, PAGES));
        await assert.rejects(receivePages(parts.there, parts.sums, piecewise(make(parts.sums)), 1 << 30), why);
        // A file written into (or about to be) is removed: nothing may take it for the pre-copy's.
        if (written) assert.ok(!existsSync(join(parts.there, PAGES)), 'the half-written file is gone');
        else assert.ok(readFileSync(join(parts.there, PAGES)).equals(before), 'nothing written');
      });
    }

    test('a file that would grow past the limit', async () => {
      const parts = await setUp((pages) => pages);
      const stream = forged({ path: PAGES, size: 1 << 20, base: parts.sums[PAGES] }, []);
      await assert.rejects(receivePages(parts.there, parts.sums, piecewise(stream), 64 * 1024), /would grow the checkpoint past/);
      assert.ok(!existsSync(join(parts.there, PAGES)));
    });
  });

  test('a receiver that goes away ends the send with an error, not a wait', async () => {
    const parts = await setUp(changeSome);
    const out = new PassThrough({ highWaterMark: 1024 });
    // Nobody reads: the pipe fills; then the reader is gone.
    setImmediate(() => out.destroy());
    await assert.rejects(sendPages(parts.sent, parts.next, parts.sums, null, out, () => undefined), /the receiver went away/);
  });
});

// Version 2 (src/migrate/follow.ts): the pages of CRIU's page images compared and sent while the dump
// still writes them. The test plays CRIU: it says where it dumps, appends to the page image, and moves
// the folder into place at the end, as checkpointHeld does; each step waits for an event, not a clock.
describe('migrate --precopy page stream, followed while the dump is written (version 2)', () => {
  const OTHER = 'checkpoint/pages-2.img';
  const DIFF = 'rootfs-diff.tar';

  /** The pre-copy here and there (two page images and a large non-image file), and the new contents of each. */
  async function setUpFollow() {
    const dir = join(root, String(++n));
    const sent = join(dir, 'pre');
    mkdirSync(join(sent, 'checkpoint'), { recursive: true });
    writeFileSync(join(sent, PAGES), randomBytes(400 * DELTA_CHUNK));
    writeFileSync(join(sent, OTHER), randomBytes(20 * DELTA_CHUNK));
    writeFileSync(join(sent, DIFF), randomBytes(30 * DELTA_CHUNK + 11));
    writeFileSync(join(sent, 'checkpoint', 'core-1.img'), 'small');
    const there = join(dir, 'there');
    cpSync(sent, there, { recursive: true });
    const sums = (await hashBase(sent))!;
    const pages = readFileSync(join(sent, PAGES));
    // The first 300 pages changed (more than one batch: they go before the dump ends), then the rest as it was, then 5 new pages.
    for (let page = 0; page < 300; page++) pages[page * DELTA_CHUNK + 1] ^= 0xff;
    const newPages = Buffer.concat([pages, randomBytes(5 * DELTA_CHUNK)]);
    const other = readFileSync(join(sent, OTHER));
    other[3 * DELTA_CHUNK] ^= 1;
    const diff = readFileSync(join(sent, DIFF));
    diff[diff.length - 1] ^= 1;
    return { dir, sent, there, sums, newPages, other, diff };
  }

  /** Plays a dump into `work` (then renamed to `final`), the page image written in two parts, the second once the follower has sent some of the first. */
  async function dump(parts: Awaited<ReturnType<typeof setUpFollow>>, onDumping: (dir: string) => void, firstSent: Promise<void>): Promise<string> {
    const work = join(parts.dir, '.next.partial');
    const final = join(parts.dir, 'next');
    mkdirSync(join(work, 'checkpoint'), { recursive: true });
    writeFileSync(join(work, DIFF), parts.diff);
    writeFileSync(join(work, 'checkpoint', 'core-1.img'), 'small');
    onDumping(work);
    appendFileSync(join(work, PAGES), parts.newPages.subarray(0, 350 * DELTA_CHUNK + 100));
    await firstSent;
    appendFileSync(join(work, PAGES), parts.newPages.subarray(350 * DELTA_CHUNK + 100));
    writeFileSync(join(work, OTHER), parts.other);
    renameSync(work, final);
    return final;
  }

  for (const withPrints of [false, true]) {
    test(`the pages go while the dump runs, and the copy there becomes each new file byte for byte (${withPrints ? 'against prints' : 'against the kept copy'})`, async () => {
      const parts = await setUpFollow();
      const prints = withPrints ? await printPages(parts.sent, parts.sums, testHash) : null;
      if (withPrints) for (const path of [PAGES, OTHER, DIFF]) rmSync(join(parts.sent, path));
      const pipe = new PassThrough();
      let sentFirst: () => void = () => undefined;
      const firstSent = new Promise<void>((resolve) => (sentFirst = resolve));
      let done: (dir: string) => void = () => undefined;
      const follower = followPages(parts.sent, new Promise<string>((resolve) => (done = resolve)), parts.sums, prints, pipe, (sent) => {
        if (sent > 0) sentFirst();
      });
      const received = receivePages(parts.there, parts.sums, pipe, 1 << 30);
      // The dump's second part waits until pages of its first have gone: they went while it ran.
      done(await dump(parts, follower.onDumping, firstSent));
      const stats = await follower.result;
      pipe.end(TAIL);
      const got = await received;
      assert.deepEqual([...got.files].sort(), [PAGES, OTHER, DIFF].sort());
      assert.deepEqual([...stats.files].sort(), [...got.files].sort());
      assert.equal(got.bytes, stats.sent);
      assert.deepEqual(await readAll(got.rest), TAIL);
      assert.ok(readFileSync(join(parts.there, PAGES)).equals(parts.newPages));
      assert.ok(readFileSync(join(parts.there, OTHER)).equals(parts.other));
      assert.ok(readFileSync(join(parts.there, DIFF)).equals(parts.diff));
      // 300 changed pages and 5 new ones, a page of each other file, and no unchanged page.
      assert.ok(stats.sent < 308 * DELTA_CHUNK + 2000, `${stats.sent} bytes sent`);
      assert.ok(stats.sent > 305 * DELTA_CHUNK, `${stats.sent} bytes sent`);
    });
  }

  test('a catch-up round followed: both sides chain the same names, and the prints taken on the way are those of the new files', async () => {
    const parts = await setUpFollow();
    const prints = await printPages(parts.sent, parts.sums, testHash);
    const pipe = new PassThrough();
    let done: (dir: string) => void = () => undefined;
    const follower = followPages(parts.sent, new Promise<string>((resolve) => (done = resolve)), parts.sums, prints, pipe, () => undefined, true);
    const received = receivePages(parts.there, parts.sums, pipe, 1 << 30, true);
    done(await dump(parts, follower.onDumping, Promise.resolve()));
    const stats = await follower.result;
    pipe.end();
    const got = await received;
    assert.deepEqual(got.sums, stats.sums);
    assert.equal(Object.keys(got.sums).length, 3);
    const again = await printPages(join(parts.dir, 'next'), stats.sums, testHash, prints.seed);
    // Unchanged blocks of 16 pages were told by their block print, their page prints taken from the pre-copy's.
    assert.deepEqual(stats.prints!.files, again.files);
    assert.deepEqual(stats.prints!.blocks, again.blocks);
    assert.equal(again.blocks[PAGES].length, 25);
  });

  test('a dump taken again before any page image appeared is followed; once pages went, the send fails', async () => {
    const parts = await setUpFollow();
    const pipe = new PassThrough();
    let done: (dir: string) => void = () => undefined;
    const follower = followPages(parts.sent, new Promise<string>((resolve) => (done = resolve)), parts.sums, null, pipe, () => undefined);
    const received = receivePages(parts.there, parts.sums, pipe, 1 << 30);
    // The first attempt fails before CRIU wrote a page (a seize timeout): its folder goes.
    follower.onDumping(join(parts.dir, 'first-attempt'));
    done(await dump(parts, follower.onDumping, Promise.resolve()));
    await follower.result;
    pipe.end();
    await received;
    assert.ok(readFileSync(join(parts.there, PAGES)).equals(parts.newPages));

    const second = await setUpFollow();
    const out = new PassThrough();
    let sentFirst: () => void = () => undefined;
    const firstSent = new Promise<void>((resolve) => (sentFirst = resolve));
    let finish: (dir: string) => void = () => undefined;
    const stuck = followPages(second.sent, new Promise<string>((resolve) => (finish = resolve)), second.sums, null, out, (sent) => sent > 0 && sentFirst());
    out.resume();
    const work = join(second.dir, 'w');
    mkdirSync(join(work, 'checkpoint'), { recursive: true });
    stuck.onDumping(work);
    writeFileSync(join(work, PAGES), second.newPages);
    await firstSent;
    // The second attempt (its pages would not be those the destination got), then the dump's end.
    stuck.onDumping(join(second.dir, 'w2'));
    finish(work);
    await assert.rejects(stuck.result, /taken again after its pages had begun to go/);
  });

  test('a dump that fails ends the follower with its error', async () => {
    const parts = await setUpFollow();
    const out = new PassThrough();
    out.resume();
    let fail: (err: Error) => void = () => undefined;
    const follower = followPages(parts.sent, new Promise<string>((_resolve, reject) => (fail = reject)), parts.sums, null, out, () => undefined);
    follower.onDumping(join(parts.dir, 'nowhere'));
    fail(new Error('CRIU failed'));
    await assert.rejects(follower.result, /CRIU failed/);
  });

  describe('a wrong section is refused', () => {
    const open = (path: string, base: string) => Buffer.from(`F${JSON.stringify({ path, base })}\n`);
    const run = (no: number, index: number, count: number) => {
      const h = Buffer.alloc(13);
      h.write('R', 0, 'latin1');
      h.writeUInt32LE(no, 1);
      h.writeUInt32LE(index, 5);
      h.writeUInt32LE(count, 9);
      return Buffer.concat([h, Buffer.alloc(count * DELTA_CHUNK, 7)]);
    };
    const end = (no: number, size: number) => {
      const h = Buffer.alloc(13);
      h.write('E', 0, 'latin1');
      h.writeUInt32LE(no, 1);
      h.writeBigUInt64LE(BigInt(size), 5);
      return h;
    };
    const section = (...records: Buffer[]) => Buffer.concat([Buffer.from('STASIS-PAGES 2\n'), ...records]);
    const cases: Array<[string, (sums: BaseSums) => Buffer, RegExp, boolean]> = [
      ['pages of a file not opened', () => section(run(0, 1, 1), Buffer.from('Z')), /which was not opened/, false],
      ['pages after its end', (s) => section(open(PAGES, s[PAGES]), end(0, 41 * DELTA_CHUNK), run(0, 1, 1), Buffer.from('Z')), /which has ended/, true],
      ['pages out of order', (s) => section(open(PAGES, s[PAGES]), run(0, 5, 1), run(0, 3, 1)), /not increasing pages/, true],
      ['a size that leaves out pages sent', (s) => section(open(PAGES, s[PAGES]), run(0, 5, 2), end(0, 6 * DELTA_CHUNK)), /leaves out pages sent/, true],
      ['a file without its end', (s) => section(open(PAGES, s[PAGES]), run(0, 5, 1), Buffer.from('Z')), /has no end/, true],
      ['an unknown record', (s) => section(open(PAGES, s[PAGES]), Buffer.from('Q')), /an unknown record/, true],
      ['a section cut in a run', (s) => section(open(PAGES, s[PAGES]), run(0, 5, 2).subarray(0, 200)), /ends early/, true],
      ['another base', () => section(open(PAGES, 'f'.repeat(64))), /not the one the sender compared against/, false],
      ['a file twice', (s) => section(open(PAGES, s[PAGES]), open(PAGES, s[PAGES])), /comes twice/, true],
      ['pages that grow the file past the limit', (s) => section(open(PAGES, s[PAGES]), run(0, 60, 1)), /would grow the checkpoint past/, true],
    ];
    for (const [name, make, why, written] of cases) {
      test(name, async () => {
        const parts = await setUp((pages) => pages);
        const before = readFileSync(join(parts.there, PAGES));
        await assert.rejects(receivePages(parts.there, parts.sums, piecewise(make(parts.sums)), 16 * DELTA_CHUNK), why);
        if (written) assert.ok(!existsSync(join(parts.there, PAGES)), 'the half-written file is gone');
        else assert.ok(readFileSync(join(parts.there, PAGES)).equals(before), 'nothing written');
      });
    }
  });
});
