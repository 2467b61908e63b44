// --user, --cap-add/--cap-drop, --hostname (issue 17) on real runc: the process's own view in /proc/self/status.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTAINERS, TestEnv, eventually, requires } from '../helpers.ts';

/** Whether stasis (this test's root) holds CAP_SYS_RESOURCE, without which CRIU cannot read another user's rlimits. */
function hasSysResource(): boolean {
  const capEff = BigInt(`0x${/^CapEff:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
  return ((capEff >> 24n) & 1n) === 1n;
}

/** A field of /proc/self/status as the container printed it. */
function statusField(text: string, field: string): string {
  const match = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(text);
  assert.ok(match, `${field} in ${text}`);
  return match[1].trim();
}

/** A rootfs copy whose /etc/passwd and /etc/group list a service user with supplementary groups. */
export function rootfsWithUser(env: TestEnv, name: string): string {
  const rootfs = env.copyRootfs(name);
  appendFileSync(join(rootfs, 'etc', 'passwd'), 'svc:x:1234:1235:service:/home/svc:/bin/sh\n');
  appendFileSync(join(rootfs, 'etc', 'group'), 'svc:x:1235:\nlogs:x:2000:svc\nssl:x:2001:root,svc\n');
  return rootfs;
}

describe('users, capabilities and host name', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('users');
  let rootfs = '';
  before(() => {
    rootfs = rootfsWithUser(env, 'rootfs-users');
  });
  after(() => env.cleanup());

  const show = ['sh', '-c', 'id -u; id -g; id -G; echo "home=$HOME"; hostname; cat /proc/self/status'];

  test('--user by name runs as its uid, primary and supplementary groups, with HOME from passwd', async () => {
    const out = await env.ok(['run', '--rm', '--rootfs', rootfs, '--user', 'svc', 'u1', '--', ...show]);
    const [uid, gid, groups, home] = out.split('\n');
    assert.equal(uid, '1234');
    assert.equal(gid, '1235');
    assert.deepEqual(groups.split(' ').sort(), ['1235', '2000', '2001']);
    assert.equal(home, 'home=/home/svc');
    assert.equal(statusField(out, 'Uid'), '1234\t1234\t1234\t1234');
    // A non-root user holds no capability it was not given.
    assert.equal(statusField(out, 'CapEff'), '0000000000000000');
  });

  test('--user by number, with a group name and with a number', async () => {
    const byNumber = await env.ok(['run', '--rm', '--rootfs', rootfs, '--user', '1234:logs', 'u2', '--', ...show]);
    assert.deepEqual(byNumber.split('\n').slice(0, 2), ['1234', '2000']);
    const unlisted = await env.ok(['run', '--rm', '--rootfs', rootfs, '-u', '4000:4001', 'u3', '--', ...show]);
    assert.deepEqual(unlisted.split('\n').slice(0, 4), ['4000', '4001', '4001', 'home=/']);
  });

  test('an unknown user or group is refused before anything is made, naming it', async () => {
    await env.fails(2, ['create', '--rootfs', rootfs, '--user', 'postgres', 'u4'], /^stasis: --user "postgres": no user "postgres" in the container's \/etc\/passwd/m);
    await env.fails(125, ['run', '--rootfs', rootfs, '--user', 'svc:wheel', 'u4'], /no group "wheel" in the container's \/etc\/group/);
    await env.fails(2, ['create', '--rootfs', rootfs, '--cap-add', 'FLY', 'u4'], /--cap-add "FLY": not a Linux capability/);
    await env.fails(2, ['create', '--rootfs', rootfs, '--hostname', 'bad_name!', 'u4'], /--hostname "bad_name!": not a valid host name/);
    env.assertNothingLeft();
  });

  test("the default set is podman's (and AUDIT_WRITE); --cap-add and --cap-drop ALL show in CapEff", async () => {
    const defaults = await env.ok(['run', '--rm', '--rootfs', rootfs, 'c1', '--', ...show]);
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT AUDIT_WRITE SETFCAP
    assert.equal(statusField(defaults, 'CapEff'), '00000000a00405fb');
    const dropAll = await env.ok(['run', '--rm', '--rootfs', rootfs, '--cap-drop', 'ALL', 'c2', '--', ...show]);
    assert.equal(statusField(dropAll, 'CapEff'), '0000000000000000');
    assert.equal(statusField(dropAll, 'CapBnd'), '0000000000000000');
    const some = await env.ok(['run', '--rm', '--rootfs', rootfs, '--cap-drop', 'all', '--cap-add', 'net_admin', '--cap-add', 'CAP_SYS_PTRACE', 'c3', '--', ...show]);
    assert.equal(statusField(some, 'CapEff'), (BigInt(1 << 12) | BigInt(1 << 19)).toString(16).padStart(16, '0'));
    const addAll = await env.ok(['run', '--rm', '--rootfs', rootfs, '--cap-add', 'ALL', '--cap-drop', 'SYS_ADMIN', 'c4', '--', ...show]);
    const mask = BigInt(`0x${statusField(addAll, 'CapEff')}`);
    assert.equal(mask & (1n << 21n), 0n, 'SYS_ADMIN dropped');
    assert.notEqual(mask & (1n << 19n), 0n, 'SYS_PTRACE held');
    // A non-root user holds what --cap-add gives it.
    const userAdded = await env.ok(['run', '--rm', '--rootfs', rootfs, '--user', 'svc', '--cap-add', 'NET_BIND_SERVICE', 'c5', '--', ...show]);
    assert.equal(statusField(userAdded, 'CapEff'), (1n << 10n).toString(16).padStart(16, '0'));
  });

  test('--hostname', async () => {
    const out = await env.ok(['run', '--rm', '--rootfs', rootfs, '--hostname', 'db.example', 'h1', '--', 'hostname']);
    assert.equal(out, 'db.example\n');
    const byId = await env.ok(['run', '--rm', '--rootfs', rootfs, 'h2', '--', 'hostname']);
    assert.equal(byId, 'h2\n');
  });

  test('without CAP_SYS_RESOURCE, checkpointing a non-root process fails saying why and naming --userns auto; it goes on running',
    { skip: requires('criu') || (hasSysResource() ? 'this host holds CAP_SYS_RESOURCE: CRIU reads every rlimit' : false) }, async () => {
      await env.ok(['run', '-d', '--rootfs', rootfs, '--user', 'svc', 'n1', '--', 'sleep', '1000']);
      const result = await env.fails(1, ['checkpoint', 'n1'], /^stasis: checkpoint n1 failed: CRIU cannot read the resource limits of a process of another user: Error \(criu\/cr-dump\.c:\d+\): Can't get rlimit \d+: Operation not permitted/m);
      assert.doesNotMatch(result.stderr.split('\n')[0], /NOTIFY/);
      assert.match(result.stderr, /^hint: create the container with --userns auto/m);
      await eventually(async () => (await env.json(['info', 'n1'])).status === 'running', 'n1 still running');
      await env.ok(['delete', '-f', 'n1']);
    });
});
