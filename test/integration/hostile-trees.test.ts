import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
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

describe('a checkpoint folder is checked before anything reads it', { skip: requires(...CONTAINERS, 'criu') }, () => {
  const env = new TestEnv('hostile-folder');
  after(() => env.cleanup());

  test('a pages image linked to a host file, or shorter than its page map, is refused before CRIU runs; inspect never walks a link to /', async () => {
    // A criu that notes each time runc starts it (runc drives CRIU through `criu swrk`).
    const marker = join(env.root, 'criu-ran');
    const fake = join(env.root, 'criu');
    const realCriu = spawnSync('sh', ['-c', 'command -v criu'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(fake, `#!/bin/sh\n[ "$1" = swrk ] && touch ${marker}\nexec ${realCriu} "$@"\n`);
    chmodSync(fake, 0o755);
    const withFake = { env: { STASIS_CRIU: fake } };

    await env.ok(['run', '-d', 'src', '--', 'sh', '-c', 'i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.2; done']);
    const count = await counterAdvances(env, 'src', 1);
    const good = join(env.root, 'good');
    await env.ok(['checkpoint', 'src', '--leave-running', '--image-path', good]);
    const pages = readdirSync(join(good, 'checkpoint')).filter((name) => /^pages-\d+\.img$/.test(name)).sort();
    assert.ok(pages.length > 0, 'the checkpoint has pages images');
    const copy = (name: string) => {
      const dir = join(env.root, name);
      cpSync(good, dir, { recursive: true });
      return dir;
    };

    const secret = join(env.root, 'host-file');
    writeFileSync(secret, 'not for a container');
    const linked = copy('linked');
    rmSync(join(linked, 'checkpoint', pages[0]));
    symlinkSync(secret, join(linked, 'checkpoint', pages[0]));
    await env.fails(1, ['restore', 'r1', '--checkpoint', linked], new RegExp(`^stasis: cannot restore from ${linked}: unsafe checkpoint entry "checkpoint/${pages[0]}": a symlink`), withFake);

    const short = copy('short');
    writeFileSync(join(short, 'checkpoint', pages[0]), Buffer.alloc(20, 1));
    await env.fails(1, ['restore', 'r2', '--checkpoint', short], new RegExp(`memory images do not match their page maps.*${pages[0]} holds 20 bytes`), withFake);

    assert.equal(existsSync(marker), false, 'CRIU never ran');
    assert.deepEqual(env.containerIds(), ['src']);

    const rooted = copy('rooted');
    symlinkSync('/', join(rooted, 'checkpoint', 'root'));
    const inspected = await env.fails(1, ['checkpoint', 'inspect', rooted], new RegExp(`^stasis: cannot inspect ${rooted}: unsafe checkpoint entry "checkpoint/root": a symlink to "/"`));
    assert.equal(inspected.stdout, '');
    assert.doesNotMatch(inspected.stderr, /\/proc|\/etc|\/usr/);

    // The same folder, untouched, restores through the same criu: the checks, not the fake, refused the others.
    await env.ok(['restore', 'r3', '--checkpoint', good], withFake);
    assert.equal(existsSync(marker), true, 'CRIU ran for the good checkpoint');
    await counterAdvances(env, 'r3', count);
  });
});
