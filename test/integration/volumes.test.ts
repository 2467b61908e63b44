// Volumes (-v/--volume, --mount type=bind): host folders in a container, and
// what checkpoint, export, restore and migrate do with their contents. Real runc, CRIU, conmon.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, CONTAINERS, ROOTFS, TestEnv, eventually, requires } from '../helpers.ts';

describe('volumes', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('volumes');
  after(() => env.cleanup());

  test('-v and --mount bind host folders, ro refuses writes, the record and spec say so', async () => {
    const data = join(env.root, 'data');
    const conf = join(env.root, 'conf');
    mkdirSync(data);
    mkdirSync(conf);
    writeFileSync(join(conf, 'app.conf'), 'setting=1\n');
    const out = await env.ok(['run', '--rm', 'v1', '--rootfs', ROOTFS, '-v', `${data}:/data`, '--mount', `type=bind,src=${conf},dst=/etc/app,ro`, '--',
      'sh', '-c', 'echo written > /data/file; cat /etc/app/app.conf; echo x > /etc/app/new 2>/dev/null || echo ro-refused']);
    assert.match(out, /setting=1/);
    assert.match(out, /ro-refused/);
    assert.equal(readFileSync(join(data, 'file'), 'utf8'), 'written\n');
    assert.ok(!existsSync(join(conf, 'new')));

    await env.ok(['create', 'v2', '--rootfs', ROOTFS, '--volume', `${data}:/srv/d:rw`, '--', 'true']);
    const info = await env.json(['info', 'v2']);
    assert.deepEqual(info.volumes, [{ source: data, destination: '/srv/d', readonly: false }]);
    const spec = JSON.parse(readFileSync(join(env.stateDir, 'containers', 'v2', 'config.json'), 'utf8'));
    assert.ok(spec.mounts.some((m: any) => m.destination === '/srv/d' && m.source === data && m.type === 'bind'));
    await env.ok(['delete', '-f', 'v2']);
  });

  test('bad volumes are refused before anything is made', async () => {
    await env.fails(125, ['run', '--rm', 'bad', '--rootfs', ROOTFS, '-v', `${join(env.root, 'missing')}:/data`, '--', 'true'], /^stasis: volume .*missing: no such folder/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '-v', 'relative:/data'], /HOST must be an absolute path/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '-v', `${env.root}:data`], /CTR must be an absolute path/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '-v', `${env.root}:/data:z`], /unknown option "z"/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '--mount', `type=tmpfs,destination=/data`], /only type=bind/);
    await env.fails(1, ['create', 'bad', '--rootfs', ROOTFS, '-v', `${env.root}:/data`, '-v', `${env.root}:/data/`], /two volumes on \/data/);
    assert.ok(!existsSync(join(env.stateDir, 'containers', 'bad')));
  });
});

/** A writer that appends "n I" to /data/log through a descriptor it holds open (CRIU restores it by path). */
const WRITER = ['sh', '-c', 'i=0; exec 3>>/data/log; while true; do echo "n $i" >&3; echo "out $i"; i=$((i+1)); sleep 0.2; done'];

function lastN(file: string): number {
  const found = [...readFileSync(file, 'utf8').matchAll(/^n (\d+)$/gm)];
  return found.length === 0 ? -1 : Number(found[found.length - 1][1]);
}

async function advances(file: string, beyond: number): Promise<void> {
  await eventually(() => existsSync(file) && lastN(file) > beyond + 2, `${file} to grow beyond n ${beyond + 2}`, 30_000);
}

describe('volumes across checkpoint, export, restore and migrate', { skip: requires(...CONTAINERS, 'criu') }, () => {
  const here = new TestEnv('vol-here');
  const there = new TestEnv('vol-there');
  after(() => Promise.all([here.cleanup(), there.cleanup()]));

  test('in place the volume is kept; an export carries its contents and the log to another state directory', async () => {
    const data = join(here.root, 'data');
    mkdirSync(data, { mode: 0o750 });
    await here.ok(['run', '-d', 'w', '--rootfs', ROOTFS, '-v', `${data}:/data`, '--', ...WRITER]);
    await advances(join(data, 'log'), 0);
    await here.ok(['checkpoint', 'w']);
    const stopped = lastN(join(data, 'log'));
    await here.ok(['restore', 'w']);
    await advances(join(data, 'log'), stopped);
    assert.deepEqual((await here.json(['info', 'w'])).volumes, [{ source: data, destination: '/data', readonly: false }]);

    const archive = join(here.root, 'w.tar.zst');
    await here.ok(['checkpoint', 'w', '--export', archive]);
    const atDump = readFileSync(join(data, 'log'), 'utf8');
    // The folder it ran on is not empty: refused, naming both ways out, and nothing is made.
    await there.fails(1, ['restore', 'w', '--checkpoint', archive, '--mount', `type=bind,source=${data},destination=/data`],
      /^stasis: volume \/data: .*data is not empty, and the checkpoint carries this volume's contents\nhint: .*-v DIR:\/data.*--ignore-volumes/);
    assert.ok(!existsSync(join(there.stateDir, 'containers', 'w')));
    // An untrusted checkpoint's volume is not mounted unless granted.
    await there.fails(1, ['restore', 'w', '--checkpoint', archive], /mount \/data: a read-write bind mount/);
    // Into a new folder: the contents as at the dump, the top folder's mode, the log of what ran before.
    const copy = join(there.root, 'copy');
    assert.equal(await there.ok(['restore', 'w', '--checkpoint', archive, '-v', `${copy}:/data`]), 'w\n');
    assert.equal(statSync(copy).mode & 0o7777, 0o750);
    assert.ok(readFileSync(join(copy, 'log'), 'utf8').startsWith(atDump));
    await advances(join(copy, 'log'), lastN(join(copy, 'log')));
    assert.match(await there.ok(['logs', 'w']), /^out 0\nout 1\n/);
    assert.deepEqual((await there.json(['info', 'w'])).volumes, [{ source: copy, destination: '/data', readonly: false }]);
    await there.ok(['delete', '-f', 'w']);
    // --ignore-volumes: the folder as it is on the host (the original here, which the dump left as it was).
    await there.ok(['restore', 'w2', '--checkpoint', archive, '--mount', `type=bind,source=${data},destination=/data`, '--ignore-volumes']);
    await advances(join(data, 'log'), lastN(join(data, 'log')));
    await there.ok(['delete', '-f', 'w2']);
    // Exported without the contents, the volume's folder must be there.
    await here.ok(['restore', 'w']);
    const bare = join(here.root, 'bare.tar.zst');
    await here.ok(['checkpoint', 'w', '--export', bare, '--ignore-volumes']);
    assert.doesNotMatch(spawnSync('tar', ['-tf', bare], { encoding: 'utf8' }).stdout, /^volumes\//m);
    await there.fails(1, ['restore', 'w3', '--checkpoint', bare, '-v', `${join(there.root, 'nowhere')}:/data`],
      /^stasis: volume \/data: its host folder .*nowhere is not here \(the checkpoint does not carry the volume's contents\)/);
    await there.ok(['restore', 'w3', '--checkpoint', bare, '-v', `${data}:/data`]);
    await advances(join(data, 'log'), lastN(join(data, 'log')));
    await there.ok(['delete', '-f', 'w3']);
    await here.ok(['restore', 'w']);
    await here.fails(2, ['checkpoint', 'w', '--ignore-volumes'], /--ignore-volumes is for --export/);
    await here.ok(['delete', '-f', 'w']);
  });

  test('migrate sends a volume\'s contents while frozen, or with --ignore-volumes uses the folder there', async () => {
    const data = join(here.root, 'mdata');
    mkdirSync(data);
    const remote = (checkpointDir: string) => ['--remote-stasis', [...CLI, '--checkpoint-dir', checkpointDir].join(' ')];
    await here.ok(['run', '-d', 'm', '--rootfs', ROOTFS, '-v', `${data}:/data`, '--', ...WRITER]);
    await advances(join(data, 'log'), 0);
    // The same folder there is not empty (it is this one): refused, and m goes on here.
    const refused = await here.run(['migrate', 'm', there.stateDir, ...remote(there.checkpointDir)]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /volume \/data: .*is not empty.*m goes on here/s);
    assert.equal((await here.json(['info', 'm'])).status, 'running');
    const moved = join(there.root, 'moved');
    const away = await here.run(['migrate', 'm', there.stateDir, '--mount', `type=bind,source=${moved},destination=/data`, ...remote(there.checkpointDir)]);
    assert.equal(away.code, 0, away.stderr);
    assert.doesNotMatch(away.stderr, /warning|failed/i, 'moved, and removed here');
    assert.equal((await here.run(['info', 'm'])).code, 1, `m is not here any more: ${away.stderr}`);
    await advances(join(moved, 'log'), lastN(join(moved, 'log')));
    assert.match(await there.ok(['logs', 'm']), /^out 0\n/);
    // Back, with --ignore-volumes: the folder here is used as it is.
    await there.ok(['migrate', 'm', here.stateDir, '--ignore-volumes', '--mount', `type=bind,source=${data},destination=/data`, ...remote(here.checkpointDir)]);
    await advances(join(data, 'log'), lastN(join(data, 'log')));
    await here.ok(['delete', '-f', 'm']);
  });
});

describe(':U volumes in a user namespace', { skip: requires(...CONTAINERS, 'criu') }, () => {
  const here = new TestEnv('volu-here');
  const there = new TestEnv('volu-there');
  before(() => {
    // The container's root in its user namespace must reach its rootfs under the test's folders.
    for (const env of [here, there]) chmodSync(env.root, 0o711);
  });
  after(() => Promise.all([here.cleanup(), there.cleanup()]));

  test(':U gives the folder to the container\'s user through its range; a move that gets another range takes the files along, a failed one gives them back', async () => {
    const data = join(here.root, 'udata');
    mkdirSync(join(data, 'sub'), { recursive: true });
    writeFileSync(join(data, 'sub', 'seed'), 'x');
    await here.ok(['run', '-d', 'u', '--rootfs', ROOTFS, '--userns', 'auto', '--user', '1234:1235', '-v', `${data}:/data:U`, '--', ...WRITER]);
    await advances(join(data, 'log'), 0);
    const first = await here.json(['info', 'u']);
    assert.deepEqual(first.volumes, [{ source: data, destination: '/data', readonly: false, chown: true }]);
    const start: number = first.userns.uidMappings[0].hostID;
    assert.deepEqual(first.userns.gidMappings, [{ containerID: 0, hostID: start, size: 65536 }]);
    const owners = () => ['', 'sub', 'sub/seed', 'log'].map((name) => {
      const stat = lstatSync(join(data, name));
      return `${stat.uid}:${stat.gid}`;
    });
    const ownedBy = (base: number) => Array(4).fill(`${base + 1234}:${base + 1235}`);
    assert.deepEqual(owners(), ownedBy(start), 'the folder is the container user\'s, as the host sees it');

    // The destination's runc fails the restore after the files were moved to the new range: they come back.
    const failing = join(here.root, 'runc-fails-restore');
    const runc = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(failing, `#!/bin/sh\nfor a; do [ "$a" = restore ] && { echo 'level=error msg="made to fail by the test"' >&2; exit 1; }; done\nexec ${runc} "$@"\n`, { mode: 0o755 });
    const remote = (env: TestEnv, withRunc?: string) => ['--remote-stasis', [...(withRunc ? ['env', `STASIS_RUNC=${withRunc}`] : []), ...CLI, '--checkpoint-dir', env.checkpointDir].join(' ')];
    const refused = await here.run(['migrate', 'u', there.stateDir, '--ignore-volumes', ...remote(there, failing)]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /made to fail by the test[^]*u goes on here/);
    assert.deepEqual(owners(), ownedBy(start), 'a failed restore gives the files back to the range here');
    assert.equal((await here.json(['info', 'u'])).status, 'running');
    await advances(join(data, 'log'), lastN(join(data, 'log')));

    // Moved for real: the range is still held here at the switch, so there it gets another, and the files follow.
    await here.ok(['migrate', 'u', there.stateDir, '--ignore-volumes', ...remote(there)]);
    const moved = await there.json(['info', 'u']);
    const next: number = moved.userns.uidMappings[0].hostID;
    assert.notEqual(next, start);
    assert.deepEqual(moved.volumes, first.volumes);
    assert.deepEqual(owners(), ownedBy(next));
    await advances(join(data, 'log'), lastN(join(data, 'log')));
    await there.ok(['delete', '-f', 'u']);
  });
});

describe('a failed move reads like a failed move', { skip: requires(...CONTAINERS, 'criu') }, () => {
  const here = new TestEnv('movetcp');
  const there = new TestEnv('movetcp-there');
  after(() => Promise.all([here.cleanup(), there.cleanup()]));

  test('an established TCP connection: CRIU\'s words, the flag to add, and the container goes on', async (t) => {
    const bin = join(here.root, 'bin');
    mkdirSync(bin);
    const gcc = spawnSync('gcc', ['-static', '-O2', '-o', join(bin, 'tcpstream'), join(import.meta.dirname, '..', 'fixtures', 'services', 'tcpstream.c')], { encoding: 'utf8' });
    if (gcc.status !== 0) {
      t.skip(`gcc -static could not build tcpstream.c: ${gcc.error?.message ?? gcc.stderr}`);
      return;
    }
    const base = here.copyRootfs('tcp-base');
    mkdirSync(join(base, 'srv'));
    cpSync(join(bin, 'tcpstream'), join(base, 'srv', 'tcpstream'));
    await here.ok(['run', '-d', 'conn', '--rootfs', base, '--', 'sh', '-c', '/srv/tcpstream server 9000 & /srv/tcpstream client 127.0.0.1 9000; exec sleep 1000']);
    const seq = async () => Math.max(-1, ...[...(await here.ok(['logs', 'conn'])).matchAll(/stream (\d+)/g)].map((m) => Number(m[1])));
    await eventually(async () => (await seq()) > 3, 'the stream to start');
    const moved = await here.fails(1, ['migrate', 'conn', there.stateDir, '--remote-stasis', [...CLI, '--checkpoint-dir', there.checkpointDir].join(' ')],
      /^stasis: migrate conn: dumping it with CRIU \(frozen\) to send it to .*: CRIU: .*TCP.*; conn goes on here$/m);
    assert.match(moved.stderr, /^hint: CRIU's log shows an established TCP connection: add --tcp-established$/m);
    assert.doesNotMatch(moved.stderr.split('\n')[0], /NOTIFY/);
    const before = await seq();
    await eventually(async () => (await seq()) > before + 3, 'the stream to go on here');
    const checkpoint = await here.fails(1, ['checkpoint', 'conn'], /^stasis: checkpoint conn failed: CRIU: .*TCP/);
    assert.match(checkpoint.stderr, /^hint: CRIU's log shows an established TCP connection: add --tcp-established$/m);
    await here.ok(['delete', '-f', 'conn']);
  });
});
