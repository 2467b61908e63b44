// stasis checkpoint ls / rm on checkpoint folders the test writes (no container, no root): the
// store's walks under the binary being tested (compiled with Bun, or Node), its output and refusals;
// ls --chunks (the have-list) and the refusals of --have.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestEnv } from '../helpers.ts';

const CHUNK = 64 * 1024;

function writeCheckpoint(dir: string, id: string, name: string, pages: Buffer): string {
  const path = join(dir, id, name);
  mkdirSync(join(path, 'checkpoint'), { recursive: true });
  writeFileSync(join(path, 'checkpoint', 'inventory.img'), 'inventory');
  writeFileSync(join(path, 'checkpoint', 'pages-1.img'), pages);
  writeFileSync(join(path, 'stasis.json'), JSON.stringify({ id, preDump: false, checkpointedAt: `2026-01-01T00:00:0${name.at(-1)}.000Z` }));
  return path;
}

describe('checkpoint ls and checkpoint rm', () => {
  const env = new TestEnv('cli-store');
  const empty = new TestEnv('cli-store-empty');
  after(async () => {
    await empty.cleanup();
    await env.cleanup();
  });
  const pages = randomBytes(20 * CHUNK);
  const pages2 = Buffer.from(pages);
  randomBytes(CHUNK).copy(pages2, 5 * CHUNK);
  let first = '';
  let second = '';

  test('ls indexes checkpoints it finds and lists them; a link among them is not followed; -q: paths', async () => {
    first = writeCheckpoint(env.checkpointDir, 'web', 'T1', pages);
    second = writeCheckpoint(env.checkpointDir, 'web', 'T2', pages2);
    // A link that looks like a checkpoint (to a folder holding checkpoint/): never entered.
    symlinkSync(first, join(env.checkpointDir, 'web', 'T9'));
    symlinkSync(join(env.checkpointDir, 'web'), join(env.checkpointDir, 'loop'));
    const listed = await env.json(['checkpoint', 'ls']);
    assert.deepEqual(listed.map((r: { name: string; state: string }) => [r.name, r.state]), [['T1', 'materialised'], ['T2', 'materialised']]);
    assert.equal(listed[0].created, '2026-01-01T00:00:01.000Z');
    assert.equal(listed[0].ownBytes + listed[0].sharedBytes, listed[0].size);
    assert.ok(listed[0].ownBytes >= CHUNK && listed[0].ownBytes < 2 * CHUNK, JSON.stringify(listed[0]));
    assert.equal(await env.ok(['-q', 'checkpoint', 'list', 'web']), `${first}\n${second}\n`);
    assert.equal(await env.ok(['-q', 'checkpoint-ls', 'nothere']), '');
    const text = await env.ok(['checkpoint', 'ls']);
    assert.match(text, /^CONTAINER +CHECKPOINT +CREATED +STATE +SIZE +ONLY IT +SHARED\n/);
    assert.match(text, /\nweb +T2 +2026-01-01T00:00:02\.000Z +materialised +1\.3 MiB /);
  });

  test('ls --chunks: the have-list, on stdout or into -o FILE; --have is read whole before anything', async () => {
    const list = await env.ok(['checkpoint', 'ls', '--chunks']);
    const lines = list.split('\n');
    assert.equal(lines[0], `stasis-have 1 ${CHUNK} 21`, 'the 20 chunks of the first and the one changed in the second');
    assert.deepEqual(lines.slice(1, -1), [...lines.slice(1, -1)].sort());
    const file = join(env.root, 'have.txt');
    assert.equal(await env.ok(['checkpoint', 'list', '--chunks', '-o', file]), '');
    assert.equal(readFileSync(file, 'utf8'), list);
    await env.fails(2, ['checkpoint', 'ls', '-o', file], /^stasis: -o\/--output is for --chunks/);
    await env.fails(2, ['checkpoint', 'ls', 'web', '--chunks'], /--chunks lists the whole store/);
    await env.fails(2, ['checkpoint', 'web', '--have', file], /^stasis: --have is for --export/);
    writeFileSync(file, list.slice(0, -3));
    await env.fails(2, ['checkpoint', 'web', '--export', join(env.root, 'x.tar'), '--have', file], /is not a have-list of stasis checkpoint ls --chunks: its last line is cut short/);
    await env.fails(2, ['checkpoint', 'web', '--export', join(env.root, 'x.tar'), '--have', '-'], /^stasis: the standard input \(--have -\) is not a have-list .*: line 2 is not a SHA-256/, { input: `stasis-have 1 ${CHUNK} 1\nzz\n` });
    // A whole list on stdin is taken: what fails then is the container, which does not exist.
    await env.fails(1, ['checkpoint', 'web', '--export', join(env.root, 'x.tar'), '--have', '-'], /^stasis: no such container: web/, { input: list });
    assert.ok(!existsSync(join(env.root, 'x.tar')));
    assert.equal(await empty.ok(['checkpoint', 'ls', '--chunks']), `stasis-have 1 ${CHUNK} 0\n`);
  });

  test('rm refuses what is not a kept checkpoint (exit 1), and a bad ID (exit 2); nothing changes', async () => {
    await env.fails(1, ['checkpoint', 'rm', env.root], /^stasis: .* is not a checkpoint kept in the checkpoint directory /);
    await env.fails(1, ['checkpoint', 'rm', join(env.checkpointDir, 'web')], /is not a checkpoint kept in the checkpoint directory/);
    await env.fails(1, ['checkpoint', 'rm', 'web/T9'], /is not a checkpoint kept in the checkpoint directory/);
    await env.fails(1, ['checkpoint', 'rm', 'web/T7'], /^stasis: checkpoint web\/T7 does not exist\nhint: see `stasis checkpoint ls`/);
    await env.fails(2, ['checkpoint', 'ls', 'bad/id'], /bad\/id/);
    assert.ok(existsSync(first) && existsSync(second));
  });

  test('rm by ID/NAME and by path: the other stays whole; the list ends empty', async () => {
    const removed = await env.json(['checkpoint', 'rm', 'web/T2']);
    assert.deepEqual(removed, [{ path: second, materialised: null, chunkBytesWritten: 0, chunkBytesFreed: 0 }]);
    assert.ok(readFileSync(join(first, 'checkpoint', 'pages-1.img')).equals(pages));
    assert.equal(await env.ok(['checkpoint', 'rm', first]), `${first}\n`);
    assert.deepEqual(await env.json(['checkpoint', 'ls']), []);
  });
});
