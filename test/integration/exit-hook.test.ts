// conmon's exit command (stasis __exit): exits are recorded while no stasis command runs (real runc + conmon).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, CONTAINERS, TestEnv, eventually, requires } from '../helpers.ts';

describe('exit hook', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('exit-hook');
  after(() => env.cleanup());

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

  test('when many containers exit at once, every exit is recorded and at most 4 exit hooks run at a time', { skip: requires('flock') }, async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `many${i}`);
    for (const id of ids) await env.ok(['run', '-d', id, '--', 'sleep', '100']);
    /** Processes running `stasis __exit` for this state dir (not the flock processes queued in front of them). */
    const runningHooks = () => {
      let count = 0;
      for (const name of readdirSync('/proc')) {
        if (!/^\d+$/.test(name)) continue;
        try {
          const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
          if (argv[0] === CLI[0] && argv.includes('__exit') && argv.includes(env.stateDir)) count++;
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
});
