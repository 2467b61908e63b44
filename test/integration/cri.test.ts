import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CONTAINERS, COUNTER, ROOTFS, TestEnv, counterAdvances, eventually, lastCount, requires } from '../helpers.ts';
import { CONTAINERD_PREFIX, Containerd, Registry, containerdMissing, readTail, tarLayout, writeOciImage } from '../cri-fixture.ts';
import type { PodConfig } from '../cri-client.ts';

// containerd 2.1.9's CRI plugin, both ways, driven through the CRI gRPC API
// (test/cri-client.ts) as the kubelet drives it: containerd and a
// docker-registry on 127.0.0.1 run with their own config, root, state and
// sockets in this file's temporary folder, and are stopped and removed after
// (scripts/setup/containerd.sh unpacks them; nothing is installed).
//
// Pods use the host's network (NamespaceMode NODE): containerd 2.1 wants an
// eth0 with an address from CNI for any other pod ("failed to find network
// info for sandbox", internal/cri/server/sandbox_run.go), and only the
// loopback plugin is allowed here (docs/cri-interop.md). Containers get their
// own PID namespace and the kubelet's masked and read-only paths.

const SKIP = requires(...CONTAINERS, 'criu') || containerdMissing() || false;
const RUNC = '/usr/sbin/runc';

describe('containerd 2.1 CRI', { skip: SKIP }, () => {
  const env = new TestEnv('cri');
  let registry: Registry;
  let containerd: Containerd;
  let base = ''; // the busybox image, by digest
  const pods: string[] = [];

  const pod = (name: string): PodConfig => {
    const logDirectory = join(env.root, 'pod-logs', name);
    mkdirSync(logDirectory, { recursive: true });
    return { name, uid: `uid-${name}`, namespace: 'stasis-test', logDirectory, hostNetwork: true };
  };
  /** The counts a CRI container's log holds (CRI log lines: TIME STREAM TAG TEXT). */
  const criCounts = (file: string): number[] =>
    existsSync(file) ? [...readFileSync(file, 'utf8').matchAll(/ stdout F count (\d+)$/gm)].map((m) => Number(m[1])) : [];
  const withLog = async <T>(what: Promise<T>): Promise<T> => {
    try {
      return await what;
    } catch (err) {
      throw new Error(`${(err as Error).message}\ncontainerd's log:\n${readTail(containerd.log)}`);
    }
  };

  before(async () => {
    registry = await Registry.start(join(env.root, 'registry'));
    // The sandbox image: the static pause binary; the base: the busybox rootfs.
    const pauseRoot = join(env.root, 'pause-root');
    mkdirSync(pauseRoot);
    cpSync(join(CONTAINERD_PREFIX, 'pause'), join(pauseRoot, 'pause'));
    const sandboxImage = `${registry.host}/stasis-test/pause:1`;
    writeOciImage(join(env.root, 'pause-oci'), pauseRoot, sandboxImage, { Entrypoint: ['/pause'] });
    const busybox = `${registry.host}/stasis-test/busybox:1`;
    const digest = writeOciImage(join(env.root, 'busybox-oci'), ROOTFS, busybox, { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] });
    base = `${registry.host}/stasis-test/busybox@${digest}`;
    containerd = await Containerd.start(join(env.root, 'containerd'), { sandboxImage, registryHost: registry.host, runc: RUNC, path: process.env.PATH ?? '' });
    // Pushed through containerd's own client, from a namespace the CRI does not use.
    for (const [layout, ref] of [['pause-oci', sandboxImage], ['busybox-oci', busybox]]) {
      tarLayout(join(env.root, layout), join(env.root, `${layout}.tar`));
      containerd.ctr(['-n', 'stasis-push', 'images', 'import', join(env.root, `${layout}.tar`)]);
      containerd.ctr(['-n', 'stasis-push', 'images', 'push', '--plain-http', ref]);
    }
  });

  after(async () => {
    if (containerd) {
      for (const id of pods) {
        await containerd.cri.stopPodSandbox(id).catch(() => {});
        await containerd.cri.removePodSandbox(id).catch(() => {});
      }
      await containerd.stop();
    }
    if (registry) await registry.stop();
    await env.cleanup();
  });

  test('a stasis checkpoint image, pushed to a registry, is restored by containerd (CreateContainer + StartContainer) and the counter goes on', async () => {
    await env.ok(['run', '-d', '--rootfs', ROOTFS, 'tocri', '--', ...COUNTER]);
    await counterAdvances(env, 'tocri', 3);
    const image = `${registry.host}/stasis-test/checkpoint-tocri:1`;
    const archive = join(env.root, 'tocri.oci.tar');
    await env.ok(['checkpoint', 'tocri', '--create-image', `oci-archive:${archive}:${image}`, '--base-image', base]);
    const atCheckpoint = lastCount(await env.ok(['logs', 'tocri']));
    containerd.ctr(['-n', 'stasis-push', 'images', 'import', archive]);
    containerd.ctr(['-n', 'stasis-push', 'images', 'push', '--plain-http', image]);

    await withLog(containerd.cri.pullImage(image));
    const config = pod('from-stasis');
    const podId = await withLog(containerd.cri.runPodSandbox(config));
    pods.push(podId);
    const id = await withLog(containerd.cri.createContainer(podId, config, { name: 'counter', image, logPath: 'counter.log', hostNetwork: true }));
    await withLog(containerd.cri.startContainer(id));
    const status = await containerd.cri.containerStatus(id);
    assert.equal(status.state, 'RUNNING');
    assert.equal(status.annotations.restored, 'true', 'containerd restored it (not a new start)');
    assert.equal(status.image, base, "the container's image is the base the checkpoint named");
    // The restored process goes on counting from where stasis stopped it; a new start would begin at 0.
    // containerd imports the checkpoint's container.log (stasis's log travels with it), so the log
    // starts with what ran under stasis and goes on from there without going back.
    const log = join(config.logDirectory, 'counter.log');
    const counts: number[] = await eventually(() => {
      const c = criCounts(log);
      return c.filter((n) => n > atCheckpoint).length >= 3 ? c : null;
    }, 'the restored counter in containerd to print', 60_000) ?? [];
    assert.ok(counts.every((n, i) => i === 0 || n >= counts[i - 1]), `containerd's counts go on from stasis's last ${atCheckpoint}, never back: ${counts.join(' ')}`);
    const after = counts.filter((n) => n > atCheckpoint);
    assert.ok(after.every((n, i) => i === 0 || n === after[i - 1] + 1), `counts go up by one: ${after.join(' ')}`);
    await containerd.cri.stopContainer(id, 0);
    await containerd.cri.removeContainer(id);
    await env.ok(['rm', '-f', 'tocri']);
  });

  test("containerd's CheckpointContainer writes the kubelet's archive, and stasis restore continues it", async () => {
    await withLog(containerd.cri.pullImage(base));
    const config = pod('to-stasis');
    const podId = await withLog(containerd.cri.runPodSandbox(config));
    pods.push(podId);
    const id = await withLog(containerd.cri.createContainer(podId, config, { name: 'counter', image: base, command: COUNTER, logPath: 'counter.log', hostNetwork: true }));
    await withLog(containerd.cri.startContainer(id));
    const log = join(config.logDirectory, 'counter.log');
    await eventually(() => criCounts(log).length >= 3, 'the counter in containerd to print', 60_000);
    const archive = join(env.root, 'checkpoint-to-stasis_stasis-test-counter.tar');
    await withLog(containerd.cri.checkpointContainer(id, archive));
    // containerd leaves the container running after a checkpoint; stop it, so only stasis's copy counts.
    await containerd.cri.stopContainer(id, 0);
    await containerd.cri.removeContainer(id);
    // What the archive's log (the CRI log at the dump) says last.
    const archived = spawnSync('tar', ['-xOf', archive, 'container.log'], { encoding: 'utf8' });
    assert.equal(archived.status, 0, archived.stderr);
    const inArchive = lastCount(archived.stdout);
    assert.ok(inArchive >= 2, `the archive's container.log has the counts: ${archived.stdout.slice(-200)}`);

    // A hostNetwork pod's container was dumped in the host's network and UTS
    // namespaces; stasis refuses that unless trusted (and then gives new ones).
    await env.fails(1, ['restore', 'fromcri', '--checkpoint', archive, '--rootfs', ROOTFS, '--trust-checkpoint', 'capabilities'], /host's network namespace/);
    env.assertNothingLeft();
    await env.ok(['restore', 'fromcri', '--checkpoint', archive, '--rootfs', ROOTFS, '--trust-checkpoint', 'capabilities', '--trust-checkpoint', 'namespaces']);
    // The archive's container.log becomes the container's log, and the
    // restored process goes on from the dumped count, not from 0. containerd
    // copies the log after the dump while the container runs on, so the
    // archive's log may end with a line or two the restored process prints again.
    await counterAdvances(env, 'fromcri', inArchive + 2);
    const counts = [...(await env.ok(['logs', 'fromcri'])).matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
    assert.equal(counts[0], 0, 'the log starts with the imported lines');
    const steps = counts.slice(1).map((n, i) => n - counts[i]);
    assert.ok(steps.every((d) => d === 1 || d <= 0), `counts: ${counts.join(' ')}`);
    const back = steps.filter((d) => d <= 0);
    assert.ok(back.length <= 1 && (back[0] ?? 0) >= -2, `the counter goes on after the dump, not from 0: ${counts.join(' ')}`);
    await env.ok(['rm', '-f', 'fromcri']);
  });
});
