#!/usr/bin/env node
// migrate --lazy next to the same post-copy done by hand with raw runc + CRIU (issue 19).
//
//   sudo node bench/postcopy.mjs [MIB ...] [--stasis PATH] [--runc PATH] [--criu PATH]
//                                [--rootfs DIR] [--settle 300] [--raw-loopback] [--stasis-debug]
//                                [--sides stasis,raw[,raw-paused]] [--json FILE] [--logs DIR] [--keep-tmp]
//
// Sizes default to 64 256 1024 (MiB the ticker touches). Per size, one move on each
// side, the sides interleaved (the first one alternating from size to size). Both run
// bench/fixtures/ticker.c (built here with gcc -O2 -static into a copy of the rootfs)
// as `/ticker MIB /ticks /ready`, as bench/migrate.mjs does, and the downtime is what
// the application saw: the largest gap between two of its 1 ms ticks from the move's
// start to SETTLE ms after its end (the end: every page is at the destination).
//   stasis  stasis run -d ID --rootfs A -- /ticker ...; then timed:
//           stasis migrate ID DEST --rootfs B --json --lazy  (DEST: another state dir here)
//   raw     a `runc spec` bundle (own network namespace, as stasis's; rootfs writable;
//           the same args) on a rootfs copy RA, `runc run -d` with anonymous pipes as
//           stdio (as bench.mjs); then timed, by hand:
//             runc --root S checkpoint --lazy-pages --page-server 127.0.0.1:PORT
//                  --status-fd 3 --image-path IMG --work-path W ID      (in the background)
//             ... until runc writes its byte on fd 3 (CRIU's page server is ready);
//             cp -a IMG/. IMG2/  and  cp -a RA/ticks RA/ready RB/   (what a move sends:
//                  every image, no pages are in them; the rootfs changes)
//             criu lazy-pages --page-server --address 127.0.0.1 --port PORT
//                  --images-dir IMG2 --work-dir W2                    (in the background)
//             ... until W2/lazy-pages.socket is there;
//             runc --root D restore -d --lazy-pages --image-path IMG2 --work-path W2
//                  --bundle B2 ID2   (B2: the same config.json on a rootfs copy RB)
//             ... then until the checkpoint's runc and the daemon have exited (every page
//             pulled; CRIU then kills the source's tasks and runc removes the container).
//           --raw-loopback adds stasis's createRuntime hook (lo up after a restore:
//           sh + nsenter + ip) to the raw spec too.
// --sides adds raw-paused: the raw sequence with `runc pause ID` first (timed) and
// `--leave-running` (the source removed with runc delete -f once every page is there), as
// stasis freezes the container before it starts runc checkpoint: what that order costs.
// --logs DIR keeps CRIU's logs of each move (and runc's) there; --stasis-debug runs migrate
// with --debug and keeps its lines in the JSON (off for figures: it writes as it goes).
// The ticks are read from the destination's upper layer (stasis) or from RB/ticks (raw).
// `sync` runs, untimed, before each move. Every container, process and temp dir it
// starts is removed at the end, on failure and on Ctrl-C too. Needs root, runc, CRIU
// (the one on PATH for stasis is put first: --criu's folder), gcc, and the stasis CLI
// (default: dist/stasis of this checkout).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { anonymousPipes, catchInterrupts, gapIn, nowMs, parseTicks, ppidOf, procs, quiet, releaseAllPipes, releasePipes, run, show, sleepMs } from './lib.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const started = Date.now();
const loadStart = os.loadavg();

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    stasis: { type: 'string', default: path.join(REPO, 'dist', 'stasis') },
    runc: { type: 'string', default: '/usr/sbin/runc' },
    criu: { type: 'string', default: '/usr/local/sbin/criu' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    settle: { type: 'string', default: '300' },
    'raw-loopback': { type: 'boolean', default: false },
    'stasis-debug': { type: 'boolean', default: false },
    sides: { type: 'string', default: 'stasis,raw' },
    json: { type: 'string' },
    logs: { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) {
  process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1).filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const die = (message) => { process.stderr.write(`postcopy: ${message}\n`); process.exit(2); };
const log = (message) => process.stderr.write(`postcopy: ${message}\n`);

const SIZES = (positionals.length ? positionals : ['64', '256', '1024']).map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) die(`not a size in MiB: ${s}`);
  return n;
});
const SETTLE = Number(opt.settle);
const SIDES = opt.sides.split(',').map((x) => x.trim()).filter(Boolean);
for (const x of SIDES) if (!['stasis', 'raw', 'raw-paused'].includes(x)) die(`unknown side ${x} (stasis, raw, raw-paused)`);
if (!Number.isFinite(SETTLE) || SETTLE < 0) die('--settle must be a number of ms');
if (process.getuid?.() !== 0) die('run as root: containers need it');
const { runc: RUNC, criu: CRIU } = opt;
const STASIS_BIN = path.resolve(opt.stasis);
for (const p of [RUNC, CRIU, opt.rootfs, STASIS_BIN]) if (!fs.existsSync(p)) die(`not found: ${p}`);
// The same runc and CRIU for both sides (the CRIU on PATH is the one runc runs without --criu).
process.env.PATH = `${path.dirname(CRIU)}:${path.dirname(RUNC)}:${process.env.PATH ?? ''}`;
process.env.STASIS_RUNC = RUNC;
process.env.STASIS_CRIU = CRIU;

// ------------------------------------------------------------------ helpers

const { interrupted, checkAbort } = catchInterrupts();


/** A free TCP port on 127.0.0.1 (for the raw side's page server). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * A FIFO for runc's --status-fd: runc wants a write-only descriptor (node's stdio pipes
 * are sockets, open both ways), as src/host/spawn.ts makes it. Read end non-blocking.
 */
function statusFifo(dir) {
  const fifo = path.join(dir, `.status-${process.pid}`);
  run(['mkfifo', '-m', '600', fifo]);
  try {
    const read = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const write = fs.openSync(fifo, fs.constants.O_WRONLY);
    return { read, write };
  } finally {
    fs.rmSync(fifo, { force: true });
  }
}

/** A background process: its pid and a promise of its exit (listened for from the start). */
/**
 * @param {string[]} argv
 * @param {{ stdio?: import('node:child_process').StdioOptions, detached?: boolean, group?: boolean }} [opts]
 */
function background(argv, { stdio, detached = false, group = false } = {}) {
  const child = spawn(argv[0], argv.slice(1), { stdio, detached });
  const exited = new Promise((resolve) => {
    child.on('error', (err) => resolve({ code: 127, signal: null, error: err.message }));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let done = false;
  void exited.then(() => { done = true; });
  return { child, pid: child.pid, group, exited, isDone: () => done };
}

/** The last lines of a log file that say something went wrong (CRIU's "Error"/"Warn" lines), else its tail. */
function logExcerpt(file, n = 6) {
  let text;
  try { text = fs.readFileSync(file, 'utf8'); } catch { return `(no ${file})`; }
  const lines = text.split('\n').filter(Boolean);
  const bad = lines.filter((l) => /Error|error|Warn|fail/i.test(l));
  return (bad.length ? bad.slice(-n) : lines.slice(-n)).map((l) => `    ${l}`).join('\n');
}

// ------------------------------------------------------------------ the places

const TAG = `pc${process.pid.toString(36)}`;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-postcopy-'));
// A private copy of the executable: a rebuild of dist/ during the run changes nothing.
const STASIS = path.join(TMP, 'stasis');
const BASE = path.join(TMP, 'rootfs-base');
const BASE_A = path.join(TMP, 'rootfs-A');
const BASE_B = path.join(TMP, 'rootfs-B');
const SRC_SD = path.join(TMP, 'src-state');
const SRC_CP = path.join(TMP, 'src-checkpoints');
const DST_SD = path.join(TMP, 'dst-state');
const DST_CP = path.join(TMP, 'dst-checkpoints');
const RAW_SRC_ROOT = path.join(TMP, 'runc-src');
const RAW_DST_ROOT = path.join(TMP, 'runc-dst');
const srcStasis = (...a) => [STASIS, '--state-dir', SRC_SD, '--checkpoint-dir', SRC_CP, ...a];
const dstStasis = (...a) => [STASIS, '--state-dir', DST_SD, '--checkpoint-dir', DST_CP, ...a];
const runcSrc = (...a) => [RUNC, '--root', RAW_SRC_ROOT, '--criu', CRIU, ...a];
const runcDst = (...a) => [RUNC, '--root', RAW_DST_ROOT, '--criu', CRIU, ...a];

const stasisIds = { src: new Set(), dst: new Set() };
const rawIds = { src: new Set(), dst: new Set() };
/** Background processes this script started (the checkpoint's runc, the lazy-pages daemons). */
const children = new Set();

/** A raw bundle's config.json: `runc spec`, adjusted as stasis's (see the header). */
function rawSpec(rootfs, args) {
  const dir = fs.mkdtempSync(path.join(TMP, 'spec-'));
  run([RUNC, 'spec', '--bundle', dir]);
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  fs.rmSync(dir, { recursive: true, force: true });
  spec.process.terminal = false;
  spec.process.args = args;
  spec.root = { path: rootfs, readonly: false };
  if (!spec.linux.namespaces.some((ns) => ns.type === 'network')) spec.linux.namespaces.push({ type: 'network' });
  if (opt['raw-loopback']) {
    // stasis's hook (src/runtime/network.ts), word for word.
    const nsenter = quiet(['sh', '-c', 'command -v nsenter']).stdout.trim();
    const ip = quiet(['sh', '-c', 'command -v ip']).stdout.trim();
    const script = `read -r state; pid=\${state#*\\"pid\\":}; pid=\${pid%%[!0-9]*}; exec ${nsenter} --net=/proc/$pid/ns/net ${ip} link set lo up`;
    spec.hooks = { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', script, 'stasis-loopback-up'], timeout: 10 }] };
  }
  return spec;
}

/** Waits until the ticker has filled its memory (READY exists) and /ticks grows. */
async function waitTicking(dir, id, mib, logs) {
  const deadline = Date.now() + 120_000 + mib * 100;
  let last = -1;
  let growing = 0;
  while (growing < 3) {
    checkAbort();
    if (Date.now() > deadline) throw new Error(`${id}: the ticker did not fill ${mib} MiB and start ticking in time${logs ? ` (logs: ${logs()})` : ''}`);
    await sleepMs(50);
    if (!fs.existsSync(path.join(dir, 'ready'))) continue;
    const size = fs.existsSync(path.join(dir, 'ticks')) ? fs.statSync(path.join(dir, 'ticks')).size : 0;
    growing = size > last && last >= 0 ? growing + 1 : 0;
    last = size;
  }
  // Untimed: write back what the fill and earlier moves left dirty.
  run(['sync']);
  await sleepMs(500); // a baseline of ticks before the move
}

/** The app-visible figures of a move from its ticks file. */
function downtime(row, ticksText, t0, t1) {
  const ticks = parseTicks(ticksText);
  const g = gapIn(ticks, t0, t1 + SETTLE);
  if (!g.before) throw new Error(`${row.id}: the destination's /ticks has no tick from before the move`);
  if (!g.after) throw new Error(`${row.id}: no tick later than ${SETTLE} ms after the move: the container is not running at the destination`);
  row.downtimeMs = g.maxMs;
  row.gapStartsAtMs = g.startsAtMs;
  row.slowGaps = g.over10;
  row.baselineMs = gapIn(ticks, t0 - 500, t0).maxMs;
}

// ------------------------------------------------------------------ stasis migrate --lazy

async function stasisMove(mib) {
  const id = `${TAG}-s${mib}`;
  /** @type {any} */
  const row = { side: 'stasis', mib, id };
  stasisIds.src.add(id);
  run(srcStasis('run', '-d', id, '--rootfs', BASE_A, '--', '/ticker', String(mib), '/ticks', '/ready'));
  const upper = path.join(JSON.parse(run(srcStasis('info', '--json', id)).stdout).stateDir, 'upper');
  await waitTicking(upper, id, mib, () => quiet(srcStasis('logs', id)).stdout.trim());
  checkAbort();
  const argv = srcStasis('migrate', id, DST_SD, '--rootfs', BASE_B, '--json', '--lazy');
  // Diagnostics: --debug's lines, and --keep for the dump's CRIU log (the checkpoint, with no pages, stays here).
  if (opt['stasis-debug']) argv.splice(1, 0, '--debug'), argv.push('--keep');
  row.command = show(argv);
  stasisIds.dst.add(id);
  const t0 = nowMs();
  const r = run(argv);
  const t1 = nowMs();
  row.totalMs = t1 - t0;
  if (opt['stasis-debug']) row.debug = r.stderr.split('\n').filter(Boolean);
  try {
    row.reported = JSON.parse(r.stdout);
  } catch {
    throw new Error(`stasis migrate --json printed no JSON: ${r.stdout.slice(0, 300)}`);
  }
  const destId = typeof row.reported.id === 'string' ? row.reported.id : id;
  if (destId !== id) { stasisIds.dst.delete(id); stasisIds.dst.add(destId); }
  await sleepMs(SETTLE + 50);
  checkAbort();
  const info = JSON.parse(run(dstStasis('info', '--json', destId)).stdout);
  row.destStatus = info.status;
  const file = path.join(info.stateDir, 'upper', 'ticks');
  downtime(row, fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : run(dstStasis('exec', destId, '--', 'cat', '/ticks')).stdout, t0, t1);
  const tm = row.reported.timingsMs ?? {};
  const dumpLog = findFile(path.join(SRC_CP, id), 'dump.log');
  row.criu = criuStamps(dumpLog, path.join(info.stateDir, 'restore.log'));
  keepLogs(`stasis-${mib}`, [dumpLog, path.join(info.stateDir, 'restore.log'), ...(fs.existsSync(path.join(DST_SD, 'logs')) ? fs.readdirSync(path.join(DST_SD, 'logs')) : []).filter((n) => n.startsWith(`${destId}-lazy-pages`)).map((n) => path.join(DST_SD, 'logs', n))]);
  row.steps = { check: tm.check, rootfs: tm.rootfs, dump: tm.dump, transfer: tm.transfer, restore: tm.restore, pages: tm.pages, reportedDowntime: row.reported.downtimeMs };
  quiet(dstStasis('delete', '-f', destId));
  stasisIds.dst.delete(destId);
  quiet(srcStasis('delete', '-f', id));
  stasisIds.src.delete(id);
  fs.rmSync(path.join(SRC_CP, id), { recursive: true, force: true });
  return row;
}

// ------------------------------------------------------------------ the same by hand

async function rawMove(mib, paused = false) {
  const side = paused ? 'raw-paused' : 'raw';
  const id = `${TAG}-${paused ? 'p' : 'r'}${mib}`;
  const id2 = `${id}-dst`;
  /** @type {any} */
  const row = { side, mib, id };
  const dir = path.join(TMP, `${side}-${mib}`);
  const RA = path.join(dir, 'rootfs-A');
  const RB = path.join(dir, 'rootfs-B');
  const BA = path.join(dir, 'bundle-A');
  const BB = path.join(dir, 'bundle-B');
  const IMG = path.join(dir, 'images-src');
  const WORK = path.join(dir, 'work-src');
  const IMG2 = path.join(dir, 'images-dst');
  const WORK2 = path.join(dir, 'work-dst');
  for (const d of [dir, BA, BB, IMG, WORK, IMG2, WORK2]) fs.mkdirSync(d, { recursive: true });
  run(['cp', '-a', BASE, RA]);
  run(['cp', '-a', BASE, RB]);
  const args = ['/ticker', String(mib), '/ticks', '/ready'];
  fs.writeFileSync(path.join(BA, 'config.json'), `${JSON.stringify(rawSpec(RA, args), null, 2)}\n`);
  fs.writeFileSync(path.join(BB, 'config.json'), `${JSON.stringify(rawSpec(RB, args), null, 2)}\n`);

  // The source.
  const pipesA = await anonymousPipes();
  rawIds.src.add(id);
  run(runcSrc('run', '-d', '--bundle', BA, id), { stdio: [pipesA.r, pipesA.w, pipesA.w] });
  pipesA.close();
  await waitTicking(RA, id, mib);
  checkAbort();
  // Untimed set-up of what the timed part uses: the destination's stdio, the port, the status pipe.
  const pipesB = await anonymousPipes();
  const port = await freePort();
  const status = statusFifo(dir);
  const cpOut = fs.openSync(path.join(WORK, 'runc-checkpoint.out'), 'w');
  const pauseArgv = runcSrc('pause', id);
  const checkpointArgv = runcSrc('checkpoint', ...(paused ? ['--leave-running'] : []), '--lazy-pages', '--page-server', `127.0.0.1:${port}`, '--status-fd', '3', '--image-path', IMG, '--work-path', WORK, id);
  const daemonArgv = [CRIU, 'lazy-pages', '--page-server', '--address', '127.0.0.1', '--port', String(port), '--images-dir', IMG2, '--work-dir', WORK2, '-o', 'lazy-pages.log', '-v4'];
  // runc's own messages go to a file (its stdio is the container's, the pipes).
  const restoreArgv = [RUNC, '--root', RAW_DST_ROOT, '--criu', CRIU, '--log', path.join(WORK2, 'runc-restore.log'), 'restore', '-d', '--lazy-pages', '--image-path', IMG2, '--work-path', WORK2, '--bundle', BB, id2];
  row.commands = { ...(paused ? { pause: show(pauseArgv) } : {}), checkpoint: show(checkpointArgv), daemon: show(daemonArgv), restore: show(restoreArgv) };
  let checkpoint = null;
  let daemon = null;
  const t = {};
  try {
    // ---- timed from here
    t.start = nowMs();
    if (paused) run(pauseArgv);
    t.paused = nowMs();
    checkpoint = background(checkpointArgv, { stdio: ['ignore', cpOut, cpOut, status.write] });
    children.add(checkpoint);
    fs.closeSync(status.write);
    fs.closeSync(cpOut);
    // runc writes one byte on fd 3 once CRIU has written the images and its page server listens.
    const buf = Buffer.alloc(16);
    for (;;) {
      let n = -1; // -1: nothing yet (EAGAIN); 0: every writer gone (runc exited)
      try { n = fs.readSync(status.read, buf, 0, buf.length, null); } catch (err) { if (err.code !== 'EAGAIN') throw err; }
      if (n > 0) break;
      if (n === 0 || checkpoint.isDone()) {
        const e = await checkpoint.exited;
        throw new Error(`runc checkpoint --lazy-pages exited (${e.code ?? e.signal}) before its page server was ready:\n${fs.readFileSync(path.join(WORK, 'runc-checkpoint.out'), 'utf8').trim()}\n  dump.log:\n${logExcerpt(path.join(WORK, 'dump.log'))}`);
      }
      checkAbort();
      await sleepMs(1);
    }
    t.ready = nowMs();
    // What a move sends before the switch: the images (no pages in them) and the rootfs changes.
    run(['cp', '-a', `${IMG}/.`, `${IMG2}/`]);
    run(['cp', '-a', path.join(RA, 'ticks'), path.join(RA, 'ready'), `${RB}/`]);
    t.copied = nowMs();
    daemon = background(daemonArgv, { stdio: 'ignore', detached: true, group: true });
    children.add(daemon);
    const socket = path.join(WORK2, 'lazy-pages.socket');
    while (!fs.existsSync(socket)) {
      if (daemon.isDone()) {
        const e = await daemon.exited;
        throw new Error(`criu lazy-pages exited (${e.code ?? e.signal}) before it was ready:\n${logExcerpt(path.join(WORK2, 'lazy-pages.log'))}`);
      }
      if (nowMs() - t.copied > 10_000) throw new Error('criu lazy-pages did not make its socket in 10 s');
      await sleepMs(1);
    }
    t.daemon = nowMs();
    rawIds.dst.add(id2);
    const restore = quiet(restoreArgv, { stdio: [pipesB.r, pipesB.w, pipesB.w], timeout: 60_000 });
    t.restored = nowMs();
    if (restore.status !== 0) {
      throw new Error(`${row.commands.restore} failed (${restore.status ?? 'timeout'}):\n${fs.existsSync(path.join(WORK2, 'runc-restore.log')) ? fs.readFileSync(path.join(WORK2, 'runc-restore.log'), 'utf8').trim() : ''}\n  restore.log:\n${logExcerpt(path.join(WORK2, 'restore.log'))}\n  lazy-pages.log:\n${logExcerpt(path.join(WORK2, 'lazy-pages.log'))}`);
    }
    // Every page pulled: the daemon exits, the page server with it, and runc checkpoint after it.
    const deadline = nowMs() + 120_000;
    while (!(daemon.isDone() && checkpoint.isDone())) {
      checkAbort();
      if (nowMs() > deadline) throw new Error(`the pages did not all come in 120 s (daemon ${daemon.isDone() ? 'exited' : 'running'}, runc checkpoint ${checkpoint.isDone() ? 'exited' : 'running'})`);
      await sleepMs(1);
    }
    t.end = nowMs();
    // ---- timed until here
    const d = await daemon.exited;
    const c = await checkpoint.exited;
    row.daemonExit = d.code ?? d.signal;
    row.checkpointExit = c.code ?? c.signal;
    if (d.code !== 0) throw new Error(`criu lazy-pages exited ${d.code ?? d.signal}:\n${logExcerpt(path.join(WORK2, 'lazy-pages.log'))}`);
    if (c.code !== 0) throw new Error(`runc checkpoint exited ${c.code ?? c.signal}:\n${fs.readFileSync(path.join(WORK, 'runc-checkpoint.out'), 'utf8').trim()}\n  dump.log:\n${logExcerpt(path.join(WORK, 'dump.log'))}`);
  } finally {
    try { fs.closeSync(status.read); } catch { /* closed */ }
    pipesB.close();
  }
  if (!paused) rawIds.src.delete(id); // runc checkpoint (without --leave-running) removed it
  row.totalMs = t.end - t.start;
  row.steps = {
    pause: t.paused - t.start,
    dumpReady: t.ready - t.paused,
    copy: t.copied - t.ready,
    daemonStart: t.daemon - t.copied,
    restore: t.restored - t.daemon,
    switch: t.restored - t.start,
    pages: t.end - t.restored,
  };
  row.criu = criuStamps(path.join(WORK, 'dump.log'), path.join(WORK2, 'restore.log'));
  keepLogs(`${side}-${mib}`, [path.join(WORK, 'dump.log'), path.join(WORK, 'runc-checkpoint.out'), path.join(WORK2, 'restore.log'), path.join(WORK2, 'lazy-pages.log'), path.join(WORK2, 'runc-restore.log')]);
  row.imagesBytes = Number(quiet(['du', '-sb', IMG2]).stdout.split('\t')[0]);
  await sleepMs(SETTLE + 50);
  checkAbort();
  const st = quiet(runcDst('state', id2));
  row.destStatus = st.status === 0 ? JSON.parse(st.stdout).status : 'unknown';
  downtime(row, fs.readFileSync(path.join(RB, 'ticks'), 'utf8'), t.start, t.end);
  quiet(runcDst('delete', '-f', id2));
  rawIds.dst.delete(id2);
  quiet(runcSrc('delete', '-f', id));
  rawIds.src.delete(id);
  releasePipes(pipesA.pgid);
  releasePipes(pipesB.pgid);
  children.delete(checkpoint);
  children.delete(daemon);
  for (const m of mountsUnder(dir).reverse()) quiet(['umount', '-l', m]);
  if (mountsUnder(dir).length === 0 && !opt['keep-tmp']) fs.rmSync(dir, { recursive: true, force: true });
  return row;
}

/** The first file called `name` under dir, or null. */
function findFile(dir, name) {
  if (!fs.existsSync(dir)) return null;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile() && e.name === name) return path.join(e.parentPath, e.name);
  return null;
}

/** Copies what exists of `files` into --logs DIR as PREFIX-NAME. */
function keepLogs(prefix, files) {
  if (!opt.logs) return;
  fs.mkdirSync(opt.logs, { recursive: true });
  for (const f of files) if (f && fs.existsSync(f)) fs.copyFileSync(f, path.join(opt.logs, `${prefix}-${path.basename(f)}`));
}

/** CRIU's own clock in its logs (seconds from its start): when the dump's page server started, when the restore finished. */
function criuStamps(dumpLog, restoreLog) {
  const stamp = (file, re) => {
    try {
      const m = re.exec(fs.readFileSync(file, 'utf8'));
      return m ? Math.round(Number(m[1]) * 1000) : null;
    } catch { return null; }
  };
  return {
    dumpPageServerMs: dumpLog === null ? null : stamp(dumpLog, /^\((\d+\.\d+)\) Starting lazy pages server/m),
    restoreFinishedMs: stamp(restoreLog, /^\((\d+\.\d+)\) Restore finished/m),
  };
}

const mountsUnder = (dir) => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(`${dir}/`));

// ------------------------------------------------------------------ run

/** @type {any[]} */
const rows = [];
let failure = null;
const stasisVersion = quiet([STASIS_BIN, '--version']).stdout.trim() || 'unknown';
const commit = quiet(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.trim() || 'unknown';
try {
  fs.copyFileSync(STASIS_BIN, STASIS);
  fs.chmodSync(STASIS, 0o755);
  run(['cp', '-a', opt.rootfs, BASE]);
  run(['gcc', '-O2', '-static', '-o', path.join(BASE, 'ticker'), path.join(REPO, 'bench', 'fixtures', 'ticker.c')]);
  run(['cp', '-a', BASE, BASE_A]);
  run(['cp', '-a', BASE, BASE_B]);
  const help = quiet([STASIS, 'migrate', '--help']);
  if (help.status !== 0 || !/--lazy/.test(help.stdout)) throw new Error(`${STASIS_BIN} has no migrate --lazy`);
  for (const [i, mib] of SIZES.entries()) {
    // The sides in turn, the first one rotating from size to size.
    const order = SIDES.map((_, k) => SIDES[(k + i) % SIDES.length]);
    for (const side of order) {
      checkAbort();
      log(`${mib} MiB, ${side}`);
      let row;
      try {
        row = side === 'stasis' ? await stasisMove(mib) : await rawMove(mib, side === 'raw-paused');
        log(`  downtime ${row.downtimeMs.toFixed(1)} ms, total ${row.totalMs.toFixed(0)} ms`);
      } catch (err) {
        if (interrupted()) throw err;
        row = { side, mib, error: String(err.message ?? err) };
        log(`  FAILED: ${row.error}`);
        await removeAll();
      }
      rows.push(row);
    }
  }
} catch (err) {
  failure = err;
} finally {
  await cleanup();
}

/** Kills what this script started and deletes (-f) every container, on both sides. */
async function removeAll() {
  // The lazy-pages daemons (their process groups) first, then a runc checkpoint still
  // running: its CRIU (its child) before runc itself. runc delete -f below ends the containers.
  for (const c of [...children].sort((a, b) => Number(b.group) - Number(a.group))) {
    if (c.isDone()) continue;
    if (!c.group) for (const kid of procs((n) => ppidOf(n) === c.pid)) { try { process.kill(kid, 'SIGKILL'); } catch { /* gone */ } }
    try { process.kill(c.group ? -c.pid : c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  await Promise.race([Promise.all([...children].map((c) => c.exited)), sleepMs(5000)]);
  children.clear();
  for (const id of stasisIds.dst) quiet(dstStasis('delete', '-f', id));
  for (const id of stasisIds.src) quiet(srcStasis('delete', '-f', id));
  stasisIds.src.clear();
  stasisIds.dst.clear();
  for (const root of [RAW_SRC_ROOT, RAW_DST_ROOT]) {
    if (!fs.existsSync(root)) continue;
    for (const id of quiet([RUNC, '--root', root, 'list', '-q']).stdout.split('\n').filter(Boolean)) quiet([RUNC, '--root', root, 'delete', '-f', id]);
  }
  rawIds.src.clear();
  rawIds.dst.clear();
  releaseAllPipes();
}

async function cleanup() {
  log('cleaning up');
  await removeAll();
  for (const sd of [SRC_SD, DST_SD]) {
    const dir = path.join(sd, 'containers');
    if (!fs.existsSync(dir)) continue;
    for (const id of fs.readdirSync(dir).filter((n) => !n.startsWith('.'))) {
      quiet([STASIS, '--state-dir', sd, 'delete', '-f', id]);
      if (!fs.existsSync(path.join(dir, id))) continue;
      try { process.kill(Number(fs.readFileSync(path.join(dir, id, 'conmon.pid'), 'utf8')), 'SIGKILL'); } catch { /* none */ }
      quiet([RUNC, '--root', path.join(sd, 'runc'), 'delete', '-f', id]);
    }
  }
  // conmon's exit hooks (stasis __exit) of these state dirs: let them finish before the folders go.
  for (let i = 0; i < 200; i++) {
    if (procs((n) => { const a = fs.readFileSync(`/proc/${n}/cmdline`, 'utf8'); return a.includes('__exit') && a.includes(TMP); }).length === 0) break;
    await sleepMs(25);
  }
  if (opt['keep-tmp']) return log(`kept ${TMP}`);
  // Never rm -rf through a mount point.
  for (const m of mountsUnder(TMP).reverse()) quiet(['umount', '-l', m]);
  if (mountsUnder(TMP).length === 0) fs.rmSync(TMP, { recursive: true, force: true });
  else log(`left ${TMP} in place: still mounted: ${mountsUnder(TMP).join(', ')}`);
  const stray = procs((n) => fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(TAG));
  if (stray.length) log(`warning: processes with ${TAG} in their command line remain: ${stray.join(' ')}`);
}

// ------------------------------------------------------------------ report

const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
/** CRIU's own clock, from its logs: the dump until its lazy page server started, the restore until "Restore finished". */
const criuCell = (x) => {
  const parts = [];
  if (Number.isFinite(x.criu?.dumpPageServerMs)) parts.push(`dump to page server ${x.criu.dumpPageServerMs}`);
  if (Number.isFinite(x.criu?.restoreFinishedMs)) parts.push(`restore ${x.criu.restoreFinishedMs}`);
  return `; the app's gap began ${fmt(x.gapStartsAtMs)} after the start${parts.length ? `; CRIU's log: ${parts.join(', ')}` : ''}`;
};
const out = [];
out.push(`stasis migrate --lazy against a hand-made post-copy (runc + CRIU), ${new Date(started).toISOString()}`);
out.push(`machine: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}; node ${process.version}; stasis ${STASIS_BIN} (${stasisVersion}, commit ${commit}); ${quiet([RUNC, '--version']).stdout.split('\n')[0]}; criu ${quiet([CRIU, '--version']).stdout.match(/Version: (\S+)/)?.[1] ?? '?'} (${CRIU})`);
out.push(`load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; wall time ${((Date.now() - started) / 1000).toFixed(0)} s; raw spec ${opt['raw-loopback'] ? 'with' : 'without'} the loopback hook`);
out.push(`downtime = the largest gap between two ticks (1 ms period) from the move's start to ${SETTLE} ms after its end (every page there); one move per side and size`);
out.push('');
const paused = SIDES.includes('raw-paused');
out.push(`| touched | stasis --lazy downtime | raw downtime | stasis/raw |${paused ? ' raw-paused downtime |' : ''} stasis: where the time went (its JSON, ms) | raw: where the time went (ms) |${paused ? ' raw-paused: where (ms) |' : ''}`);
out.push(`|---|---|---|---|${paused ? '---|' : ''}---|---|${paused ? '---|' : ''}`);
const rawCell = (r) => (r && !r.error ? `${r.steps.pause > 1 ? `runc pause ${fmt(r.steps.pause)}, ` : ''}dump until the page server is ready ${fmt(r.steps.dumpReady)}, copy images + ticks ${fmt(r.steps.copy)}, lazy-pages daemon up ${fmt(r.steps.daemonStart)}, restore until running ${fmt(r.steps.restore)} (switch ${fmt(r.steps.switch)}), pages ${fmt(r.steps.pages)}; total ${fmt(r.totalMs)}${criuCell(r)}` : r?.error ? r.error.split('\n')[0].replaceAll('|', '/').slice(0, 200) : '-');
for (const mib of SIZES) {
  const s = rows.find((r) => r.mib === mib && r.side === 'stasis');
  const r = rows.find((x) => x.mib === mib && x.side === 'raw');
  const p = rows.find((x) => x.mib === mib && x.side === 'raw-paused');
  const ok = (x) => x && !x.error;
  const cell = (x) => (!x ? 'not run' : x.error ? `FAILED` : `${fmt(x.downtimeMs, 1)} ms`);
  const ratio = ok(s) && ok(r) ? `${(s.downtimeMs / r.downtimeMs).toFixed(2)}x` : '-';
  const sw = ok(s) ? `check ${fmt(s.steps.check)}${Number.isFinite(s.steps.rootfs) ? `, rootfs ${fmt(s.steps.rootfs)}` : ''}, freeze+dump until the page server is ready ${fmt(s.steps.dump)}, send ${fmt(s.steps.transfer)}, restore until running ${fmt(s.steps.restore)} (reported downtime ${fmt(s.steps.reportedDowntime)}), pages ${fmt(s.steps.pages)}; total ${fmt(s.totalMs)}${criuCell(s)}` : s?.error ? s.error.split('\n')[0].replaceAll('|', '/').slice(0, 200) : '-';
  out.push(`| ${mib} MiB | ${cell(s)} | ${cell(r)} | ${ratio} |${paused ? ` ${cell(p)} |` : ''} ${sw} | ${rawCell(r)} |${paused ? ` ${rawCell(p)} |` : ''}`);
}
out.push('');
const both = SIZES.map((mib) => [rows.find((r) => r.mib === mib && r.side === 'stasis' && !r.error), rows.find((r) => r.mib === mib && r.side === 'raw' && !r.error)]).filter(([a, b]) => a && b);
if (both.length) out.push(`target (stasis --lazy <= 1.1x raw): ${both.map(([a, b]) => `${a.mib} MiB ${(a.downtimeMs / b.downtimeMs).toFixed(2)}x`).join(', ')}: ${both.length === SIZES.length && both.every(([a, b]) => a.downtimeMs <= 1.1 * b.downtimeMs) ? 'met' : 'MISSED'}`);
else out.push('target (stasis --lazy <= 1.1x raw): not measured');
out.push(`other gaps > 10 ms in the window: ${rows.filter((r) => !r.error).map((r) => `${r.mib}/${r.side} ${r.slowGaps}`).join(', ')}; largest gap in the 500 ms before: ${rows.filter((r) => !r.error).map((r) => `${r.mib}/${r.side} ${fmt(r.baselineMs, 1)} ms`).join(', ')}`);
for (const r of rows.filter((x) => x.error)) out.push(`FAILED ${r.mib} MiB ${r.side}:\n${r.error}`);
process.stdout.write(`${out.join('\n')}\n`);
if (opt.json) fs.writeFileSync(opt.json, `${JSON.stringify({ date: new Date(started).toISOString(), commit, stasis: STASIS_BIN, stasisVersion, runc: RUNC, criu: CRIU, rawLoopback: opt['raw-loopback'], sides: SIDES, settleMs: SETTLE, loadStart, loadEnd: os.loadavg(), rows, failure: failure ? String(failure.message ?? failure) : null }, null, 2)}\n`);
if (failure) {
  process.stderr.write(`postcopy: FAILED: ${failure.stack ?? failure}\n`);
  process.exit(1);
}
if (rows.some((r) => r.error)) process.exit(1);
