// Runs alone (test/serial/, after the rest): under the parallel suite, CRIU was seen to fail these
// dumps ("Can't lookup mount") while other tests mounted and unmounted overlays.
// kill -9 at spread points of every command that changes a container (run -d, checkpoint with
// and without --leave-running and --export, restore in place, from a folder and from an archive,
// migrate, delete -f): afterwards `ps` is honest, nothing is frozen, every container is intact
// or restorable, no input is changed, and delete -f leaves no process, mount, cgroup, runc
// state or scratch folder behind.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, COUNTER, TestEnv, eventually, mountedUnder, requires } from '../helpers.ts';

/**
 * Kill points per command: STASIS_CRASH_POINTS (default 100, issue 15's bar; scripts/test.sh gives
 * the second pass, under Node, 20: both at 100 would not fit CI's time).
 */
const ROUNDS = (() => {
  const value = process.env.STASIS_CRASH_POINTS ?? '100';
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`STASIS_CRASH_POINTS=${value}: a number of kill points (1 or more)`);
  return Number(value);
})();

/**
 * Where the kills fall. Each command's k-th kill comes at frac(k·φ) of its own length, as measured
 * here (its slowest run that was not killed, × 1.25): 100 distinct points across every step of it,
 * on a fast machine or a slow one. Only where a kill falls comes from the clock; what must hold
 * after it does not.
 */
class KillPoints {
  private readonly longest = new Map<string, number>();

  /** Runs `args` to the end (it must succeed) and notes how long `kind` took. */
  async measure(env: TestEnv, kind: string, args: string[]): Promise<string> {
    const started = performance.now();
    const out = await env.ok(args);
    this.note(kind, performance.now() - started);
    return out;
  }

  note(kind: string, ms: number): void {
    this.longest.set(kind, Math.max(this.longest.get(kind) ?? 0, ms));
  }

  /** The `round`-th point of `kind`, in ms after its start. */
  at(kind: string, round: number): number {
    const span = (this.longest.get(kind) ?? 500) * 1.25;
    return 5 + (((round + 1) * 0.6180339887498949) % 1) * span;
  }

  /** Runs `args` and kills stasis with SIGKILL at its `round`-th point; runc, CRIU and conmon go on as they would. */
  async kill(env: TestEnv, kind: string, args: string[], round: number): Promise<void> {
    const child = spawn(CLI[0], env.args(args), { stdio: 'ignore', env: { ...process.env, NO_COLOR: '1' } });
    const started = performance.now();
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const done = await Promise.race([closed.then(() => true), sleep(this.at(kind, round)).then(() => false)]);
    // Done before its point: how long it takes is known better now.
    if (done && (await closed) === 0) this.note(kind, performance.now() - started);
    else child.kill('SIGKILL');
    await closed;
  }
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
  const list = async (): Promise<Listed[]> => {
    const result = await env.run(['--json', 'ps'], { timeoutMs: 60_000 });
    if (result.code === 0) return JSON.parse(result.stdout) as Listed[];
    const records = env.containerIds().map((id) => {
      const file = join(env.stateDir, 'containers', id, 'state.json');
      return `${id}: ${existsSync(file) ? readFileSync(file, 'utf8').replace(/\s+/g, ' ').slice(0, 400) : '(no record)'}`;
    });
    const working = spawnSync('sh', ['-c', `ps -eo pid,ppid,stat,wchan:20,args | grep -F -- '${env.root}' | grep -v grep | cut -c1-300`], { encoding: 'utf8' }).stdout;
    const debug = await env.run(['--debug', 'ps'], { timeoutMs: 20_000 });
    const folders = env.containerIds().map((id) => `${id}: ${readdirSync(join(env.stateDir, 'containers', id)).join(' ')}`);
    assert.fail(`${when}: ps exited ${result.code ?? result.signal}: ${result.stderr}\n${records.join('\n')}\n${folders.join('\n')}\nat work:\n${working}\nps --debug: ${debug.code ?? debug.signal}\n${debug.stderr.slice(-3000)}`);
  };
  let listed = await list();
  for (let tries = 0; tries < 100 && listed.some((c) => c.status === 'creating'); tries++) {
    await sleep(100);
    listed = await list();
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


/** The container as `info` gives it, once any command killed half way is finished or undone (info does that); null if there is none. */
async function settled(env: TestEnv, id: string): Promise<Listed | null> {
  for (let tries = 0; ; tries++) {
    const result = await env.run(['--json', 'info', id]);
    if (result.code !== 0) {
      assert.match(result.stderr, /no such container|not found|does not exist/i, `info ${id}: ${result.stderr}`);
      return null;
    }
    const c = JSON.parse(result.stdout) as Listed;
    // "creating": a command holds the container's lock (conmon's exit hook recording a failed restore's end, for a moment).
    if (c.status !== 'creating' || tries >= 100) return c;
    await sleep(100);
  }
}

/** A folder's files and their contents, for "the input was not changed". */
function treeDigest(dir: string): string {
  const hash = createHash('sha256');
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(at, entry.name);
      hash.update(`${path.slice(dir.length)}\0${entry.isDirectory() ? 'd' : entry.isFile() ? 'f' : 'o'}\0`);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) hash.update(readFileSync(path));
    }
  };
  walk(dir);
  return hash.digest('hex');
}

function fileDigest(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Every checkpoint folder kept for `id` is whole (a killed dump's work folder is gone once settled). */
function assertCheckpointsWhole(env: TestEnv, id: string, when: string): string[] {
  const dir = join(env.checkpointDir, id);
  const names = existsSync(dir) ? readdirSync(dir) : [];
  assert.deepEqual(names.filter((n) => n.startsWith('.')), [], `${when}: a killed dump's work folder is left in ${dir}`);
  for (const name of names) {
    for (const file of ['stats-dump', 'stasis.json', 'spec.dump', 'checkpoint/inventory.img']) {
      assert.ok(existsSync(join(dir, name, file)), `${when}: the kept checkpoint ${name} has no ${file}`);
    }
  }
  return names.sort().map((n) => join(dir, n));
}

/** Stasis processes still serving a move into `env` (`__migrate serve`/`receive` there, which undo it when its source dies). */
function movesServed(env: TestEnv): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return args.includes('__migrate') && args.includes(env.stateDir);
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** Scratch folders a killed command left: none once a command that sweeps them has run. */
function scratchLeft(env: TestEnv): string[] {
  return existsSync(env.stateDir) ? readdirSync(env.stateDir).filter((n) => n.startsWith('.restore-')) : [];
}

/** Container cgroups (stasis-...-ID) of the given IDs that still hold a process. */
function busyCgroups(ids: readonly string[]): string[] {
  return readdirSync('/sys/fs/cgroup', { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => readdirSync(join('/sys/fs/cgroup', d.name)).filter((n) => /^stasis-/.test(n) && ids.some((id) => n.endsWith(`-${id}`))).map((n) => join(d.name, n)))
    .filter((dir) => existsSync(join('/sys/fs/cgroup', dir, 'cgroup.procs')) && readFileSync(join('/sys/fs/cgroup', dir, 'cgroup.procs'), 'utf8').trim() !== '');
}

/** Nothing of any container is left in `env`: no record, mount or runc state. */
function assertEmpty(env: TestEnv): void {
  assert.deepEqual(env.containerIds(), []);
  assert.deepEqual(mountedUnder(join(env.stateDir, 'containers')), []);
  assert.deepEqual(existsSync(join(env.stateDir, 'runc')) ? readdirSync(join(env.stateDir, 'runc')) : [], []);
  assert.deepEqual(scratchLeft(env), [], 'no unpack folder is left');
}

// The suite's own time limit is the sum of its tests' (npm test's --test-timeout would cut 100 points short).
describe('kill -9 at any point', { skip: requires('root', 'runc', 'conmon', 'criu'), timeout: ROUNDS * (45_000 + 60_000 + 2 * 60_000) }, () => {
  const env = new TestEnv('crash');
  const there = new TestEnv('crash-there');
  after(async () => {
    await env.cleanup();
    await there.cleanup();
  });
  const points = new KillPoints();
  const used: string[] = [];

  test(`run -d, checkpoint, restore and delete -f killed at ${ROUNDS} points each`, { timeout: ROUNDS * 45_000 }, async () => {
    // Each command once, whole: how long each takes here.
    used.push('k-seed');
    await points.measure(env, 'run -d', ['run', '-d', 'k-seed', '--', ...COUNTER]);
    await points.measure(env, 'checkpoint', ['checkpoint', 'k-seed']);
    await points.measure(env, 'restore', ['restore', 'k-seed']);
    await points.measure(env, 'delete -f', ['delete', '-f', 'k-seed']);
    for (let round = 0; round < ROUNDS; round++) {
      const id = `k${round}`;
      used.push(id);
      await points.kill(env, 'run -d', ['run', '-d', id, '--', ...COUNTER], round);
      let [c] = (await assertHonest(env, `run -d killed (round ${round})`)).filter((x) => x.id === id);
      if (c?.status !== 'running') {
        // Interrupted before the container ran: delete -f clears it, and the ID is free again.
        if (c) await env.ok(['delete', '-f', id]);
        await env.ok(['run', '-d', id, '--', ...COUNTER]);
      }

      await points.kill(env, 'checkpoint', ['checkpoint', id], round);
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

      await points.kill(env, 'restore', ['restore', id], round);
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

      await points.kill(env, 'delete -f', ['delete', '-f', id], round);
      await assertHonest(env, `delete -f killed (round ${round})`);
      if (env.containerIds().includes(id)) await env.ok(['delete', '-f', id]);
      assert.ok(!env.containerIds().includes(id));
    }
    assertEmpty(env);
    assert.deepEqual(busyCgroups(used), [], 'no process is left in a container cgroup');
  });

  test(`checkpoint --leave-running, checkpoint --export, restore from an archive and from a folder killed at ${ROUNDS} points each`, { timeout: ROUNDS * 60_000 }, async () => {
    const id = 'cx';
    used.push(id);
    const archive = join(env.root, 'cx.tar');
    await env.ok(['run', '-d', id, '--', ...COUNTER]);
    // Each command once, whole: how long each takes here.
    await points.measure(env, 'checkpoint --leave-running', ['checkpoint', id, '--leave-running']);
    await points.measure(env, 'checkpoint --export', ['checkpoint', id, '--export', archive]);
    await env.ok(['restore', id]);
    used.push('ra-seed', 'rf-seed');
    await points.measure(env, 'ra', ['restore', 'ra-seed', '--checkpoint', archive]);
    await points.measure(env, 'rf', ['restore', 'rf-seed', '--checkpoint', assertCheckpointsWhole(env, id, 'the first checkpoint').at(-1)!]);
    await env.ok(['delete', '-f', 'ra-seed']);
    await env.ok(['delete', '-f', 'rf-seed']);
    for (let round = 0; round < ROUNDS; round++) {
      // A checkpoint that leaves the container running leaves it running, killed or not.
      await points.kill(env, 'checkpoint --leave-running', ['checkpoint', id, '--leave-running'], round);
      await assertHonest(env, `checkpoint --leave-running killed (round ${round})`);
      let c = await settled(env, id);
      assert.equal(c?.status, 'running', `checkpoint --leave-running killed (round ${round}): ${id} is ${c?.status}\n${evidence(env, id, c?.pid ?? null)}`);
      let kept = assertCheckpointsWhole(env, id, `checkpoint --leave-running killed (round ${round})`);
      // The store (older checkpoints packed into chunks) finishes or undoes what the kill left, and lists them all.
      assert.equal(JSON.parse(await env.ok(['--json', 'checkpoint', 'ls', id])).length, kept.length, `checkpoint ls after round ${round}`);

      // An export is the archive, whole, or nothing at that name; the container runs or a checkpoint stopped it.
      await points.kill(env, 'checkpoint --export', ['checkpoint', id, '--export', archive], round);
      await assertHonest(env, `checkpoint --export killed (round ${round})`);
      c = await settled(env, id);
      assert.ok(c !== null && (c.status === 'running' || (c.status === 'stopped' && c.checkpointed)), `checkpoint --export killed (round ${round}): ${id} is ${c?.status}\n${evidence(env, id, c?.pid ?? null)}`);
      kept = assertCheckpointsWhole(env, id, `checkpoint --export killed (round ${round})`);
      if (existsSync(archive)) await env.ok(['checkpoint', 'inspect', archive]);
      if (c.status === 'stopped') await env.ok(['restore', id]);
      // The next export to that name removes what a killed one left beside it.
      await env.ok(['checkpoint', id, '--export', archive, '--leave-running']);
      assert.deepEqual(readdirSync(env.root).filter((n) => n.startsWith('.cx.tar.')), [], 'a killed export left its temporary file');

      // A restore under a new ID from an archive or a folder: afterwards that container runs, or
      // delete -f removes it; the archive and the folder are as they were.
      if (kept.length === 0) {
        // Every --leave-running checkpoint so far was killed before it kept one (an export keeps none).
        await env.ok(['checkpoint', id, '--leave-running']);
        kept = assertCheckpointsWhole(env, id, `checkpoint --leave-running (round ${round})`);
      }
      const folder = kept[kept.length - 1];
      for (const [newId, from, digest] of [
        [`ra${round}`, archive, () => fileDigest(archive)],
        [`rf${round}`, folder, () => treeDigest(folder)],
      ] as const) {
        used.push(newId);
        const before = digest();
        await points.kill(env, newId.slice(0, 2), ['restore', newId, '--checkpoint', from], round);
        await assertHonest(env, `restore ${newId} --checkpoint killed (round ${round})`);
        const r = await settled(env, newId);
        assert.ok(r === null || r.status === 'running' || r.status === 'stopped', `restore ${newId} killed (round ${round}): ${r?.status}\n${evidence(env, newId, r?.pid ?? null)}`);
        // delete -f, or ps when there is no container (killed while unpacking), removes the unpack
        // folder once the tar the killed restore started has seen its input close.
        if (r !== null) await env.ok(['delete', '-f', newId]);
        await eventually(async () => (await env.ok(['ps']), scratchLeft(env).length === 0), `restore ${newId} killed (round ${round}): its unpack folder removed by ps`);
        assert.equal(digest(), before, `restore ${newId} killed (round ${round}) changed ${from}`);
        assert.ok(!env.containerIds().includes(newId));
      }
      // Old checkpoints go, so that the folder taken stays the newest.
      for (const old of kept.slice(0, -1)) rmSync(old, { recursive: true, force: true });
    }
    await env.ok(['delete', '-f', id]);
    assertEmpty(env);
    assert.deepEqual(busyCgroups(used), [], 'no process is left in a container cgroup');
  });

  // A move, and a pre-copy move (a first transfer while it runs, the delta at the freeze, the memory
  // loaded there on demand from its images until the commit's answer).
  for (const [id, extra] of [['mv', []], ['mp', ['--precopy']]] as const) {
    test(`migrate${extra.length > 0 ? ` ${extra.join(' ')}` : ''} to another state directory killed at ${ROUNDS} points`, { timeout: ROUNDS * 60_000 }, async () => {
      used.push(id);
      const sides = [env, there];
      const to = (side: TestEnv) => ['--remote-stasis', [...CLI, '--checkpoint-dir', side.checkpointDir].join(' ')];
      await env.ok(['run', '-d', id, '--', ...COUNTER]);
      // One move, whole: how long it takes here.
      await points.measure(env, `migrate${extra.join('')}`, ['migrate', id, there.stateDir, ...extra, ...to(there)]);
      let from = 1;
      for (let round = 0; round < ROUNDS; round++) {
        const src = sides[from];
        const dst = sides[1 - from];
        await points.kill(src, `migrate${extra.join('')}`, ['migrate', id, dst.stateDir, ...extra, ...to(dst)], round);
        // The destination's side of the move sees its source gone and undoes what it did (or, after
        // the switch, keeps it): what it lists is settled once it has ended.
        await eventually(() => movesServed(dst).length === 0, `migrate killed (round ${round}): the destination's side ends`, 60_000);
        await assertHonest(src, `migrate killed (round ${round}), here`);
        await assertHonest(dst, `migrate killed (round ${round}), there`);
        let here = await settled(src, id);
        const away = await settled(dst, id);
        if (here?.status === 'paused') {
          // Killed once it had asked the destination to switch: only the destination knows, and ps says
          // what to do; done as it says.
          const note = (here as Listed & { note?: string }).note ?? '';
          assert.match(note, /cut off/, `migrate killed (round ${round}): ${id} is paused here without a word on the move\n${evidence(src, id, here.pid)}`);
          if (away?.status === 'running') {
            await src.ok(['delete', '-f', id]);
            here = null;
          } else {
            await src.ok(['resume', id]);
            here = await settled(src, id);
          }
        }
        // Exactly one side runs it; the other has nothing, or (killed after the switch) a stopped copy that delete -f removes.
        const running = [here, away].filter((c) => c?.status === 'running');
        assert.equal(running.length, 1, `migrate killed (round ${round}): here ${here?.status ?? 'none'}, there ${away?.status ?? 'none'}\nhere:\n${evidence(src, id, here?.pid ?? null)}\nthere:\n${evidence(dst, id, away?.pid ?? null)}`);
        const runsThere = away?.status === 'running';
        const other = runsThere ? src : dst;
        if ((runsThere ? here : away) !== null) await other.ok(['delete', '-f', id]);
        assertEmpty(other);
        if (runsThere) from = 1 - from;
      }
      await sides[from].ok(['delete', '-f', id]);
      assertEmpty(env);
      assertEmpty(there);
      assert.deepEqual(busyCgroups(used), [], 'no process is left in a container cgroup');
    });
  }
});
