// podman's spellings that mean nothing here are refused in one line saying why, before any
// work; the --all/--latest selections refuse what they cannot mean (the real binary, no root).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TestEnv } from '../helpers.ts';

describe("podman's spellings with no meaning here", () => {
  const env = new TestEnv('cli-podman');
  after(() => env.cleanup());

  test('-p/--publish, --pod, --network: one line with the reason, exit 2 (run: 125), nothing made', async () => {
    await env.fails(2, ['create', 'c1', '-p', '8080:80', '--', 'true'], /^stasis: create -p\/--publish: stasis maps no ports: a container has its own network namespace with loopback only\nhint: [^\n]+\n$/);
    await env.fails(125, ['run', '-d', '--publish=8080:80', 'c1'], /^stasis: run --publish: stasis maps no ports/);
    await env.fails(125, ['run', '-p8080:80', 'c1'], /^stasis: run -p\/--publish: stasis maps no ports/);
    await env.fails(2, ['create', '--pod', 'mypod', 'c1'], /^stasis: create --pod: stasis has no pods: each container stands on its own\n$/);
    await env.fails(2, ['create', 'c1', '--network', 'host'], /^stasis: create --network: stasis has no networks to choose/);
    assert.deepEqual(env.containerIds(), []);
  });

  test('restore --ignore-static-ip/--ignore-static-mac/--publish/--pod, checkpoint --pre-checkpoint/--with-previous', async () => {
    await env.fails(2, ['restore', 'c1', '--ignore-static-ip'], /^stasis: restore --ignore-static-ip: a stasis container has no IP or MAC address of its own to keep or drop \(its network is loopback only\): nothing to ignore\n$/);
    await env.fails(2, ['container', 'restore', '--ignore-static-mac', '-i', 'x.tar'], /^stasis: restore --ignore-static-mac: /);
    await env.fails(2, ['restore', '-p', '80:80', '-i', 'x.tar'], /^stasis: restore -p\/--publish: stasis maps no ports/);
    await env.fails(2, ['restore', '--pod', 'p', '-i', 'x.tar'], /^stasis: restore --pod: stasis has no pods/);
    await env.fails(2, ['checkpoint', 'c1', '--pre-checkpoint'], /^stasis: checkpoint --pre-checkpoint: stasis's spelling is --pre-dump\n$/);
    await env.fails(2, ['checkpoint', 'c1', '-P'], /^stasis: checkpoint -P\/--pre-checkpoint: stasis's spelling is --pre-dump\n$/);
    await env.fails(2, ['checkpoint', 'c1', '--with-previous'], /^stasis: checkpoint --with-previous: stasis's spelling is --parent-path DIR/);
  });

  test(':U is the container\'s, given when it is created: a restore refuses it', async () => {
    await env.fails(2, ['restore', 'c1', '-i', 'x.tar', '-v', '/srv/pg:/var/lib/postgresql:U'], /^stasis: -v \/srv\/pg:\/var\/lib\/postgresql:U: U is given when the container is created, and its checkpoints keep it\nhint: [^\n]+\n$/);
    await env.fails(2, ['restore', 'c1', '-i', 'x.tar', '--mount', 'type=bind,src=/s,dst=/d,U=true'], /^stasis: --mount type=bind,src=\/s,dst=\/d,U=true: U is given when the container is created/);
  });

  test("the container's own command may use those words", async () => {
    // After `--` the words are the container's: refused only for a missing container, not for -p.
    await env.fails(125, ['exec', 'nothere', 'nc', '-p', '80'], /^stasis: no such container: nothere\n/);
    await env.fails(2, ['restore', 'nothere', '--', '-p'], /^stasis: a command cannot be used with a restore: the checkpoint's own spec is restored\n$/);
  });

  test('--all and --latest: not with an ID, not together, not with one-container flags', async () => {
    await env.fails(2, ['checkpoint', '--all', 'c1'], /^stasis: checkpoint: give a container ID or --all, not both\n$/);
    await env.fails(2, ['checkpoint', '-a', '-l'], /^stasis: checkpoint: --all and --latest cannot be used together\n$/);
    await env.fails(2, ['checkpoint', '--all', '--export', '/tmp/x.tar'], /^stasis: --all and --export cannot be used together: --export names one container's\n/);
    await env.fails(2, ['checkpoint', '--all', '--image-path', '/tmp/x'], /^stasis: --all and --image-path cannot be used together/);
    await env.fails(2, ['checkpoint'], /^stasis: checkpoint needs a container ID, --all or --latest\n$/);
    await env.fails(2, ['restore', '--all', '-i', 'x.tar'], /^stasis: --all and --checkpoint cannot be used together/);
    await env.fails(2, ['restore', '-l', 'c1'], /^stasis: restore: give a container ID or --latest, not both\n$/);
    await env.fails(1, ['restore', '--latest'], /^stasis: --latest: there are no containers\n/);
    await env.fails(1, ['checkpoint', '-l'], /^stasis: --latest: there are no containers\n/);
  });

  test('container VERB is VERB; inspect is info; ps -a is accepted', async () => {
    await env.fails(1, ['container', 'inspect', 'nothere'], /^stasis: no such container: nothere\n/);
    await env.fails(1, ['inspect', 'nothere'], /^stasis: no such container: nothere\n/);
    assert.equal(await env.ok(['container', 'ps', '-a']), 'ID   STATUS   PID   CREATED   COMMAND\n');
    assert.equal(await env.ok(['ps', '--all', '-q']), '');
    assert.equal(await env.ok(['container', 'list', '-a', '-q']), '');
    assert.equal((await env.run(['container', 'checkpoint', '--help'])).code, 0);
  });
});

describe("podman's short spellings", () => {
  const env = new TestEnv('cli-podman-short');
  after(() => env.cleanup());

  test('restore -i FILE is --import FILE', async () => {
    await env.fails(1, ['restore', '-i', '/nonexistent/cp.tar'], /^stasis: checkpoint \/nonexistent\/cp\.tar does not exist\n$/);
  });
});
