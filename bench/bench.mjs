#!/usr/bin/env node
// stasis vs raw runc, side by side, in one run on one machine.
//
//   sudo node bench/bench.mjs [--reps 15] [--containers 200] [--cr-reps 7]
//                             [--rootfs DIR] [--runc PATH] [--criu PATH]
//                             [--json FILE] [--no-snapshot]
//
// Rows (medians; stasis and runc samples interleaved, the order alternating):
//   1. run -d of `sleep 1000`          stasis run -d     vs  runc run -d (bundle, stdio /dev/null)
//   2. ps with 1 and N containers      stasis ps         vs  runc list
//   3. kill + delete of a running one  stasis delete -f  vs  runc delete -f
//   4. checkpoint / restore            stasis checkpoint / restore  vs  runc checkpoint / restore -d
//   5. monitor memory per container    VmRSS of the conmon processes / count
//
// Everything it starts is removed at the end, on failure too. Plain Node, no
// dependencies. Needs root, runc, conmon, CRIU and a built stasis (npm run build).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string', default: '15' },
    containers: { type: 'string', default: '200' },
    'cr-reps': { type: 'string', default: '7' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    runc: { type: 'string', default: '/usr/sbin/runc' },
    criu: { type: 'string', default: '/usr/local/sbin/criu' },
    json: { type: 'string' },
    snapshot: { type: 'boolean', default: true },
    help: { type: 'boolean', short: 'h' },
  },
  allowNegative: true,
});
if (opt.help) {
  process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 20).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const REPS = posInt('reps');
const N = posInt('containers');
const CR_REPS = posInt('cr-reps');
const ROOTFS = path.resolve(opt.rootfs);
const RUNC = opt.runc;
const CRIU = opt.criu;
const NODE = process.execPath;
const COUNTER = 'i=0; while true; do i=$((i+1)); sleep 0.1; done';

function posInt(name) {
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < 1) die(`--${name} must be a positive integer`);
  return n;
}
function die(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}
const log = (message) => process.stderr.write(`bench: ${message}\n`);

// ------------------------------------------------------------------ helpers

const quote = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`);
const show = (argv) => argv.map(quote).join(' ');

/** Runs argv to completion; returns wall time in ms. Throws on a non-zero exit. */
function timed(argv, { stdio = ['ignore', 'pipe', 'pipe'], check = true, timeout = 300_000 } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (check && (r.error || r.status !== 0)) {
    const why = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit status ${r.status}`;
    const err = (r.stderr ?? '').trim();
    throw new Error(`${show(argv)} failed (${why})${err ? `:\n${err}` : stdio[2] === 'ignore' ? ' (its stderr went to /dev/null)' : ''}`);
  }
  return { ms, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const quiet = (argv) => timed(argv, { check: false });

const median = (xs) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

let interrupted = null;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { interrupted = sig; });
function checkAbort() {
  if (interrupted) throw new Error(`interrupted by ${interrupted}`);
}

/** Children of `pid`, found by scanning /proc/PID/stat. */
function childrenOf(pid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch { /* gone */ }
  }
  return out;
}

/** Processes with every one of `args` as a whole argument, or with `substring` anywhere in their command line. */
function processesMatching({ args = [], substring = null }) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const argv = cmdline.split('\0');
      if (args.every((a) => argv.includes(a)) && (substring === null || cmdline.includes(substring))) out.push(Number(name));
    } catch { /* gone */ }
  }
  return out;
}

/** Throws unless the pid read from `file` is a live (not zombie) process. */
function requireAlive(what, file, pidOf) {
  let state = 'gone';
  try {
    const stat = fs.readFileSync(`/proc/${pidOf(fs.readFileSync(file, 'utf8'))}/stat`, 'utf8');
    state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch { /* no pid file or no process */ }
  if (state === 'gone' || state === 'Z' || state === 'X') throw new Error(`${what} is not running before its delete was timed (state ${state})`);
}

const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ anonymous pipes

// Node's stdio 'pipe' is a socketpair, which CRIU refuses as an external fd
// ("unix: Unix socket N not found"), and runc restore re-attaches only fds it
// recorded as "pipe:[…]". Real anonymous pipes come from a shell pipeline:
// in `sleep | sleep | sleep` the middle sleep's stdin is the read end of one
// pipe (the first sleep holds its write end) and its stdout the write end of
// another (the last sleep holds its read end). Reopening those two through
// /proc/PID/fd gives new descriptors of the same anonymous pipes, which are
// handed to runc as the container's stdin and stdout/stderr; the sleeps,
// outside the container, keep the other ends open for as long as it runs.
const holders = new Set();

async function anonymousPipes() {
  const holder = spawn('sh', ['-c', 'sleep 100000000 | sleep 100000000 | sleep 100000000'], { stdio: 'ignore', detached: true });
  holders.add(holder.pid);
  for (let i = 0; i < 400; i++) {
    for (const child of childrenOf(holder.pid)) {
      try {
        if (!fs.readlinkSync(`/proc/${child}/fd/0`).startsWith('pipe:')) continue;
        if (!fs.readlinkSync(`/proc/${child}/fd/1`).startsWith('pipe:')) continue;
        const r = fs.openSync(`/proc/${child}/fd/0`, fs.constants.O_RDONLY);
        const w = fs.openSync(`/proc/${child}/fd/1`, fs.constants.O_WRONLY);
        return { pgid: holder.pid, r, w, close() { fs.closeSync(r); fs.closeSync(w); } };
      } catch { /* not ready yet */ }
    }
    await sleepMs(5);
  }
  throw new Error('could not set up anonymous pipes (sh | sleep pipeline)');
}

function releasePipes(pgid) {
  try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  holders.delete(pgid);
}

// ------------------------------------------------------------------ setup

if (process.getuid?.() !== 0) die('run as root: containers need it');
for (const [what, p] of [['runc', RUNC], ['criu', CRIU], ['rootfs', ROOTFS]]) {
  if (!fs.existsSync(p)) die(`${what} not found: ${p}`);
}
if (!fs.existsSync(path.join(REPO, 'dist', 'cli.cjs'))) die('stasis is not built: run `npm run build` first');

const TAG = `bn${process.pid.toString(36)}`; // in every ID, so a leftover is recognisable
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-bench-'));
const SD = path.join(TMP, 'state');
const CPD = path.join(TMP, 'checkpoints');
const RR = path.join(TMP, 'runc-root');
const RAW_CP = path.join(TMP, 'runc-checkpoints');
const B_SLEEP = path.join(TMP, 'bundle-sleep');
const B_COUNT = path.join(TMP, 'bundle-counter');

// A private copy of the built CLI, so that a rebuild of dist/ during the run
// (tests, another shell) cannot break or change what is measured.
let STASIS_BIN = path.join(REPO, 'bin', 'stasis');
if (opt.snapshot) {
  const cli = path.join(TMP, 'cli');
  fs.mkdirSync(path.join(cli, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(cli, 'package.json'));
  fs.copyFileSync(STASIS_BIN, path.join(cli, 'bin', 'stasis'));
  fs.copyFileSync(path.join(REPO, 'bin', 'package.json'), path.join(cli, 'bin', 'package.json'));
  // dist is a symlink to the current build (scripts/build.mjs): copy what it points at.
  fs.cpSync(fs.realpathSync(path.join(REPO, 'dist')), path.join(cli, 'dist'), { recursive: true });
  STASIS_BIN = path.join(cli, 'bin', 'stasis');
}

const stasis = (...args) => [NODE, STASIS_BIN, '--state-dir', SD, '--checkpoint-dir', CPD, '--runc', RUNC, '--criu', CRIU, ...args];
const runc = (...args) => [RUNC, '--root', RR, ...args];
const runcCriu = (...args) => [RUNC, '--root', RR, '--criu', CRIU, ...args];
const DEVNULL = ['ignore', 'ignore', 'ignore'];

const stasisIds = new Set();
const runcIds = new Set();

function makeBundle(dir, args) {
  fs.mkdirSync(dir, { recursive: true });
  timed([RUNC, 'spec', '--bundle', dir]);
  const file = path.join(dir, 'config.json');
  const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
  spec.process.terminal = false;
  spec.process.args = args;
  spec.root = { path: ROOTFS, readonly: true };
  fs.writeFileSync(file, `${JSON.stringify(spec, null, 2)}\n`);
}

/** Waits (untimed) until the exit hooks conmon started for our containers are done, so they do not load the next sample. */
async function settle() {
  for (let i = 0; i < 400; i++) {
    // (conmon's own command line has --exit-command-arg=__exit, not __exit as an argument.)
    if (processesMatching({ args: [STASIS_BIN, '__exit', SD] }).length === 0) return;
    await sleepMs(25);
  }
}

function version(argv, re) {
  const r = quiet(argv);
  return (re.exec(`${r.stdout}\n${r.stderr}`)?.[1] ?? 'unknown').trim();
}

function gitCommit() {
  const r = spawnSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (r.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'bin', 'scripts'], { encoding: 'utf8' }).stdout?.trim();
  return `${r.stdout.trim()}${dirty ? ' (src/bin/scripts modified)' : ''}`;
}

const env = {
  date: new Date().toISOString(),
  kernel: `${os.type()} ${os.release()}`,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown',
  memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  node: process.version,
  runc: version([RUNC, '--version'], /runc version (\S+)/),
  conmon: version(['conmon', '--version'], /conmon version (\S+)/),
  criu: version([CRIU, '--version'], /Version: (\S+)/),
  stasis: gitCommit(),
  loadavgStart: os.loadavg().map((x) => +x.toFixed(2)),
  loadavgEnd: null,
};

// ------------------------------------------------------------------ results

const samples = {}; // key -> { stasis: [], runc: [] }
const add = (key, side, ms) => ((samples[key] ??= { stasis: [], runc: [] })[side].push(ms));

/** Runs the two measurements of one repetition, stasis first on even reps, runc first on odd ones. */
async function pair(rep, stasisFn, runcFn) {
  checkAbort();
  if (rep % 2 === 0) {
    await stasisFn();
    await runcFn();
  } else {
    await runcFn();
    await stasisFn();
  }
}

// The three ways a container of each kind is started.
function stasisRunSleep(id) {
  stasisIds.add(id);
  return timed(stasis('run', '-d', id, '--rootfs', ROOTFS, '--', 'sleep', '1000')).ms;
}
function runcRunSleep(id) {
  runcIds.add(id);
  // stdio 'ignore': runc, and through it the container, get /dev/null.
  return timed(runc('run', '-d', '--bundle', B_SLEEP, id), { stdio: DEVNULL }).ms;
}
const rawPipes = new Map(); // runc id -> holder pgid

// ------------------------------------------------------------------ the run

let memory = null;
let failure = null;
const started = Date.now();
try {
  log(`temp dir ${TMP}; IDs start with ${TAG}-`);
  makeBundle(B_SLEEP, ['sleep', '1000']);
  makeBundle(B_COUNT, ['sh', '-c', COUNTER]);
  fs.mkdirSync(RAW_CP);

  // Warm-up (untimed): page cache, Node's compile cache, runc's and conmon's first starts.
  log('warm-up');
  for (let i = 0; i < 2; i++) {
    stasisRunSleep(`${TAG}-warm-s${i}`);
    runcRunSleep(`${TAG}-warm-r${i}`);
    timed(stasis('ps'));
    timed(runc('list'));
    timed(stasis('delete', '-f', `${TAG}-warm-s${i}`));
    stasisIds.delete(`${TAG}-warm-s${i}`);
    timed(runc('delete', '-f', `${TAG}-warm-r${i}`));
    runcIds.delete(`${TAG}-warm-r${i}`);
    await settle();
  }

  // 2a. ps with one container of each kind; also the start-up floors.
  log(`ps with 1 container (${REPS} reps)`);
  stasisRunSleep(`${TAG}-s-000`);
  runcRunSleep(`${TAG}-r-000`);
  for (let i = 0; i < REPS; i++) {
    await pair(i, () => {
      const r = timed(stasis('ps'));
      if (!r.stdout.includes(`${TAG}-s-000`)) throw new Error(`stasis ps does not list ${TAG}-s-000:\n${r.stdout}`);
      add('ps1', 'stasis', r.ms);
    }, () => {
      const r = timed(runc('list'));
      if (!r.stdout.includes(`${TAG}-r-000`)) throw new Error(`runc list does not list ${TAG}-r-000:\n${r.stdout}`);
      add('ps1', 'runc', r.ms);
    });
    await pair(i, () => add('floor-cli', 'stasis', timed(stasis('--version')).ms), () => add('floor-cli', 'runc', timed([RUNC, '--version']).ms));
    add('floor-node', 'stasis', timed([NODE, '-e', '']).ms);
  }

  // 1. run -d, REPS of each, interleaved; these containers stay up for the ps row.
  log(`run -d (${REPS} reps)`);
  let next = 1;
  const idOf = (side, k) => `${TAG}-${side}-${String(k).padStart(3, '0')}`;
  for (let i = 0; i < REPS && next < N; i++, next++) {
    const k = next;
    await pair(i, () => add('run', 'stasis', stasisRunSleep(idOf('s', k))), () => add('run', 'runc', runcRunSleep(idOf('r', k))));
  }

  // Fill up to N of each kind; these starts are timed too (an extra row).
  log(`starting containers up to ${N} of each kind`);
  for (let i = 0; next < N; i++, next++) {
    const k = next;
    await pair(i, () => add('runFill', 'stasis', stasisRunSleep(idOf('s', k))), () => add('runFill', 'runc', runcRunSleep(idOf('r', k))));
    if (next % 50 === 0) log(`  ${next} of each`);
  }

  // 2b. ps with N containers of each kind.
  log(`ps with ${N} containers (${REPS} reps)`);
  for (let i = 0; i < REPS; i++) {
    await pair(i, () => {
      const r = timed(stasis('ps'));
      const rows = r.stdout.split('\n').filter((l) => l.includes(' running '));
      if (rows.length !== N) throw new Error(`stasis ps shows ${rows.length} running containers, expected ${N}`);
      add('psN', 'stasis', r.ms);
    }, () => {
      const r = timed(runc('list'));
      const rows = r.stdout.split('\n').filter((l) => l.includes(' running '));
      if (rows.length !== N) throw new Error(`runc list shows ${rows.length} running containers, expected ${N}`);
      add('psN', 'runc', r.ms);
    });
  }

  // 5. The monitor's resident memory, with N containers up.
  {
    let rssKiB = 0;
    let pssKiB = 0;
    let count = 0;
    for (const id of stasisIds) {
      const pid = Number(fs.readFileSync(path.join(SD, 'containers', id, 'conmon.pid'), 'utf8').trim());
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'conmon') throw new Error(`pid ${pid} of ${id} is not conmon`);
      rssKiB += Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
      const pss = /Pss:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      pssKiB += pss ? Number(pss[1]) : 0;
      count++;
    }
    memory = { count, rssMiB: rssKiB / count / 1024, pssMiB: pssKiB / count / 1024 };
  }

  // 3. kill + delete, every container, interleaved.
  log(`delete -f (${N} of each)`);
  {
    const s = [...stasisIds];
    const r = [...runcIds];
    for (let i = 0; i < Math.max(s.length, r.length); i++) {
      // Both must still be running (a `sleep 1000` outlives a normal run, not a very slow one).
      if (i < s.length) requireAlive(`stasis container ${s[i]}`, path.join(SD, 'containers', s[i], 'pid'), (t) => Number(t));
      if (i < r.length) requireAlive(`runc container ${r[i]}`, path.join(RR, r[i], 'state.json'), (t) => JSON.parse(t).init_process_pid);
      await pair(i, async () => {
        if (i >= s.length) return;
        add('delete', 'stasis', timed(stasis('delete', '-f', s[i])).ms);
        stasisIds.delete(s[i]);
        await settle();
      }, () => {
        if (i >= r.length) return;
        add('delete', 'runc', timed(runc('delete', '-f', r[i])).ms);
        runcIds.delete(r[i]);
      });
      if ((i + 1) % 50 === 0) log(`  ${i + 1} of each`);
    }
  }

  // 4. checkpoint and restore of a fresh counter container per repetition.
  log(`checkpoint / restore (${CR_REPS} reps)`);
  for (let i = 0; i < CR_REPS; i++) {
    checkAbort();
    const sid = `${TAG}-cs-${i}`;
    const rid = `${TAG}-cr-${i}`;
    const image = path.join(RAW_CP, rid);
    stasisIds.add(sid);
    timed(stasis('run', '-d', sid, '--rootfs', ROOTFS, '--', 'sh', '-c', COUNTER));
    let pipes = await anonymousPipes();
    runcIds.add(rid);
    timed(runcCriu('run', '-d', '--bundle', B_COUNT, rid), { stdio: [pipes.r, pipes.w, pipes.w] });
    pipes.close();
    rawPipes.set(rid, pipes.pgid);
    await sleepMs(500); // let both loops tick

    await pair(i,
      () => add('checkpoint', 'stasis', timed(stasis('checkpoint', sid)).ms),
      () => add('checkpoint', 'runc', timed(runcCriu('checkpoint', '--image-path', image, rid)).ms));
    releasePipes(rawPipes.get(rid));
    pipes = await anonymousPipes(); // fresh pipes for the restored container
    rawPipes.set(rid, pipes.pgid);
    await settle();
    await pair(i,
      () => add('restore', 'stasis', timed(stasis('restore', sid)).ms),
      () => add('restore', 'runc', timed(runcCriu('restore', '-d', '--image-path', image, '--bundle', B_COUNT, rid), { stdio: [pipes.r, pipes.w, pipes.w] }).ms));
    pipes.close();

    // Both must be running again.
    await sleepMs(300);
    const info = JSON.parse(timed(stasis('info', sid)).stdout);
    if (info.status !== 'running') throw new Error(`stasis container ${sid} is ${info.status} after restore`);
    const state = JSON.parse(timed(runc('state', rid)).stdout);
    if (state.status !== 'running') throw new Error(`runc container ${rid} is ${state.status} after restore`);

    timed(stasis('delete', '-f', sid));
    stasisIds.delete(sid);
    timed(runc('delete', '-f', rid));
    runcIds.delete(rid);
    releasePipes(rawPipes.get(rid));
    rawPipes.delete(rid);
    await settle();
  }
} catch (err) {
  failure = err;
} finally {
  log('cleaning up');
  cleanup();
}

function cleanup() {
  // stasis containers: everything in its state dir, whatever the script believes.
  const left = fs.existsSync(path.join(SD, 'containers')) ? fs.readdirSync(path.join(SD, 'containers')).filter((n) => !n.startsWith('.')) : [];
  for (let i = 0; i < left.length; i += 50) quiet(stasis('delete', '-f', ...left.slice(i, i + 50)));
  // Anything stasis could not remove: its conmon, its runc container.
  for (const id of fs.existsSync(path.join(SD, 'containers')) ? fs.readdirSync(path.join(SD, 'containers')) : []) {
    try { process.kill(Number(fs.readFileSync(path.join(SD, 'containers', id, 'conmon.pid'), 'utf8')), 'SIGKILL'); } catch { /* none */ }
    quiet([RUNC, '--root', path.join(SD, 'runc'), 'delete', '-f', id]);
  }
  // Raw runc containers.
  if (fs.existsSync(RR)) {
    for (const id of quiet(runc('list', '-q')).stdout.split('\n').filter(Boolean)) quiet(runc('delete', '-f', id));
  }
  for (const pgid of holders) releasePipes(pgid);
  // Never rm -rf through a mount point.
  const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(`${TMP}/`));
  for (const m of mounts().reverse()) quiet(['umount', '-l', m]);
  if (mounts().length === 0) fs.rmSync(TMP, { recursive: true, force: true });
  else log(`left ${TMP} in place: still mounted: ${mounts().join(', ')}`);
  const stray = processesMatching({ substring: TAG });
  if (stray.length > 0) log(`warning: processes with ${TAG} in their command line remain: ${stray.join(' ')}`);
}

env.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2));

// ------------------------------------------------------------------ report

const fmtMs = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : '-');
const rows = [];
function row(name, key, target, check) {
  const s = samples[key];
  if (!s) return;
  const ms = median(s.stasis);
  const mr = median(s.runc);
  const ratio = ms / mr;
  const verdict = check ? (check(ms, ratio) ? 'met' : 'MISSED') : '';
  rows.push([name, `${s.stasis.length}/${s.runc.length}`, fmtMs(ms), fmtMs(mr), Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-', target, verdict]);
}
row('run -d (sleep 1000)', 'run', '< 90 ms', (ms) => ms < 90);
row(`run -d, while filling up to ${N} (extra)`, 'runFill', '', null);
row('ps, 1 container', 'ps1', '', null);
row(`ps, ${N} containers`, 'psN', '< 60 ms', (ms) => ms < 60);
row('kill + delete (delete -f)', 'delete', '', null);
row('checkpoint', 'checkpoint', '<= 1.1x runc', (_, r) => r <= 1.1);
row('restore', 'restore', '<= 1.1x runc', (_, r) => r <= 1.1);
if (memory) {
  rows.push([`monitor RSS per container (${memory.count} conmon)`, `${memory.count}`, `${memory.rssMiB.toFixed(2)} MiB`, 'no monitor', '-', '<= 2.5 MiB', memory.rssMiB <= 2.5 ? 'met' : 'MISSED']);
}
if (samples['floor-cli']) {
  const f = samples['floor-cli'];
  rows.push([`floor: stasis --version / runc --version`, `${f.stasis.length}/${f.runc.length}`, fmtMs(median(f.stasis)), fmtMs(median(f.runc)), `${(median(f.stasis) / median(f.runc)).toFixed(2)}x`, '', '']);
}
if (samples['floor-node']) rows.push([`floor: node -e '' (bare Node start-up)`, `${samples['floor-node'].stasis.length}`, fmtMs(median(samples['floor-node'].stasis)), '-', '-', '', '']);

const head = ['row', 'n (stasis/runc)', 'stasis median', 'runc median', 'stasis/runc', 'target', ''];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
const out = [];
out.push(`stasis vs runc, ${env.date}`);
out.push(`machine: ${env.cpus} cores (${env.cpuModel}), ${env.memGiB} GiB, ${env.kernel}; node ${env.node}; runc ${env.runc}; conmon ${env.conmon}; criu ${env.criu}; stasis ${env.stasis}`);
out.push(`load average at start ${env.loadavgStart.join(' ')}, at end ${env.loadavgEnd.join(' ')}; wall time ${((Date.now() - started) / 1000).toFixed(0)} s`);
const script = path.relative(process.cwd(), process.argv[1]) || process.argv[1];
out.push(`command: cd ${process.cwd()} && ${show(['node', script.startsWith('..') ? process.argv[1] : script, ...process.argv.slice(2)])}   (node = ${NODE})`);
out.push('');
out.push(line(head));
out.push(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of rows) out.push(line(r));
out.push('');
if (memory) out.push(`monitor PSS per container (shared pages split): ${memory.pssMiB.toFixed(2)} MiB`);
out.push('timed commands (ID, D, R, B, X stand for the container ID, the state dirs, the bundle and the image folder):');
out.push(`  run -d      ${show([NODE, 'bin/stasis', '--state-dir', 'D', '--checkpoint-dir', 'C', '--runc', RUNC, '--criu', CRIU, 'run', '-d', 'ID', '--rootfs', ROOTFS, '--', 'sleep', '1000'])}`);
out.push(`             vs ${show([RUNC, '--root', 'R', 'run', '-d', '--bundle', 'B', 'ID'])}  (stdio /dev/null)`);
out.push(`  ps          stasis ... ps  vs  ${show([RUNC, '--root', 'R', 'list'])}`);
out.push(`  delete      stasis ... delete -f ID  vs  ${show([RUNC, '--root', 'R', 'delete', '-f', 'ID'])}`);
out.push(`  checkpoint  stasis ... checkpoint ID  vs  ${show([RUNC, '--root', 'R', '--criu', CRIU, 'checkpoint', '--image-path', 'X', 'ID'])}`);
out.push(`  restore     stasis ... restore ID  vs  ${show([RUNC, '--root', 'R', '--criu', CRIU, 'restore', '-d', '--image-path', 'X', '--bundle', 'B', 'ID'])}  (stdio: fresh anonymous pipes)`);
out.push('spread (min-max, ms):');
for (const [key, s] of Object.entries(samples)) {
  const mm = (xs) => (xs.length ? `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}` : '-');
  out.push(`  ${key.padEnd(11)} stasis ${mm(s.stasis).padEnd(10)} runc ${mm(s.runc)}`);
}
process.stdout.write(`${out.join('\n')}\n`);

if (opt.json) fs.writeFileSync(opt.json, `${JSON.stringify({ env, samples, memory, failure: failure ? String(failure.message ?? failure) : null }, null, 2)}\n`);

if (failure) {
  process.stderr.write(`bench: FAILED: ${failure.stack ?? failure}\n`);
  process.exit(1);
}
