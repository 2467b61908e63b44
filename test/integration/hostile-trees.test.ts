import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readlinkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, CONTAINERS, TestEnv, counterAdvances, requires } from '../helpers.ts';

// Links that name the host's own tree, in a container's writable layer and in
// a base moved with --with-rootfs, are data: every walk over an unpacked tree
// lists them and never goes through them. Under Bun (the compiled binary) the
// check of an unpacked layer used to descend through `srv/root -> /` (EACCES
// on /proc/1/exe) and loop through `dev/fd -> /proc/self/fd` (ELOOP): this
// file fails there before the fix, whichever runtime runs it after.

const COUNTER_WITH_LINKS = [
  'sh', '-c',
  'mkdir -p /srv && ln -s / /srv/root && ln -s /proc/self/fd /srv/fd && ln -s /dev /srv/hostdev && i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done',
];

/** The links a container made, as seen from inside it. */
async function linksInside(env: TestEnv, id: string): Promise<string> {
  return env.ok(['exec', id, '--', 'sh', '-c', 'for l in /srv/root /srv/fd /srv/hostdev; do readlink $l; done']);
}

describe('links to the host in a layer and in a base', { skip: requires(...CONTAINERS, 'criu') }, () => {
  const here = new TestEnv('hostile-a');
  const there = new TestEnv('hostile-b');
  after(async () => {
    await there.cleanup();
    await here.cleanup();
  });
  const toThere = (args: string[]) => ['migrate', ...args.slice(0, 1), there.stateDir, '--remote-stasis', [...CLI, '--checkpoint-dir', there.checkpointDir].join(' '), ...args.slice(1)];

  test('a layer holding srv/root -> / restores under a new ID, in another state directory, and moves', async () => {
    await here.ok(['run', '-d', 'ln1', '--', ...COUNTER_WITH_LINKS]);
    let count = await counterAdvances(here, 'ln1', 1);
    assert.equal(await linksInside(here, 'ln1'), '/\n/proc/self/fd\n/dev\n');
    const archive = join(here.root, 'ln1.tar.zst');
    await here.ok(['checkpoint', 'ln1', '--leave-running', '--export', archive]);

    // Under a new ID, here.
    await here.ok(['restore', 'ln1-copy', '--checkpoint', archive]);
    count = await counterAdvances(here, 'ln1-copy', count);
    assert.equal(await linksInside(here, 'ln1-copy'), '/\n/proc/self/fd\n/dev\n');
    await here.ok(['delete', '-f', 'ln1-copy']);

    // In another state directory.
    await there.ok(['restore', 'ln1', '--checkpoint', archive]);
    await counterAdvances(there, 'ln1', count);
    assert.equal(await linksInside(there, 'ln1'), '/\n/proc/self/fd\n/dev\n');
    await there.ok(['delete', '-f', 'ln1']);

    // Moved.
    await here.ok(toThere(['ln1']));
    await counterAdvances(there, 'ln1', count);
    assert.equal(await linksInside(there, 'ln1'), '/\n/proc/self/fd\n/dev\n');
    await there.ok(['delete', '-f', 'ln1']);
  });

  test('a base with dev/fd -> /proc/self/fd and links to /dev and / moves with --with-rootfs', async () => {
    // What every Debian rootfs holds (dev/fd, dev/stdin...), plus links a user may make.
    const base = here.copyRootfs('debianish-base');
    mkdirSync(join(base, 'dev'), { recursive: true });
    symlinkSync('/proc/self/fd', join(base, 'dev', 'fd'));
    symlinkSync('/proc/self/fd/0', join(base, 'dev', 'stdin'));
    symlinkSync('/dev', join(base, 'hostdev'));
    mkdirSync(join(base, 'srv'), { recursive: true });
    symlinkSync('/', join(base, 'srv', 'root'));
    await here.ok(['run', '-d', 'deb', '--rootfs', base, '--', 'sh', '-c', 'i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done']);
    const count = await counterAdvances(here, 'deb', 1);
    const elsewhere = join(there.root, 'bases', 'debianish');
    await here.ok(toThere(['deb', '--rootfs', elsewhere, '--with-rootfs']));
    await counterAdvances(there, 'deb', count);
    assert.equal(readlinkSync(join(elsewhere, 'dev', 'fd')), '/proc/self/fd');
    assert.equal(readlinkSync(join(elsewhere, 'hostdev')), '/dev');
    assert.equal(readlinkSync(join(elsewhere, 'srv', 'root')), '/');
    await there.ok(['delete', '-f', 'deb']);
  });
});
