// migrate --precopy's dump at the freeze through stasis's page server (src/migrate/pageserver.ts):
// the protocol as CRIU speaks it (both header widths), what a broken or hostile peer gets (refused,
// nothing half-written), and the follower fed by it (src/migrate/follow.ts, served): the copy
// there becomes each new page image, byte for byte. The test against real CRIU is
// test/integration/pageserver.test.ts.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { DELTA_CHUNK, hashBase, printPages } from '../../src/migrate/delta.ts';
import { followPages } from '../../src/migrate/follow.ts';
import { receivePages } from '../../src/migrate/pagereceive.ts';
import { PageServerCut, pageServerSetting, servePages, servePagesWhen, type PageSink } from '../../src/migrate/pageserver.ts';
import { socketOwner } from '../../src/host/procfs.ts';
import type { PageHash } from '../../src/host/digest.ts';

const root = mkdtempSync(join(tmpdir(), 'stasis-pageserver-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const PAGES = 'checkpoint/pages-1.img';
const OTHER = 'checkpoint/pages-2.img';
const NEW = 'checkpoint/pages-3.img';
const DIFF = 'rootfs-diff.tar';
const TAIL = Buffer.from('what follows: the tar');
const testHash: PageHash = (data, seed) => createHash('sha256').update(seed.toString()).update(data).digest().readBigUInt64LE();

/** One command as CRIU 4.2 sends it (32 bytes), or as CRIU before it did (24). */
function command(cmd: number, pages: number, vaddr: bigint, dst: bigint, wide = true): Buffer {
  const b = Buffer.alloc(wide ? 32 : 24);
  b.writeUInt32LE(cmd, 0);
  if (wide) b.writeBigUInt64LE(BigInt(pages), 8);
  else b.writeUInt32LE(pages, 4);
  b.writeBigUInt64LE(vaddr, wide ? 16 : 8);
  b.writeBigUInt64LE(dst, wide ? 24 : 16);
  return b;
}
const OPEN2 = 4;
const ADD_F = 6;
const HOLE = 2;
const CLOSE = 0x1023;
const PRESENT = 4 << 16;
const pid = (id: number) => (BigInt(id) << 8n) | 1n;

/** A sink that keeps what it was handed. */
function keeper(restart = false): PageSink & { got: Map<string, Buffer[]>; ends: Map<string, number> } {
  const got = new Map<string, Buffer[]>();
  const ends = new Map<string, number>();
  return {
    got,
    ends,
    async pages(path, bytes) {
      got.set(path, [...(got.get(path) ?? []), Buffer.from(bytes)]);
    },
    async end(path, size) {
      ends.set(path, size);
    },
    restart: () => restart,
  };
}

/** Connects as root, sends `data` (in pieces), and returns what came back once the server closed. */
function talk(port: number, data: Buffer, closeAfter = false): Promise<Buffer> {
  return new Promise((resolve) => {
    const back: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => {
      for (let at = 0; at < data.length; at += 1000) s.write(data.subarray(at, at + 1000));
      if (closeAfter) s.end();
    });
    s.on('data', (d: Buffer) => back.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(back)));
  });
}

async function served(sink: PageSink) {
  const images = join(root, `images-${++n}`);
  mkdirSync(images);
  const server = await servePages(() => images, sink);
  return { images, server };
}

describe('the page server (CRIU\'s protocol, the receiving side)', () => {
  for (const wide of [true, false]) {
    test(`a dump's commands give its pagemap images and its pages in order (${wide ? 'CRIU 4.2\'s 32-byte header' : 'the 24-byte header before it'})`, async () => {
      const sink = keeper();
      const { images, server } = await served(sink);
      const first = randomBytes(3 * 4096);
      const second = randomBytes(4096);
      const back = await talk(server.port, Buffer.concat([
        command(OPEN2, 0, 0n, pid(1), wide),
        command(ADD_F | PRESENT, 3, 0x400000n, pid(1), wide), first,
        command(ADD_F | PRESENT, 1, 0x7fff0000n, pid(1), wide), second,
        command(OPEN2, 0, 0n, pid(7), wide),
        command(CLOSE, 0, 0n, 0n, wide),
      ]));
      await server.done;
      server.close();
      // One byte (no parent) per open, then the close's four.
      assert.deepEqual([...back], [0, 0, 0, 0, 0, 0]);
      assert.deepEqual(readdirSync(images).sort(), ['pagemap-1.img', 'pagemap-7.img']);
      assert.ok(Buffer.concat(sink.got.get(PAGES)!).equals(Buffer.concat([first, second])));
      assert.deepEqual([...sink.ends], [[PAGES, 4 * 4096], [OTHER, 0]]);
      // The image: both magics, pagemap_head { pages_id 1 }, then each entry { vaddr, 0, flags, nr_pages }.
      const image = readFileSync(join(images, 'pagemap-1.img'));
      assert.equal(image.readUInt32LE(0), 0x54564319);
      assert.equal(image.readUInt32LE(4), 0x56084025);
      assert.equal(image.subarray(8).toString('hex'), '02000000' + '0801' + '0b000000' + '0880808002' + '1000' + '2004' + '2803' + '0c000000' + '088080fcff07' + '1000' + '2004' + '2801');
      assert.equal(readFileSync(join(images, 'pagemap-7.img')).subarray(8).toString('hex'), '020000000802');
    });
  }

  const refusals: [string, Buffer, RegExp][] = [
    ['a command a dump does not send (a lazy page request)', Buffer.concat([command(OPEN2, 0, 0n, pid(1)), command(7, 1, 0n, pid(1))]), /command 7, which a dump does not send/],
    ['pages said to be in a parent dump', Buffer.concat([command(OPEN2, 0, 0n, pid(1)), command(HOLE, 1, 0n, pid(1))]), /parent dump/],
    ['an image that is neither a process\'s nor shared memory\'s', command(OPEN2, 0, 0n, (1n << 8n) | 9n), /neither a process's nor shared memory's/],
    ['a run of more pages than any memory', Buffer.concat([command(OPEN2, 0, 0n, pid(1)), command(ADD_F | PRESENT, 2 ** 29, 0n, pid(1))]), /a run of 536870912 pages/],
  ];
  for (const [what, data, error] of refusals) {
    test(`refused: ${what}; nothing of it is handed on`, async () => {
      const sink = keeper();
      const { server } = await served(sink);
      await talk(server.port, data);
      await assert.rejects(server.done, error);
      server.close();
      assert.equal(sink.got.size, 0);
    });
  }

  test('a connection cut in the middle of pages is a PageServerCut (CRIU\'s own failure says why), not a dump', async () => {
    const sink = keeper();
    const { server } = await served(sink);
    await talk(server.port, Buffer.concat([command(OPEN2, 0, 0n, pid(1)), command(ADD_F | PRESENT, 4, 0n, pid(1)), randomBytes(5000)]), true);
    server.close();
    await assert.rejects(server.done, (err: unknown) => err instanceof PageServerCut && /in the middle of pages/.test(String(err)));
    assert.deepEqual([...sink.ends], []);
  });

  test('a dump taken again before any page went (its first connection cut) is served afresh', async () => {
    const sink = keeper(true);
    const { server } = await served(sink);
    await talk(server.port, command(OPEN2, 0, 0n, pid(1)), true);
    const back = await talk(server.port, Buffer.concat([command(OPEN2, 0, 0n, pid(1)), command(ADD_F | PRESENT, 1, 0n, pid(1)), Buffer.alloc(4096, 7), command(CLOSE, 0, 0n, 0n)]));
    assert.equal(back.length, 5);
    server.close();
    await server.done;
    assert.deepEqual([...sink.ends], [[PAGES, 4096]]);
  });

  test('a second connection (a dump taken again) is refused once the first one\'s pages went', async () => {
    const { server } = await served(keeper(false));
    const first = talk(server.port, command(OPEN2, 0, 0n, pid(1)));
    const back = await talk(server.port, command(OPEN2, 0, 0n, pid(1)));
    await assert.rejects(server.done, /taken again after its pages had begun to go/);
    server.close();
    assert.equal(back.length, 0);
    await first;
  });

  test('closed with nothing served, it settles', async () => {
    const { server } = await served(keeper());
    server.close();
    await server.done;
  });

  test('socketOwner reads the uid of the socket from 127.0.0.1:LOCAL to 127.0.0.1:REMOTE in /proc/net/tcp', () => {
    const table = join(root, 'tcp');
    writeFileSync(table, [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:9C40 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 11 1 0 20 4 30 10 -1',
      '   1: 0100007F:D431 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 65534        0 12 1 0 20 4 30 10 -1',
    ].join('\n'));
    assert.equal(socketOwner(0xd431, 0x9c40, table), 65534);
    assert.equal(socketOwner(0x9c40, 0xd431, table), 0);
    assert.equal(socketOwner(1, 2, table), null);
  });
});

describe('when the freeze\'s dump goes through the page server (STASIS_PAGE_SERVER)', () => {
  test('always and never decide; auto (or unset) serves only where MemAvailable is below twice the container\'s memory', () => {
    const GiB = 1 << 30;
    assert.equal(servePagesWhen(pageServerSetting('always'), () => GiB, () => 100 * GiB), true);
    assert.equal(servePagesWhen(pageServerSetting('never'), () => GiB, () => GiB / 2), false);
    assert.equal(servePagesWhen(pageServerSetting(undefined), () => GiB, () => 100 * GiB), false);
    assert.equal(servePagesWhen(pageServerSetting('auto'), () => GiB, () => 1.5 * GiB), true);
    assert.equal(servePagesWhen(pageServerSetting(''), () => GiB, () => 0), false, 'MemAvailable unread: as before');
  });

  test('any other value is refused, before a move starts', () => {
    assert.throws(() => pageServerSetting('yes'), /STASIS_PAGE_SERVER is "yes": it is always, never or auto/);
  });
});

describe('the follower fed by the page server (migrate --precopy at the freeze)', () => {
  for (const withPrints of [false, true]) {
    test(`the changed pages go as they are handed over, a new page image is written here, and the copy there becomes each file (${withPrints ? 'against prints' : 'against the kept copy'})`, async () => {
      const dir = join(root, `follow-${++n}`);
      const sent = join(dir, 'pre');
      mkdirSync(join(sent, 'checkpoint'), { recursive: true });
      writeFileSync(join(sent, PAGES), randomBytes(400 * DELTA_CHUNK));
      writeFileSync(join(sent, OTHER), randomBytes(20 * DELTA_CHUNK));
      writeFileSync(join(sent, DIFF), randomBytes(30 * DELTA_CHUNK + 11));
      const there = join(dir, 'there');
      cpSync(sent, there, { recursive: true });
      const sums = (await hashBase(sent))!;
      const pages = readFileSync(join(sent, PAGES));
      for (let page = 0; page < 300; page += 3) pages[page * DELTA_CHUNK + 1] ^= 0xff;
      const newPages = Buffer.concat([pages, randomBytes(5 * DELTA_CHUNK)]);
      const other = readFileSync(join(sent, OTHER)).subarray(0, 12 * DELTA_CHUNK);
      const fresh = randomBytes(7 * DELTA_CHUNK);
      const diff = readFileSync(join(sent, DIFF));
      diff[0] ^= 1;
      const prints = withPrints ? await printPages(sent, sums, testHash) : null;
      if (withPrints) for (const path of [PAGES, OTHER, DIFF]) rmSync(join(sent, path));

      const pipe = new PassThrough();
      let done: (dir: string) => void = () => undefined;
      const follower = followPages(sent, new Promise<string>((resolve) => (done = resolve)), sums, prints, pipe, () => undefined, false, true);
      const received = receivePages(there, sums, pipe, 1 << 30);
      const work = join(dir, '.next.partial');
      mkdirSync(join(work, 'checkpoint'), { recursive: true });
      writeFileSync(join(work, DIFF), diff);
      follower.onDumping(work);
      assert.equal(follower.imagesDir(), join(work, 'checkpoint'));
      const sink = follower.sink!;
      // In pieces that end anywhere, as a socket hands them.
      for (let at = 0; at < newPages.length; at += 100_003) await sink.pages(PAGES, newPages.subarray(at, at + 100_003), at);
      await sink.end(PAGES, newPages.length);
      await sink.pages(OTHER, other, 0);
      await sink.end(OTHER, other.length);
      await sink.pages(NEW, fresh, 0);
      await sink.end(NEW, fresh.length);
      assert.equal(sink.restart(), false, 'pages went: the dump may not start again');
      const final = join(dir, 'next');
      renameSync(work, final);
      done(final);
      const stats = await follower.result;
      pipe.end(TAIL);
      const got = await received;
      assert.deepEqual([...stats.files].sort(), [PAGES, OTHER, DIFF].sort());
      assert.deepEqual([...got.files].sort(), [...stats.files].sort());
      assert.deepEqual(await Readable.from(got.rest).toArray().then((c) => Buffer.concat(c)), TAIL);
      assert.ok(readFileSync(join(there, PAGES)).equals(newPages));
      assert.ok(readFileSync(join(there, OTHER)).equals(other));
      assert.ok(readFileSync(join(there, DIFF)).equals(diff));
      // The page image the pre-copy did not have is here, whole, for the tar; the others never touched a file.
      assert.ok(readFileSync(join(final, NEW)).equals(fresh));
      assert.equal(existsSync(join(final, PAGES)), false);
      // 100 changed pages and 5 new ones, one of the diff, and no unchanged page.
      assert.ok(stats.sent < 106 * DELTA_CHUNK + 2000, `${stats.sent} bytes sent`);
      assert.ok(stats.sent > 105 * DELTA_CHUNK, `${stats.sent} bytes sent`);
    });
  }
});
