// stasis checkpoint (with the restores that prove what it captured), on real runc, CRIU and conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, CONTAINERS, COUNTER, ROOTFS, TestEnv, counterAdvances, eventually, lastCount, requires, pipeline } from '../helpers.ts';

const CHECKPOINTS = requires(...CONTAINERS, 'criu');

describe('checkpoint', { skip: CHECKPOINTS }, () => {
  const env = new TestEnv('checkpoint');
  after(() => env.cleanup());

  test('a counter continues where it was, checkpointed and restored in place twice', async () => {
    await env.ok(['run', '-d', 'web', '--', ...COUNTER]);
    await counterAdvances(env, 'web', 2);
    for (let round = 1; round <= 2; round++) {
      const { pid } = await env.json(['info', 'web']);
      const path = (await env.ok(['checkpoint', 'web'])).trim();
      assert.ok(existsSync(join(path, 'checkpoint', 'inventory.img')), path);
      for (const file of ['spec.dump', 'config.dump', 'stasis.json', 'rootfs-diff.tar', 'deleted.files', 'stats-dump', 'dump.log']) {
        assert.ok(existsSync(join(path, file)), `${file} in ${path}`);
      }
      const stopped = await env.json(['info', 'web']);
      assert.equal(stopped.status, 'stopped');
      assert.equal(stopped.exit, null, 'a checkpoint is not an exit');
      assert.equal(stopped.checkpointed, true);
      assert.throws(() => process.kill(pid, 0), 'the checkpoint stopped its process');
      const atCheckpoint = lastCount(await env.ok(['logs', 'web']));

      assert.equal(await env.ok(['restore', 'web']), 'web\n');
      const restored = await env.json(['info', 'web']);
      assert.equal(restored.status, 'running');
      assert.equal(restored.restoredFrom, path);
      const after = await counterAdvances(env, 'web', atCheckpoint + 1);
      const counts = [...(await env.ok(['logs', 'web'])).matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
      // Not restarted: the numbers after the checkpoint go on from it, never back to 0.
      assert.equal(counts.filter((c) => c === 0).length, 1, 'the counter never restarted');
      assert.equal(counts[counts.indexOf(atCheckpoint) + 1], atCheckpoint + 1, 'the first count after the restore is the next one');
      assert.ok(after > atCheckpoint);
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

  test("checkpoint inspect: the process tree with each process's full command line and memory, from CRIU's images", async () => {
    const script = 'sleep 86400 & sleep 86401 & wait';
    await env.ok(['run', '-d', 'tree', '--', 'sh', '-c', script]);
    const { pid } = await env.json(['info', 'tree']);
    await eventually(() => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).length === 2, 'both sleeps to start');
    const path = (await env.ok(['checkpoint', 'tree', '-R'])).trim();
    const report = await env.json(['checkpoint', 'inspect', path]);
    const commands = report.processes.map((p: { command: string[] }) => JSON.stringify(p.command)).sort();
    assert.deepEqual(commands, [JSON.stringify(['sh', '-c', script]), JSON.stringify(['sleep', '86400']), JSON.stringify(['sleep', '86401'])]);
    const root = report.processes.find((p: { ppid: number }) => p.ppid === 0);
    assert.ok(root, 'pstree has a root task');
    for (const p of report.processes) {
      assert.ok(p.memoryBytes > 0 && p.memoryBytes % 4096 === 0, `memory written for ${p.pid}: ${p.memoryBytes}`);
      assert.ok(p.mappedBytes >= p.memoryBytes, `mapped ${p.mappedBytes} >= written ${p.memoryBytes}`);
      if (p !== root) assert.equal(p.ppid, root.pid, 'the sleeps are the shell\'s children');
    }
    const text = await env.ok(['checkpoint', 'inspect', path]);
    assert.match(text, /^Process tree/m);
    assert.match(text, new RegExp(`^  ${root.pid} .* sh -c ${JSON.stringify(script).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    assert.match(text, /^    \d+ .*KiB .* sleep 86400$/m, 'a child is shown under its parent, with its memory');
    await env.ok(['rm', '-f', 'tree']);
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
      // The clone's log carries the original's up to the checkpoint (logs travel with it), then goes on: count 0 once.
      const cloneLog = await env.ok(['logs', `clone${round}`]);
      assert.equal(cloneLog.split('count 0\n').length - 1, 1, 'the clone did not start over');
      await counterAdvances(env, 'orig', atSnapshot + 1);
    }
    // The same image restores twice; one archive into two IDs at once.
    const again = await env.run(['restore', 'clone3', '--checkpoint', join(env.root, 'snap1')]);
    assert.equal(again.code, 0, again.stderr);
    await env.ok(['delete', '-f', 'orig', 'clone1', 'clone2', 'clone3']);
  });

  test('frozen through its cgroup v1 freezer, not by a runc pause, before the capture; thawed the same way after', { skip: !existsSync('/sys/fs/cgroup/freezer') && 'no cgroup v1 freezer' }, async () => {
    await env.ok(['run', '-d', 'fz', '--', ...COUNTER]);
    await counterAdvances(env, 'fz', 1);
    const result = await env.run(['--debug', 'checkpoint', 'fz', '--leave-running']);
    assert.equal(result.code, 0, result.stderr);
    const log = result.stderr;
    const froze = log.search(/froze fz through \/sys\/fs\/cgroup\/freezer\/\S+, as runc pause would/);
    const dump = log.search(/ checkpoint --image-path /);
    const thawed = log.search(/thawed fz through \/sys\/fs\/cgroup\/freezer\/\S+, as runc resume would/);
    assert.ok(froze >= 0 && thawed >= 0, log);
    assert.ok(froze < log.indexOf('capturing rootfs changes') && froze < dump && dump < thawed, `frozen before the capture and the dump, thawed after:\n${log}`);
    assert.doesNotMatch(log, / (pause|resume) fz\n/, 'runc was not asked to pause or resume it');
    const { pid } = await env.json(['info', 'fz']);
    const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1] === 'freezer')!.split(':')[2];
    assert.equal(readFileSync(`/sys/fs/cgroup/freezer${cgroup}/freezer.state`, 'utf8').trim(), 'THAWED');
    await counterAdvances(env, 'fz', lastCount(await env.ok(['logs', 'fz'])) + 1);
    await env.ok(['delete', '-f', 'fz']);
  });

  test("CRIU skips its network lock where lo and the container are all there is; keeps it for --tcp-established and a process that joined", async () => {
    await env.ok(['run', '-d', 'nl', '--', ...COUNTER]);
    await counterAdvances(env, 'nl', 1);
    const { pid } = await env.json(['info', 'nl']);
    // A kernel with sit/ipip/gre loaded gives every new namespace fallback tunnel devices: then the lock stays.
    const onlyLo = readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').slice(2).filter((l) => l.trim() !== '').map((l) => l.split(':')[0].trim()).join(',') === 'lo';
    const named = (path: string) => /Parsing config file \S+\/stasis-criu-dump\.conf/.test(readFileSync(join(path, 'dump.log'), 'utf8'));
    const state = join(env.stateDir, 'runc', 'nl', 'state.json');
    const before = readFileSync(state, 'utf8');
    const plain = join(env.root, 'nl-plain');
    await env.ok(['checkpoint', 'nl', '--leave-running', '--image-path', plain]);
    assert.equal(named(plain), onlyLo, `the lock skipped only in a namespace with nothing but lo (only lo: ${onlyLo})`);
    assert.equal(readFileSync(state, 'utf8'), before, "runc's state as it was");
    assert.equal(existsSync(join(plain, 'stasis-criu-dump.conf')), false, 'not left in the checkpoint');
    const established = join(env.root, 'nl-tcp');
    await env.ok(['checkpoint', 'nl', '--leave-running', '--tcp-established', '--image-path', established]);
    assert.equal(named(established), false, 'the lock stays for established connections');
    // A process outside the container in its namespace is a peer that is not frozen: the lock stays.
    const joined = spawn('nsenter', [`--net=/proc/${pid}/ns/net`, 'sleep', '600'], { stdio: 'ignore' });
    try {
      await eventually(() => { try { return readlinkSync(`/proc/${joined.pid}/ns/net`) === readlinkSync(`/proc/${pid}/ns/net`); } catch { return false; } }, 'nsenter to join');
      const shared = join(env.root, 'nl-shared');
      await env.ok(['checkpoint', 'nl', '--leave-running', '--image-path', shared]);
      assert.equal(named(shared), false, 'the lock stays while another process shares the namespace');
    } finally {
      joined.kill('SIGKILL');
    }
    await counterAdvances(env, 'nl', lastCount(await env.ok(['logs', 'nl'])) + 1);
    // The skipped lock's checkpoint restores like any other.
    await env.ok(['create', 'nl-clone', '--checkpoint', plain]);
    await counterAdvances(env, 'nl-clone', 1);
    await env.ok(['delete', '-f', 'nl', 'nl-clone']);
  });

  test('two checkpoint --leave-running of one container in quick succession get two folders', async () => {
    await env.ok(['run', '-d', 'twice', '--', ...COUNTER]);
    await counterAdvances(env, 'twice', 1);
    const [first, second] = await Promise.all([env.run(['--json', 'checkpoint', 'twice', '--leave-running']), env.run(['--json', 'checkpoint', 'twice', '--leave-running'])]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const paths = [JSON.parse(first.stdout).path, JSON.parse(second.stdout).path];
    assert.notEqual(paths[0], paths[1]);
    for (const path of paths) assert.ok(existsSync(join(path, 'checkpoint', 'inventory.img')), path);
    assert.deepEqual(readdirSync(join(env.checkpointDir, 'twice')).sort(), paths.map((p) => p.split('/').at(-1)).sort(), 'two folders, no partial one');
    assert.equal((await env.json(['info', 'twice'])).status, 'running');
    await env.ok(['delete', '-f', 'twice']);
  });

  test('export, delete the original, restore the archive onto a fresh copy of the base', { skip: requires('checkpointctl') }, async () => {
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

describe('checkpoint failures change nothing', { skip: CHECKPOINTS }, () => {
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
      await env.ok(['run', '-d', 'big', '--', 'sh', '-c', 'head -c 4000000 /dev/zero | tr "\\0" x > /dev/shm/fill; echo filled; while true; do sleep 1; done']);
      await eventually(async () => (await env.ok(['logs', 'big'])).includes('filled'), 'the 4 MB written');
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
});


describe('checkpoint archives on a pipe and in a folder', { skip: CHECKPOINTS }, () => {
  const env = new TestEnv('checkpoint-pipe');
  const other = new TestEnv('checkpoint-pipe-other');
  after(async () => {
    await env.cleanup();
    await other.cleanup();
  });

  test('checkpoint --export - | restore --checkpoint - into another state directory and back, twice', async () => {
    await env.ok(['run', '-d', 'web', '--', 'sh', '-c', 'echo kept > /root/made; i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done']);
    let count = await counterAdvances(env, 'web', 1);
    for (let round = 0; round < 2; round++) {
      const [out, into] = await pipeline(env, ['checkpoint', 'web', '--export', '-'], other, ['restore', 'web', '--checkpoint', '-', '--rootfs', ROOTFS]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(into.code, 0, into.stderr);
      assert.equal(into.stdout, 'web\n');
      assert.equal((await env.json(['info', 'web'])).status, 'stopped', 'the checkpoint stopped it here');
      const there = await other.json(['info', 'web']);
      assert.equal(there.restoredFrom, 'stdin');
      count = await counterAdvances(other, 'web', count);
      assert.equal(await other.ok(['exec', 'web', '--', 'cat', '/root/made']), 'kept\n');
      // And back: restored in place here, from the stream.
      const [back, home] = await pipeline(other, ['checkpoint', 'web', '--export', '-', '-c', 'gzip'], env, ['--json', 'restore', 'web', '--checkpoint', '-', '--rootfs', ROOTFS]);
      assert.equal(back.code, 0, back.stderr);
      assert.equal(home.code, 0, home.stderr);
      const restored = JSON.parse(home.stdout);
      assert.equal(restored.inPlace, true);
      assert.equal(restored.trusted, false, 'written by the other state directory');
      assert.deepEqual(restored.engine.engine, 'stasis');
      count = await counterAdvances(env, 'web', count);
      await other.ok(['delete', 'web']);
    }
    const counts = [...(await env.ok(['logs', 'web'])).matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
    assert.equal(counts.filter((c) => c === 0).length, 1, 'never started again');
  });

  test('the archive on stdout: zstd, or -c; --json goes to stderr; a terminal is refused', async () => {
    const raw = (args: string[]) => spawnSync(CLI[0], env.args(args), { encoding: 'buffer', env: { ...process.env, NO_COLOR: '1' } });
    const zstd = raw(['checkpoint', 'web', '-R', '--export', '-']);
    assert.equal(zstd.status, 0, zstd.stderr.toString());
    assert.deepEqual([...zstd.stdout.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
    const plain = raw(['--json', 'checkpoint', 'web', '-R', '-e', '-', '-c', 'none']);
    assert.equal(plain.status, 0, plain.stderr.toString());
    assert.equal(plain.stdout.subarray(257, 262).toString(), 'ustar', 'a plain tar');
    const report = JSON.parse(plain.stderr.toString());
    assert.equal(report.exported, '-');
    assert.equal(report.leftRunning, true);
    // script(1) gives the command a terminal as its stdout.
    const tty = spawnSync('script', ['-qec', [CLI[0], ...env.args(['checkpoint', 'web', '--export', '-'])].join(' '), '/dev/null'], { encoding: 'utf8' });
    assert.equal(tty.status, 2, tty.stdout);
    assert.match(tty.stdout, /--export -: stdout is a terminal; the archive is binary/);
    assert.equal((await env.json(['info', 'web'])).status, 'running');
  });

  test('--export DIR: checkpoint-ID-TIME.tar.zst, which checkpointctl list finds; --print-stats', { skip: requires('checkpointctl') }, async () => {
    const dir = join(env.root, 'exports');
    mkdirSync(dir);
    const result = await env.run(['checkpoint', 'web', '-R', '-e', dir, '--print-stats', '--keep']);
    assert.equal(result.code, 0, result.stderr);
    const archive = result.stdout.trim();
    assert.match(archive, new RegExp(`^${dir}/checkpoint-web-\\d{8}T\\d{6}\\.\\d{3}Z\\.tar\\.zst$`));
    assert.match(result.stderr, /^CRIU dump statistics:\n {2}freezing time +\d+ us\n/m);
    assert.match(result.stderr, /pages written +\d+\n/);
    assert.match(result.stderr, /stasis checkpoint in total +\d+ ms\n/);
    const listed = spawnSync('checkpointctl', ['list', dir], { encoding: 'utf8' });
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`\\bweb\\b.*${archive.split('/').at(-1)!.replace(/\./g, '\\.')}`));
    await env.fails(2, ['checkpoint', 'web', '-R', '-e', join(dir, 'a.tar'), '-c', 'gzip'], /--export .*a\.tar: the name says an uncompressed tar, but gzip was asked for/);
    await env.fails(2, ['checkpoint', 'web', '-c', 'gzip'], /-c\/--compress is for the archive of --export/);
    await env.fails(2, ['checkpoint', 'web', '--ignore-rootfs'], /--ignore-rootfs is for --export and --create-image/);
    await env.fails(2, ['checkpoint', 'web', '--create-image', 'web.tar'], /--create-image "web\.tar": not an image reference/);
    assert.equal((await env.json(['info', 'web'])).status, 'running');
    await env.ok(['delete', '-f', 'web']);
  });
});
