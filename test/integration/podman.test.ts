// What a podman user types: exec without `--`, checkpoint/restore --all and --latest, the noun
// form; and exec's wait for a background child that holds its stderr (real runc, CRIU, conmon).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { CLI, CONTAINERS, TestEnv, eventually, requires } from '../helpers.ts';

describe("podman's spellings on real containers", { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('podman');
  after(() => env.cleanup());

  test("exec ID CMD ARGS without --: the options after CMD's first word are CMD's", async () => {
    await env.ok(['run', '-d', 'e1', '--', 'sleep', '1000']);
    assert.equal(await env.ok(['exec', 'e1', 'echo', '-n', 'hi']), 'hi');
    assert.equal(await env.ok(['container', 'exec', '-e', 'K=v', 'e1', 'sh', '-c', 'echo $K $0', '-x']), 'v -x\n');
    assert.equal(await env.ok(['exec', '-i', 'e1', '--', 'echo', '-e', 'a']), 'a\n');
    assert.equal((await env.run(['exec', 'e1', 'sh', '-c', 'exit 4'])).code, 4);
  });

  test('exec: SIGTERM ends the wait for a background child holding stderr, with the exit status of the command', async () => {
    const child = spawn(CLI[0], env.args(['exec', 'e1', 'sh', '-c', 'sleep 1000 & echo started']), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await eventually(() => stdout.includes('started'), 'the command printed started');
    // The shell has exited (or exits on this signal, passed on to it); the sleep keeps stderr open.
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 60_000).unref())]);
    if (code === 'hung') child.kill('SIGKILL');
    assert.ok(code === 0 || code === 143, `stasis exec exited ${code}`);
    await env.ok(['delete', '-f', 'e1']);
  });

  test('checkpoint --all / --latest, restore --all / --latest, in the noun form too; each failure reported, exit 1', { skip: requires('criu') }, async () => {
    await env.ok(['run', '-d', 'a1', '--', 'sleep', '1000']);
    await env.ok(['run', '-d', 'a2', '--', 'sleep', '1000']);
    await env.ok(['create', 'a3', '--', 'sleep', '1000']);
    // --latest: the newest container (a3, created: not running, so it fails as such).
    await env.fails(1, ['checkpoint', '--latest'], /a3/);
    await env.ok(['delete', 'a3']);
    const latest = await env.json(['checkpoint', '-l', '-R']);
    assert.equal(latest.id, 'a2');
    // --all: every running container, oldest first.
    const paths = (await env.ok(['container', 'checkpoint', '--all'])).trim().split('\n');
    assert.equal(paths.length, 2, paths.join('\n'));
    assert.match(paths[0], /\/a1\//);
    assert.match(paths[1], /\/a2\//);
    const checkpointed = (await env.json(['ps'])).filter((c: any) => c.checkpointed).map((c: any) => c.id);
    assert.deepEqual(checkpointed.sort(), ['a1', 'a2']);
    assert.equal(await env.ok(['restore', '--latest']), 'a2\n');
    assert.equal(await env.ok(['checkpoint', '-l']), `${(await env.json(['info', 'a2'])).lastCheckpoint.path}\n`);
    // a2's checkpoints are gone: restore --all restores a1, reports a2's failure and exits 1.
    rmSync(`${env.checkpointDir}/a2`, { recursive: true, force: true });
    const all = await env.fails(1, ['container', 'restore', '--all'], /^stasis: restore a2: [^\n]+\n(hint: [^\n]+\n)?stasis: restore --all: 1 of 2 containers failed\n/);
    assert.equal(all.stdout, 'a1\n');
    assert.equal((await env.json(['info', 'a1'])).status, 'running');
    await env.ok(['delete', '-f', 'a1', 'a2']);
  });

  test("ps quotes COMMAND's words as a shell would need them", async () => {
    await env.ok(['create', 'q1', '--', 'echo', '', 'a b', "it's", '--save', '']);
    const line = (await env.ok(['ps'])).split('\n').find((l) => l.startsWith('q1 '));
    assert.match(line ?? '', / echo '' 'a b' 'it'\\''s' --save ''$/);
    await env.ok(['delete', '-f', 'q1']);
  });

  test('a missing base is exit 1 for a --bundle checkpoint as for a --rootfs one', { skip: requires('criu') }, async () => {
    const bundle = env.makeBundle('b', ['sleep', '1000']);
    await env.ok(['run', '-d', '--bundle', bundle, 'b1']);
    const archive = `${env.root}/b1.tar`;
    await env.ok(['checkpoint', 'b1', '--export', archive]);
    rmSync(bundle, { recursive: true, force: true });
    await env.fails(1, ['restore', 'b1'], new RegExp(`^stasis: the checkpoint's bundle ${bundle} does not exist on this host\nhint: copy it here, or name a copy with --bundle DIR\n$`));
    const other = new TestEnv('podman-other');
    try {
      // Not written there: the bundle must be named, a failure (1) as for a --rootfs base outside the image folders.
      await other.fails(1, ['restore', '--checkpoint', archive], /the bundle to restore onto must be named\n/);
    } finally {
      await other.cleanup();
    }
    await env.ok(['delete', '-f', 'b1']);
  });
});
