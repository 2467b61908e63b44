import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { capabilityExcess, readCriuProcesses, type RlimitValue } from '../../src/checkpoint/criu/creds.ts';
import { CriuImageError, splitImageEntries, decodeMessage } from '../../src/checkpoint/criu/images.ts';
import { readImageMounts } from '../../src/checkpoint/criu/mounts.ts';
import { applyRestorePolicy } from '../../src/checkpoint/policy/spec.ts';
import { checkCriuImages, type ImagePolicyOptions } from '../../src/checkpoint/policy/processes.ts';
import type { PolicyRefusal } from '../../src/checkpoint/policy/trust.ts';
import { defaultSpec, type OciSpec } from '../../src/runtime/spec.ts';
import { encode, FSTYPE, imageFile, stasisMounts, syntheticImages, type SyntheticImages, type SyntheticMount } from './criu-encode.ts';

let root: string;
let counter = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'stasis-policy-images-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

function imagesDir(opts: SyntheticImages = {}, edit?: (files: Map<string, Buffer>) => void): string {
  const dir = join(root, `images-${counter++}`);
  mkdirSync(dir);
  const files = syntheticImages(opts);
  edit?.(files);
  for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes);
  return dir;
}

/** The spec restore would use for a stasis checkpoint (the policy applied to stasis's own spec). */
function restoreSpec(policySpec: OciSpec = defaultSpec('c1', [])): OciSpec {
  const result = applyRestorePolicy(JSON.parse(JSON.stringify(defaultSpec('c1', ['sleep', '1000']))), { policySpec, kind: 'overlay', hostLimits: new Map() });
  assert.ok(result.ok);
  return result.spec;
}

// The paths masked and made read-only in the synthetic tree exist; the others do not (as on this kernel).
const EXISTING = new Set(['/proc/acpi', '/proc/keys', '/proc/timer_list', '/sys/firmware', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys']);
const OPTS: ImagePolicyOptions = {
  hostLimits: new Map<string, RlimitValue>([['RLIMIT_NOFILE', 524288], ['RLIMIT_CPU', 'unlimited']]),
  pathExists: (path) => EXISTING.has(path),
  hostOomScoreAdj: 0,
};

function check(dir: string, opts: ImagePolicyOptions = {}, spec = restoreSpec()): PolicyRefusal[] {
  return checkCriuImages(dir, spec, { ...OPTS, ...opts }).refused;
}

const CAP_SYS_ADMIN = 1n << 21n;
const CAP_SYS_MODULE = 1n << 16n;
const DEFAULT = (1n << 5n) | (1n << 10n) | (1n << 29n);

describe('reading CRIU images', () => {
  test('task credentials, with capability names, from core images', () => {
    const dir = imagesDir({ tasks: [{ pid: 1, comm: 'sh', threads: [1, 5] }, { pid: 7, comm: 'sleep', capEff: DEFAULT | CAP_SYS_ADMIN }] });
    const { tasks, threads, rootNamespaces } = readCriuProcesses(dir);
    assert.deepEqual(tasks.map((t) => [t.pid, t.ppid, t.threads, t.comm]), [[1, 0, [1, 5], 'sh'], [7, 1, [7], 'sleep']]);
    assert.deepEqual(threads.map((t) => [t.pid, t.tid, t.credsFile]), [[1, 1, 'core-1.img'], [1, 5, 'core-5.img'], [7, 7, 'core-7.img']]);
    assert.deepEqual(threads[0].creds?.capBnd, ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE']);
    assert.deepEqual(threads[2].creds?.capEff, ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_ADMIN', 'CAP_AUDIT_WRITE']);
    assert.equal(threads[0].creds?.noNewPrivs, true);
    assert.deepEqual(tasks[0].rlimits[7], { type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 });
    assert.deepEqual(tasks[0].rlimits[0], { type: 'RLIMIT_CPU', soft: 'unlimited', hard: 'unlimited' });
    assert.deepEqual(rootNamespaces, { pid: true, network: true, ipc: true, uts: true, mount: true, user: true, cgroup: true, time: true });
  });

  test('old images: the credentials in creds-P.img', () => {
    const dir = imagesDir({ tasks: [{ pid: 1, oldCredsImage: true, capBnd: DEFAULT | CAP_SYS_MODULE }] });
    const [thread] = readCriuProcesses(dir).threads;
    assert.equal(thread.credsFile, 'creds-1.img');
    assert.ok(thread.creds?.capBnd.includes('CAP_SYS_MODULE'));
  });

  test('capabilityExcess: per thread and set; no recorded creds means every capability', () => {
    const dir = imagesDir({ tasks: [{ pid: 1 }, { pid: 2, capBnd: DEFAULT | CAP_SYS_ADMIN, capAmb: CAP_SYS_ADMIN }, { pid: 3, noCreds: true }] });
    const excess = capabilityExcess(readCriuProcesses(dir).threads, ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE']);
    assert.deepEqual(excess.filter((e) => e.pid === 2).map((e) => [e.set, e.capabilities]), [['bounding', ['CAP_SYS_ADMIN']], ['ambient', ['CAP_SYS_ADMIN']]]);
    assert.ok(excess.some((e) => e.pid === 3 && e.set === 'effective' && e.capabilities.includes('CAP_SYS_ADMIN')));
    assert.ok(!excess.some((e) => e.pid === 1));
  });

  test('the mount tree: root, binds of the root, external mounts, read-only flags', () => {
    const mounts = [...stasisMounts(), { id: 90, parent: 72, mountpoint: '/app', fstype: FSTYPE.overlay, rootDev: 100, root: '/srv' }];
    const read = readImageMounts(imagesDir({ mounts }));
    const at = (path: string) => read.find((m) => m.mountpoint === path)!;
    assert.equal(at('/').isRoot, true);
    assert.equal(at('/app').bindOfRoot, true);
    assert.equal(at('/proc/keys').externalKey, '/dev/null');
    assert.equal(at('/sys').readOnly, true);
    assert.equal(at('/dev').readOnly, false);
    assert.equal(at('/sys/fs/cgroup').fstype, 'cgroup2');
  });
});

describe('damaged images give CriuImageError, never a crash', () => {
  const core = syntheticImages().get('core-1.img')!;

  test('wrong magic, truncated entry, bad wire type, missing files', () => {
    const cases: [string, (files: Map<string, Buffer>) => void, RegExp][] = [
      ['magic', (f) => f.set('core-1.img', imageFile('creds', [encode([[1, 0]])])), /magic 0x54023547 is not that of a core image/],
      ['truncated', (f) => f.set('core-1.img', core.subarray(0, core.length - 3)), /runs past the end/],
      ['wire type', (f) => f.set('core-1.img', imageFile('core', [Buffer.from([0x0b, 0x00])])), /wire type 3/],
      ['no core', (f) => f.delete('core-1.img'), /core-1\.img .*missing \(pstree\.img lists thread 1 of task 1\)/],
      ['no pstree', (f) => f.delete('pstree.img'), /pstree\.img .*missing/],
      ['no ids', (f) => f.delete('ids-1.img'), /ids-1\.img .*missing/],
      ['no root_ids', (f) => f.set('inventory.img', imageFile('inventory', [encode([[1, 2]])])), /has no root_ids/],
      ['two roots', (f) => f.set('mountpoints-13.img', imageFile('mountpoints', [encode([[1, 5], [2, 1], [3, 1], [4, 50], [5, 0], [6, '/'], [7, '/'], [8, ''], [9, '']]), encode([[1, 5], [2, 2], [3, 1], [4, 51], [5, 0], [6, '/'], [7, '/x'], [8, ''], [9, '']])])), /2 mounts without a parent/],
    ];
    for (const [name, edit, message] of cases) {
      const dir = imagesDir({}, edit);
      assert.throws(() => {
        readCriuProcesses(dir);
        readImageMounts(dir);
      }, (err: unknown) => err instanceof CriuImageError && message.test(err.message), name);
    }
  });

  test('random damage to a core image: decoded or refused, nothing else', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 2000; i++) {
      const damaged = Buffer.from(core);
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++) damaged[8 + Math.floor(random() * (damaged.length - 8))] = Math.floor(random() * 256);
      try {
        const [entry] = splitImageEntries(damaged, 'core', 'core-1.img');
        const message = decodeMessage(entry, 'core-1.img', 'core_entry');
        message.message(5, 'thread_core')?.message(10, 'creds')?.uint32s(12);
      } catch (err) {
        assert.ok(err instanceof CriuImageError, `iteration ${i}: ${String(err)}`);
      }
    }
  });
});

describe('checkRestoredImages', () => {
  test('a stasis container\'s images pass', () => {
    assert.deepEqual(check(imagesDir()), []);
  });

  test('CAP_SYS_ADMIN in the bounding and effective sets is refused, naming the task and sets', () => {
    const refused = check(imagesDir({ tasks: [{ pid: 1, comm: 'sh', capBnd: DEFAULT | CAP_SYS_ADMIN, capEff: DEFAULT | CAP_SYS_ADMIN }] }));
    assert.deepEqual(refused.map((r) => [r.area, r.what, r.asked]), [
      ['capabilities', 'capability CAP_SYS_ADMIN', 'CRIU would restore task 1 (sh) in its bounding, effective sets'],
    ]);
    assert.equal(refused[0].grant, '--trust-checkpoint capabilities');
    assert.deepEqual(check(imagesDir({ tasks: [{ pid: 1, capBnd: DEFAULT | CAP_SYS_ADMIN }] }), { trust: ['capabilities'] }), []);
  });

  test('a thread without recorded credentials is refused', () => {
    const refused = check(imagesDir({ tasks: [{ pid: 1, comm: 'sh', noCreds: true }] }));
    assert.ok(refused.some((r) => r.what === 'credentials of task 1 (sh)'), JSON.stringify(refused));
  });

  test('a zombie (an exec\'d process nobody reaped) holds nothing: it is not refused, a live task with the same images is', () => {
    const zombie = { pid: 12, comm: 'timeout', noCreds: true, capEff: DEFAULT | CAP_SYS_ADMIN, capBnd: DEFAULT | CAP_SYS_ADMIN };
    assert.deepEqual(check(imagesDir({ tasks: [{ pid: 1, comm: 'sh' }, { ...zombie, state: 6 }] })), []);
    assert.deepEqual(check(imagesDir({ tasks: [{ pid: 1, comm: 'sh' }, { ...zombie, state: 2 }] })), []);
    const live = check(imagesDir({ tasks: [{ pid: 1, comm: 'sh' }, zombie] }));
    assert.ok(live.some((r) => r.what === 'credentials of task 12 (timeout)'), JSON.stringify(live));
  });

  test('a root task in the host\'s network and mount namespaces is refused', () => {
    const refused = check(imagesDir({ hostNamespaces: [6, 9] }));
    assert.deepEqual(refused.map((r) => [r.area, r.what]), [['namespaces', 'network namespace'], ['namespaces', 'mount namespace']]);
    assert.match(refused[0].asked, /host's network namespace/);
  });

  test('real-time scheduling, a negative nice and a low oom_score_adj need capabilities', () => {
    const refused = check(imagesDir({ tasks: [{ pid: 1, comm: 'rt', schedPolicy: 1, oomScoreAdj: -1000 }, { pid: 2, comm: 'nice', nice: -5 }] }));
    assert.deepEqual(refused.map((r) => r.what), ['scheduling of task 1 (rt)', 'scheduling of task 2 (nice)', 'oom_score_adj of task 1 (rt)']);
    assert.match(refused[0].asked, /SCHED_FIFO .*CAP_SYS_NICE/);
  });

  test('an rlimit above this host\'s hard limit is refused', () => {
    const rlimits = Array.from({ length: 16 }, (_, i): [bigint, bigint] => (i === 7 ? [1n << 20n, 1n << 20n] : [0n, 0n]));
    const refused = check(imagesDir({ tasks: [{ pid: 1, comm: 'sh', rlimits }] }));
    assert.deepEqual(refused.map((r) => [r.area, r.what, r.asked]), [['rlimits', 'rlimit RLIMIT_NOFILE', '1048576 (this host\'s hard limit is 524288) for task 1 (sh)']]);
  });

  test('a policy seccomp filter the processes lack is refused', () => {
    const spec = restoreSpec({ ...defaultSpec('c1', []), linux: { ...defaultSpec('c1', []).linux, seccomp: { defaultAction: 'SCMP_ACT_ALLOW' } } });
    assert.deepEqual(check(imagesDir(), {}, spec).map((r) => r.what), ['seccomp']);
    assert.deepEqual(check(imagesDir({ tasks: [{ pid: 1, seccompMode: 2 }] }), {}, spec), []);
  });

  const withMount = (mount: SyntheticMount, drop?: string) => imagesDir({ mounts: [...stasisMounts().filter((m) => m.mountpoint !== drop), mount] });

  test('a host block device ("auto" filesystem) and an overlay of host paths are refused', () => {
    const disk = check(withMount({ id: 95, parent: 72, mountpoint: '/mnt', fstype: FSTYPE.auto, fsname: 'ext4', rootDev: 200, source: '/dev/vda' }));
    assert.deepEqual(disk.map((r) => [r.area, r.what]), [['mounts', 'mount /mnt']]);
    assert.match(disk[0].asked, /\/dev\/vda of type ext4/);
    const overlay = check(withMount({ id: 95, parent: 72, mountpoint: '/host', fstype: FSTYPE.overlay, rootDev: 201, source: 'overlay', options: 'lowerdir=/' }));
    assert.match(overlay[0].asked, /overlay of type overlay with options lowerdir=\//);
  });

  test('a second proc (unmasked) is refused; a tmpfs and a bind of the rootfs are not', () => {
    assert.deepEqual(check(withMount({ id: 95, parent: 72, mountpoint: '/mnt/proc', fstype: FSTYPE.proc, rootDev: 101, source: 'proc' })).map((r) => r.what), ['mount /mnt/proc']);
    assert.deepEqual(check(withMount({ id: 95, parent: 72, mountpoint: '/tmp', fstype: FSTYPE.tmpfs, rootDev: 300 })), []);
    assert.deepEqual(check(withMount({ id: 95, parent: 72, mountpoint: '/app', fstype: FSTYPE.overlay, rootDev: 100, root: '/srv' })), []);
  });

  test('an external bind mount the restore spec has no source for is refused, with --mount as the grant', () => {
    const refused = check(withMount({ id: 95, parent: 72, mountpoint: '/data', fstype: FSTYPE.tmpfs, rootDev: 400, extKey: '/data' }));
    assert.deepEqual(refused.map((r) => r.what), ['mount /data']);
    assert.match(refused[0].grant, /--mount type=bind,source=DIR,destination=\/data/);
    const spec = restoreSpec();
    spec.mounts = [...(spec.mounts ?? []), { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind'] }];
    assert.deepEqual(check(withMount({ id: 95, parent: 72, mountpoint: '/data', fstype: FSTYPE.tmpfs, rootDev: 400, extKey: '/data' }), {}, spec), []);
  });

  test('a mask left out (/proc/keys) or a read-only path made writable (/proc/sys, /sys) is refused', () => {
    assert.deepEqual(check(imagesDir({ mounts: stasisMounts().filter((m) => m.mountpoint !== '/proc/keys') })).map((r) => [r.area, r.what]), [['security', 'masked path /proc/keys']]);
    const writable = stasisMounts().map((m) => (m.mountpoint === '/proc/sys' || m.mountpoint === '/sys' ? { ...m, flags: 0 } : m));
    assert.deepEqual(check(imagesDir({ mounts: writable })).map((r) => r.what), ['read-only path /proc/sys', 'read-only mount /sys']);
    assert.deepEqual(check(imagesDir({ mounts: writable }), { trust: ['security'] }), []);
    // A path this kernel does not have needs no mask.
    assert.deepEqual(check(imagesDir({ mounts: stasisMounts().filter((m) => m.mountpoint !== '/proc/keys') }), { pathExists: (p) => p !== '/proc/keys' && EXISTING.has(p) }), []);
  });

  test('a mask that is not one (a bind of proc at /proc/kcore) does not count', () => {
    const exists = (p: string) => EXISTING.has(p) || p === '/proc/kcore';
    const fake = withMount({ id: 95, parent: 73, mountpoint: '/proc/kcore', fstype: FSTYPE.proc, rootDev: 101, root: '/kcore' });
    assert.deepEqual(check(fake, { pathExists: exists }).map((r) => r.what), ['masked path /proc/kcore']);
  });
});
