// migrate --precopy's delta (src/migrate/delta.ts): what changed since the pre-copy, rebuilt and
// checked on the receiving side. A delta is input from elsewhere: a wrong one is refused whole.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DELTA_CHUNK, DELTA_CHUNK_OLD, DELTA_SUFFIX, applyDeltas, hashBase, printPages, writeDelta } from '../../src/migrate/delta.ts';
import type { PageHash } from '../../src/host/digest.ts';

const REPO = join(fileURLToPath(import.meta.url), '..', '..', '..');
const BUN = join(REPO, 'node_modules', '@oven', 'bun-linux-x64', 'bin', 'bun');

const root = mkdtempSync(join(tmpdir(), 'stasis-delta-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A first checkpoint, a second one with `change` applied, and the delta between them. */
function setUp(change: (second: string) => void, unit = DELTA_CHUNK): { first: string; second: string; delta: string; stats: ReturnType<typeof writeDelta> } {
  const dir = join(root, String(++n));
  const first = join(dir, 'first');
  const second = join(dir, 'second');
  mkdirSync(join(first, 'checkpoint'), { recursive: true });
  writeFileSync(join(first, 'checkpoint', 'pages-1.img'), randomBytes(40 * DELTA_CHUNK + 123));
  writeFileSync(join(first, 'checkpoint', 'core-1.img'), 'small');
  writeFileSync(join(first, 'config.dump'), '{}');
  cpSync(first, second, { recursive: true });
  change(second);
  const delta = join(dir, 'delta');
  return { first, second, delta, stats: writeDelta(first, second, delta, unit) };
}

/** The receiving side: the delta as unpacked, rebuilt against its copy of the first. */
function received(parts: { first: string; delta: string }): string {
  const copy = `${parts.delta}-received`;
  cpSync(parts.delta, copy, { recursive: true });
  applyDeltas(parts.first, copy);
  return copy;
}

describe('migrate --precopy deltas', () => {
  test('a few changed pages travel as their chunks; the rebuilt folder is the second checkpoint, byte for byte', () => {
    const parts = setUp((second) => {
      const pages = join(second, 'checkpoint', 'pages-1.img');
      const bytes = readFileSync(pages);
      bytes[5 * DELTA_CHUNK + 7] ^= 0xff;
      bytes[bytes.length - 1] ^= 0xff;
      writeFileSync(pages, Buffer.concat([bytes, randomBytes(3 * DELTA_CHUNK)]));
      writeFileSync(join(second, 'checkpoint', 'core-1.img'), 'changed');
      writeFileSync(join(second, 'checkpoint', 'new.img'), 'new');
    });
    assert.ok(existsSync(join(parts.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`)));
    assert.ok(!existsSync(join(parts.delta, 'checkpoint', 'pages-1.img')));
    // Chunk 5, the old last chunk and the three new ones (plus the header and the small files).
    assert.ok(parts.stats.sent < 6 * DELTA_CHUNK, `${parts.stats.sent} bytes sent of ${parts.stats.total}`);
    const copy = received(parts);
    for (const name of ['pages-1.img', 'core-1.img', 'new.img']) {
      assert.deepEqual(readFileSync(join(copy, 'checkpoint', name)), readFileSync(join(parts.second, 'checkpoint', name)), name);
    }
    assert.deepEqual(readdirSync(join(copy, 'checkpoint')).sort(), ['core-1.img', 'new.img', 'pages-1.img']);
  });

  test('a shorter file, and an unchanged one (a header and no chunks)', () => {
    const shorter = setUp((second) => {
      const pages = join(second, 'checkpoint', 'pages-1.img');
      writeFileSync(pages, readFileSync(pages).subarray(0, 10 * DELTA_CHUNK + 5));
    });
    assert.deepEqual(readFileSync(join(received(shorter), 'checkpoint', 'pages-1.img')), readFileSync(join(shorter.second, 'checkpoint', 'pages-1.img')));
    const same = setUp(() => undefined);
    assert.ok(statSync(join(same.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`)).size < 200);
    assert.deepEqual(readFileSync(join(received(same), 'checkpoint', 'pages-1.img')), readFileSync(join(same.first, 'checkpoint', 'pages-1.img')));
  });

  test("in an older stasis's 64 KiB units (what goes to one, which reads no other): one changed byte costs one unit, and is rebuilt", () => {
    const old = setUp((second) => {
      const pages = join(second, 'checkpoint', 'pages-1.img');
      const bytes = readFileSync(pages);
      bytes[DELTA_CHUNK_OLD + 9] ^= 0xff;
      writeFileSync(pages, bytes);
    }, DELTA_CHUNK_OLD);
    const file = join(old.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`);
    assert.equal(JSON.parse(readFileSync(file, 'utf8').split('\n')[0]).chunk, DELTA_CHUNK_OLD);
    assert.ok(statSync(file).size > DELTA_CHUNK_OLD && statSync(file).size < DELTA_CHUNK_OLD + 500, `${statSync(file).size} bytes`);
    assert.deepEqual(readFileSync(join(received(old), 'checkpoint', 'pages-1.img')), readFileSync(join(old.second, 'checkpoint', 'pages-1.img')));
  });

  test('a file most of whose pages changed travels whole, not as a delta', () => {
    const most = setUp((second) => {
      const pages = join(second, 'checkpoint', 'pages-1.img');
      const bytes = readFileSync(pages);
      for (let at = 0; at < bytes.length; at += DELTA_CHUNK * 4) for (let page = 0; page < 3; page++) if (at + page * DELTA_CHUNK < bytes.length) bytes[at + page * DELTA_CHUNK] ^= 0xff;
      writeFileSync(pages, bytes);
    });
    assert.ok(!existsSync(join(most.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`)), 'no delta file');
    assert.deepEqual(readFileSync(join(received(most), 'checkpoint', 'pages-1.img')), readFileSync(join(most.second, 'checkpoint', 'pages-1.img')));
  });

  const refused = (name: string, damage: (deltaFile: string, parts: { first: string; delta: string }) => void, why: RegExp) => {
    test(`refused: ${name}`, () => {
      const parts = setUp((second) => {
        const pages = join(second, 'checkpoint', 'pages-1.img');
        const bytes = readFileSync(pages);
        bytes[3 * DELTA_CHUNK] ^= 1;
        writeFileSync(pages, bytes);
      });
      const copy = `${parts.delta}-received`;
      cpSync(parts.delta, copy, { recursive: true });
      damage(join(copy, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`), parts);
      const real = join(copy, 'checkpoint', 'pages-1.img');
      const before = existsSync(real) ? readFileSync(real) : null;
      assert.throws(() => applyDeltas(parts.first, copy), why);
      assert.deepEqual(existsSync(real) ? readFileSync(real) : null, before, 'nothing rebuilt under the real name');
      assert.deepEqual(readdirSync(join(copy, 'checkpoint')).filter((f) => f.includes('rebuild')), []);
    });
  };
  const header = (file: string) => {
    const text = readFileSync(file);
    const end = text.indexOf(0x0a);
    return { json: JSON.parse(text.subarray(0, end).toString()), body: text.subarray(end + 1) };
  };
  const rewrite = (file: string, change: (h: any) => void, body?: Buffer) => {
    const { json, body: old } = header(file);
    change(json);
    writeFileSync(file, Buffer.concat([Buffer.from(`${JSON.stringify(json)}\n`), body ?? old]));
  };
  refused('a changed chunk byte (the hash)', (file) => {
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(file, bytes);
  }, /does not have the hash the sender computed/);
  refused('chunks out of order or out of the file', (file) => rewrite(file, (h) => (h.chunks = [h.size])), /chunk list/);
  refused('a body shorter than its chunks', (file) => rewrite(file, () => undefined, Buffer.alloc(10)), /holds 10 bytes of chunks/);
  refused('another chunk size', (file) => rewrite(file, (h) => (h.chunk = 8192)), /chunk size 8192 \(expected 4096 or 65536\)/);
  refused('no header', (file) => writeFileSync(file, Buffer.alloc(100)), /no header line/);
  refused('both hashes, of the file and of its base', (file) => rewrite(file, (h) => (h.base = h.sha256)), /not one hash, of the file or of its base/);
  refused('no hash at all', (file) => rewrite(file, (h) => delete h.sha256), /not one hash, of the file or of its base/);
  refused('the first checkpoint lacks the file', (_file, parts) => rmSync(join(parts.first, 'checkpoint', 'pages-1.img')), /has no file checkpoint\/pages-1\.img/);
  refused('the file is there whole too', (file) => writeFileSync(file.slice(0, -DELTA_SUFFIX.length), 'x'), /is there whole too/);

  describe("against the pre-copy's sums, taken on both sides while the container ran", () => {
    /** As the two sides do: both hash the first checkpoint; the delta names the base's sum; the receiver writes into its copy in place. */
    async function inPlace(change: (second: string) => void): Promise<{ first: string; second: string; delta: string; here: string; sent: number }> {
      const parts = setUp(change);
      const here = `${parts.first}-here`;
      cpSync(parts.first, here, { recursive: true });
      const sums = await hashBase(parts.first);
      rmSync(parts.delta, { recursive: true, force: true });
      const stats = writeDelta(parts.first, parts.second, parts.delta, DELTA_CHUNK, sums);
      return { ...parts, here, sent: stats.sent };
    }

    test('hashBase: the SHA-256 of each large file, by its path; small files have none', async () => {
      const parts = setUp(() => undefined);
      const sums = await hashBase(parts.first);
      const pages = readFileSync(join(parts.first, 'checkpoint', 'pages-1.img'));
      assert.deepEqual(sums, { 'checkpoint/pages-1.img': createHash('sha256').update(pages).digest('hex') });
    });

    test('the changed pages are written into the copy of the first in place (no whole hash is sent), and the folder is the second, byte for byte', async () => {
      const parts = await inPlace((second) => {
        const pages = join(second, 'checkpoint', 'pages-1.img');
        const bytes = readFileSync(pages);
        bytes[7 * DELTA_CHUNK + 1] ^= 0xff;
        writeFileSync(pages, Buffer.concat([bytes.subarray(0, 30 * DELTA_CHUNK + 9)]));
      });
      const file = join(parts.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`);
      const head = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]);
      assert.equal(head.sha256, undefined);
      assert.match(head.base, /^[0-9a-f]{64}$/);
      // Page 30, cut to 9 bytes, holds what it held: the shorter size alone says so.
      assert.deepEqual(head.chunks, [7]);
      const copy = `${parts.delta}-received`;
      cpSync(parts.delta, copy, { recursive: true });
      applyDeltas(parts.here, copy, await hashBase(parts.here));
      assert.deepEqual(readFileSync(join(copy, 'checkpoint', 'pages-1.img')), readFileSync(join(parts.second, 'checkpoint', 'pages-1.img')));
      assert.ok(!existsSync(join(parts.here, 'checkpoint', 'pages-1.img')), "the first's copy became the second's");
      assert.deepEqual(readdirSync(join(copy, 'checkpoint')).sort(), ['core-1.img', 'pages-1.img']);
    });

    test("refused: a copy of the first that is not the sender's (or no sums here); nothing rebuilt, and the copy is left as it was", async () => {
      const parts = await inPlace((second) => {
        const pages = join(second, 'checkpoint', 'pages-1.img');
        const bytes = readFileSync(pages);
        bytes[2 * DELTA_CHUNK] ^= 1;
        writeFileSync(pages, bytes);
      });
      const base = join(parts.here, 'checkpoint', 'pages-1.img');
      const bytes = readFileSync(base);
      bytes[20 * DELTA_CHUNK] ^= 1;
      writeFileSync(base, bytes);
      for (const sums of [await hashBase(parts.here), null]) {
        const copy = `${parts.delta}-received-${sums === null ? 'nosums' : 'other'}`;
        cpSync(parts.delta, copy, { recursive: true });
        assert.throws(() => applyDeltas(parts.here, copy, sums), /the first checkpoint's checkpoint\/pages-1\.img here is not the one the sender compared against/);
        assert.ok(!existsSync(join(copy, 'checkpoint', 'pages-1.img')));
        assert.deepEqual(readFileSync(base), bytes);
      }
    });

    test('a file the receiver has no sum for travels whole', async () => {
      const parts = setUp(() => undefined);
      rmSync(parts.delta, { recursive: true, force: true });
      writeDelta(parts.first, parts.second, parts.delta, DELTA_CHUNK, {});
      assert.ok(existsSync(join(parts.delta, 'checkpoint', 'pages-1.img')));
      assert.ok(!existsSync(join(parts.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`)));
    });
  });

  describe("against the pre-copy's page prints, its copy here removed (the compiled binary's way)", () => {
    // A seeded 64-bit page hash, as Bun's xxHash3 is: here the first 8 bytes of a SHA-256 of the seed and the page.
    const hash: PageHash = (page, seed) => createHash('sha256').update(String(seed)).update(page).digest().readBigUInt64LE();

    /** The sender keeps only prints of the first's large files; the receiver writes the changed pages into its copy. */
    async function byPrints(change: (second: string) => void, pageHash: PageHash = hash): Promise<{ second: string; head: { chunks: number[]; base: string }; copy: string }> {
      const parts = setUp(change);
      const here = `${parts.first}-here`;
      cpSync(parts.first, here, { recursive: true });
      const sums = (await hashBase(parts.first))!;
      const prints = await printPages(parts.first, sums, pageHash);
      assert.deepEqual(Object.keys(prints.files), ['checkpoint/pages-1.img']);
      assert.equal(prints.files['checkpoint/pages-1.img'].length, 41, 'one print per page, the last partial page too');
      rmSync(join(parts.first, 'checkpoint', 'pages-1.img'));
      rmSync(parts.delta, { recursive: true, force: true });
      writeDelta(parts.first, parts.second, parts.delta, DELTA_CHUNK, sums, prints);
      const head = JSON.parse(readFileSync(join(parts.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`), 'utf8').split('\n')[0]);
      const copy = `${parts.delta}-received`;
      cpSync(parts.delta, copy, { recursive: true });
      applyDeltas(here, copy, await hashBase(here));
      return { second: parts.second, head, copy };
    }

    test('the changed pages, a grown file\'s new ones and a cut last page travel; the folder there is the second, byte for byte', async () => {
      for (const [name, change, chunks] of [
        ['two pages changed, three added', (pages: Buffer) => {
          pages[5 * DELTA_CHUNK + 7] ^= 0xff;
          pages[39 * DELTA_CHUNK] ^= 0xff;
          return Buffer.concat([pages, randomBytes(3 * DELTA_CHUNK)]);
        }, [5, 39, 40, 41, 42, 43]],
        // The old last page held 123 bytes: grown to a whole page, it differs.
        ['nothing changed but the last page filled', (pages: Buffer) => Buffer.concat([pages, Buffer.alloc(DELTA_CHUNK - 123)]), [40]],
        // Cut inside page 30: its print was of a whole page, so it travels (comparing bytes would not need it).
        ['one page changed, the file cut', (pages: Buffer) => {
          pages[7 * DELTA_CHUNK + 1] ^= 0xff;
          return pages.subarray(0, 30 * DELTA_CHUNK + 9);
        }, [7, 30]],
      ] as const) {
        const { second, head, copy } = await byPrints((dir) => {
          const file = join(dir, 'checkpoint', 'pages-1.img');
          writeFileSync(file, change(readFileSync(file)));
        });
        assert.deepEqual(head.chunks, chunks, name);
        assert.match(head.base, /^[0-9a-f]{64}$/, name);
        assert.deepEqual(readFileSync(join(copy, 'checkpoint', 'pages-1.img')), readFileSync(join(second, 'checkpoint', 'pages-1.img')), name);
      }
    });

    test('under Bun (the shipped binary), with its xxHash3: the same pages travel as when the bytes are compared', { skip: existsSync(BUN) ? false : `no Bun at ${BUN}` }, () => {
      const script = join(root, 'prints-under-bun.ts');
      writeFileSync(script, [
        `import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';`,
        `import { join } from 'node:path';`,
        `import { pageHasher } from ${JSON.stringify(join(REPO, 'src', 'host', 'digest.ts'))};`,
        `import { DELTA_SUFFIX, hashBase, printPages, writeDelta } from ${JSON.stringify(join(REPO, 'src', 'migrate', 'delta.ts'))};`,
        'const [first, second, out] = process.argv.slice(2);',
        'const sums = await hashBase(first);',
        'const prints = await printPages(first, sums, pageHasher());',
        "rmSync(join(first, 'checkpoint', 'pages-1.img'));",
        'writeDelta(first, second, out, 4096, sums, prints);',
        "console.log(readFileSync(join(out, 'checkpoint', 'pages-1.img' + DELTA_SUFFIX), 'utf8').split('\\n')[0]);",
      ].join('\n'));
      const parts = setUp((dir) => {
        const file = join(dir, 'checkpoint', 'pages-1.img');
        const pages = readFileSync(file);
        for (const at of [0, 3 * DELTA_CHUNK + 4095, 17 * DELTA_CHUNK + 100]) pages[at] ^= 0x01;
        writeFileSync(file, pages);
      });
      const compared = JSON.parse(readFileSync(join(parts.delta, 'checkpoint', `pages-1.img${DELTA_SUFFIX}`), 'utf8').split('\n')[0]);
      assert.deepEqual(compared.chunks, [0, 3, 17]);
      const senderCopy = `${parts.first}-sender`;
      cpSync(parts.first, senderCopy, { recursive: true });
      const out = `${parts.delta}-bun`;
      const head = JSON.parse(execFileSync(BUN, [script, senderCopy, parts.second, out], { encoding: 'utf8', env: { ...process.env, BUN_INSTALL_CACHE_DIR: join(root, 'bun-cache') } }));
      assert.deepEqual(head.chunks, compared.chunks);
      assert.equal(head.size, compared.size);
    });
  });
});
