// --user, --cap-add/--cap-drop and --hostname: resolution in the rootfs's own files, as usage errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_USAGE, StasisError } from '../../src/errors.ts';
import { applyIdentity, capabilitySet, checkHostname, DEFAULT_CAPABILITIES, heldCapabilities, parseGroup, parsePasswd, readInRoot, resolveUser } from '../../src/runtime/identity.ts';
import { defaultSpec } from '../../src/runtime/spec.ts';

function rootfsWith(passwd: string | null, group: string | null): string {
  const root = mkdtempSync(join(tmpdir(), 'stasis-identity-'));
  mkdirSync(join(root, 'etc'));
  if (passwd !== null) writeFileSync(join(root, 'etc', 'passwd'), passwd);
  if (group !== null) writeFileSync(join(root, 'etc', 'group'), group);
  return root;
}

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\n# a comment\nbroken line\npostgres:x:105:111:PostgreSQL:/var/lib/postgresql:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n';
const GROUP = 'root:x:0:\nssl-cert:x:108:postgres\npostgres:x:111:\nextra:x:200:www-data,postgres\nbad:x:notanumber:postgres\n';

function usage(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof StasisError && err.exitCode === EXIT_USAGE && pattern.test(err.message));
}

describe('users and groups', () => {
  test('passwd and group parsing skips comments and malformed lines', () => {
    assert.deepEqual(parsePasswd(PASSWD).map((e) => [e.name, e.uid, e.gid, e.home]), [
      ['root', 0, 0, '/root'], ['postgres', 105, 111, '/var/lib/postgresql'], ['www-data', 33, 33, '/var/www'],
    ]);
    assert.deepEqual(parseGroup(GROUP).map((g) => [g.name, g.gid, g.members]), [
      ['root', 0, []], ['ssl-cert', 108, ['postgres']], ['postgres', 111, []], ['extra', 200, ['www-data', 'postgres']],
    ]);
  });

  test('a name gives its uid, primary gid, supplementary groups and home', () => {
    const root = rootfsWith(PASSWD, GROUP);
    try {
      assert.deepEqual(resolveUser(root, 'postgres'), { uid: 105, gid: 111, additionalGids: [108, 200], home: '/var/lib/postgresql' });
      assert.deepEqual(resolveUser(root, 'postgres:extra'), { uid: 105, gid: 200, additionalGids: [108], home: '/var/lib/postgresql' });
      assert.deepEqual(resolveUser(root, '33'), { uid: 33, gid: 33, additionalGids: [200], home: '/var/www' });
      assert.deepEqual(resolveUser(root, '4000'), { uid: 4000, gid: 0, additionalGids: [], home: null });
      assert.deepEqual(resolveUser(root, '4000:4001'), { uid: 4000, gid: 4001, additionalGids: [], home: null });
    } finally {
      rmSync(root, { recursive: true });
    }
  });

  test('unknown names and bad forms are usage errors naming the user or group', () => {
    const root = rootfsWith(PASSWD, GROUP);
    try {
      usage(() => resolveUser(root, 'mysql'), /--user "mysql": no user "mysql" in the container's \/etc\/passwd/);
      usage(() => resolveUser(root, 'postgres:wheel'), /no group "wheel" in the container's \/etc\/group/);
      usage(() => resolveUser(root, ''), /expected NAME or UID/);
      usage(() => resolveUser(root, 'a:b:c'), /expected NAME or UID/);
      usage(() => resolveUser(root, '99999999999'), /out of range/);
    } finally {
      rmSync(root, { recursive: true });
    }
    const empty = rootfsWith(null, null);
    try {
      usage(() => resolveUser(empty, 'postgres'), /the rootfs has none/);
      assert.equal(resolveUser(empty, '5').uid, 5);
    } finally {
      rmSync(empty, { recursive: true });
    }
  });

  test('symbolic links are followed inside the rootfs, never onto the host', () => {
    const root = rootfsWith(null, GROUP);
    try {
      // /etc/passwd -> /etc/passwd of the host: read as the rootfs's own (which is missing here).
      symlinkSync('/etc/passwd', join(root, 'etc', 'passwd'));
      assert.equal(readInRoot(root, '/etc/passwd'), null);
      rmSync(join(root, 'etc', 'passwd'));
      mkdirSync(join(root, 'usr', 'share'), { recursive: true });
      writeFileSync(join(root, 'usr', 'share', 'passwd'), 'svc:x:7:7::/:/bin/sh\n');
      symlinkSync('../../../../usr/share/passwd', join(root, 'etc', 'passwd'));
      assert.equal(resolveUser(root, 'svc').uid, 7);
    } finally {
      rmSync(root, { recursive: true });
    }
  });
});

describe('capabilities and host name', () => {
  test("the default set is podman's, with runc's CAP_AUDIT_WRITE", () => {
    assert.deepEqual([...DEFAULT_CAPABILITIES].sort(), [
      'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_NET_BIND_SERVICE',
      'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT',
    ]);
    assert.deepEqual(defaultSpec('x', []).process?.capabilities, { bounding: [...DEFAULT_CAPABILITIES], effective: [...DEFAULT_CAPABILITIES], permitted: [...DEFAULT_CAPABILITIES], ambient: [...DEFAULT_CAPABILITIES] });
  });

  test('add and drop, with or without CAP_, any case, and ALL', () => {
    assert.deepEqual(capabilitySet(['net_admin'], ['CAP_CHOWN', 'Kill']), [
      'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_NET_ADMIN', 'CAP_SYS_CHROOT', 'CAP_AUDIT_WRITE', 'CAP_SETFCAP',
    ]);
    assert.deepEqual(capabilitySet(['NET_RAW'], ['ALL']), ['CAP_NET_RAW']);
    assert.deepEqual(capabilitySet([], ['all']), []);
    const all = capabilitySet(['ALL'], ['sys_admin']);
    assert.ok(all.includes('CAP_SYS_PTRACE') && !all.includes('CAP_SYS_ADMIN') && all.length === 40, all.join());
    usage(() => capabilitySet(['NET_FLY'], []), /--cap-add "NET_FLY": not a Linux capability/);
    // Root without CAP_SYS_RESOURCE (CapBnd 000001fffeffffff): ALL is what it holds; asking for that one fails.
    const held = heldCapabilities('Name:\tx\nCapBnd:\t000001fffeffffff\n');
    assert.equal(held.length, 40);
    assert.ok(!held.includes('CAP_SYS_RESOURCE'));
    assert.ok(!capabilitySet(['ALL'], [], DEFAULT_CAPABILITIES, held).includes('CAP_SYS_RESOURCE'));
    assert.throws(() => capabilitySet(['sys_resource'], [], DEFAULT_CAPABILITIES, held), /--cap-add CAP_SYS_RESOURCE: stasis itself does not hold CAP_SYS_RESOURCE on this host/);
    usage(() => capabilitySet([], ['cap_']), /--cap-drop "cap_"/);
  });

  test('applied to a spec: a non-root user holds only what was added; HOME from passwd', () => {
    const root = rootfsWith(PASSWD, GROUP);
    try {
      const spec = defaultSpec('x', []);
      applyIdentity(spec, root, { user: 'postgres', capAdd: ['NET_RAW'], capDrop: [], hostname: 'db.example' });
      const proc = spec.process as Record<string, any>;
      assert.deepEqual(proc.user, { uid: 105, gid: 111, additionalGids: [108, 200] });
      assert.ok(proc.env.includes('HOME=/var/lib/postgresql'));
      assert.deepEqual(proc.capabilities.effective, ['CAP_NET_RAW']);
      assert.ok(proc.capabilities.bounding.includes('CAP_SETUID'));
      assert.equal(spec.hostname, 'db.example');
      const given = defaultSpec('x', []);
      given.process!.env!.push('HOME=/mine');
      applyIdentity(given, root, { user: 'postgres' });
      assert.ok(given.process!.env!.includes('HOME=/mine') && !given.process!.env!.includes('HOME=/var/lib/postgresql'));
    } finally {
      rmSync(root, { recursive: true });
    }
  });

  test('host names', () => {
    assert.equal(checkHostname('web-1.local'), 'web-1.local');
    usage(() => checkHostname('-bad'), /--hostname "-bad": not a valid host name/);
    usage(() => checkHostname('a'.repeat(65)), /not a valid host name/);
    usage(() => checkHostname('sp ace'), /not a valid host name/);
  });
});

