#!/usr/bin/env node
// stasis next to raw runc, podman and containerd's ctr, side by side, in one run on one machine.
//
//   sudo node bench/bench.mjs [--reps 15] [--containers 200] [--cr-reps 7] [--hook-reps 9]
//                             [--rootfs DIR] [--runc PATH] [--criu PATH] [--no-podman]
//                             [--no-ctr] [--json FILE] [--no-snapshot]
//
// Sides: stasis compiled (dist/stasis, Bun), stasis under Node (bin/stasis),
// raw runc, podman where it is installed (its own private configuration,
// scripts/podman-env.sh), and ctr where scripts/setup/containerd.sh unpacked
// containerd 2.1 (/opt/stasis/containerd: a containerd of the bench's own,
// bench/ctr.mjs). Samples of the sides are interleaved, the order rotating
// from one repetition to the next. Rows (medians):
//   1. run -d of `sleep 1000`      stasis run -d / runc run -d (bundle, stdio /dev/null) / podman run -d / ctr run -d --null-io
//   2. ps with 1 and N containers  stasis ps / runc list / podman ps -a / ctr task ls
//   3. kill + delete               stasis delete -f / runc delete -f / podman rm -f -t 0 / ctr task rm -f + ctr container rm
//   4. checkpoint / restore        of a counter: stasis checkpoint, restore / runc checkpoint, restore -d / podman container
//                                  checkpoint, restore / ctr container checkpoint --task, restore --live
//   5. the exit hook               what conmon runs when a container exits: its wall time and peak RSS
//   6. monitor memory              VmRSS of stasis's conmon processes / count (ctr: of its shims)
//
// Everything it starts is removed at the end, on failure too. Plain Node, no
// dependencies. Needs root, runc, conmon, CRIU, GNU time and a built stasis (npm run build).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CTR, NS as CTR_NS, ctrMissing, ctrSide } from './ctr.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string', default: '15' },
    containers: { type: 'string', default: '200' },
    'cr-reps': { type: 'string', default: '7' },
    'hook-reps': { type: 'string', default: '9' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    runc: { type: 'string', default: '/usr/sbin/runc' },
    criu: { type: 'string', default: '/usr/local/sbin/criu' },
    podman: { type: 'boolean', default: true },
    ctr: { type: 'boolean', default: true },
    json: { type: 'string' },
    snapshot: { type: 'boolean', default: true },
    help: { type: 'boolean', short: 'h' },
  },
  allowNegative: true,
});
if (opt.help) {
  const lines = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
  process.stdout.write(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const REPS = posInt('reps');
const N = posInt('containers');
const CR_REPS = posInt('cr-reps');
const HOOK_REPS = posInt('hook-reps');
const ROOTFS = path.resolve(opt.rootfs);
const RUNC = opt.runc;
const CRIU = opt.criu;
const NODE = process.execPath;
const COUNTER = 'i=0; while true; do i=$((i+1)); sleep 0.1; done';
const GNU_TIME = '/usr/bin/time';

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

/** Runs argv to completion (env: variables added to ours); returns wall time in ms. Throws on a non-zero exit. */
function timed(argv, { stdio = ['ignore', 'pipe', 'pipe'], check = true, timeout = 300_000, env = undefined } = {}) {
  const childEnv = env ? { ...process.env, ...env } : process.env;
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio, encoding: 'utf8', timeout, maxBuffer: 64 << 20, env: childEnv });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (check && (r.error || r.status !== 0)) {
    const why = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit status ${r.status}`;
    const err = (r.stderr ?? '').trim();
    throw new Error(`${show(argv)} failed (${why})${err ? `:\n${err}` : stdio[2] === 'ignore' ? ' (its stderr went to /dev/null)' : ''}`);
  }
  return { ms, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const quiet = (argv, opts = {}) => timed(argv, { ...opts, check: false });

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

/** Processes with every one of `args` as a whole argument, `substring` anywhere in their command line, and `argv0` as their program. */
function processesMatching({ args = [], substring = null, argv0 = null }) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const argv = cmdline.split('\0');
      if (args.every((a) => argv.includes(a)) && (substring === null || cmdline.includes(substring)) && (argv0 === null || argv[0] === argv0)) out.push(Number(name));
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
for (const [what, p] of [['runc', RUNC], ['criu', CRIU], ['rootfs', ROOTFS], ['GNU time (apt-get install time)', GNU_TIME]]) {
  if (!fs.existsSync(p)) die(`${what} not found: ${p}`);
}
if (!fs.existsSync(path.join(REPO, 'dist', 'cli.cjs'))) die('stasis is not built: run `npm run build` first');
const HAVE_BIN = fs.existsSync(path.join(REPO, 'dist', 'stasis'));
if (!HAVE_BIN) log('dist/stasis is missing (no Bun at build time): the compiled side is left out');
const PODMAN = opt.podman ? which('podman') : null;
const CTR_MISSING = ctrMissing();
if (opt.ctr && CTR_MISSING) log(`${CTR_MISSING}: the ctr side is left out`);
const CONMON = which('conmon');
if (!CONMON) die('conmon not found on PATH');
// runc finds criu on PATH (newer runc ignores --criu); podman too.
process.env.PATH = `${path.dirname(CRIU)}:${process.env.PATH ?? ''}`;

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

const TAG = `bn${process.pid.toString(36)}`; // in every ID, so a leftover is recognisable
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-bench-'));
const SD = path.join(TMP, 'state');
const CPD = path.join(TMP, 'checkpoints');
const RR = path.join(TMP, 'runc-root');
const RAW_CP = path.join(TMP, 'runc-checkpoints');
const B_SLEEP = path.join(TMP, 'bundle-sleep');
const B_COUNT = path.join(TMP, 'bundle-counter');
const PODMAN_DIR = path.join(TMP, 'podman');
const HOOK_LOG = path.join(TMP, 'hooks.log');
// containerd of the bench's own (root, state, sockets, runc root in here), for ctr.
const CTRD = opt.ctr && !CTR_MISSING ? ctrSide({ dir: path.join(TMP, 'containerd'), runc: RUNC, rootfs: ROOTFS, run: timed, log }) : null;

// A private copy of the built CLI, so that a rebuild of dist/ during the run
// (tests, another shell) cannot break or change what is measured.
let STASIS_JS = path.join(REPO, 'bin', 'stasis');
let STASIS_EXE = path.join(REPO, 'dist', 'stasis');
if (opt.snapshot) {
  const cli = path.join(TMP, 'cli');
  fs.mkdirSync(path.join(cli, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(cli, 'package.json'));
  fs.copyFileSync(STASIS_JS, path.join(cli, 'bin', 'stasis'));
  fs.copyFileSync(path.join(REPO, 'bin', 'package.json'), path.join(cli, 'bin', 'package.json'));
  // dist is a symlink to the current build (scripts/build.mjs): copy what it points at.
  fs.cpSync(fs.realpathSync(path.join(REPO, 'dist')), path.join(cli, 'dist'), { recursive: true });
  STASIS_JS = path.join(cli, 'bin', 'stasis');
  STASIS_EXE = path.join(cli, 'dist', 'stasis');
}

// Both builds of stasis share one state directory: the same containers, listed by either.
const GLOBALS = ['--state-dir', SD, '--checkpoint-dir', CPD, '--runc', RUNC, '--criu', CRIU];
const stasisNode = (...args) => [NODE, STASIS_JS, ...GLOBALS, ...args];
const stasisBin = (...args) => [STASIS_EXE, ...GLOBALS, ...args];
const runc = (...args) => [RUNC, '--root', RR, ...args];
const runcCriu = (...args) => [RUNC, '--root', RR, '--criu', CRIU, ...args];
let PODMAN_ENV = {};
const podman = (...args) => [PODMAN, ...args];
const ctr = CTRD?.ctr;
const DEVNULL = ['ignore', 'ignore', 'ignore'];

/** The sides, in the order of the table. */
const SIDES = [
  ...(HAVE_BIN ? [{ key: 'bin', name: 'stasis (compiled)' }] : []),
  { key: 'node', name: 'stasis (Node)' },
  { key: 'runc', name: 'raw runc' },
  ...(PODMAN ? [{ key: 'podman', name: 'podman' }] : []),
  ...(CTRD ? [{ key: 'ctr', name: 'ctr' }] : []),
];
const STASIS_SIDES = SIDES.filter((s) => s.key === 'bin' || s.key === 'node').map((s) => s.key);
const stasisOf = (side) => (side === 'bin' ? stasisBin : stasisNode);

const stasisIds = new Set();
const runcIds = new Set();
const podmanIds = new Set();
const ctrIds = new Set();

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

/**
 * Waits (untimed) until the exit hooks conmon started are done (stasis's
 * `__exit`, podman's `container cleanup`), so that they do not load the next sample.
 */
async function settle() {
  for (let i = 0; i < 400; i++) {
    // (conmon's own command line has --exit-command-arg=__exit, not __exit as an argument.)
    // podman's conmon has `--exit-command-arg cleanup` (two words): only podman itself counts.
    const busy = processesMatching({ args: ['__exit', SD] }).length + (PODMAN ? processesMatching({ args: ['container', 'cleanup'], substring: PODMAN_DIR, argv0: PODMAN }).length : 0);
    if (busy === 0) return;
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
  bun: HAVE_BIN ? version([path.join(REPO, 'node_modules', '@oven', 'bun-linux-x64', 'bin', 'bun'), '--version'], /^(\S+)/) : null,
  runc: version([RUNC, '--version'], /runc version (\S+)/),
  conmon: version([CONMON, '--version'], /conmon version (\S+)/),
  criu: version([CRIU, '--version'], /Version: (\S+)/),
  podman: PODMAN ? version([PODMAN, '--version'], /podman version (\S+)/) : null,
  ctr: CTR_MISSING ? null : `${version([CTR, '--version'], /ctr \S+ (\S+)/)}${opt.ctr ? '' : ' (left out: --no-ctr)'}`,
  stasis: gitCommit(),
  loadavgStart: os.loadavg().map((x) => +x.toFixed(2)),
  loadavgEnd: null,
};

// ------------------------------------------------------------------ results

const samples = {}; // row key -> side -> [ms]
const add = (key, side, ms) => (((samples[key] ??= {})[side] ??= []).push(ms));

/** Runs one repetition's measurements, one per side, the order rotating with `rep`. */
async function round(rep, fns) {
  checkAbort();
  const list = fns.filter(Boolean);
  for (let i = 0; i < list.length; i++) await list[(i + rep) % list.length]();
}

// The ways a `sleep 1000` container of each kind is started.
function stasisRunSleep(side, id, extraEnv) {
  stasisIds.add(id);
  return timed(stasisOf(side)('run', '-d', id, '--rootfs', ROOTFS, '--', 'sleep', '1000'), { env: extraEnv }).ms;
}
function runcRunSleep(id) {
  runcIds.add(id);
  // stdio 'ignore': runc, and through it the container, get /dev/null.
  return timed(runc('run', '-d', '--bundle', B_SLEEP, id), { stdio: DEVNULL }).ms;
}
function podmanRunSleep(id) {
  podmanIds.add(id);
  return timed(podman('run', '-d', '--name', id, 'localhost/busybox', 'sleep', '1000'), { env: PODMAN_ENV }).ms;
}
function ctrRunSleep(id) {
  ctrIds.add(id);
  return timed(CTRD.runArgs(id, 'sleep', '1000')).ms;
}
/** ctr has no delete -f of a running container: the task (killed with SIGKILL, waited for), then the container and its snapshot. */
function ctrDelete(id) {
  const ms = timed(ctr('task', 'rm', '-f', id)).ms + timed(ctr('container', 'rm', id)).ms;
  ctrIds.delete(id);
  return ms;
}
const rawPipes = new Map(); // runc id -> holder pgid

/** The stasis containers running now (from each's pid file), for the checks. */
function running(lines) {
  return lines.split('\n').filter((l) => / running | Up /.test(l)).length;
}

// The exit hook, timed from outside: conmon is started through a wrapper
// (STASIS_CONMON, or podman's conmon_path) that puts a timer in front of the
// exit command: bash takes $EPOCHREALTIME before and after GNU time runs the
// command, which gives the peak RSS of the largest process it waited for.
const HOOK_TIMER = path.join(TMP, 'hook-timer');
const CONMON_WRAPPER = path.join(TMP, 'conmon-timed');
function writeHookTools() {
  fs.writeFileSync(HOOK_TIMER, `#!/bin/bash
# The bench's exit-command timer: runs "$@" and appends "ms maxrss_kib command" to ${HOOK_LOG}.
out=$(mktemp)
s=$EPOCHREALTIME
${GNU_TIME} -f %M -o "$out" "$@"
rc=$?
e=$EPOCHREALTIME
printf '%s %s %s %s\\n' "$(( (\${e/./} - \${s/./}) ))" "$(tail -n1 "$out")" "$rc" "$*" >>${HOOK_LOG}
rm -f "$out"
`, { mode: 0o755 });
  fs.writeFileSync(CONMON_WRAPPER, `#!/bin/bash
# conmon, with its exit command run by ${HOOK_TIMER}.
args=()
while (($#)); do
  if [[ $1 == --exit-command ]]; then args+=(--exit-command ${HOOK_TIMER} "--exit-command-arg=$2"); shift 2; continue; fi
  if [[ $1 == --exit-command=* ]]; then args+=(--exit-command ${HOOK_TIMER} "--exit-command-arg=\${1#--exit-command=}"); shift; continue; fi
  args+=("$1"); shift
done
exec ${CONMON} "\${args[@]}"
`, { mode: 0o755 });
}

/** The hook log's lines: { us, rssKiB, status, command }. */
function hookLines() {
  if (!fs.existsSync(HOOK_LOG)) return [];
  return fs.readFileSync(HOOK_LOG, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [us, rss, status, ...cmd] = l.split(' ');
    return { us: Number(us), rssKiB: Number(rss), status: Number(status), command: cmd.join(' ') };
  });
}

async function waitFor(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleepMs(10);
  }
}

// ------------------------------------------------------------------ the run

let memory = null;
let ctrMemory = null;
let failure = null;
const hooks = {}; // side -> [{ ms, rssMiB }]
const started = Date.now();
try {
  log(`temp dir ${TMP}; IDs start with ${TAG}-; sides: ${SIDES.map((s) => s.name).join(', ')}`);
  makeBundle(B_SLEEP, ['sleep', '1000']);
  makeBundle(B_COUNT, ['sh', '-c', COUNTER]);
  fs.mkdirSync(RAW_CP);
  writeHookTools();
  if (PODMAN) {
    const lines = timed(['bash', path.join(REPO, 'scripts', 'podman-env.sh'), PODMAN_DIR, 'overlay']).stdout.trim().split('\n');
    PODMAN_ENV = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    // The busybox rootfs as an image (podman runs images, not a rootfs folder it would write into).
    timed(['sh', '-c', `tar -C '${ROOTFS}' -c . | '${PODMAN}' import -q - localhost/busybox`], { env: PODMAN_ENV });
  }
  if (CTRD) {
    // containerd, then the busybox rootfs as an image in it (untimed).
    await CTRD.start();
    CTRD.importRootfs();
  }

  // Warm-up (untimed): page cache, Node's compile cache, runc's, conmon's and podman's first starts.
  log('warm-up');
  for (let i = 0; i < 2; i++) {
    for (const side of STASIS_SIDES) {
      stasisRunSleep(side, `${TAG}-warm-${side}${i}`);
      timed(stasisOf(side)('ps'));
      timed(stasisOf(side)('delete', '-f', `${TAG}-warm-${side}${i}`));
      stasisIds.delete(`${TAG}-warm-${side}${i}`);
    }
    runcRunSleep(`${TAG}-warm-r${i}`);
    timed(runc('list'));
    timed(runc('delete', '-f', `${TAG}-warm-r${i}`));
    runcIds.delete(`${TAG}-warm-r${i}`);
    if (PODMAN) {
      podmanRunSleep(`${TAG}-warm-p${i}`);
      timed(podman('ps', '-a'), { env: PODMAN_ENV });
      timed(podman('rm', '-f', '-t', '0', `${TAG}-warm-p${i}`), { env: PODMAN_ENV });
      podmanIds.delete(`${TAG}-warm-p${i}`);
    }
    if (CTRD) {
      ctrRunSleep(`${TAG}-warm-c${i}`);
      timed(ctr('task', 'ls'));
      ctrDelete(`${TAG}-warm-c${i}`);
    }
    await settle();
  }

  // 2a. ps with one container of each kind (one stasis container: both builds list it); the start-up floors.
  log(`ps with 1 container (${REPS} reps)`);
  stasisRunSleep(STASIS_SIDES[0], `${TAG}-s-000`);
  runcRunSleep(`${TAG}-r-000`);
  if (PODMAN) podmanRunSleep(`${TAG}-p-000`);
  if (CTRD) ctrRunSleep(`${TAG}-c-000`);
  const psRow = (key, expect) => {
    const check = (what, r, count = running) => {
      if (count(r.stdout) !== expect) throw new Error(`${what} shows ${count(r.stdout)} running containers, expected ${expect}:\n${r.stdout.slice(0, 2000)}`);
      return r.ms;
    };
    return [
      ...STASIS_SIDES.map((side) => () => add(key, side, check(`stasis ps (${side})`, timed(stasisOf(side)('ps'))))),
      () => add(key, 'runc', check('runc list', timed(runc('list')))),
      PODMAN && (() => add(key, 'podman', check('podman ps', timed(podman('ps', '-a'), { env: PODMAN_ENV })))),
      // `ctr task ls`: the tasks with their PID and status, what the others
      // list; `ctr container ls` shows metadata only (image, runtime), no state.
      CTRD && (() => add(key, 'ctr', check('ctr task ls', timed(ctr('task', 'ls')), CTRD.running))),
    ];
  };
  for (let i = 0; i < REPS; i++) {
    await round(i, psRow('ps1', 1));
    await round(i, [
      ...STASIS_SIDES.map((side) => () => add('floor-cli', side, timed(stasisOf(side)('--version')).ms)),
      () => add('floor-cli', 'runc', timed([RUNC, '--version']).ms),
      PODMAN && (() => add('floor-cli', 'podman', timed([PODMAN, '--version']).ms)),
      CTRD && (() => add('floor-cli', 'ctr', timed([CTR, '--version']).ms)),
      () => add('floor-node', 'node', timed([NODE, '-e', '']).ms),
    ]);
  }

  // 1. run -d, REPS of each, interleaved; these containers stay up for the ps row.
  log(`run -d (${REPS} reps)`);
  const idOf = (side, k) => `${TAG}-${side[0]}-${String(k).padStart(3, '0')}`;
  let nextStasis = 1;
  let nextRunc = 1;
  let nextPodman = 1;
  let nextCtr = 1;
  const runRound = (key, i) => round(i, [
    ...STASIS_SIDES.map((side) => () => { if (nextStasis < N) add(key, side, stasisRunSleep(side, idOf('s', nextStasis++))); }),
    () => { if (nextRunc < N) add(key, 'runc', runcRunSleep(idOf('r', nextRunc++))); },
    PODMAN && (() => { if (nextPodman < N) add(key, 'podman', podmanRunSleep(idOf('p', nextPodman++))); }),
    CTRD && (() => { if (nextCtr < N) add(key, 'ctr', ctrRunSleep(idOf('c', nextCtr++))); }),
  ]);
  for (let i = 0; i < REPS; i++) await runRound('run', i);

  // Fill up to N of each kind (N stasis containers in all, started by either build); timed too (an extra row).
  log(`starting containers up to ${N} of each kind`);
  for (let i = 0; nextStasis < N || nextRunc < N || nextPodman < (PODMAN ? N : 0) || nextCtr < (CTRD ? N : 0); i++) {
    await runRound('runFill', i);
    if (i % 25 === 0) log(`  ${nextStasis} stasis, ${nextRunc} runc${PODMAN ? `, ${nextPodman} podman` : ''}${CTRD ? `, ${nextCtr} ctr` : ''}`);
  }

  // 2b. ps with N containers of each kind.
  log(`ps with ${N} containers (${REPS} reps)`);
  for (let i = 0; i < REPS; i++) await round(i, psRow('psN', N));

  // 6. The monitor's resident memory, with N containers up.
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
    // ctr's monitor: one containerd-shim-runc-v2 per container (the shim of this containerd).
    if (CTRD) {
      ctrMemory = CTRD.shimMemory();
      if (ctrMemory?.count !== ctrIds.size) throw new Error(`${ctrMemory?.count ?? 0} containerd shims for ${ctrIds.size} ctr containers`);
    }
  }

  // 3. kill + delete, every container, interleaved (stasis's alternately by each build).
  log(`delete -f (${N} of each)`);
  {
    const s = [...stasisIds];
    const r = [...runcIds];
    const p = [...podmanIds];
    const c = [...ctrIds];
    let si = 0;
    for (let i = 0; i < Math.max(Math.ceil(s.length / STASIS_SIDES.length), r.length, p.length, c.length); i++) {
      await round(i, [
        ...STASIS_SIDES.map((side) => async () => {
          if (si >= s.length) return;
          const id = s[si++];
          // It must still be running (a `sleep 1000` outlives a normal run, not a very slow one).
          requireAlive(`stasis container ${id}`, path.join(SD, 'containers', id, 'pid'), (t) => Number(t));
          add('delete', side, timed(stasisOf(side)('delete', '-f', id)).ms);
          stasisIds.delete(id);
          await settle();
        }),
        () => {
          if (i >= r.length) return;
          requireAlive(`runc container ${r[i]}`, path.join(RR, r[i], 'state.json'), (t) => JSON.parse(t).init_process_pid);
          add('delete', 'runc', timed(runc('delete', '-f', r[i])).ms);
          runcIds.delete(r[i]);
        },
        PODMAN && (async () => {
          if (i >= p.length) return;
          add('delete', 'podman', timed(podman('rm', '-f', '-t', '0', p[i]), { env: PODMAN_ENV }).ms);
          podmanIds.delete(p[i]);
          await settle();
        }),
        CTRD && (() => {
          if (i >= c.length) return;
          requireAlive(`ctr container ${c[i]}`, CTRD.pidFile(c[i]), (t) => Number(t));
          add('delete', 'ctr', ctrDelete(c[i]));
        }),
      ]);
      if ((i + 1) % 50 === 0) log(`  ${i + 1} rounds`);
    }
  }

  // 4. checkpoint and restore of a fresh counter container per side and repetition.
  log(`checkpoint / restore (${CR_REPS} reps)`);
  for (let i = 0; i < CR_REPS; i++) {
    checkAbort();
    const rid = `${TAG}-cr-${i}`;
    const image = path.join(RAW_CP, rid);
    const sids = Object.fromEntries(STASIS_SIDES.map((side) => [side, `${TAG}-c${side[0]}-${i}`]));
    const pid = `${TAG}-cp-${i}`;
    for (const side of STASIS_SIDES) {
      stasisIds.add(sids[side]);
      timed(stasisOf(side)('run', '-d', sids[side], '--rootfs', ROOTFS, '--', 'sh', '-c', COUNTER));
    }
    let pipes = await anonymousPipes();
    runcIds.add(rid);
    timed(runcCriu('run', '-d', '--bundle', B_COUNT, rid), { stdio: [pipes.r, pipes.w, pipes.w] });
    pipes.close();
    rawPipes.set(rid, pipes.pgid);
    if (PODMAN) {
      podmanIds.add(pid);
      timed(podman('run', '-d', '--name', pid, 'localhost/busybox', 'sh', '-c', COUNTER), { env: PODMAN_ENV });
    }
    const cid = `${TAG}-cc-${i}`;
    const cref = `localhost/${CTR_NS}/checkpoint:${cid}`;
    if (CTRD) {
      ctrIds.add(cid);
      timed(CTRD.runArgs(cid, 'sh', '-c', COUNTER));
    }
    await sleepMs(500); // let the loops tick

    await round(i, [
      ...STASIS_SIDES.map((side) => () => add('checkpoint', side, timed(stasisOf(side)('checkpoint', sids[side])).ms)),
      () => add('checkpoint', 'runc', timed(runcCriu('checkpoint', '--image-path', image, rid)).ms),
      PODMAN && (() => add('checkpoint', 'podman', timed(podman('container', 'checkpoint', pid), { env: PODMAN_ENV }).ms)),
      // containerd's own checkpoint path, the one `ctr container restore`
      // takes (it refuses a `ctr task checkpoint` image: "image name not
      // found in index"; ctr has no other restore): the container
      // (spec, runtime and its options, image) and with --task its task's
      // CRIU images become an image REF in containerd's content store. The
      // task is paused, dumped and resumed: this command has no option to
      // stop it after the dump, as the other sides' checkpoints do.
      CTRD && (() => add('checkpoint', 'ctr', timed(ctr('container', 'checkpoint', '--task', cid, cref)).ms)),
    ]);
    if (CTRD) {
      // Untimed: ctr restores into a new container of the same ID, so the one still running goes first.
      timed(ctr('task', 'rm', '-f', cid));
      timed(ctr('container', 'rm', cid));
    }
    releasePipes(rawPipes.get(rid));
    pipes = await anonymousPipes(); // fresh pipes for the restored container
    rawPipes.set(rid, pipes.pgid);
    await settle();
    await round(i, [
      ...STASIS_SIDES.map((side) => () => add('restore', side, timed(stasisOf(side)('restore', sids[side])).ms)),
      () => add('restore', 'runc', timed(runcCriu('restore', '-d', '--image-path', image, '--bundle', B_COUNT, rid), { stdio: [pipes.r, pipes.w, pipes.w] }).ms),
      PODMAN && (() => add('restore', 'podman', timed(podman('container', 'restore', pid), { env: PODMAN_ENV }).ms)),
      // A new container from REF, its task created from the CRIU images and
      // started. The task's stdio are FIFOs (in /run/containerd/fifo) that
      // ctr copies from and to its own: `ctr container restore` has no
      // --null-io; it returns once the task has started.
      CTRD && (() => add('restore', 'ctr', timed(ctr('container', 'restore', '--live', cid, cref)).ms)),
    ]);
    pipes.close();

    // All must be running again.
    await sleepMs(300);
    for (const side of STASIS_SIDES) {
      const info = JSON.parse(timed(stasisNode('info', sids[side])).stdout);
      if (info.status !== 'running') throw new Error(`stasis container ${sids[side]} is ${info.status} after restore`);
    }
    const state = JSON.parse(timed(runc('state', rid)).stdout);
    if (state.status !== 'running') throw new Error(`runc container ${rid} is ${state.status} after restore`);
    if (PODMAN) {
      const status = timed(podman('inspect', '-f', '{{.State.Status}}', pid), { env: PODMAN_ENV }).stdout.trim();
      if (status !== 'running') throw new Error(`podman container ${pid} is ${status} after restore`);
    }
    if (CTRD) {
      const task = timed(ctr('task', 'ls')).stdout.split('\n').find((l) => l.split(/\s+/)[0] === cid);
      if (!task || CTRD.running(task) !== 1) throw new Error(`ctr task ${cid} is not running after restore: ${task ?? 'no task'}`);
    }

    for (const side of STASIS_SIDES) {
      timed(stasisNode('delete', '-f', sids[side]));
      stasisIds.delete(sids[side]);
    }
    timed(runc('delete', '-f', rid));
    runcIds.delete(rid);
    releasePipes(rawPipes.get(rid));
    rawPipes.delete(rid);
    if (PODMAN) {
      timed(podman('rm', '-f', '-t', '0', pid), { env: PODMAN_ENV });
      podmanIds.delete(pid);
    }
    if (CTRD) {
      ctrDelete(cid);
      timed(ctr('images', 'rm', cref));
    }
    await settle();
  }

  // 5. The exit hook: a container's init is killed (SIGKILL, from here), conmon runs
  // its exit command under the timer. podman's is `podman container cleanup`.
  log(`exit hook (${HOOK_REPS} reps)`);
  let podmanTimedEnv = null;
  if (PODMAN) {
    // A second configuration over the same storage, with conmon_path set to the wrapper.
    const conf = fs.readFileSync(PODMAN_ENV.CONTAINERS_CONF, 'utf8').replace('[engine]\n', `[engine]\nconmon_path = ["${CONMON_WRAPPER}"]\n`);
    const timedConf = path.join(PODMAN_DIR, 'containers-timed.conf');
    fs.writeFileSync(timedConf, conf);
    podmanTimedEnv = { ...PODMAN_ENV, CONTAINERS_CONF: timedConf };
  }
  for (let i = 0; i < HOOK_REPS; i++) {
    await round(i, [
      ...STASIS_SIDES.map((side) => async () => {
        const id = `${TAG}-h${side[0]}-${i}`;
        stasisRunSleep(side, id, { STASIS_CONMON: CONMON_WRAPPER });
        const before = hookLines().length;
        process.kill(Number(fs.readFileSync(path.join(SD, 'containers', id, 'pid'), 'utf8')), 'SIGKILL');
        const line = await waitFor(`the exit hook of ${id}`, () => hookLines().slice(before).find((h) => h.command.includes(` ${id} `)));
        if (line.status !== 0) throw new Error(`the exit hook of ${id} exited ${line.status}: ${line.command}`);
        (hooks[side] ??= []).push({ ms: line.us / 1000, rssMiB: line.rssKiB / 1024 });
        const info = JSON.parse(timed(stasisNode('info', id)).stdout);
        if (info.status !== 'stopped' || info.exit?.status !== 137) throw new Error(`after its hook, ${id} is ${info.status} (${JSON.stringify(info.exit)})`);
        timed(stasisNode('delete', id));
        stasisIds.delete(id);
      }),
      PODMAN && (async () => {
        const id = `${TAG}-hp-${i}`;
        podmanIds.add(id);
        timed(podman('run', '-d', '--name', id, 'localhost/busybox', 'sleep', '1000'), { env: podmanTimedEnv });
        const before = hookLines().length;
        const cpid = Number(timed(podman('inspect', '-f', '{{.State.Pid}}', id), { env: PODMAN_ENV }).stdout.trim());
        process.kill(cpid, 'SIGKILL');
        const line = await waitFor(`the exit hook of ${id}`, () => hookLines().slice(before).find((h) => h.command.includes('cleanup')));
        (hooks.podman ??= []).push({ ms: line.us / 1000, rssMiB: line.rssKiB / 1024 });
        timed(podman('rm', '-f', '-t', '0', id), { env: PODMAN_ENV });
        podmanIds.delete(id);
      }),
    ]);
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
  for (let i = 0; i < left.length; i += 50) quiet(stasisNode('delete', '-f', ...left.slice(i, i + 50)));
  // Anything stasis could not remove: its conmon, its runc container.
  for (const id of fs.existsSync(path.join(SD, 'containers')) ? fs.readdirSync(path.join(SD, 'containers')) : []) {
    try { process.kill(Number(fs.readFileSync(path.join(SD, 'containers', id, 'conmon.pid'), 'utf8')), 'SIGKILL'); } catch { /* none */ }
    quiet([RUNC, '--root', path.join(SD, 'runc'), 'delete', '-f', id]);
  }
  // Raw runc containers.
  if (fs.existsSync(RR)) {
    for (const id of quiet(runc('list', '-q')).stdout.split('\n').filter(Boolean)) quiet(runc('delete', '-f', id));
  }
  // podman: its containers and the image, in its private storage.
  if (PODMAN && PODMAN_ENV.CONTAINERS_CONF) {
    quiet(podman('rm', '-a', '-f', '-t', '0'), { env: PODMAN_ENV });
    quiet(podman('rmi', '-a', '-f'), { env: PODMAN_ENV });
  }
  // ctr: its tasks, containers and containerd itself (its mounts are in TMP, unmounted below).
  CTRD?.cleanup();
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
const fmtX = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
const med = (key, side) => median(samples[key]?.[side] ?? []);
const HOOK_KEYS = { ms: (side) => median((hooks[side] ?? []).map((h) => h.ms)), rss: (side) => median((hooks[side] ?? []).map((h) => h.rssMiB)) };

/** Targets, for the compiled stasis (the one users get). */
const TARGETS = {
  run: ['< 84 ms and <= 2.5x runc', (ms, r) => ms < 84 && r <= 2.5],
  ps1: ['< 25 ms', (ms) => ms < 25],
  psN: ['< 41 ms', (ms) => ms < 41],
  delete: ['< 57 ms', (ms) => ms < 57],
  checkpoint: ['<= 1.05x runc', (_, r) => r <= 1.05],
  restore: ['<= 1.1x runc', (_, r) => r <= 1.1],
};
const LABELS = {
  run: 'run -d (sleep 1000)',
  runFill: `run -d, while filling up to ${N} (extra)`,
  ps1: 'ps, 1 container',
  psN: `ps, ${N} containers`,
  delete: 'kill + delete (delete -f)',
  checkpoint: 'checkpoint (counter)',
  restore: 'restore (counter)',
  'floor-cli': 'floor: --version',
};
const main = STASIS_SIDES[0];
const head = ['row', ...SIDES.map((s) => s.name), ...SIDES.filter((s) => s.key !== 'runc').map((s) => `${s.key === 'bin' ? 'compiled' : s.key === 'node' ? 'Node' : s.name}/runc`), ...(HAVE_BIN ? ['compiled/Node'] : []), 'target', ''];
const rows = [];
for (const key of ['run', 'runFill', 'ps1', 'psN', 'delete', 'checkpoint', 'restore', 'floor-cli']) {
  if (!samples[key]) continue;
  const cells = [LABELS[key]];
  for (const s of SIDES) cells.push(`${fmtMs(med(key, s.key))} (${samples[key][s.key]?.length ?? 0})`);
  for (const s of SIDES.filter((x) => x.key !== 'runc')) cells.push(fmtX(med(key, s.key) / med(key, 'runc')));
  if (HAVE_BIN) cells.push(fmtX(med(key, 'bin') / med(key, 'node')));
  const t = TARGETS[key];
  cells.push(t ? t[0] : '');
  cells.push(t ? (t[1](med(key, main), med(key, main) / med(key, 'runc')) ? 'met' : 'MISSED') : '');
  rows.push(cells);
}
if (Object.keys(hooks).length > 0) {
  for (const [what, fmt, target, ok] of [
    ['exit hook: wall time', fmtMs, '<= 20 ms', (x) => x <= 20],
    ['exit hook: peak RSS', (x) => (Number.isFinite(x) ? `${x.toFixed(1)} MiB` : '-'), '<= 15 MB', (x) => x * 1.048576 <= 15],
  ]) {
    const get = what.endsWith('time') ? HOOK_KEYS.ms : HOOK_KEYS.rss;
    const cells = [what];
    // ctr: no exit hook (the shim reports the exit to containerd).
    for (const s of SIDES) cells.push(s.key === 'runc' ? 'no hook' : s.key === 'ctr' ? '-' : `${fmt(get(s.key))} (${hooks[s.key]?.length ?? 0})`);
    for (const s of SIDES.filter((x) => x.key !== 'runc')) cells.push('-');
    if (HAVE_BIN) cells.push(fmtX(get('bin') / get('node')));
    cells.push(target, ok(get(main)) ? 'met' : 'MISSED');
    rows.push(cells);
  }
}
if (memory) {
  const cells = [`monitor RSS per container (${memory.count} conmon)`];
  const mib = (m) => (m ? `${m.rssMiB.toFixed(2)} MiB` : '-');
  for (const s of SIDES) cells.push(s.key === 'runc' ? 'no monitor' : s.key === 'podman' ? '-' : s.key === 'ctr' ? `${mib(ctrMemory)} (shim)` : mib(memory));
  for (const s of SIDES.filter((x) => x.key !== 'runc')) cells.push('-');
  if (HAVE_BIN) cells.push('-');
  cells.push('<= 2.5 MiB (unchanged)', memory.rssMiB <= 2.5 ? 'met' : 'MISSED');
  rows.push(cells);
}
if (samples['floor-node']) {
  const cells = [`floor: node -e ''`];
  for (const s of SIDES) cells.push(s.key === 'node' ? fmtMs(med('floor-node', 'node')) : '-');
  while (cells.length < head.length) cells.push('');
  rows.push(cells);
}

const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const line = (cells) => `| ${cells.map((c, i) => (c ?? '').padEnd(widths[i])).join(' | ')} |`;
const out = [];
out.push(`stasis vs ${SIDES.filter((s) => !STASIS_SIDES.includes(s.key)).map((s) => s.name).join(', ').replace(/, ([^,]*)$/, ' and $1')}, ${env.date}`);
out.push(`machine: ${env.cpus} cores (${env.cpuModel}), ${env.memGiB} GiB, ${env.kernel}; node ${env.node}; bun ${env.bun ?? '-'}; runc ${env.runc}; conmon ${env.conmon}; criu ${env.criu}; podman ${env.podman ?? 'not installed'}; ctr ${env.ctr ?? 'not installed'}; stasis ${env.stasis}`);
out.push(`load average at start ${env.loadavgStart.join(' ')}, at end ${env.loadavgEnd.join(' ')}; wall time ${((Date.now() - started) / 1000).toFixed(0)} s`);
const script = path.relative(process.cwd(), process.argv[1]) || process.argv[1];
out.push(`command: cd ${process.cwd()} && ${show(['node', script.startsWith('..') ? process.argv[1] : script, ...process.argv.slice(2)])}   (node = ${NODE})`);
out.push('medians, (n) samples; targets are for the first stasis column');
out.push('');
out.push(line(head));
out.push(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of rows) out.push(line(r));
out.push('');
if (memory) out.push(`monitor PSS per container (shared pages split): ${memory.pssMiB.toFixed(2)} MiB${ctrMemory ? `; ctr's shim (containerd-shim-runc-v2, ${ctrMemory.count} of them): ${ctrMemory.pssMiB.toFixed(2)} MiB` : ''}`);
out.push('timed commands (ID, D, R, B, X stand for the container ID, the state dirs, the bundle and the image folder):');
out.push(`  stasis      ${show([STASIS_EXE, '--state-dir', 'D', '--checkpoint-dir', 'C', '--runc', RUNC, '--criu', CRIU, '...'])}  /  ${show([NODE, STASIS_JS, '...'])}`);
out.push(`  run -d      stasis ... run -d ID --rootfs ${ROOTFS} -- sleep 1000  vs  ${show([RUNC, '--root', 'R', 'run', '-d', '--bundle', 'B', 'ID'])} (stdio /dev/null)  vs  podman run -d --name ID localhost/busybox sleep 1000`);
out.push(`  ps          stasis ... ps  vs  runc --root R list  vs  podman ps -a`);
out.push(`  delete      stasis ... delete -f ID  vs  runc --root R delete -f ID  vs  podman rm -f -t 0 ID`);
out.push(`  checkpoint  stasis ... checkpoint ID  vs  runc --root R --criu ${CRIU} checkpoint --image-path X ID  vs  podman container checkpoint ID`);
out.push(`  restore     stasis ... restore ID  vs  runc ... restore -d --image-path X --bundle B ID (stdio: fresh anonymous pipes)  vs  podman container restore ID`);
if (CTRD) {
  out.push(`  ctr         ${show([CTR, '-a', 'SOCK', '-n', CTR_NS, '...'])} on a containerd of the bench's own (SOCK, state and runc root in the temp folder)`);
  out.push(`  ctr rows    run -d --null-io --runc-binary ${RUNC} --runc-root R IMAGE ID sleep 1000; task ls; task rm -f ID + container rm ID (together);`);
  out.push(`              container checkpoint --task ID REF (leaves it running; removed untimed); container restore --live ID REF; --version`);
}
out.push(`  exit hook   conmon's exit command (flock -w 600 SLOT stasis ... __exit ID INSTANCE; podman ... container cleanup ID) after a SIGKILL of the init, timed by bash's EPOCHREALTIME around GNU time (peak RSS)`);
out.push('spread (min-max, ms):');
for (const [key, bySide] of Object.entries(samples)) {
  const mm = (xs) => (xs?.length ? `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}` : '-');
  out.push(`  ${key.padEnd(11)} ${Object.entries(bySide).map(([side, xs]) => `${side} ${mm(xs)}`).join(', ')}`);
}
for (const [side, hs] of Object.entries(hooks)) {
  out.push(`  hook ${side}: ${Math.min(...hs.map((h) => h.ms)).toFixed(0)}-${Math.max(...hs.map((h) => h.ms)).toFixed(0)} ms, ${Math.min(...hs.map((h) => h.rssMiB)).toFixed(1)}-${Math.max(...hs.map((h) => h.rssMiB)).toFixed(1)} MiB`);
}
process.stdout.write(`${out.join('\n')}\n`);

if (opt.json) fs.writeFileSync(opt.json, `${JSON.stringify({ env, samples, hooks, memory, ctrMemory, failure: failure ? String(failure.message ?? failure) : null }, null, 2)}\n`);

if (failure) {
  process.stderr.write(`bench: FAILED: ${failure.stack ?? failure}\n`);
  process.exit(1);
}
