import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { COUNTER, TestEnv, eventually, mountedUnder, ROOTFS } from '../helpers.ts';

describe('container lifecycle on real runc + conmon', () => {
  const env = new TestEnv('lifecycle');
  after(() => env.cleanup());

  test('create, start, ps, info, logs, pause, resume, top, exec, kill, wait, delete', async () => {
    assert.equal(await env.ok(['create', 'web', '--rootfs', ROOTFS, '--label', 'tier=front', '--', ...COUNTER]), 'web\n');
    assert.equal(statSync(env.stateDir).mode & 0o777, 0o700, 'the state directory is created 0700');
    let info = await env.json(['info', 'web']);
    assert.equal(info.status, 'created');
    assert.ok(info.pid > 0);
    assert.deepEqual(info.labels, { tier: 'front' });
    assert.deepEqual(info.command, COUNTER);
    assert.equal(info.exit, null);
    assert.equal(info.restoredFrom, null);
    assert.match(info.createdAt, /^\d{4}-\d{2}-\d{2}T/);

    assert.equal(await env.ok(['start', 'web']), 'web\n');
    const ps = await env.ok(['ps']);
    assert.match(ps.split('\n')[0], /^ID\s+STATUS\s+PID\s+CREATED\s+COMMAND/);
    assert.match(ps, /web\s+running\s+\d+/);
    assert.deepEqual((await env.json(['ps'])).map((c: { id: string }) => c.id), ['web']);
    assert.equal(await env.ok(['ls', '-q']), 'web\n');

    await eventually(async () => (await env.ok(['logs', 'web'])).includes('count 2'), 'counter output');
    assert.equal((await env.ok(['logs', 'web', '--tail', '1'])).trim().split('\n').length, 1);

    await env.ok(['pause', 'web']);
    assert.equal((await env.json(['info', 'web'])).status, 'paused');
    const frozen = await env.ok(['logs', 'web']);
    await sleep(600);
    assert.equal(await env.ok(['logs', 'web']), frozen, 'no output while paused');
    await env.ok(['resume', 'web']);
    assert.equal((await env.json(['info', 'web'])).status, 'running');

    const top = await env.json(['top', 'web']);
    assert.ok(top.some((p: { command: string }) => p.command.startsWith('sh -c')), JSON.stringify(top));

    const exec = await env.run(['exec', 'web', '--env', 'GREETING=hi', '--cwd', '/etc', '--', 'sh', '-c', 'echo $GREETING; pwd; echo oops >&2; exit 7']);
    assert.equal(exec.code, 7);
    assert.equal(exec.stdout, 'hi\n/etc\n');
    assert.equal(exec.stderr, 'oops\n');

    await env.ok(['kill', 'web', '-s', 'KILL']);
    const waited = await env.run(['wait', 'web']);
    assert.equal(waited.stdout, '137\n');
    assert.equal(waited.code, 137);
    info = await env.json(['info', 'web']);
    assert.equal(info.status, 'stopped');
    assert.equal(info.exit.status, 137);

    const deleted = await env.ok(['delete', 'web']);
    assert.match(deleted, /^web exited with status 137 at \d{4}-\d{2}-\d{2}T[\d:.]+Z\n$/);
    assert.equal(env.containerIds().length, 0);
    assert.deepEqual(mountedUnder(env.root), []);

    const topics = (await env.ok(['events', '--no-follow', 'web'])).trim().split('\n').map((l) => l.split(' ')[1]);
    assert.deepEqual(topics, ['/containers/create', '/tasks/create', '/tasks/start', '/tasks/paused', '/tasks/resumed', '/tasks/exec-started', '/tasks/exit', '/tasks/delete', '/containers/delete']);
  });

  test('an exit is recorded by the monitor while no stasis command runs', async () => {
    await env.ok(['run', '-d', 'short', '--', 'sh', '-c', 'sleep 0.3; exit 5']);
    // No stasis command runs while the container exits: the monitor's exit hook records it.
    const journal = join(env.stateDir, 'events.jsonl');
    await eventually(() => readFileSync(journal, 'utf8').includes('"topic":"/tasks/exit","id":"short"'), 'the /tasks/exit event');
    const exit = readFileSync(journal, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.topic === '/tasks/exit' && e.id === 'short');
    assert.equal(exit.event.status, 5);
    assert.ok(exit.event.pid > 0);
    assert.match(exit.event.exitedAt, /Z$/);
    const record = JSON.parse(readFileSync(join(env.stateDir, 'containers', 'short', 'state.json'), 'utf8'));
    assert.equal(record.status, 'stopped');
    assert.equal(record.exit.status, 5);
    const ps = await env.ok(['ps']);
    assert.match(ps, /short\s+stopped \(5\)/);
    const json = await env.json(['delete', 'short']);
    assert.deepEqual(json.map((r: { id: string; status: number }) => [r.id, r.status]), [['short', 5]]);
  });

  test('--rm -d removes the container when it exits', async () => {
    await env.ok(['run', '-d', '--rm', 'gone', '--', 'true']);
    await eventually(() => !existsSync(join(env.stateDir, 'containers', 'gone')), 'removal of the container');
    const events = await env.ok(['events', '--no-follow', '--topic', '/containers/delete', 'gone']);
    assert.match(events, /\/containers\/delete gone/);
  });

  test('options reach the spec and the cgroup', async () => {
    const out = join(env.root, 'out.txt');
    await env.ok(['run', '-d', 'opts', '--memory', '64m', '--pids-limit', '20', '-e', 'A=1', '-e', 'B=two words', '--cwd', '/tmp', '--', 'sleep', '100']);
    const spec = JSON.parse(readFileSync(join(env.stateDir, 'containers', 'opts', 'config.json'), 'utf8'));
    assert.equal(spec.linux.resources.memory.limit, 64 * 1024 * 1024);
    assert.equal(spec.linux.resources.pids.limit, 20);
    const cgroup = spec.linux.cgroupsPath;
    assert.equal(readFileSync(`/sys/fs/cgroup/memory${cgroup}/memory.limit_in_bytes`, 'utf8').trim(), String(64 * 1024 * 1024));
    assert.equal(readFileSync(`/sys/fs/cgroup/pids${cgroup}/pids.max`, 'utf8').trim(), '20');
    const shown = await env.run(['exec', 'opts', '--', 'sh', '-c', 'echo "$A|$B|$(pwd)"']);
    assert.equal(shown.stdout, '1|two words|/tmp\n');
    await env.ok(['delete', '-f', 'opts']);

    // Attached: the stream without a file comes straight to run's own stderr.
    const attached = await env.run(['run', '--rm', 'tofile', '--stdout', out, '--', 'sh', '-c', 'echo to-file; echo to-err >&2']);
    assert.equal(attached.code, 0);
    assert.equal(attached.stderr, 'to-err\n');
    assert.equal(readFileSync(out, 'utf8'), 'to-file\n');
    // Detached: the stream without a file is captured for logs.
    await env.ok(['run', '-d', 'tofile2', '--stdout', out, '--', 'sh', '-c', 'echo again; echo to-err >&2']);
    assert.equal((await env.run(['wait', 'tofile2'])).code, 0);
    const logs = await env.run(['logs', 'tofile2']);
    assert.equal(logs.stderr, 'to-err\n', 'stderr is captured');
    assert.equal(readFileSync(out, 'utf8'), 'to-file\nagain\n', '--stdout appends');
    await env.ok(['delete', 'tofile2']);

    const input = join(env.root, 'in.txt');
    (await import('node:fs')).writeFileSync(input, 'line one\nline two\n');
    const fromFile = await env.run(['run', '--rm', 'fromfile', '--stdin', input, '--', 'wc', '-l']);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout.trim(), '2');
  });

  test('when many containers exit at once, every exit is recorded and at most 4 exit hooks run at a time', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `many${i}`);
    for (const id of ids) await env.ok(['run', '-d', id, '--', 'sleep', '100']);
    /** Node processes running `stasis __exit` for this state dir (not the flock processes queued in front of them). */
    const runningHooks = () => {
      let count = 0;
      for (const name of readdirSync('/proc')) {
        if (!/^\d+$/.test(name)) continue;
        try {
          const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
          if (argv[0] === process.execPath && argv.includes('__exit') && argv.includes(env.stateDir)) count++;
        } catch { /* gone */ }
      }
      return count;
    };
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, runningHooks());
        await sleep(5);
      }
    })();
    try {
      // All at once, as a host shutting down or the OOM killer would: straight from here.
      const pids = (await env.json(['ps'])).map((c: { pid: number }) => c.pid);
      assert.equal(pids.length, ids.length);
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      const journal = join(env.stateDir, 'events.jsonl');
      await eventually(
        () => readFileSync(journal, 'utf8').split('\n').filter((l) => l.includes('"topic":"/tasks/exit"') && l.includes('"id":"many')).length === ids.length,
        'all 12 /tasks/exit events',
        30_000,
      );
      await eventually(() => runningHooks() === 0, 'the hooks to finish');
    } finally {
      sampling = false;
      await sampler;
    }
    assert.ok(most >= 1, 'the sampler saw the hooks run');
    assert.ok(most <= 4, `${most} exit hooks ran at once`);
    for (const id of ids) assert.equal((await env.json(['info', id])).exit.status, 137);
    await env.ok(['delete', ...ids]);
  });

  test('delete -f stops a running, a created and a paused container and leaves nothing behind', async () => {
    await env.ok(['run', '-d', 'fr', '--', 'sh', '-c', 'sleep 100 & sleep 100']);
    await env.ok(['create', 'fc', '--', 'sleep', '100']);
    await env.ok(['run', '-d', 'fp', '--', 'sleep', '100']);
    await env.ok(['pause', 'fp']);
    for (const id of ['fr', 'fc', 'fp']) {
      const info = await env.json(['info', id]);
      const cgroup = JSON.parse(readFileSync(join(info.stateDir, 'config.json'), 'utf8')).linux.cgroupsPath;
      const result = await env.run(['delete', '-f', id]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^${id} exited with status 137 at `));
      assert.throws(() => process.kill(info.pid, 0), `${id}'s process is gone`);
      assert.equal(existsSync(join(env.stateDir, 'runc', id)), false, `runc's state of ${id}`);
      assert.equal(existsSync(`/sys/fs/cgroup/pids${cgroup}`), false, `${id}'s cgroup`);
      assert.equal(existsSync(info.stateDir), false, `${id}'s folder`);
      const exits = await env.ok(['events', '--no-follow', '--topic', '/tasks/exit', id]);
      assert.match(exits, /"status":137/);
    }
  });

  test('the base rootfs is never written and containers share it', async () => {
    await env.ok(['run', '--rm', 'w1', '--', 'sh', '-c', 'echo one > /etc/written; rm /etc/hosts']);
    await env.ok(['run', '--rm', 'w2', '--', 'sh', '-c', 'test ! -e /etc/written && test -e /etc/hosts']);
    assert.equal(existsSync(join(ROOTFS, 'etc', 'written')), false);
    assert.equal(existsSync(join(ROOTFS, 'etc', 'hosts')), true);
  });
});
