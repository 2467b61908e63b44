// A move to a host whose checkpoint store holds chunks of the checkpoint (src/migrate/chunked.ts):
// the receiver says which it has, the sender sends the rest, the receiver rebuilds each file from
// both and checks every chunk and the whole file. What is received is untrusted: a wrong chunk or
// one the store does not hold is refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CHUNK_BYTES } from '../../src/host/chunks.ts';
import { keepCheckpoint } from '../../src/checkpoint/store/store.ts';
import { CHUNKS_SUFFIX, applyChunked, storeHas, writeChunked } from '../../src/migrate/chunked.ts';
import type { Control } from '../../src/migrate/control.ts';
import { PAGES, checkpointFolder } from './store-fixtures.ts';

const root = mkdtempSync(join(tmpdir(), 'stasis-chunked-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;


/** The destination's control channel, answering `have` from its store as `__migrate serve` does. */
const controlOf = (checkpointDir: string) => ({ request: async (m: { op: string; hashes?: unknown }) => (m.op === 'have' ? storeHas(checkpointDir, m.hashes) : { ok: false }) }) as unknown as Control;

async function setUp() {
  const dir = join(root, `d${++n}`);
  const pages1 = randomBytes(30 * CHUNK_BYTES + 77);
  const pages2 = Buffer.from(pages1);
  randomBytes(CHUNK_BYTES).copy(pages2, 7 * CHUNK_BYTES);
  const kept = checkpointFolder(join(dir, 'store', 'c1', 'T1'), pages1);
  await keepCheckpoint(join(dir, 'store'), kept);
  const second = checkpointFolder(join(dir, 'second'), pages2);
  const sent = join(dir, 'sent');
  const stats = await writeChunked(controlOf(join(dir, 'store')), second, sent);
  return { dir, storeDir: join(dir, 'store'), kept, pages2, sent, stats };
}

function received(sent: string): string {
  const copy = `${sent}-${++n}`;
  cpSync(sent, copy, { recursive: true });
  return copy;
}

describe('a move sending only the chunks the destination lacks', () => {
  test('one changed chunk travels; the file is rebuilt from it and the store, byte for byte', async () => {
    const s = await setUp();
    assert.ok(s.stats !== null);
    assert.equal(s.stats.reused, 29 * CHUNK_BYTES + 77);
    assert.ok(s.stats.sent < 2 * CHUNK_BYTES + 4096, `${s.stats.sent} bytes sent`);
    assert.ok(existsSync(join(s.sent, `${PAGES}${CHUNKS_SUFFIX}`)));
    const copy = received(s.sent);
    assert.equal(await applyChunked(s.storeDir, copy), 1);
    assert.ok(readFileSync(join(copy, PAGES)).equals(s.pages2));
    assert.ok(!existsSync(join(copy, `${PAGES}${CHUNKS_SUFFIX}`)));
  });

  test('a store that holds none of it: nothing to gain, the checkpoint goes whole', async () => {
    const empty = join(root, `empty-${++n}`);
    assert.deepEqual(await storeHas(empty, []), { ok: true, stored: 0, have: '' });
    assert.equal(await writeChunked(controlOf(empty), checkpointFolder(join(root, `f${n}`), randomBytes(CHUNK_BYTES)), join(root, `out${n}`)), null);
    assert.ok(!existsSync(empty), 'asking made no checkpoint directory');
  });

  test('a chunk changed on the way, a chunk the store lacks, a file sent both ways, a small file sent as chunks: refused, nothing left', async () => {
    const s = await setUp();
    const tampered = received(s.sent);
    const file = join(tampered, `${PAGES}${CHUNKS_SUFFIX}`);
    const bytes = readFileSync(file);
    bytes[bytes.length - 10] ^= 1;
    writeFileSync(file, bytes);
    await assert.rejects(applyChunked(s.storeDir, tampered), /chunk 7 does not have its hash/);
    assert.ok(!existsSync(join(tampered, PAGES)) && !existsSync(join(tampered, 'checkpoint', '.pages-1.img.rebuild')));
    const both = received(s.sent);
    writeFileSync(join(both, PAGES), 'whole');
    await assert.rejects(applyChunked(s.storeDir, both), /pages-1\.img is there whole too/);
    const other = received(s.sent);
    cpSync(join(other, `${PAGES}${CHUNKS_SUFFIX}`), join(other, `stasis.json${CHUNKS_SUFFIX}`));
    rmSync(join(other, 'stasis.json'));
    await assert.rejects(applyChunked(s.storeDir, other), /stasis\.json is not a memory image or tar of a checkpoint/);
    assert.ok(!existsSync(join(other, 'stasis.json')));
    rmSync(s.kept, { recursive: true });
    await assert.rejects(applyChunked(s.storeDir, received(s.sent)), /chunk 0 \([0-9a-f]{64}\) is not in this host's checkpoint store/);
  });
});
