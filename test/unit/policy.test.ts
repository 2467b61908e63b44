import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyRestorePolicy, type RestorePolicyOptions } from '../../src/checkpoint/policy/spec.ts';
import { CheckpointSpecError } from '../../src/checkpoint/policy/shape.ts';
import { parseProcLimits, RestorePolicyError, type PolicyRefusal } from '../../src/checkpoint/policy/trust.ts';
import type { RlimitValue } from '../../src/checkpoint/criu/creds.ts';
import { defaultSpec, type OciSpec } from '../../src/runtime/spec.ts';

// The spec.dump stasis writes for `run -d c1 -- sleep 1000`: its default spec with
// what provision() and the checkpoint add.
function stasisSpecDump(): Record<string, any> {
  const spec = defaultSpec('c1', ['sleep', '1000']) as Record<string, any>;
  spec.root.path = '/run/stasis/containers/c1/rootfs';
  spec.linux.cgroupsPath = '/stasis-9772aa00-c1';
  spec.annotations = { 'io.container.manager': 'stasis', 'org.stasis.id': 'c1', 'io.kubernetes.cri.container-name': 'c1' };
  return spec;
}

const HOST_LIMITS = new Map<string, RlimitValue>([['RLIMIT_NOFILE', 524288], ['RLIMIT_NPROC', 96363], ['RLIMIT_CORE', 'unlimited']]);

function options(extra: Partial<RestorePolicyOptions> = {}): RestorePolicyOptions {
  return { policySpec: defaultSpec('c2', []), kind: 'overlay', hostLimits: HOST_LIMITS, ...extra };
}

function okSpec(untrusted: unknown, extra: Partial<RestorePolicyOptions> = {}): { spec: OciSpec & Record<string, any>; warnings: string[] } {
  const result = applyRestorePolicy(untrusted, options(extra));
  if (!result.ok) assert.fail(`refused: ${JSON.stringify(result.refused, null, 2)}`);
  return { spec: result.spec as OciSpec & Record<string, any>, warnings: result.warnings };
}

function refusals(untrusted: unknown, extra: Partial<RestorePolicyOptions> = {}): PolicyRefusal[] {
  const result = applyRestorePolicy(untrusted, options(extra));
  assert.equal(result.ok, false, 'expected a refusal');
  return result.ok ? [] : result.refused;
}

describe('applyRestorePolicy: a checkpoint stasis wrote', () => {
  test('restores with the policy spec and the checkpoint\'s process, with no warnings', () => {
    const { spec, warnings } = okSpec(stasisSpecDump());
    const policy = defaultSpec('c2', []) as Record<string, any>;
    assert.deepEqual(warnings, []);
    assert.deepEqual(spec.process!.args, ['sleep', '1000']);
    assert.equal(spec.process!.terminal, false);
    assert.deepEqual(spec.process!.capabilities, policy.process.capabilities);
    assert.deepEqual(spec.mounts, policy.mounts);
    assert.deepEqual(spec.linux!.namespaces, policy.linux.namespaces);
    assert.deepEqual(spec.linux!.maskedPaths, policy.linux.maskedPaths);
    assert.equal(spec.linux!.cgroupsPath, undefined, 'stasis sets the cgroup path itself');
    assert.equal(spec.hostname, 'c1', 'the hostname is the checkpoint\'s (CRIU restores it anyway)');
    assert.deepEqual(spec.annotations, { 'io.kubernetes.cri.container-name': 'c1' });
  });

  test('does not change the policy spec it is given', () => {
    const policySpec = defaultSpec('c2', []);
    const before = JSON.stringify(policySpec);
    const untrusted = stasisSpecDump();
    untrusted.mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs' });
    applyRestorePolicy(untrusted, options({ policySpec }));
    assert.equal(JSON.stringify(policySpec), before);
  });
});

describe('applyRestorePolicy: hooks', () => {
  const hooks = {
    prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'touch /host-owned'] }],
    createRuntime: [{ path: '/usr/bin/id' }],
    poststop: [{ path: '/bin/rm', args: ['rm', '-rf', '/'] }],
  };

  test('prestart, createRuntime and poststop hooks are dropped, each named in a warning', () => {
    const { spec, warnings } = okSpec({ ...stasisSpecDump(), hooks });
    assert.equal(spec.hooks, undefined);
    const warning = warnings.find((w) => w.includes('hooks'));
    assert.ok(warning, warnings.join('\n'));
    for (const text of ['prestart /bin/sh', 'createRuntime /usr/bin/id', 'poststop /bin/rm']) assert.match(warning, new RegExp(text));
  });

  test('kept only when hooks are trusted', () => {
    assert.deepEqual(okSpec({ ...stasisSpecDump(), hooks }, { trust: ['hooks'] }).spec.hooks, hooks);
  });

  test('the policy\'s own hooks (a user\'s bundle) stay', () => {
    const policySpec = { ...defaultSpec('c2', []), hooks: { poststart: [{ path: '/usr/local/bin/notify' }] } };
    assert.deepEqual(okSpec({ ...stasisSpecDump(), hooks }, { policySpec }).spec.hooks, policySpec.hooks);
  });
});

describe('applyRestorePolicy: mounts', () => {
  const rootBind = { destination: '/data', type: 'bind', source: '/', options: ['rbind', 'rw'] };

  test('a bind mount of / is refused, naming the destination and how to grant it', () => {
    const refused = refusals({ ...stasisSpecDump(), mounts: [...stasisSpecDump().mounts, rootBind] });
    assert.equal(refused.length, 1);
    assert.equal(refused[0].area, 'mounts');
    assert.equal(refused[0].what, 'mount /data');
    assert.match(refused[0].asked, /read-write bind mount of \//);
    assert.match(refused[0].grant, /--mount type=bind,source=DIR,destination=\/data/);
    assert.match(refused[0].grant, /--trust-checkpoint mounts/);
  });

  test('a bundle restore names a bundle whose config.json has the mount as a grant too', () => {
    const refused = refusals({ ...stasisSpecDump(), mounts: [...stasisSpecDump().mounts, rootBind] }, { kind: 'bundle' });
    assert.match(refused[0].grant, /--bundle DIR whose config\.json mounts \/data/);
  });

  test('the user naming the mount grants it, with the user\'s source, never the checkpoint\'s', () => {
    const { spec } = okSpec({ ...stasisSpecDump(), mounts: [...stasisSpecDump().mounts, rootBind] }, {
      userMounts: [{ destination: '/data', source: '/srv/data', options: ['ro'] }],
    });
    const data = (spec.mounts as any[]).filter((m) => m.destination === '/data');
    assert.deepEqual(data, [{ destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro'] }]);
    assert.ok(!(spec.mounts as any[]).some((m) => m.source === '/'));
  });

  test('trusting mounts takes the checkpoint\'s as they are', () => {
    const { spec } = okSpec({ ...stasisSpecDump(), mounts: [...stasisSpecDump().mounts, rootBind] }, { trust: ['mounts'] });
    assert.ok((spec.mounts as any[]).some((m) => m.destination === '/data' && m.source === '/'));
  });

  test('a policy mount re-pointed at the host (/sys as a bind of /sys) gets the policy\'s', () => {
    const untrusted = stasisSpecDump();
    untrusted.mounts = untrusted.mounts.map((m: any) => (m.destination === '/sys' ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'rw'] } : m));
    const { spec } = okSpec(untrusted);
    assert.deepEqual((spec.mounts as any[]).find((m) => m.destination === '/sys'), (defaultSpec('x', []).mounts as any[]).find((m) => m.destination === '/sys'));
  });

  test('an extra tmpfs is kept; an extra proc is refused', () => {
    const tmp = { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] };
    assert.ok((okSpec({ ...stasisSpecDump(), mounts: [...stasisSpecDump().mounts, tmp] }).spec.mounts as any[]).some((m) => m.destination === '/tmp'));
    const proc = { destination: '/mnt/proc', type: 'proc', source: 'proc' };
    const refused = refusals({ ...stasisSpecDump(), mounts: [...stasisSpecDump().mounts, proc] });
    assert.deepEqual(refused.map((r) => [r.what, r.grant]), [['mount /mnt/proc', '--trust-checkpoint mounts']]);
  });

  test('a user mount the checkpoint does not have is warned about (CRIU restores the recorded tree)', () => {
    const { warnings } = okSpec(stasisSpecDump(), { userMounts: [{ destination: '/data', source: '/srv/data' }] });
    assert.ok(warnings.some((w) => /no mount at \/data/.test(w)), warnings.join('\n'));
  });
});

describe('applyRestorePolicy: capabilities', () => {
  test('CAP_SYS_ADMIN and CAP_SYS_MODULE added are refused, each with the sets that ask for it', () => {
    const untrusted = stasisSpecDump();
    const caps = untrusted.process.capabilities;
    caps.bounding = [...caps.bounding, 'CAP_SYS_ADMIN', 'CAP_SYS_MODULE'];
    caps.effective = [...caps.effective, 'CAP_SYS_ADMIN'];
    const refused = refusals(untrusted);
    assert.deepEqual(refused.map((r) => [r.area, r.what, r.asked, r.grant]), [
      ['capabilities', 'capability CAP_SYS_ADMIN', 'in its bounding, effective sets', '--trust-checkpoint capabilities'],
      ['capabilities', 'capability CAP_SYS_MODULE', 'in its bounding set', '--trust-checkpoint capabilities'],
    ]);
  });

  test('a name Linux does not have is refused', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.capabilities.bounding.push('CAP_EVERYTHING');
    assert.match(refusals(untrusted)[0].what, /CAP_EVERYTHING/);
  });

  test('fewer capabilities than the policy: the smaller sets are kept', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.capabilities = { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] };
    const caps = okSpec(untrusted).spec.process!.capabilities as Record<string, string[]>;
    assert.deepEqual(caps.bounding, ['CAP_KILL']);
    // A set the checkpoint leaves out gets the policy's, within the checkpoint's bounding set.
    assert.deepEqual(caps.ambient, ['CAP_KILL']);
  });

  test('trusted: the checkpoint\'s sets as given', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.capabilities.bounding.push('CAP_SYS_ADMIN');
    assert.ok((okSpec(untrusted, { trust: ['capabilities'] }).spec.process!.capabilities as any).bounding.includes('CAP_SYS_ADMIN'));
  });
});

describe('applyRestorePolicy: devices', () => {
  test('the rule "a *:* rwm" is refused', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.resources.devices = [{ allow: true, access: 'rwm' }];
    const refused = refusals(untrusted);
    assert.deepEqual(refused.map((r) => [r.area, r.what]), [['devices', 'device rule a *:* rwm']]);
  });

  test('a device node is refused; the policy\'s rules are what the spec gets', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.devices = [{ path: '/dev/sda', type: 'b', major: 8, minor: 0 }];
    assert.deepEqual(refusals(untrusted).map((r) => r.what), ['device /dev/sda']);
    const { spec } = okSpec(untrusted, { trust: ['devices'] });
    assert.deepEqual(spec.linux!.devices, untrusted.linux.devices);
    assert.deepEqual(okSpec(stasisSpecDump()).spec.linux!.resources, { devices: [{ allow: false, access: 'rwm' }] });
  });

  test('a rule the policy allows is accepted', () => {
    const rule = { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' };
    const policySpec = defaultSpec('c2', []) as Record<string, any>;
    policySpec.linux.resources.devices.push({ ...rule, access: 'rwm' });
    const untrusted = stasisSpecDump();
    untrusted.linux.resources.devices.push(rule);
    okSpec(untrusted, { policySpec: policySpec as OciSpec });
  });
});

describe('applyRestorePolicy: masked and read-only paths, seccomp, LSM', () => {
  test('dropped maskedPaths and readonlyPaths: the policy\'s are used, and the drop is reported', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.maskedPaths = ['/proc/acpi'];
    delete untrusted.linux.readonlyPaths;
    const { spec, warnings } = okSpec(untrusted);
    const policy = defaultSpec('c2', []) as Record<string, any>;
    assert.deepEqual(spec.linux!.maskedPaths, policy.linux.maskedPaths);
    assert.deepEqual(spec.linux!.readonlyPaths, policy.linux.readonlyPaths);
    assert.ok(warnings.some((w) => /maskedPaths leaves out .*"\/proc\/kcore"/.test(w)), warnings.join('\n'));
    assert.ok(warnings.some((w) => /no linux\.readonlyPaths/.test(w)), warnings.join('\n'));
  });

  test('seccomp removed: the policy\'s profile is used', () => {
    const seccomp = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] };
    const policySpec = { ...defaultSpec('c2', []), linux: { ...defaultSpec('c2', []).linux, seccomp } };
    const untrusted = stasisSpecDump();
    const { spec, warnings } = okSpec(untrusted, { policySpec });
    assert.deepEqual(spec.linux!.seccomp, seccomp);
    assert.ok(warnings.some((w) => /no linux\.seccomp/.test(w)));
  });

  test('an AppArmor profile of the checkpoint\'s is not used', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.apparmorProfile = 'unconfined';
    const { spec, warnings } = okSpec(untrusted);
    assert.equal(spec.process!.apparmorProfile, undefined);
    assert.ok(warnings.some((w) => /apparmorProfile "unconfined" is not used/.test(w)));
  });

  test('noNewPrivileges off is reported and stays on', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.noNewPrivileges = false;
    const { spec, warnings } = okSpec(untrusted);
    assert.equal((spec.process as any).noNewPrivileges, true);
    assert.ok(warnings.some((w) => /noNewPrivileges/.test(w)));
  });
});

describe('applyRestorePolicy: namespaces', () => {
  test('a network namespace path is dropped: loopback only', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.namespaces = untrusted.linux.namespaces.map((ns: any) => (ns.type === 'network' ? { type: 'network', path: '/proc/1/ns/net' } : ns));
    const { spec, warnings } = okSpec(untrusted);
    assert.deepEqual((spec.linux!.namespaces as any[]).find((ns) => ns.type === 'network'), { type: 'network' });
    assert.ok(warnings.some((w) => /\/proc\/1\/ns\/net.*loopback only/.test(w)));
  });

  test('joining another namespace by path is refused', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.namespaces = untrusted.linux.namespaces.map((ns: any) => (ns.type === 'pid' ? { type: 'pid', path: '/proc/1/ns/pid' } : ns));
    assert.deepEqual(refusals(untrusted).map((r) => [r.area, r.what]), [['namespaces', 'pid namespace /proc/1/ns/pid']]);
  });

  test('a namespace the policy has that the checkpoint lacks (the host\'s network) is refused', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.namespaces = untrusted.linux.namespaces.filter((ns: any) => ns.type !== 'network');
    const refused = refusals(untrusted);
    assert.deepEqual(refused.map((r) => r.what), ['network namespace']);
    assert.match(refused[0].asked, /shared the host's network namespace/);
  });

  test('a user namespace is refused unless namespaces are trusted, and then its mappings come along', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.namespaces.push({ type: 'user' });
    untrusted.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    assert.deepEqual(refusals(untrusted).map((r) => r.what), ['user namespace']);
    assert.deepEqual(okSpec(untrusted, { trust: ['namespaces'] }).spec.linux!.uidMappings, untrusted.linux.uidMappings);
  });

  test('an unknown namespace type is a damaged spec', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.namespaces.push({ type: 'host' });
    assert.throws(() => applyRestorePolicy(untrusted, options()), CheckpointSpecError);
  });
});

describe('applyRestorePolicy: annotations', () => {
  test('org.criu.config (a CRIU config file runc passes on) and other active annotations are left out', () => {
    const untrusted = stasisSpecDump();
    untrusted.annotations['org.criu.config'] = '/tmp/evil.conf';
    untrusted.annotations['org.systemd.property.Delegate'] = 'true';
    untrusted.annotations['run.oci.handler'] = 'krun';
    untrusted.annotations['org.opencontainers.image.ref.name'] = 'busybox';
    const { spec, warnings } = okSpec(untrusted);
    assert.deepEqual(spec.annotations, { 'io.kubernetes.cri.container-name': 'c1', 'org.opencontainers.image.ref.name': 'busybox' });
    const warning = warnings.find((w) => w.includes('annotations'));
    assert.match(warning ?? '', /org\.criu\.config="\/tmp\/evil\.conf"/);
    assert.match(warning ?? '', /org\.systemd\.property\.Delegate/);
  });
});

describe('applyRestorePolicy: rlimits', () => {
  test('a hard limit above this host\'s is lowered to it, with a warning', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.rlimits = [
      { type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 },
      { type: 'RLIMIT_CORE', hard: 100, soft: 10 },
    ];
    const { spec, warnings } = okSpec(untrusted);
    assert.deepEqual(spec.process!.rlimits, [
      { type: 'RLIMIT_NOFILE', hard: 524288, soft: 524288 },
      { type: 'RLIMIT_CORE', hard: 100, soft: 10 },
    ]);
    assert.ok(warnings.some((w) => /RLIMIT_NOFILE hard limit 1048576 is above this host's 524288/.test(w)));
  });

  test('an unknown type is left out; a malformed one is a damaged spec', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.rlimits = [{ type: 'RLIMIT_MAGIC', hard: 1, soft: 1 }];
    const { spec, warnings } = okSpec(untrusted);
    assert.deepEqual(spec.process!.rlimits, []);
    assert.ok(warnings.some((w) => /RLIMIT_MAGIC/.test(w)));
    untrusted.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 'lots', soft: 1 }];
    assert.throws(() => applyRestorePolicy(untrusted, options()), CheckpointSpecError);
  });

  test('parseProcLimits reads /proc/PID/limits', () => {
    const text = [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max cpu time              unlimited            unlimited            seconds   ',
      'Max open files            1024                 524288               files     ',
      'Max processes             96363                96363                processes ',
      'Max realtime timeout      unlimited            unlimited            us        ',
    ].join('\n');
    assert.deepEqual([...parseProcLimits(text)], [
      ['RLIMIT_CPU', 'unlimited'], ['RLIMIT_NOFILE', 524288], ['RLIMIT_NPROC', 96363], ['RLIMIT_RTTIME', 'unlimited'],
    ]);
  });
});

describe('applyRestorePolicy: resources and malformed input', () => {
  test('memory and pids limits are kept; the policy\'s lower one wins; unified is not used', () => {
    const untrusted = stasisSpecDump();
    untrusted.linux.resources = { ...untrusted.linux.resources, memory: { limit: 1 << 30 }, pids: { limit: 500 }, unified: { 'memory.max': 'max' } };
    const policySpec = defaultSpec('c2', []) as Record<string, any>;
    policySpec.linux.resources.pids = { limit: 100 };
    const { spec, warnings } = okSpec(untrusted, { policySpec: policySpec as OciSpec });
    assert.deepEqual(spec.linux!.resources, { devices: [{ allow: false, access: 'rwm' }], memory: { limit: 1 << 30 }, pids: { limit: 100 } });
    assert.ok(warnings.some((w) => /resources unified are not used/.test(w)));
  });

  test('what is not an OCI spec is a CheckpointSpecError naming the field', () => {
    for (const [untrusted, field] of [
      [null, 'the document'],
      [{ ociVersion: '1.0.2' }, 'process'],
      [{ process: { args: [] } }, 'process.args'],
      [{ process: { args: ['sh'], env: ['NOEQUALS'] } }, 'process.env'],
      [{ process: { args: ['sh'], cwd: 'relative' } }, 'process.cwd'],
      [{ process: { args: ['sh'] }, mounts: [{ destination: 'data' }] }, 'mounts[0]'],
      [{ process: { args: ['sh'] }, hostname: 'a b' }, 'hostname'],
    ] as const) {
      assert.throws(() => applyRestorePolicy(untrusted, options()), (err: unknown) => err instanceof CheckpointSpecError && err.field === field, `${JSON.stringify(untrusted)} → ${field}`);
    }
  });
});

describe('RestorePolicyError', () => {
  test('names every excess and every grant', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.capabilities.bounding.push('CAP_SYS_ADMIN');
    untrusted.mounts.push({ destination: '/data', type: 'bind', source: '/' });
    const err = new RestorePolicyError(refusals(untrusted));
    assert.match(err.message, /capability CAP_SYS_ADMIN: in its bounding set \(spec\.dump\)/);
    assert.match(err.message, /mount \/data: a read-write bind mount of \//);
    assert.match(err.hint ?? '', /--trust-checkpoint capabilities/);
    assert.match(err.hint ?? '', /--mount type=bind,source=DIR,destination=\/data/);
    assert.equal(err.exitCode, 1);
  });

  test('trust "all" grants every area', () => {
    const untrusted = stasisSpecDump();
    untrusted.process.capabilities.bounding.push('CAP_SYS_ADMIN');
    untrusted.linux.resources.devices = [{ allow: true, access: 'rwm' }];
    untrusted.mounts.push({ destination: '/data', type: 'bind', source: '/' });
    okSpec(untrusted, { trust: 'all' });
  });
});
