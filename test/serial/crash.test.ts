// Runs alone (test/serial/, after the rest): under the parallel suite, CRIU was seen to fail these
// dumps ("Can't lookup mount") while other tests mounted and unmounted overlays.
// kill -9 at random points of run -d, checkpoint, restore and delete -f: afterwards `ps` is
// honest, nothing is frozen, every container is intact or restorable, and delete -f leaves
// no process, mount, cgroup or runc state behind.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, COUNTER, TestEnv, mountedUnder, requires } from '../helpers.ts';

/**
 * Kill points per command: STASIS_CRASH_POINTS (default 20, what fits a CI pass; 100 is the bar
 * of issue 15, run by hand or nightly: about five times as long).
 */
const ROUNDS = (() => {
  const value = process.env.STASIS_CRASH_POINTS ?? '20';
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`STASIS_CRASH_POINTS=${value}: a number of kill points (1 or more)`);
  return Number(value);
})();

/** The stasis process is killed with SIGKILL after `delayMs`; runc, CRIU and conmon go on as they would. */
async function killedAfter(env: TestEnv, args: string[], delayMs: number): Promise<void> {
  const child = spawn(CLI[0], env.args(args), { stdio: 'ignore', env: { ...process.env, NO_COLOR: '1' } });
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  await sleep(delayMs);
  child.kill('SIGKILL');
  await closed;
}

interface Listed {
  id: string;
  status: string;
  pid: number | null;
  checkpointed: boolean;
}

/** Whether a process runs and is not frozen (cgroup v1 freezer or v2 cgroup.freeze). */
function runsUnfrozen(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  if (state === 'Z' || state === 'X') return false;
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers === 'freezer') {
      const file = `/sys/fs/cgroup/freezer${path}/freezer.state`;
      if (existsSync(file) && readFileSync(file, 'utf8').trim() !== 'THAWED') return false;
    }
    if (controllers === '' && path) {
      const file = `/sys/fs/cgroup${path}/cgroup.freeze`;
      if (existsSync(file) && readFileSync(file, 'utf8').trim() === '1') return false;
    }
  }
  return true;
}

/** What a failure message needs to tell whose fault it was: the record, the folder, runc's view, the freezer, what still runs. */
function evidence(env: TestEnv, id: string, pid: number | null): string {
  const dir = join(env.stateDir, 'containers', id);
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim() : '(none)');
  const runc = spawnSync('runc', ['--root', join(env.stateDir, 'runc'), 'state', id], { encoding: 'utf8' });
  const working = spawnSync('sh', ['-c', `ps -eo pid,ppid,stat,args | grep -F -- '${dir}' | grep -v grep | cut -c1-200`], { encoding: 'utf8' }).stdout.trim();
  let freezer = '(none)';
  if (pid !== null && existsSync(`/proc/${pid}/cgroup`)) {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1] === 'freezer');
    if (line) freezer = read(`/sys/fs/cgroup/freezer${line.split(':')[2]}/freezer.state`);
  }
  return [
    `record: ${read(join(dir, 'state.json')).replace(/\s+/g, ' ')}`,
    `folder: ${existsSync(dir) ? readdirSync(dir).join(' ') : '(none)'}`,
    `pid file: ${read(join(dir, 'pid'))}; conmon.pid: ${read(join(dir, 'conmon.pid'))}; exit: ${read(join(dir, 'exit'))}`,
    `runc state: ${(runc.stdout || runc.stderr).replace(/\s+/g, ' ')}`,
    `process ${pid}: ${pid === null ? '-' : read(`/proc/${pid}/stat`)}; freezer: ${freezer}`,
    `at work on its folder:\n${working}`,
    `journal: ${read(join(env.stateDir, 'events.jsonl')).split('\n').slice(-6).join('\n')}`,
  ].join('\n');
}

/** ps agrees with the processes: running ones run and are not frozen, stopped ones have no process. */
async function assertHonest(env: TestEnv, when: string): Promise<Listed[]> {
  // "creating" means a command holds the container's lock: conmon's exit hook may, for a moment.
  let listed: Listed[] = await env.json(['ps']);
  for (let tries = 0; tries < 100 && listed.some((c) => c.status === 'creating'); tries++) {
    await sleep(100);
    listed = await env.json(['ps']);
  }
  for (const c of listed) {
    // (The evidence is gathered only for a failure: it runs runc and ps.)
    if (c.status === 'running' && !(c.pid !== null && runsUnfrozen(c.pid))) {
      assert.fail(`${when}: ${c.id} is listed running but its process ${c.pid} is not running unfrozen\n${evidence(env, c.id, c.pid)}`);
    }
    if (c.status === 'stopped') assert.equal(c.pid, null, `${when}: ${c.id} is stopped with a pid`);
    assert.notEqual(c.status, 'creating', `${when}: ${c.id} still "creating" with no command left`);
  }
  return listed;
}

describe('kill -9 at any point', { skip: requires('root', 'runc', 'conmon', 'criu') }, () => {
  const env = new TestEnv('crash');
  after(() => env.cleanup());
  const delay = (round: number) => 20 + ((round * 37) % 9) * 60; // 20..500 ms, spread over the rounds

  test(`run -d, checkpoint, restore and delete -f killed at ${ROUNDS} points each`, { timeout: ROUNDS * 45_000 }, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const id = `k${round}`;
      await killedAfter(env, ['run', '-d', id, '--', ...COUNTER], delay(round));
      let [c] = (await assertHonest(env, `run -d killed (round ${round})`)).filter((x) => x.id === id);
      if (c?.status !== 'running') {
        // Interrupted before the container ran: delete -f clears it, and the ID is free again.
        if (c) await env.ok(['delete', '-f', id]);
        await env.ok(['run', '-d', id, '--', ...COUNTER]);
      }

      await killedAfter(env, ['checkpoint', id], delay(round + 3));
      [c] = (await assertHonest(env, `checkpoint killed (round ${round})`)).filter((x) => x.id === id);
      if (!(c.status === 'running' || (c.status === 'stopped' && c.checkpointed))) {
        // What was kept (the record, CRIU's logs) says whose failure it was.
        const logs = existsSync(join(env.stateDir, 'logs')) ? readdirSync(join(env.stateDir, 'logs')).filter((n) => n.startsWith(`${id}-`)) : [];
        const tails = logs.map((n) => `${n}:\n${readFileSync(join(env.stateDir, 'logs', n), 'utf8').split('\n').filter((l) => /Error|FAILED/.test(l)).slice(-5).join('\n')}`);
        assert.fail(`checkpoint killed (round ${round}): ${id} is ${c.status}, neither running nor stopped by a checkpoint\ninfo: ${JSON.stringify(await env.json(['info', id]))}\n${tails.join('\n')}`);
      }
      if (c.status === 'running') {
        const again = await env.run(['checkpoint', id]);
        if (again.code !== 0) {
          // CRIU itself can fail a dump (seen here under load: "Can't lookup mount ... path=/"); what
          // must hold then is that the container goes on, unfrozen, and is listed so.
          // stasis heads the error with CRIU's own first error line ("CRIU: ..."), or runc's words
          // when CRIU's log has none.
          assert.match(again.stderr, /CRIU: |criu failed/, again.stderr);
          [c] = (await assertHonest(env, `checkpoint failed in CRIU (round ${round})`)).filter((x) => x.id === id);
          assert.equal(c.status, 'running');
          await env.ok(['delete', '-f', id]);
          continue;
        }
      }

      await killedAfter(env, ['restore', id], delay(round + 5));
      [c] = (await assertHonest(env, `restore killed (round ${round})`)).filter((x) => x.id === id);
      if (c.status !== 'running') {
        // Not restored yet, or the create was cut short: the checkpoint is still there to restore.
        const evidenceNow = evidence(env, id, c.pid);
        const info = JSON.stringify(await env.json(['info', id]));
        assert.ok(c.checkpointed || /interrupted/.test(info), `restore killed (round ${round}): ${id} is ${c.status}\ninfo then: ${info}\n${evidenceNow}`);
        if (!c.checkpointed) {
          await env.ok(['delete', '-f', id]);
          const folders = readdirSync(join(env.checkpointDir, id)).filter((n) => !n.startsWith('.')).sort();
          await env.ok(['restore', id, '--checkpoint', join(env.checkpointDir, id, folders[folders.length - 1])]);
        } else {
          await env.ok(['restore', id]);
        }
      }
      assert.equal((await env.json(['info', id])).status, 'running', `round ${round}: ${id} runs again`);

      await killedAfter(env, ['delete', '-f', id], delay(round + 7));
      await assertHonest(env, `delete -f killed (round ${round})`);
      if (env.containerIds().includes(id)) await env.ok(['delete', '-f', id]);
      assert.ok(!env.containerIds().includes(id));
    }
    // Nothing of any of them is left.
    assert.deepEqual(env.containerIds(), []);
    assert.deepEqual(mountedUnder(join(env.stateDir, 'containers')), []);
    assert.deepEqual(existsSync(join(env.stateDir, 'runc')) ? readdirSync(join(env.stateDir, 'runc')) : [], []);
    const cgroups = readdirSync('/sys/fs/cgroup', { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .flatMap((d) => readdirSync(join('/sys/fs/cgroup', d.name)).filter((n) => /^stasis-/.test(n) && /-k\d+$/.test(n)).map((n) => join(d.name, n)));
    const ours = cgroups.filter((dir) => existsSync(join('/sys/fs/cgroup', dir, 'cgroup.procs')) && readFileSync(join('/sys/fs/cgroup', dir, 'cgroup.procs'), 'utf8').trim() !== '');
    assert.deepEqual(ours, [], 'no process is left in a container cgroup');
  });
});
