// The checkpoint store (issue 20) on real runc, CRIU and conmon: a container holding 256 MiB, of
// which 2 MiB change between two checkpoints. The second adds at most 10% of the first to the
// checkpoint directory; both restore with every page (the memory's checksum); removing either one
// leaves the other restorable. Done twice: once removing the first, once the second. Then what
// travels to a host whose store holds an earlier checkpoint: a migrate back, and an export with
// that host's have-list (checkpoint ls --chunks, checkpoint --export --have).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, CONTAINERS, TestEnv, eventually, requires } from '../helpers.ts';
import { buildFixtures, makeBase, skipUnless } from '../services-fixtures.ts';
import { treeBytes } from '../../src/host/walk.ts';

describe('checkpoint store', { skip: requires(...CONTAINERS, 'criu') }, () => {
  const env = new TestEnv('store');
  const there = new TestEnv('store-there');
  let missing: string | null = 'not built yet';
  let base = '';
  before(() => {
    missing = buildFixtures(join(env.root, 'bin'));
    if (missing === null) base = makeBase(join(env.root, 'base'), join(env.root, 'bin'));
  });
  after(async () => {
    await there.cleanup();
    await env.cleanup();
  });

  /** The bytes of the files under the checkpoint directory (the store included). */
  const stored = () => (existsSync(env.checkpointDir) ? treeBytes(env.checkpointDir) : 0);

  /** `line` (a regular expression with one group) in the container's log, its group. */
  const logged = (id: string, line: RegExp) => eventually(async () => line.exec(await env.ok(['logs', id]))?.[1], `${line} in ${id}'s log`, 60_000) as Promise<string>;

  /** Asks the container to sum its memory, and waits for the answer after `known` earlier ones. */
  async function memorySum(id: string): Promise<string> {
    const before = [...(await env.ok(['logs', id])).matchAll(/check sum (\w+)/g)].length;
    await env.ok(['kill', id, '-s', 'USR1']);
    return eventually(async () => [...(await env.ok(['logs', id])).matchAll(/check sum (\w+)/g)][before]?.[1], `${id}'s memory summed`, 60_000) as Promise<string>;
  }

  /** Restores `path` as `id`, checks its memory's sum, and removes it. */
  async function restoresWith(id: string, path: string, sum: string): Promise<void> {
    await env.ok(['restore', id, '--checkpoint', path]);
    assert.equal(await memorySum(id), sum, `${id} restored from ${path} has every page`);
    await env.ok(['delete', '-f', id]);
  }

  /** Two checkpoints of a 256 MiB container, 2 MiB rewritten between them. */
  async function twoCheckpoints(id: string) {
    await env.ok(['run', '-d', id, '--rootfs', base, '--', '/srv/bigmem', '256', '2']);
    const sum1 = await logged(id, /filled 256 MiB sum (\w+)/);
    const empty = stored();
    const first = await env.json(['checkpoint', id, '--leave-running']);
    const afterFirst = stored();
    await env.ok(['kill', id, '-s', 'USR2']);
    const sum2 = await logged(id, /changed 2 MiB sum (\w+)/);
    const second = await env.json(['checkpoint', id]);
    const afterSecond = stored();
    assert.deepEqual(second.store.packed, [first.path], 'the second checkpoint packed the first');
    const firstBytes = afterFirst - empty;
    assert.ok(firstBytes > 256 << 20, `the first checkpoint is ${firstBytes} bytes`);
    assert.ok(afterSecond - afterFirst <= firstBytes / 10, `the second added ${afterSecond - afterFirst} bytes to a store of ${firstBytes}`);
    const listed = await env.json(['checkpoint', 'ls', id]);
    assert.deepEqual(listed.map((c: { path: string; state: string }) => [c.path, c.state]), [[first.path, 'packed'], [second.path, 'materialised']]);
    assert.ok(listed.every((c: { ownBytes: number; size: number }) => c.ownBytes < c.size / 10), JSON.stringify(listed));
    const growth = `the first checkpoint ${firstBytes} bytes, the second added ${afterSecond - afterFirst}; hashing took ${second.store.hashMs} ms of ${second.timingsMs.total} ms`;
    return { first: first.path as string, second: second.path as string, sum1, sum2, growth };
  }

  test('removing the first: the second restores (in place, then elsewhere); the first restored before that', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    const c = await twoCheckpoints('sa');
    t.diagnostic(c.growth);
    // In place, from the newest: a plain folder.
    await env.ok(['restore', 'sa']);
    assert.equal(await memorySum('sa'), c.sum2);
    await env.ok(['delete', '-f', 'sa']);
    // The packed first, rebuilt from the store.
    await restoresWith('sa1', c.first, c.sum1);
    assert.match(await env.ok(['checkpoint', 'inspect', c.first]), /Container +sa\n/);
    assert.deepEqual(readdirSync(env.stateDir).filter((name) => name.startsWith('.restore-')), [], 'the rebuilt folders are gone');
    assert.equal(await env.ok(['checkpoint', 'rm', 'sa/' + c.first.split('/').pop()]), `${c.first}\n`);
    assert.ok(!existsSync(c.first));
    await restoresWith('sa2', c.second, c.sum2);
    await env.ok(['checkpoint', 'rm', c.second]);
    assert.deepEqual(await env.json(['checkpoint', 'ls']), []);
  });

  test('removing the second: the first is materialised again and restores', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    const c = await twoCheckpoints('sb');
    const removed = await env.json(['checkpoint', 'rm', c.second]);
    assert.equal(removed[0].materialised, c.first);
    assert.equal((await env.json(['checkpoint', 'ls', 'sb']))[0].state, 'materialised');
    assert.equal(readdirSync(join(env.checkpointDir, '.store', 'chunks')).flatMap((d) => readdirSync(join(env.checkpointDir, '.store', 'chunks', d))).length, 0, 'no chunk file is needed any more');
    // In place: the container's latest checkpoint is now the first.
    await env.ok(['restore', 'sb']);
    assert.equal(await memorySum('sb'), c.sum1);
    await env.ok(['delete', '-f', 'sb']);
    await env.ok(['checkpoint', 'rm', c.first]);
  });

  test('migrate back to a host that kept a checkpoint of it: only the chunks its store lacks are sent', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    const to = (dest: TestEnv, extra: string[] = []) => ['migrate', 'mv', dest.stateDir, '--remote-stasis', [...CLI, '--checkpoint-dir', dest.checkpointDir].join(' '), ...extra];
    await env.ok(['run', '-d', 'mv', '--rootfs', base, '--', '/srv/bigmem', '256', '2']);
    await logged('mv', /filled 256 MiB sum (\w+)/);
    const away = await env.json(to(there, ['--keep']));
    assert.equal(away.fromStore, 0, 'the destination had no store');
    await there.ok(['kill', 'mv', '-s', 'USR2']);
    const sum2 = await eventually(async () => /changed 2 MiB sum (\w+)/.exec(await there.ok(['logs', 'mv']))?.[1], 'the memory changed there', 60_000);
    const back = await there.json(to(env));
    t.diagnostic(`away (whole): ${away.bytes} bytes sent, downtime ${away.downtimeMs} ms; back: ${back.bytes} bytes sent, ${back.fromStore} bytes from the store here, downtime ${back.downtimeMs} ms`);
    assert.ok(back.fromStore > 250 << 20, `${back.fromStore} bytes came from the store here`);
    assert.ok(back.bytes < (256 << 20) / 10, `${back.bytes} bytes sent`);
    assert.equal(await memorySum('mv'), sum2, 'every page is the one it had there');
    assert.deepEqual(readdirSync(env.stateDir).filter((name) => name.startsWith('.migrate-')), [], 'nothing left of the transfer');
    await env.ok(['delete', '-f', 'mv']);
    await env.ok(['checkpoint', 'rm', away.checkpoint]);
  });

  test('an export to a host that holds the first checkpoint, with its have-list: only what it lacks travels', async (t) => {
    if (!skipUnless(t, missing === null, missing!)) return;
    // The first checkpoint is taken there (kept in its store) and exported whole to here.
    await there.ok(['run', '-d', 'ex', '--rootfs', base, '--', '/srv/bigmem', '256', '2']);
    const sum1 = await eventually(async () => /filled 256 MiB sum (\w+)/.exec(await there.ok(['logs', 'ex']))?.[1], 'the memory filled there', 60_000);
    const firstTar = join(env.root, 'first.tar');
    const first = await there.json(['checkpoint', 'ex', '--export', firstTar]);
    await env.ok(['restore', 'ex', '--checkpoint', firstTar, '--rootfs', base]);
    assert.equal(await memorySum('ex'), sum1);
    // Here 2 MiB change; the second checkpoint is exported for there, with what its store holds.
    await env.ok(['kill', 'ex', '-s', 'USR2']);
    const sum2 = await logged('ex', /changed 2 MiB sum (\w+)/);
    const have = join(env.root, 'have.txt');
    await there.ok(['checkpoint', 'ls', '--chunks', '-o', have]);
    const secondTar = join(env.root, 'second.tar');
    const second = await env.json(['checkpoint', 'ex', '--export', secondTar, '--have', have]);
    const whole = statSync(firstTar).size;
    const sent = statSync(secondTar).size;
    t.diagnostic(`the first exported whole: ${whole} bytes; the second (${second.imageBytes} bytes) with --have: ${sent} bytes, ${second.exportChunks.fromStore} left to the store there; the have-list ${statSync(have).size} bytes`);
    assert.ok(sent <= whole / 10, `${sent} bytes sent for a first of ${whole}`);
    assert.match(await there.ok(['checkpoint', 'inspect', secondTar]), /Chunked +.*from a checkpoint store/);
    // There, under a new ID: every page is the one it had here.
    await env.ok(['delete', '-f', 'ex']);
    await there.ok(['restore', 'ex2', '--checkpoint', secondTar, '--rootfs', base]);
    const before = [...(await there.ok(['logs', 'ex2'])).matchAll(/check sum (\w+)/g)].length;
    await there.ok(['kill', 'ex2', '-s', 'USR1']);
    assert.equal(await eventually(async () => [...(await there.ok(['logs', 'ex2'])).matchAll(/check sum (\w+)/g)][before]?.[1], 'ex2 summed', 60_000), sum2);
    assert.deepEqual(readdirSync(there.stateDir).filter((name) => name.startsWith('.restore-')), [], 'nothing left of the unpacked archive');
    // A host whose store lacks the chunks refuses it whole, naming one.
    await env.ok(['checkpoint', 'rm', second.path]);
    await env.fails(1, ['restore', 'ex3', '--checkpoint', secondTar, '--rootfs', base], /stasis: cannot restore from .*second\.tar: .*pages-\d+\.img\.stasis-chunks .*chunk \d+ \([0-9a-f]{64}\) is not in this host's checkpoint store/);
    await there.ok(['delete', '-f', 'ex2']);
    await there.ok(['delete', '-f', 'ex']);
    await there.ok(['checkpoint', 'rm', first.path]);
  });
});
