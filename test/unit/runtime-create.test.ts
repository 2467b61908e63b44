// create: provisioning over a fake runc and conmon (src/runtime/provision.ts).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAKE_CONMON, FAKE_RUNC, FakeHost, NO_CRIU, rejection } from './fakes.ts';

describe('create (fake runc and conmon)', () => {
  const host = new FakeHost('create');
  after(() => host.cleanup());

  test('a bundle create: conmon is asked to run runc create on the spec stasis wrote, the record says created', async () => {
    const bundle = host.bundle('b1', ['sh', '-c', 'echo hi']);
    const info = await host.runtime.createInfo('web', host.plan('web', { bundle, labels: { tier: 'front' } }));
    const dir = host.containerDir('web');

    assert.equal(info.status, 'created');
    assert.equal(info.pid, process.pid);
    assert.equal(info.bundle, bundle, "info's bundle is the user's bundle folder");
    assert.deepEqual(info.rootfs, { kind: 'bundle', base: join(bundle, 'rootfs'), userBundle: bundle });
    assert.deepEqual(info.labels, { tier: 'front' });
    assert.deepEqual(info.command, ['sh', '-c', 'echo hi']);

    assert.equal(host.monitor.calls.length, 1);
    const monitor = host.monitor.calls[0];
    const record = host.record('web');
    assert.deepEqual(monitor, {
      conmon: FAKE_CONMON,
      runc: FAKE_RUNC,
      runcGlobalArgs: ['--root', join(host.stateDir, 'runc'), '--criu', NO_CRIU],
      id: 'web',
      containerDir: dir,
      socketDir: join(host.stateDir, 'sockets'),
      logPath: join(dir, 'ctr.log'),
      stdio: ['ignore', 'ignore', 'ignore'],
      terminal: false,
      stdin: false,
      exitCommand: ['/usr/bin/node', '/opt/stasis/bin/stasis', '--state-dir', host.stateDir, '--runc', FAKE_RUNC, '__exit', 'web', record.instance],
      restoreImage: undefined,
      restoreArgs: undefined,
    });
    // conmon runs runc create itself: stasis ran nothing.
    assert.deepEqual(host.runner.allCalls(), []);

    const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(spec.root.path, join(bundle, 'rootfs'), 'runc is given the bundle rootfs, in place');
    assert.match(spec.linux.cgroupsPath, /^\/stasis-[0-9a-f]+-web$/);
    assert.equal(spec.annotations['org.stasis.id'], 'web');
    assert.deepEqual(spec.process.args, ['sh', '-c', 'echo hi']);

    assert.equal(record.status, 'created');
    assert.equal(record.pid, process.pid);
    assert.deepEqual(record.mounts, []);
    assert.deepEqual(host.events(), ['/containers/create web', '/tasks/create web']);
  });

  test("conmon reports runc's error: the error is runc's message, the folder is removed, nothing is left", async () => {
    host.runner.reset();
    const before = host.events().length;
    host.monitor.failNext('runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH');
    const err = await rejection(host.runtime.createInfo('bad', host.plan('bad', { bundle: host.bundle('b2', ['nope']) })));
    assert.equal(err.message, 'runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH');
    assert.equal(err.exitCode, 1);
    assert.equal(existsSync(host.containerDir('bad')), false, 'the container folder is removed');
    assert.equal(existsSync(join(host.stateDir, 'runc', 'bad')), false, "runc's state is removed");
    // runc left no state folder (nothing for `runc delete` to do); nothing was mounted, so nothing is unmounted.
    assert.deepEqual(host.runner.allCalls(), []);
    assert.equal(host.events().length, before, 'no event for a container that never was');
    assert.deepEqual(host.runtime.store.ids(), ['web']);

    // The ID is free again.
    await host.runtime.createInfo('bad', host.plan('bad', { bundle: host.bundle('b2b') }));
    assert.equal(host.record('bad').status, 'created');
  });

  test('a --rootfs create mounts the overlay after writing the record that names it', async () => {
    host.runner.reset();
    const base = host.baseImage('base1');
    const dir = host.containerDir('ov');
    const target = join(dir, 'rootfs');
    let mountsWhenMounting: unknown = null;
    host.runner.on('mount', [], () => {
      // Crash-safety: the record names the mount before it is made.
      mountsWhenMounting = host.record('ov').mounts;
      return {};
    });
    const info = await host.runtime.createInfo('ov', host.plan('ov', { rootfs: base, args: ['sleep', '1'] }));
    const overlay = { type: 'overlay', source: 'overlay', target, options: [`lowerdir=${base}`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`] };
    assert.deepEqual(host.runner.allCalls(), [`mount -t overlay -o lowerdir=${base},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')} overlay ${target}`]);
    assert.deepEqual(mountsWhenMounting, [overlay]);
    assert.equal(info.status, 'created');
    assert.equal(info.bundle, dir, "a --rootfs container's bundle is its own folder");
    assert.deepEqual((await host.runtime.inspect('ov')).mounts, [overlay]);
    assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).root.path, target);
  });

  test('a mount failure: the error says which mount and why, the monitor never starts, nothing is left', async () => {
    host.runner.reset();
    const starts = host.monitor.calls.length;
    const base = host.baseImage('base2');
    host.runner.on('mount', [], { exitCode: 32, stderr: 'mount: /x: unknown filesystem type \'overlay\'.\n' }, { once: true });
    const err = await rejection(host.runtime.createInfo('nomount', host.plan('nomount', { rootfs: base })));
    const target = join(host.containerDir('nomount'), 'rootfs');
    assert.equal(err.message, `mount overlay on ${target}: mount: /x: unknown filesystem type 'overlay'.`);
    assert.equal(host.monitor.calls.length, starts, 'conmon was not started');
    assert.equal(host.runner.allCalls()[0].startsWith('mount -t overlay'), true);
    // runc never ran: no `runc delete` either.
    assert.deepEqual(host.runner.allCalls().slice(1), []);
    assert.equal(existsSync(host.containerDir('nomount')), false);
    assert.equal(existsSync(base) && readdirSync(base).join(), 'etc', 'the base image is untouched');
  });

  test("a bundle's --rootfs-mount is mounted on its rootfs and recorded", async () => {
    host.runner.reset();
    const bundle = host.bundle('b3');
    const rootfsMounts = [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=0755'] }];
    await host.runtime.createInfo('bm', host.plan('bm', { bundle, rootfsMounts }));
    assert.deepEqual(host.runner.allCalls(), [`mount -t tmpfs -o size=1m,mode=0755 tmpfs ${join(bundle, 'rootfs')}`]);
    assert.deepEqual(host.record('bm').mounts, [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=0755'], target: join(bundle, 'rootfs') }]);
  });

  test('a duplicate ID is refused and the first container is left alone', async () => {
    const starts = host.monitor.calls.length;
    const first = host.record('web');
    const err = await rejection(host.runtime.createInfo('web', host.plan('web', { bundle: host.bundle('b4') })));
    assert.equal(err.message, 'container web already exists');
    assert.equal(err.hint, 'choose another ID, or remove it first with `stasis delete -f web`');
    assert.equal(host.monitor.calls.length, starts);
    assert.deepEqual(host.record('web'), first);
  });

  test('a -t container asks conmon for a terminal; file stdio goes to the container directly', async () => {
    await host.runtime.createInfo('tty', host.plan('tty', { bundle: host.bundle('b5'), tty: true }));
    const tty = host.monitor.calls.at(-1)!;
    assert.equal(tty.terminal, true);
    assert.equal(host.record('tty').tty, true);

    const out = join(host.root, 'out.txt');
    await host.runtime.createInfo('files', host.plan('files', { bundle: host.bundle('b6'), stdout: out }));
    const files = host.monitor.calls.at(-1)!;
    assert.equal(files.logPath, null, 'passthrough: conmon captures nothing');
    assert.equal(typeof files.stdio[1], 'number', 'stdout is an open file');
    assert.deepEqual(host.record('files').stdio, { mode: 'passthrough', stdin: null, stdout: out, stderr: null });
    assert.ok(existsSync(out));
  });
});
