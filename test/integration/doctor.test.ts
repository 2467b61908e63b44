// stasis doctor, on the real host.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { TestEnv, requires } from '../helpers.ts';

describe('doctor', () => {
  const env = new TestEnv('doctor');
  after(() => env.cleanup());

  test('doctor reports every check and exits 0 on a set-up host', { skip: requires('root', 'runc', 'conmon', 'criu', 'flock', 'iptables') }, async () => {
    const result = await env.run(['doctor']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    for (const name of ['runc', 'conmon', 'criu', 'criu check', 'flock (exit hooks)', 'iptables', 'overlayfs', 'cgroup freezer', 'state directory']) {
      assert.match(result.stdout, new RegExp(`^ok\\s+${name.replace(/[()]/g, '\\$&')}`, 'm'), name);
    }
    const report = await env.json(['doctor']);
    assert.equal(report.ok, true);
    // Whether this host can checkpoint a non-root process without a user namespace: CAP_SYS_RESOURCE in CapEff.
    const capEff = BigInt(`0x${/^CapEff:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
    const nonRoot = report.checks.find((c: { name: string }) => c.name === 'non-root checkpoint');
    assert.equal(nonRoot.ok, ((capEff >> 24n) & 1n) === 1n, JSON.stringify(nonRoot));
    if (!nonRoot.ok) assert.match(result.stdout, /^warn non-root checkpoint\s+stasis runs without CAP_SYS_RESOURCE \(CapEff [0-9a-f]+\).*\n.*--userns auto/m);
    assert.ok(report.checks.every((c: { name: string; ok: boolean; required: boolean }) => typeof c.name === 'string' && (c.ok || !c.required)));
    // CRIU's kernel cache: kept where /run is a tmpfs, or once a checkpoint or restore has had stasis make it
    // (an empty /run/criu.kdat is what a reboot leaves of that mount).
    const kdat = report.checks.find((c: { name: string }) => c.name === "CRIU's kernel cache");
    const runIsTmpfs = statfsSync('/run').type === 0x01021994;
    const kept = (statSync('/run/criu.kdat', { throwIfNoEntry: false })?.size ?? 0) > 0;
    assert.equal(kdat.ok, runIsTmpfs || kept, JSON.stringify(kdat));
    // Post-copy into a user namespace: the kernel's vm.unprivileged_userfaultfd (0 on Debian).
    const uffd = report.checks.find((c: { name: string }) => c.name === 'post-copy (uffd)');
    const inUserns = report.checks.find((c: { name: string }) => c.name === 'post-copy in a userns');
    if (uffd.ok) {
      const knob = readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
      assert.equal(inUserns.ok, knob !== '0', JSON.stringify(inUserns));
      if (knob === '0') assert.match(result.stdout, /^warn post-copy in a userns\s+vm\.unprivileged_userfaultfd is 0: .*\n.*sysctl -w vm\.unprivileged_userfaultfd=1/m);
    } else assert.equal(inUserns, undefined);
  });

  test('a CRIU older than 4.2 on Linux 6.16 or later: doctor warns that no socket can be dumped', { skip: requires('root', 'runc', 'conmon') }, async () => {
    // A stand-in CRIU that answers as 4.1.1 does and passes `criu check`.
    const fake = join(env.root, 'criu-4.1.1');
    writeFileSync(fake, '#!/bin/sh\ncase "$1" in --version) echo "Version: 4.1.1";; check) [ "$2" = --feature ] && exit 1; echo "Looks good.";; esac\n', { mode: 0o755 });
    const report = await env.json(['doctor', '--criu', fake]);
    const sockets = report.checks.find((c: { name: string }) => c.name === 'TCP/UDP sockets');
    const [major, minor] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
    const newKernel = major > 6 || (major === 6 && minor >= 16);
    assert.equal(sockets.ok, !newKernel, JSON.stringify(sockets));
    if (newKernel) assert.match(sockets.detail, /CRIU 4\.1\.1 cannot dump any TCP or UDP socket on Linux .* \(4\.2 or newer is needed from 6\.16 on\)/);
    const uffd = report.checks.find((c: { name: string }) => c.name === 'post-copy (uffd)');
    assert.equal(uffd.ok, false, 'the stand-in supports no feature');
  });

  test('doctor exits 1 and says what to install when a tool is missing', async () => {
    const result = await env.run(['doctor', '--criu', '/nonexistent/criu', '--runc', '/nonexistent/runc']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^FAIL runc\s+\/nonexistent\/runc: not found/m);
    assert.match(result.stdout, /apt-get install runc/);
    assert.match(result.stdout, /^FAIL criu\s+\/nonexistent\/criu: not found/m);
    assert.match(result.stdout, /scripts\/setup\.sh/);
  });

  test('colour: FORCE_COLOR paints the marks (green ok, red FAIL) and the columns align once the codes are stripped', async () => {
    const forced = await env.run(['doctor', '--runc', '/nonexistent/runc'], { env: { FORCE_COLOR: '1', NO_COLOR: '' } });
    assert.equal(forced.code, 1);
    assert.match(forced.stdout, /^\x1b\[31mFAIL\x1b\[39m runc {19}\/nonexistent\/runc: not found$/m, 'a red FAIL');
    assert.match(forced.stdout, /^ {5} {22} \x1b\[2m-> apt-get install runc\x1b\[22m$/m, 'a dim hint');
    assert.match(forced.stdout, /^\x1b\[3[23]m(ok  |warn)\x1b\[39m /m, 'a green ok or a yellow warn');
    const plain = stripVTControlCharacters(forced.stdout);
    const lines = plain.trimEnd().split('\n');
    // "MARK NAME(22) DETAIL": every detail starts in column 28.
    for (const line of lines) assert.match(line, /^(ok  |FAIL|warn| {4}) .{22} \S/, line);
    const uncoloured = await env.run(['doctor', '--runc', '/nonexistent/runc']);
    assert.doesNotMatch(uncoloured.stdout, /\x1b\[/, 'no colour in a pipe');
    assert.equal(plain.split('\n').length, uncoloured.stdout.split('\n').length);
  });
});
