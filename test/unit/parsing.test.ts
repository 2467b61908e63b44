import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateId } from '../../src/state/ids.ts';
import { parseSignal } from '../../src/host/signals.ts';
import { parseBindMount, parseBytes, parseMountFlag, parseTimeBound, parseVolumeFlag, volumesFrom } from '../../src/commands/flags.ts';

import { parseLogLine, tailRecords } from '../../src/runtime/logs.ts';
import { runcMessage } from '../../src/runtime/runc.ts';
import { classifyExecFailure } from '../../src/runtime/exec-errors.ts';
import { applyDeletions } from '../../src/checkpoint/rootfs-diff.ts';
import { criuErrors, withCriuLog } from '../../src/checkpoint/criu/log.ts';
import { nonRootCheckpointCheck } from '../../src/runtime/doctor.ts';

import { StasisError } from '../../src/errors.ts';

describe('input parsing', () => {
  test('IDs: the contract pattern, as usage errors', () => {
    for (const good of ['a', 'web-1', 'A.b_c', 'x'.repeat(128), '0']) assert.equal(validateId(good), good);
    for (const bad of ['', '../x', 'a/b', '-x', '.x', 'x'.repeat(129), 'a b', 'é']) {
      assert.throws(() => validateId(bad), (err: StasisError) => err.exitCode === 2);
    }
  });

  test('signals by name, SIG name, lower case and number', () => {
    assert.deepEqual(parseSignal('TERM'), { name: 'SIGTERM', number: 15 });
    assert.deepEqual(parseSignal('sigkill'), { name: 'SIGKILL', number: 9 });
    assert.deepEqual(parseSignal('1'), { name: 'SIGHUP', number: 1 });
    assert.throws(() => parseSignal('NOPE'), /unknown signal "NOPE"/);
    assert.throws(() => parseSignal('99'), /unknown signal/);
  });

  test('byte sizes with suffixes', () => {
    assert.equal(parseBytes('memory', '64m'), 64 * 1024 * 1024);
    assert.equal(parseBytes('memory', '1G'), 1024 ** 3);
    assert.equal(parseBytes('memory', '7000000'), 7000000);
    assert.throws(() => parseBytes('memory', '1x'), /--memory "1x"/);
    assert.throws(() => parseBytes('memory', '1k'), /at least 6m/);
  });

  test('time bounds: durations back from now and RFC 3339', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    assert.equal(parseTimeBound('since', '10m', now), now - 600_000);
    assert.equal(parseTimeBound('since', '2h', now), now - 7_200_000);
    assert.equal(parseTimeBound('until', '2026-01-01T11:00:00Z', now), now - 3_600_000);
    assert.throws(() => parseTimeBound('since', 'yesterday', now), /--since "yesterday"/);
  });

  test('--rootfs-mount', () => {
    assert.deepEqual(parseMountFlag('type=overlay,source=overlay,options=lowerdir=/a:upperdir=/b:workdir=/c'), {
      type: 'overlay', source: 'overlay', options: ['lowerdir=/a', 'upperdir=/b', 'workdir=/c'],
    });
    assert.deepEqual(parseMountFlag('type=tmpfs'), { type: 'tmpfs', source: 'tmpfs', options: [] });
    assert.throws(() => parseMountFlag('source=x'), /type= is required/);
    assert.throws(() => parseMountFlag('type=bind,target=/x'), /unknown key "target"/);
  });
});

describe('reading what runc, conmon and CRIU write', () => {
  test('k8s-file log lines, partial lines and tail', () => {
    const full = parseLogLine('2026-01-01T00:00:00.000000000+00:00 stdout F hello world')!;
    assert.deepEqual(full, { time: '2026-01-01T00:00:00.000000000+00:00', stream: 'stdout', text: 'hello world\n' });
    const partial = parseLogLine('2026-01-01T00:00:00.1+00:00 stderr P no newline')!;
    assert.equal(partial.text, 'no newline');
    assert.equal(parseLogLine('garbage'), null);
    const records = ['a', 'b', 'c'].map((t) => ({ time: '', stream: 'stdout' as const, text: `${t}\n` }));
    assert.deepEqual(tailRecords(records, 2).map((r) => r.text), ['b\n', 'c\n']);
    assert.deepEqual(tailRecords(records, 0), []);
  });

  test('runc and conmon error text', () => {
    assert.equal(runcMessage('time="2026" level=error msg="container \\"x\\" does not exist"\n'), 'container "x" does not exist');
    const conmon = 'time="x" level=warning msg="Failed to remove cgroup (will retry)"\ntime="x" level=warning msg="Failed to remove cgroup (will retry)"\ntime="x" level=error msg="criu failed: type NOTIFY errno 0\\nlog file: /x/restore.log"';
    assert.equal(runcMessage(conmon), 'criu failed: type NOTIFY errno 0 log file: /x/restore.log');
  });

  test('runc create failures become 127 and 126', () => {
    const notFound = classifyExecFailure(new StasisError('unable to start container process: exec: "x": executable file not found in $PATH')) as StasisError;
    assert.equal(notFound.exitCode, 127);
    const denied = classifyExecFailure(new StasisError('unable to start container process: exec: "/etc": permission denied')) as StasisError;
    assert.equal(denied.exitCode, 126);
    const other = new StasisError('cgroup trouble');
    assert.equal(classifyExecFailure(other), other);
  });

  test('CRIU log: the error lines, without the harmless rlimit one, deduplicated', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-unit-'));
    try {
      const log = join(dir, 'dump.log');
      writeFileSync(log, [
        '(00.01) Error (criu/util.c:1): rlimit: Can\'t setup RLIMIT_NOFILE for self: Operation not permitted',
        '(00.02) Dumping things',
        '(00.03) Error (criu/page-xfer.c:9): Unable to write: No space left on device',
        '(00.03) Error (criu/page-xfer.c:9): Unable to write: No space left on device',
        '(00.04) Error (criu/cr-dump.c:2): Dumping FAILED.',
      ].join('\n'));
      assert.deepEqual(criuErrors(log), [
        '(00.03) Error (criu/page-xfer.c:9): Unable to write: No space left on device',
        '(00.04) Error (criu/cr-dump.c:2): Dumping FAILED.',
      ]);
      assert.deepEqual(criuErrors(join(dir, 'missing.log')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a failed dump is headed by CRIU's own error line, never runc's \"type NOTIFY errno 0\"", () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-unit-'));
    try {
      const log = join(dir, 'dump.log');
      writeFileSync(log, '(00.03) Error (criu/sk-inet.c:1): Connected TCP socket, consider using --tcp-established option.\n(00.04) Error (criu/cr-dump.c:2): Dumping FAILED.\n');
      const err = withCriuLog(new Error('runc checkpoint failed: criu failed: type NOTIFY errno 0\nlog file: /x/dump.log'), log, 'checkpoint', 'c1');
      // (merged with the volumes branch's wording, which drops runc's words with the NOTIFY line)
      assert.match(err.message, /^checkpoint c1 failed: CRIU: Connected TCP socket/);
      assert.doesNotMatch(err.message, /NOTIFY/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("CRIU denied another user's rlimits: the error says why and names --userns auto", () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-unit-'));
    try {
      const log = join(dir, 'dump.log');
      writeFileSync(log, "(00.02) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted\n(00.03) Error (criu/cr-dump.c:2): Dumping FAILED.\n");
      const err = withCriuLog(new Error('runc checkpoint failed: criu failed: type NOTIFY errno 0'), log, 'checkpoint', 'pg');
      assert.match(err.message, /^checkpoint pg failed: CRIU cannot read the resource limits of a process of another user: Error \(criu\/cr-dump\.c:389\): Can't get rlimit 0: Operation not permitted \(stasis runs without CAP_SYS_RESOURCE/);
      assert.doesNotMatch(err.message.split('\n')[0], /NOTIFY/);
      assert.match(err.hint ?? '', /--userns auto/);
      assert.equal(err.code, 'criu-rlimit-denied');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('doctor: without CAP_SYS_RESOURCE in CapEff, a non-root process cannot be checkpointed outside a user namespace', () => {
    const without = nonRootCheckpointCheck('Name:\tstasis\nCapEff:\t000001fffeffffff\n');
    assert.equal(without.ok, false);
    assert.equal(without.required, false);
    assert.match(without.detail, /without CAP_SYS_RESOURCE \(CapEff 000001fffeffffff\).*cannot be checkpointed outside a user namespace/);
    assert.match(without.hint ?? '', /--userns auto/);
    assert.equal(nonRootCheckpointCheck('CapEff:\t000001ffffffffff\n').ok, true);
  });
});

describe('applying deletions from an untrusted checkpoint', () => {
  test('never follows a symlink out of the rootfs, refuses ..', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-unit-'));
    try {
      const rootfs = join(dir, 'rootfs');
      const outside = join(dir, 'outside');
      mkdirSync(join(rootfs, 'etc'), { recursive: true });
      mkdirSync(outside);
      writeFileSync(join(outside, 'precious'), 'x');
      writeFileSync(join(rootfs, 'etc', 'gone'), 'x');
      symlinkSync(outside, join(rootfs, 'link'));
      assert.equal(applyDeletions(rootfs, ['/etc/gone', '/link/precious', '/not/there']), 1);
      assert.equal(existsSync(join(rootfs, 'etc', 'gone')), false);
      assert.equal(existsSync(join(outside, 'precious')), true);
      assert.throws(() => applyDeletions(rootfs, ['/etc/../../outside/precious']), /unsafe path/);
      assert.throws(() => applyDeletions(rootfs, { not: 'an array' }), /not a JSON array/);
      assert.equal(existsSync(join(outside, 'precious')), true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('volume flags', () => {
  test('-v HOST:CTR[:ro|rw] and --mount in podman spellings', () => {
    assert.deepEqual(parseVolumeFlag('/srv/a:/a'), { source: '/srv/a', destination: '/a', options: [] });
    assert.deepEqual(parseVolumeFlag('/srv/a:/a:ro'), { source: '/srv/a', destination: '/a', options: ['ro'] });
    assert.throws(() => parseVolumeFlag('/srv/a'), /HOST:CTR/);
    assert.throws(() => parseVolumeFlag('/srv/a:/a:ro,rw'), /ro and rw together/);
    assert.deepEqual(parseBindMount('type=bind,source=/s,destination=/d,ro'), { source: '/s', destination: '/d', options: ['ro'] });
    assert.deepEqual(parseBindMount('type=bind,src=/s,target=/d,readonly=false'), { source: '/s', destination: '/d', options: [] });
    assert.deepEqual(parseBindMount('type=bind,source=/s,destination=/d,options=rbind:ro'), { source: '/s', destination: '/d', options: ['rbind', 'ro'] });
    assert.throws(() => parseBindMount('type=volume,source=x,destination=/d'), /only type=bind/);
    assert.throws(() => parseBindMount('type=bind,source=/s'), /required/);
    assert.deepEqual(volumesFrom({ volume: ['/a:/x:ro'], mount: ['type=bind,source=/b,destination=/y'] }), [
      { source: '/a', destination: '/x', readonly: true },
      { source: '/b', destination: '/y', readonly: false },
    ]);
    assert.throws(() => volumesFrom({ mount: ['type=bind,source=/b,destination=/y,options=nosuid'] }), /takes ro, rw or U/);
    // :U (podman's): the volume's files are the container's user's, wherever it is restored.
    assert.deepEqual(volumesFrom({ volume: ['/a:/x:U', '/c:/z:ro,U'], mount: ['type=bind,source=/b,destination=/y,U=true', 'type=bind,source=/d,destination=/w,chown=false'] }), [
      { source: '/a', destination: '/x', readonly: false, chown: true },
      { source: '/c', destination: '/z', readonly: true, chown: true },
      { source: '/b', destination: '/y', readonly: false, chown: true },
      { source: '/d', destination: '/w', readonly: false },
    ]);
    assert.throws(() => parseVolumeFlag('/a:/x:u'), /stasis knows ro, rw and U/);
    assert.throws(() => parseBindMount('type=bind,source=/s,destination=/d,U=maybe'), /expected true or false/);
  });
});
