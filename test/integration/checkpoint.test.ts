import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { COUNTER, TestEnv, eventually, lastCount, mountedUnder, ROOTFS } from '../helpers.ts';

/** Every file under a folder with its size and mtime: to prove a checkpoint was not modified. */
function snapshot(dir: string): string {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = join(dir, rel, name);
      const stat = statSync(path);
      out.push(`${rel}/${name} ${stat.size} ${stat.mtimeMs}`);
      if (stat.isDirectory()) walk(join(rel, name));
    }
  };
  walk('');
  return out.join('\n');
}

async function counterAdvances(env: TestEnv, id: string, beyond: number): Promise<number> {
  return eventually(async () => {
    const value = lastCount(await env.ok(['logs', id]));
    return value > beyond ? value : 0;
  }, `${id}'s counter to pass ${beyond}`);
}

describe('checkpoint and restore with real runc, CRIU and conmon', () => {
  const env = new TestEnv('checkpoint');
  after(() => env.cleanup());

  test('a counter continues where it was, checkpointed and restored in place twice', async () => {
    await env.ok(['run', '-d', 'web', '--', ...COUNTER]);
    let before = await counterAdvances(env, 'web', 2);
    for (let round = 1; round <= 2; round++) {
      const path = (await env.ok(['checkpoint', 'web'])).trim();
      assert.ok(existsSync(join(path, 'checkpoint', 'inventory.img')), path);
      for (const file of ['spec.dump', 'config.dump', 'stasis.json', 'rootfs-diff.tar', 'deleted.files', 'stats-dump', 'dump.log']) {
        assert.ok(existsSync(join(path, file)), `${file} in ${path}`);
      }
      const stopped = await env.json(['info', 'web']);
      assert.equal(stopped.status, 'stopped');
      assert.equal(stopped.exit, null, 'a checkpoint is not an exit');
      assert.equal(stopped.checkpointed, true);
      const atCheckpoint = lastCount(await env.ok(['logs', 'web']));
      assert.ok(atCheckpoint >= before);

      assert.equal(await env.ok(['restore', 'web']), 'web\n');
      const restored = await env.json(['info', 'web']);
      assert.equal(restored.status, 'running');
      assert.equal(restored.restoredFrom, path);
      const after = await counterAdvances(env, 'web', atCheckpoint + 1);
      const counts = [...(await env.ok(['logs', 'web'])).matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
      // Not restarted: the numbers after the checkpoint go on from it, never back to 0.
      assert.equal(counts.filter((c) => c === 0).length, 1, 'the counter never restarted');
      assert.ok(after > atCheckpoint);
      before = after;
    }
    const journal = await env.ok(['events', '--no-follow', 'web']);
    assert.equal((journal.match(/\/tasks\/checkpointed web/g) ?? []).length, 2);
    assert.equal((journal.match(/\/tasks\/restored web/g) ?? []).length, 2);
    assert.ok(!journal.includes('/tasks/exit'), 'no exit is reported for a checkpoint');
    // The restored container has a monitor like any other: its exit is recorded.
    await env.ok(['kill', 'web', '-s', 'KILL']);
    assert.equal((await env.run(['wait', 'web'])).code, 137);
    await env.ok(['delete', 'web']);
  });

  test('--leave-running keeps it running; the image restores into another ID alongside it, twice', async () => {
    await env.ok(['run', '-d', 'orig', '--', ...COUNTER]);
    await counterAdvances(env, 'orig', 1);
    for (let round = 1; round <= 2; round++) {
      const image = join(env.root, `snap${round}`);
      const result = await env.json(['checkpoint', 'orig', '--leave-running', '--image-path', image]);
      assert.equal(result.path, image);
      assert.equal(result.leftRunning, true);
      assert.ok(result.timingsMs.dump > 0);
      assert.ok(result.criu.pagesWritten > 0, JSON.stringify(result.criu));
      assert.equal((await env.json(['info', 'orig'])).status, 'running');
      const atSnapshot = lastCount(await env.ok(['logs', 'orig']));
      await env.ok(['create', `clone${round}`, '--checkpoint', image]);
      const clone = await env.json(['info', `clone${round}`]);
      assert.equal(clone.status, 'running');
      assert.equal(clone.restoredFrom, image);
      const cloneCount = await counterAdvances(env, `clone${round}`, atSnapshot);
      assert.ok(cloneCount > atSnapshot);
      assert.ok(!(await env.ok(['logs', `clone${round}`])).includes('count 0\n'), 'the clone did not start over');
      await counterAdvances(env, 'orig', atSnapshot + 1);
    }
    // The same image restores twice; one archive into two IDs at once.
    const again = await env.run(['restore', 'clone3', '--checkpoint', join(env.root, 'snap1')]);
    assert.equal(again.code, 0, again.stderr);
    await env.ok(['delete', '-f', 'orig', 'clone1', 'clone2', 'clone3']);
  });

  test('export, delete the original, restore the archive onto a fresh copy of the base', async () => {
    for (const [round, ext] of [[1, 'tar.zst'], [2, 'tar.gz']] as const) {
      const archive = join(env.root, `mover${round}.${ext}`);
      await env.ok(['run', '-d', 'mover', '--', 'sh', '-c', 'echo kept > /root/new-file; rm /etc/hosts; i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done']);
      const before = await counterAdvances(env, 'mover', 1);
      assert.equal((await env.ok(['checkpoint', 'mover', '--export', archive])).trim(), archive);
      const show = spawnSync('checkpointctl', ['show', archive], { encoding: 'utf8' });
      assert.equal(show.status, 0, show.stderr);
      assert.match(show.stdout, /mover/);
      await env.ok(['delete', 'mover']);
      const copy = env.copyRootfs(`base-copy${round}`);
      const restored = await env.json(['restore', 'moved', '--checkpoint', archive, '--rootfs', copy]);
      assert.equal(restored.status, 'running');
      assert.equal(restored.restoredFrom, archive);
      assert.equal(restored.rootfs.base, copy);
      const cat = await env.run(['exec', 'moved', '--', 'cat', '/root/new-file']);
      assert.equal(cat.stdout, 'kept\n');
      const gone = await env.run(['exec', 'moved', '--', 'test', '-e', '/etc/hosts']);
      assert.equal(gone.code, 1, '/etc/hosts stays deleted');
      assert.ok(existsSync(join(copy, 'etc', 'hosts')), 'the base copy is never written');
      assert.ok(!existsSync(join(copy, 'root', 'new-file')));
      await counterAdvances(env, 'moved', before);
      await env.ok(['delete', '-f', 'moved']);
    }
  });

  test('a --bundle container restores onto its bundle, in place and under a new ID', async () => {
    const bundle = env.makeBundle('bundle', COUNTER);
    await env.ok(['run', '-d', 'bun', '--bundle', bundle]);
    const before = await counterAdvances(env, 'bun', 1);
    const image = (await env.ok(['checkpoint', 'bun'])).trim();
    assert.equal(existsSync(join(image, 'rootfs-diff.tar')), false, 'a bundle rootfs is not carried');
    const wrongKind = await env.run(['restore', 'bun2', '--checkpoint', image, '--rootfs', ROOTFS]);
    assert.equal(wrongKind.code, 2);
    assert.match(wrongKind.stderr, /--bundle container: restore it onto a bundle with --bundle DIR/);
    await env.ok(['restore', 'bun']);
    assert.equal((await env.json(['info', 'bun'])).rootfs.userBundle, bundle);
    await counterAdvances(env, 'bun', before);
    await env.ok(['checkpoint', 'bun', '--leave-running', '--image-path', join(env.root, 'bun-snap')]);
    await env.ok(['restore', 'bun3', '--checkpoint', join(env.root, 'bun-snap'), '--bundle', bundle]);
    assert.equal((await env.json(['info', 'bun3'])).status, 'running');
    await env.ok(['delete', '-f', 'bun', 'bun3']);
  });

  test('a --bundle container on a --rootfs-mount overlay moves to a copy of its upper layer', async () => {
    const bundle = env.makeBundle('mounted', ['sh', '-c', 'echo before > /made-before; rm /etc/group; i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done']);
    const layer = (name: string) => {
      for (const sub of ['upper', 'work']) mkdirSync(join(env.root, name, sub), { recursive: true });
      return `type=overlay,source=overlay,options=lowerdir=${ROOTFS}:upperdir=${join(env.root, name, 'upper')}:workdir=${join(env.root, name, 'work')}`;
    };
    const first = layer('layer1');
    await env.ok(['run', '-d', 'om', '--bundle', bundle, '--rootfs-mount', first]);
    const before = await counterAdvances(env, 'om', 1);
    // In place: the container's own mounts come back without the flag.
    await env.ok(['checkpoint', 'om']);
    await env.ok(['restore', 'om']);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), [join(bundle, 'rootfs')]);
    const moved = await counterAdvances(env, 'om', before);

    // Elsewhere: export, remove the original, copy its upper layer, restore onto the copy.
    const archive = join(env.root, 'om.tar.gz');
    await env.ok(['checkpoint', 'om', '--export', archive]);
    await env.ok(['delete', 'om']);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), []);
    const second = layer('layer2');
    // cp -a, as an admin would: the layer's whiteouts are device nodes.
    const copy = spawnSync('cp', ['-a', `${join(env.root, 'layer1', 'upper')}/.`, join(env.root, 'layer2', 'upper')]);
    assert.equal(copy.status, 0, String(copy.stderr));
    const wrongKind = await env.run(['restore', 'om2', '--checkpoint', archive, '--rootfs', ROOTFS, '--rootfs-mount', second]);
    assert.equal(wrongKind.code, 2, wrongKind.stderr);
    await env.ok(['restore', 'om2', '--checkpoint', archive, '--bundle', bundle, '--rootfs-mount', second]);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), [join(bundle, 'rootfs')]);
    const info = await env.json(['info', 'om2']);
    assert.equal(info.status, 'running');
    assert.deepEqual(info.mounts.map((m: { target: string }) => m.target), [join(bundle, 'rootfs')]);
    assert.match(JSON.stringify(info.mounts), /layer2/);
    await counterAdvances(env, 'om2', moved);
    assert.equal((await env.ok(['exec', 'om2', '--', 'cat', '/made-before'])), 'before\n');
    assert.equal((await env.run(['exec', 'om2', '--', 'test', '-e', '/etc/group'])).code, 1, 'the deletion is kept');
    await env.ok(['delete', '-f', 'om2']);
    assert.deepEqual(mountedUnder(join(bundle, 'rootfs')), []);
    assert.ok(existsSync(join(env.root, 'layer2', 'upper', 'made-before')), 'the layer itself is the admin\'s and stays');
  });

  test('captured logs and a closed stdin survive the checkpoint', async () => {
    await env.ok(['run', '-d', 'quiet', '--', 'sh', '-c', 'cat; echo "stdin closed"; while true; do echo tick; sleep 0.2; done']);
    await eventually(async () => (await env.ok(['logs', 'quiet'])).includes('stdin closed'), 'stdin EOF');
    await env.ok(['checkpoint', 'quiet']);
    await env.ok(['restore', 'quiet']);
    const ticks = (await env.ok(['logs', 'quiet'])).split('tick').length;
    await eventually(async () => (await env.ok(['logs', 'quiet'])).split('tick').length > ticks + 1, 'more ticks after restore');
    await env.ok(['delete', '-f', 'quiet']);
  });
});

describe('checkpoint and restore failures change nothing', () => {
  const env = new TestEnv('checkpoint-fail');
  after(() => env.cleanup());

  test('containers that cannot be checkpointed', async () => {
    const missing = await env.run(['checkpoint', 'ghost']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such container: ghost/);
    await env.ok(['create', 'fresh', '--', 'sleep', '100']);
    assert.match((await env.run(['checkpoint', 'fresh'])).stderr, /cannot checkpoint container fresh: it is created/);
    await env.ok(['start', 'fresh']);
    await env.ok(['pause', 'fresh']);
    assert.match((await env.run(['checkpoint', 'fresh'])).stderr, /paused with `stasis pause`; resume it first/);
    await env.ok(['resume', 'fresh']);
    await env.ok(['kill', 'fresh', '-s', 'KILL']);
    await env.run(['wait', 'fresh']);
    assert.match((await env.run(['checkpoint', 'fresh'])).stderr, /it is stopped/);
    await env.ok(['run', '-d', '-t', 'tty', '--', 'sleep', '100']);
    const tty = await env.run(['checkpoint', 'tty']);
    assert.equal(tty.code, 1);
    assert.match(tty.stderr, /has a terminal/);
    assert.equal((await env.json(['info', 'tty'])).status, 'running');
    const preDump = await env.run(['checkpoint', 'tty', '--pre-dump']);
    assert.match(preDump.stderr, /--pre-dump needs memory change tracking/);
    const badExport = await env.run(['checkpoint', 'tty', '--export', join(env.root, 'x.zip')]);
    assert.equal(badExport.code, 2);
    assert.deepEqual(readdirSync(env.root).filter((n) => n.startsWith('x')), []);
    await env.ok(['delete', '-f', 'fresh', 'tty']);
  });

  test('a dump onto a full disk: clear error with the CRIU log, still running, no partial image', async () => {
    const small = join(env.root, 'small');
    mkdirSync(small);
    assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small]).status, 0);
    try {
      await env.ok(['run', '-d', 'big', '--', 'sh', '-c', 'head -c 4000000 /dev/zero | tr "\\0" x > /dev/shm/fill; while true; do sleep 1; done']);
      await sleep(500);
      for (let round = 0; round < 2; round++) {
        const result = await env.run(['checkpoint', 'big', '--image-path', join(small, 'cp')]);
        assert.equal(result.code, 1);
        assert.match(result.stderr, /^stasis: checkpoint big failed: /);
        assert.match(result.stderr, /CRIU log: \S+\.log/);
        const log = /CRIU log: (\S+)/.exec(result.stderr)![1];
        assert.ok(existsSync(log), `the log ${log} is kept`);
        assert.equal((await env.json(['info', 'big'])).status, 'running');
        assert.deepEqual(readdirSync(small), [], 'no partial image left');
      }
      await env.ok(['delete', '-f', 'big']);
    } finally {
      spawnSync('umount', [small]);
    }
  });

  test('bad restore sources: missing, truncated, not a checkpoint, unsafe, wrong base, existing ID', async () => {
    await env.ok(['run', '-d', 'src', '--', ...COUNTER]);
    const image = join(env.root, 'good');
    const archive = join(env.root, 'good.tar');
    await env.ok(['checkpoint', 'src', '--leave-running', '--image-path', image, '--export', archive]);
    const before = snapshot(image);

    const missing = await env.run(['restore', 'r1', '--checkpoint', join(env.root, 'nope.tar')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist/);

    const truncated = join(env.root, 'truncated.tar');
    cpSync(archive, truncated);
    truncateSync(truncated, Math.floor(statSync(archive).size / 2));
    const cut = await env.run(['restore', 'r2', '--checkpoint', truncated]);
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, /truncated/);

    const notCheckpoint = join(env.root, 'plain');
    mkdirSync(notCheckpoint);
    const plain = await env.run(['restore', 'r3', '--checkpoint', notCheckpoint]);
    assert.match(plain.stderr, /is not a checkpoint/);

    const evil = join(env.root, 'evil.tar');
    const staging = join(env.root, 'staging');
    mkdirSync(staging);
    writeFileSync(join(staging, 'payload'), 'pwned');
    spawnSync('tar', ['-C', staging, '-cf', evil, '--transform', 's,payload,../../escaped,', '-P', 'payload']);
    const unsafe = await env.run(['restore', 'r4', '--checkpoint', evil]);
    assert.equal(unsafe.code, 1);
    assert.match(unsafe.stderr, /unsafe archive entry/);
    assert.equal(existsSync(join(env.stateDir, '..', 'escaped')), false);
    assert.equal(existsSync(join(env.root, 'escaped')), false);

    const otherBase = join(env.root, 'other-base');
    mkdirSync(join(otherBase, 'bin'), { recursive: true });
    const wrongBase = await env.run(['restore', 'r5', '--checkpoint', image, '--rootfs', otherBase]);
    assert.equal(wrongBase.code, 1);
    assert.match(wrongBase.stderr, /does not match the checkpoint's base/);

    const duplicate = await env.run(['restore', 'src', '--checkpoint', image]);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /container src already exists \(running\)/);
    // Without --checkpoint too: the running container is the problem, not a missing checkpoint.
    const runningInPlace = await env.run(['restore', 'src']);
    assert.equal(runningInPlace.code, 1);
    assert.match(runningInPlace.stderr, /container src already exists \(running\): only a container a checkpoint stopped is restored in place/);

    assert.deepEqual(env.containerIds(), ['src']);
    assert.deepEqual(mountedUnder(env.stateDir), [join(env.stateDir, 'containers', 'src', 'rootfs')]);
    assert.equal(snapshot(image), before, 'the checkpoint was not modified');
    assert.deepEqual(readdirSync(env.stateDir).filter((n) => n.startsWith('.restore')), [], 'no unpacked leftovers');
  });

  test('a failed CRIU restore names its log and leaves no half-made container', async () => {
    const image = join(env.root, 'good');
    const broken = join(env.root, 'broken');
    cpSync(image, broken, { recursive: true });
    // Without its page maps CRIU fails at once. (Truncated page images make CRIU 4.1 spin forever; missing
    // core images are refused by stasis's own image check before CRIU runs.)
    const pagemaps = readdirSync(join(broken, 'checkpoint')).filter((n) => n.startsWith('pagemap-'));
    assert.ok(pagemaps.length > 0);
    for (const pagemap of pagemaps) rmSync(join(broken, 'checkpoint', pagemap));
    for (let round = 0; round < 2; round++) {
      const result = await env.run(['restore', 'half', '--checkpoint', broken]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /^stasis: restore half failed: /);
      const log = /CRIU log: (\S+)/.exec(result.stderr)?.[1];
      assert.ok(log && existsSync(log), result.stderr);
      assert.ok(!env.containerIds().includes('half'));
      assert.deepEqual(mountedUnder(join(env.stateDir, 'containers', 'half')), []);
    }
    // The ID is free again.
    await env.ok(['restore', 'half', '--checkpoint', image]);
    assert.equal((await env.json(['info', 'half'])).status, 'running');
    await env.ok(['delete', '-f', 'half', 'src']);
  });
});
