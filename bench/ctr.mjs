// The ctr side of bench.mjs: containerd 2.1 as scripts/setup/containerd.sh
// unpacked it into /opt/stasis/containerd (containerd, ctr and
// containerd-shim-runc-v2 under usr/bin; nothing installed on the host),
// started by the bench with a configuration of its own in a folder inside the
// bench's temp folder, and stopped (every task and container removed first)
// at the end. Plain Node, no dependencies.
//
// What it keeps inside that folder: containerd's root (content store, the
// overlayfs snapshots, metadata), its state (the tasks' bundles, with their
// rootfs mounts), its temp folder (also the shims' TMPDIR: CRIU's work folders
// during a checkpoint), the gRPC and ttrpc sockets, runc's --root, the image
// archive and containerd's log. What it cannot keep there, containerd's own
// fixed paths: the shims' sockets in /run/containerd/s and the FIFOs of a
// task started with ctr's stdio (`ctr container restore`) in
// /run/containerd/fifo, both removed by containerd with the task; the folders
// the bench made there are removed at the end (when empty). runc puts each
// container in the cgroup /NAMESPACE/ID (ctr's default), and the empty
// /NAMESPACE cgroups are removed at the end too.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const CONTAINERD_PREFIX = process.env.STASIS_CONTAINERD_PREFIX ?? '/opt/stasis/containerd';
const BIN_DIR = path.join(CONTAINERD_PREFIX, 'usr', 'bin');
export const CTR = path.join(BIN_DIR, 'ctr');
const CONTAINERD = path.join(BIN_DIR, 'containerd');
const SHIM = path.join(BIN_DIR, 'containerd-shim-runc-v2');
/** The containerd namespace of everything the bench makes (its containerd is its own anyway). */
export const NS = 'stasis-bench';
const IMAGE = 'localhost/stasis-bench/busybox:latest';
const RUN_DIRS = ['/run/containerd/fifo', '/run/containerd/s', '/run/containerd']; // deepest first

/** Why there is no ctr side here, or null when there can be one. */
export function ctrMissing() {
  for (const p of [CONTAINERD, CTR, SHIM]) if (!fs.existsSync(p)) return `${p} is missing (scripts/setup/containerd.sh unpacks it)`;
  return null;
}

const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));
const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Whether `pid` is a live process (not a zombie). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'ZX'.includes(stat[stat.lastIndexOf(')') + 2]);
  } catch {
    return false;
  }
}

/** PIDs of the processes with `flag value` in their argv, consecutive. */
function withArgs(flag, value) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf(flag);
      if (i >= 0 && argv[i + 1] === value) out.push(Number(name));
    } catch { /* gone */ }
  }
  return out;
}

/**
 * The ctr side, set up in `dir` (made here; inside the bench's temp folder, so
 * the bench's own clean-up unmounts what is left mounted there and removes it).
 * `run`: the bench's runner (argv, opts) -> { ms, status, stdout, stderr },
 * throwing on failure unless opts.check is false.
 */
export function ctrSide({ dir, runc, rootfs, run, log }) {
  const sock = path.join(dir, 'containerd.sock');
  const runcRoot = path.join(dir, 'runc');
  const containerdLog = path.join(dir, 'containerd.log');
  const runDirsBefore = new Set(RUN_DIRS.filter((d) => fs.existsSync(d)));
  let child = null;

  /** argv of a ctr command on this containerd, in the bench's namespace. */
  const ctr = (...args) => [CTR, '-a', sock, '-n', NS, ...args];
  const quiet = (argv, opts = {}) => run(argv, { timeout: 120_000, ...opts, check: false });
  const tail = () => { try { return fs.readFileSync(containerdLog, 'utf8').slice(-4000); } catch { return '(no log)'; } };

  /** Writes the configuration and starts containerd; resolves once it answers. */
  async function start() {
    for (const sub of ['root', 'state', 'tmp', 'opt', 'runc']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    const q = (s) => JSON.stringify(s);
    // Only what ctr needs: no CRI (and so no CNI, no pause image, no pod
    // sandboxes), no NRI socket, no tracing. The runc options (BinaryName,
    // Root, SystemdCgroup) are not set here: containerd applies a config's
    // runtime options to CRI's containers only (tried: ctr's went to
    // /run/containerd/runc with `runc` from PATH), and ctr sends its own with
    // each container (`ctr run --runc-binary --runc-root`, see runArgs;
    // cgroupfs unless --runc-systemd-cgroup).
    fs.writeFileSync(path.join(dir, 'config.toml'), [
      'version = 3',
      `root = ${q(path.join(dir, 'root'))}`,
      `state = ${q(path.join(dir, 'state'))}`,
      `temp = ${q(path.join(dir, 'tmp'))}`,
      'disabled_plugins = [',
      '  "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",',
      '  "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.grpc.v1.sandbox-controllers",',
      '  "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",',
      ']',
      '[grpc]',
      `  address = ${q(sock)}`,
      '[ttrpc]',
      `  address = ${q(path.join(dir, 'containerd.ttrpc.sock'))}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(path.join(dir, 'opt'))}`,
      '',
    ].join('\n'));
    const fd = fs.openSync(containerdLog, 'a');
    // Its own session (detached): a Ctrl-C in the terminal stops the bench's
    // commands, not containerd, which the clean-up still needs. The shim is
    // found on PATH, runc runs CRIU from PATH (the bench put the wrapper's
    // folder first).
    child = spawn(CONTAINERD, ['--config', path.join(dir, 'config.toml')], {
      stdio: ['ignore', fd, fd],
      detached: true,
      env: { ...process.env, PATH: `${BIN_DIR}:${process.env.PATH ?? ''}`, TMPDIR: path.join(dir, 'tmp') },
    });
    fs.closeSync(fd);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`containerd exited (${child.exitCode ?? child.signalCode}):\n${tail()}`);
      if (fs.existsSync(sock) && quiet(ctr('version'), { timeout: 10_000 }).status === 0) break;
      if (Date.now() > deadline) throw new Error(`containerd did not answer on ${sock} within 60 s:\n${tail()}`);
      await sleepMs(50);
    }
  }

  /**
   * Imports the rootfs folder as the image IMAGE: an OCI image layout (one
   * uncompressed layer, the config, the manifest, an index naming it with
   * org.opencontainers.image.ref.name), tarred, then `ctr images import`.
   */
  function importRootfs() {
    const layout = path.join(dir, 'image');
    const blobs = path.join(layout, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const put = (buf) => {
      const hex = createHash('sha256').update(buf).digest('hex');
      fs.writeFileSync(path.join(blobs, hex), buf);
      return { digest: `sha256:${hex}`, size: buf.length };
    };
    const tar = spawnSync('tar', ['-C', rootfs, '-c', '-f', '-', '--numeric-owner', '--sort=name', '.'], { maxBuffer: 1 << 30 });
    if (tar.status !== 0) throw new Error(`tar of ${rootfs} failed: ${tar.stderr}`);
    const layer = put(tar.stdout);
    const config = put(Buffer.from(JSON.stringify({
      architecture: { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }[process.arch] ?? process.arch,
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
    })));
    const manifest = put(Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    })));
    fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': IMAGE } }],
    }));
    const archive = path.join(dir, 'image.tar');
    run(['tar', '-C', layout, '-c', '-f', archive, 'oci-layout', 'index.json', 'blobs']);
    run(ctr('images', 'import', archive));
    fs.rmSync(layout, { recursive: true, force: true });
    fs.rmSync(archive, { force: true });
  }

  /**
   * `ctr run -d` of the image. --null-io: the task's stdin, stdout and stderr
   * are /dev/null (what raw runc's container gets here; stasis's and
   * podman's go to conmon), and ctr opens no FIFOs. --runc-binary and
   * --runc-root: the bench's runc and a runc root of its own (ctr's defaults
   * would be `runc` from PATH and /run/containerd/runc).
   */
  const runArgs = (id, ...command) => ctr('run', '-d', '--null-io', '--runc-binary', runc, '--runc-root', runcRoot, IMAGE, id, ...command);

  /** The pid file of a container's init, written by the shim. */
  const pidFile = (id) => path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS, id, 'init.pid');

  /** How many tasks `ctr task ls` output shows RUNNING. */
  const running = (stdout) => stdout.split('\n').filter((l) => /\sRUNNING\s*$/.test(l)).length;

  /** The resident memory of the shims (one containerd-shim-runc-v2 per container here): { count, rssMiB, pssMiB } per shim. */
  function shimMemory() {
    let rss = 0;
    let pss = 0;
    let count = 0;
    for (const pid of withArgs('-address', sock)) {
      try {
        if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== path.basename(SHIM).slice(0, 15)) continue;
        rss += Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
        pss += Number(/Pss:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
        count++;
      } catch { /* gone */ }
    }
    return count === 0 ? null : { count, rssMiB: rss / count / 1024, pssMiB: pss / count / 1024 };
  }

  /**
   * Removes everything: every task (`ctr task rm -f`) and container (`ctr
   * container rm`, which removes its snapshot too), then containerd (SIGTERM
   * to its PID, SIGKILL after 30 s); then whatever it left: shims of this
   * containerd (SIGKILL by PID), runc containers in its root, the empty
   * /NAMESPACE cgroups, the folders under /run/containerd the bench made.
   * Synchronous; never throws. Mounts and the folder itself: the bench's clean-up.
   */
  function cleanup() {
    const up = child && child.exitCode === null && child.signalCode === null && alive(child.pid);
    if (up && fs.existsSync(sock)) {
      const ids = (what) => quiet(ctr(what, 'ls', '-q')).stdout.split('\n').map((l) => l.trim()).filter(Boolean);
      const tasks = ids('task');
      for (let i = 0; i < tasks.length; i += 50) quiet(ctr('task', 'rm', '-f', ...tasks.slice(i, i + 50)));
      const containers = ids('container');
      for (let i = 0; i < containers.length; i += 50) quiet(ctr('container', 'rm', ...containers.slice(i, i + 50)));
      if (ids('task').length + ids('container').length > 0) log(`ctr: tasks or containers remain in ${sock} after their removal`);
    }
    if (up) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
      for (let t = 0; t < 600 && alive(child.pid); t++) pause(50);
      if (alive(child.pid)) {
        log(`containerd (pid ${child.pid}) still up 30 s after SIGTERM: SIGKILL`);
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
        for (let t = 0; t < 100 && alive(child.pid); t++) pause(50);
      }
    }
    for (const pid of withArgs('-address', sock)) {
      log(`ctr: a shim of this containerd outlived it (pid ${pid}): SIGKILL`);
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    const root = path.join(runcRoot, NS);
    if (fs.existsSync(root)) {
      for (const id of quiet([runc, '--root', root, 'list', '-q']).stdout.split('\n').filter(Boolean)) quiet([runc, '--root', root, 'delete', '-f', id]);
    }
    for (const hierarchy of fs.existsSync('/sys/fs/cgroup') ? fs.readdirSync('/sys/fs/cgroup') : []) {
      try { fs.rmdirSync(path.join('/sys/fs/cgroup', hierarchy, NS)); } catch { /* absent, in use, or a link to another hierarchy */ }
    }
    for (const d of RUN_DIRS) {
      if (!runDirsBefore.has(d)) try { fs.rmdirSync(d); } catch { /* absent or in use */ }
    }
  }

  return { ctr, start, importRootfs, runArgs, pidFile, running, shimMemory, cleanup, log: containerdLog, pid: () => child?.pid };
}
