#!/usr/bin/env node
// Issue 19: how fast a full move streams, against tar | ssh | tar over the same
// sshd, and what --compress does for memory that compresses and memory that
// does not. One run, one ssh destination:
//
//   node bench/with-sshd.ts node bench/throughput.mjs [MIB ...] [--stasis PATH]
//        [--remote-stasis PATH] [--dest ssh://[USER@]HOST[:PORT]] [--rootfs DIR]
//        [--settle 300] [--json FILE] [--keep-tmp]
//
// Sizes default to 256 1024 (MiB of touched memory). For each size and each
// fill of bench/fixtures/ticker.c (random: xorshift output, which zstd cannot
// shrink; text: short key-value records back to back, which it can), on fresh
// containers with the same memory:
//   tar | ssh | tar     stasis checkpoint ID --leave-running --image-path DIR
//                       (untimed), then timed: tar -C DIR -cf - . | SSH 'tar -C X -xf -'
//   tar+zstd            the same folder, timed: ZSTD_CLEVEL=1 ZSTD_NBTHREADS=0
//                       tar -C DIR --zstd -cf - . | SSH 'tar -C X --zstd -xf -'
//                       (the compression --compress asks tar for)
//   migrate             stasis migrate ID DEST --rootfs B --json (the same container, after)
//   migrate --compress  the same on a fresh container with the same fill
// The rate of a move is its checkpoint's bytes over timingsMs.transfer (from
// the end of the dump until the destination has unpacked and checked it); a
// reference pipe's is the tar stream's bytes over the pipe's wall time. "on
// the wire" is what went into ssh (for --compress, the zstd stream the
// destination read; ssh's own framing and encryption not counted).
//
// The destination is reached with $STASIS_SSH (default `ssh`) exactly as
// stasis migrate reaches it: the same ssh words, and the data on a session of
// one master connection (`-M`, then `-S SOCKET -o ControlMaster=no`), which
// the bench opens for its own commands and pipes (migrate opens its own). The
// destination's stasis (--remote-stasis, default `stasis` on its PATH) gets a
// private --state-dir and --checkpoint-dir in a `mktemp -d` there, so that no
// checkpoint store there sends a move less than the whole checkpoint and
// nothing of another user's is touched. `sync` runs (untimed, both sides)
// before every timed step. One sample per row; MB = 10^6 bytes. Every
// container and folder it makes is removed at the end, on failure and Ctrl-C
// too. Needs root, runc, conmon, CRIU, gcc, GNU tar, zstd and the stasis CLI
// (default: dist/stasis of this checkout if built, else `stasis` on PATH).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { catchInterrupts, gapIn, nowMs, onPath, parseTicks, quote, run as runCommand, show, sleepMs } from './lib.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const started = Date.now();
const loadStart = os.loadavg();

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dest: { type: 'string', default: process.env.STASIS_MIGRATE_DEST ?? '' },
    stasis: { type: 'string' },
    'remote-stasis': { type: 'string', default: 'stasis' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    settle: { type: 'string', default: '300' },
    json: { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) {
  process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 38).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const die = (message) => { process.stderr.write(`throughput: ${message}\n`); process.exit(2); };
const log = (message) => process.stderr.write(`throughput: ${message}\n`);

const SIZES = (positionals.length ? positionals : ['256', '1024']).map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) die(`not a size in MiB: ${s}`);
  return n;
});
const SETTLE = Number(opt.settle);
if (!Number.isFinite(SETTLE) || SETTLE < 0) die('--settle must be a number of ms');
const STASIS = opt.stasis ?? (fs.existsSync(path.join(REPO, 'dist', 'stasis')) ? path.join(REPO, 'dist', 'stasis') : onPath('stasis'));
const SSH = (process.env.STASIS_SSH ?? 'ssh').split(/\s+/).filter(Boolean);
const m = /^ssh:\/\/(?:([^@/]+)@)?([^:/]+)(?::(\d+))?\/?$/.exec(opt.dest);
if (!m) die(`--dest (or STASIS_MIGRATE_DEST) must be ssh://[USER@]HOST[:PORT]: ${JSON.stringify(opt.dest)} (run it under node bench/with-sshd.ts)`);
const [, USER, HOST, PORT] = m;
const TARGET = USER ? `${USER}@${HOST}` : HOST;
const RSTASIS = opt['remote-stasis'];
if (/\s/.test(RSTASIS)) die('--remote-stasis: one path, no spaces');
if (process.getuid?.() !== 0) die('run as root: containers need it');

// ------------------------------------------------------------------ helpers (as in bench/migrate.mjs)

const { interrupted, checkAbort } = catchInterrupts();
/** Runs argv to completion (lib.mjs's run, with up to 15 minutes a command). */
const run = (argv, opts = {}) => runCommand(argv, { timeout: 900_000, ...opts });
const quiet = (argv, opts = {}) => run(argv, { ...opts, check: false });

/** Bytes in the files under dir (what a checkpoint folder holds). */
function folderBytes(dir) {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += folderBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

// ------------------------------------------------------------------ the two sides

const TAG = `tp${process.pid.toString(36)}`;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-tpbench-'));
const BASE_A = path.join(TMP, 'rootfs-A');
const SRC_SD = path.join(TMP, 'src-state');
const SRC_CP = path.join(TMP, 'src-checkpoints');
const CKPTS = path.join(TMP, 'ckpt');
const CTL = path.join(TMP, 'ssh-control');

const src = {
  stasis: (...args) => [STASIS, '--state-dir', SRC_SD, '--checkpoint-dir', SRC_CP, ...args],
  ids: new Set(),
};

// One master connection, opened as stasis's peer opens its own (src/migrate/peer.ts).
const sshArgs = (extra) => [...SSH.slice(1), '-S', CTL, ...(PORT ? ['-p', PORT] : []), ...extra];
/** argv that runs argv (one shell line) there, on a session of the master. */
const remote = (argv) => [SSH[0], ...sshArgs(['-o', 'ControlMaster=no', '-T', TARGET, '--', show(argv)])];
let master = null;
async function openMaster() {
  master = spawn(SSH[0], sshArgs(['-M', '-N', '-o', 'ControlPersist=no', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3', TARGET]), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  master.stderr.on('data', (d) => { err += d; });
  for (let waited = 0; waited < 30_000; waited += 100) {
    if (master.exitCode !== null) throw new Error(`ssh master to ${opt.dest} exited: ${err.trim()}`);
    if (quiet([SSH[0], ...sshArgs(['-O', 'check', TARGET])]).status === 0) return;
    await sleepMs(100);
  }
  throw new Error(`ssh master to ${opt.dest}: no answer in 30 s: ${err.trim()}`);
}
function closeMaster() {
  if (master === null || master.exitCode !== null) return;
  quiet([SSH[0], ...sshArgs(['-O', 'exit', TARGET])]);
  if (master.exitCode === null) { try { process.kill(master.pid, 'SIGTERM'); } catch { /* gone */ } }
}

const dst = {
  tmp: null,
  base: null,
  /** The destination's stasis with its private state and checkpoint folders: the words for --remote-stasis too. */
  words: () => [RSTASIS, '--state-dir', `${dst.tmp}/state`, '--checkpoint-dir', `${dst.tmp}/checkpoints`],
  stasis: (...args) => remote([...dst.words(), ...args]),
  ids: new Set(),
  setup() {
    dst.tmp = run(remote(['mktemp', '-d', '/tmp/stasis-tpbench-XXXXXX'])).stdout.trim();
    if (!dst.tmp.startsWith('/tmp/stasis-tpbench-')) throw new Error(`remote mktemp gave ${JSON.stringify(dst.tmp)}`);
    dst.base = `${dst.tmp}/rootfs-B`;
    run(remote(['mkdir', '-p', dst.base, `${dst.tmp}/state`, `${dst.tmp}/checkpoints`, `${dst.tmp}/in`]));
    run(['bash', '-c', `set -o pipefail; tar -C ${quote(BASE_A)} -cf - . | ${show(remote(['tar', '-C', dst.base, '-xf', '-']))}`]);
  },
  teardown() {
    if (!dst.tmp) return;
    // Containers the bench lost track of (a move killed half-way), then mounts, then the folder.
    const left = quiet(remote(['ls', '-A', `${dst.tmp}/state/containers`])).stdout.split('\n').filter((n) => n && !n.startsWith('.'));
    for (const id of left) quiet(dst.stasis('delete', '-f', id));
    const t = dst.tmp;
    quiet(remote(['sh', '-c', `awk '{print $5}' /proc/self/mountinfo | grep '^${t}/' | sort -r | while read -r m; do umount -l "$m"; done; rm -rf --one-file-system ${t}`]));
  },
};

// ------------------------------------------------------------------ the measurements

/** Starts the ticker with `mib` MiB filled as `fill` on the source; waits until it ticks. */
async function startTicker(id, mib, fill) {
  src.ids.add(id);
  run(src.stasis('run', '-d', id, '--rootfs', BASE_A, '--', '/ticker', String(mib), '/ticks', '/ready', fill));
  const upper = path.join(JSON.parse(run(src.stasis('info', '--json', id)).stdout).stateDir, 'upper');
  const deadline = Date.now() + 120_000 + mib * 100;
  let last = -1;
  let growing = 0;
  while (growing < 3) {
    checkAbort();
    if (Date.now() > deadline) throw new Error(`${id}: the ticker did not fill ${mib} MiB and start ticking in time (logs: ${quiet(src.stasis('logs', id)).stdout.trim()})`);
    await sleepMs(50);
    if (!fs.existsSync(path.join(upper, 'ready'))) continue;
    const size = fs.existsSync(path.join(upper, 'ticks')) ? fs.statSync(path.join(upper, 'ticks')).size : 0;
    growing = size > last && last >= 0 ? growing + 1 : 0;
    last = size;
  }
  syncBoth();
  await sleepMs(500); // a baseline of ticks before the move
}
/** Untimed: what earlier steps left dirty is written back on both sides, so no step pays for another's. */
function syncBoth() {
  run(['sync']);
  run(remote(['sync']));
}

/** The reference pipes over the master, from a checkpoint folder of the running container. */
async function referencePipes(id, mib, fill) {
  const dir = path.join(CKPTS, id);
  const cp = run(src.stasis('checkpoint', id, '--leave-running', '--image-path', dir));
  const rows = [];
  try {
    const raw = folderBytes(dir);
    for (const how of ['tar', 'tar+zstd']) {
      checkAbort();
      const there = `${dst.tmp}/in/${id}-${how}`;
      const zstd = how === 'tar+zstd';
      // What goes into ssh, counted in an untimed pass (GNU tar's --totals counts the tar stream before zstd).
      const wire = Number(run(['bash', '-c', `set -o pipefail; tar -C ${quote(dir)} ${zstd ? '--zstd ' : ''}-cf - . | wc -c`], { env: zstd ? { ZSTD_CLEVEL: '1', ZSTD_NBTHREADS: '0' } : undefined }).stdout.trim());
      syncBoth();
      run(remote(['mkdir', there]));
      const line = `set -o pipefail; tar -C ${quote(dir)} ${zstd ? '--zstd ' : ''}--totals -cf - . | ${show(remote(['tar', '-C', there, ...(zstd ? ['--zstd'] : []), '-xf', '-']))}`;
      const r = run(['bash', '-c', line], { env: zstd ? { ZSTD_CLEVEL: '1', ZSTD_NBTHREADS: '0' } : undefined });
      const tarBytes = Number(/Total bytes written: (\d+)/.exec(r.stderr)?.[1] ?? NaN);
      rows.push({ mib, fill, how, command: line, checkpointMs: cp.ms, folderBytes: raw, streamBytes: tarBytes, wireBytes: wire, transferMs: r.ms });
      run(remote(['rm', '-rf', '--one-file-system', there]));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** stasis migrate of the running container `id` (fresh, or after its reference pipes); returns a row. */
async function migrate(id, mib, fill, compress) {
  syncBoth();
  const argv = src.stasis('migrate', id, opt.dest, '--rootfs', dst.base, '--remote-stasis', dst.words().join(' '), '--json', ...(compress ? ['--compress'] : []));
  dst.ids.add(id);
  const t0 = nowMs();
  const r = run(argv, { env: { STASIS_SSH: SSH.join(' ') } });
  const t1 = nowMs();
  let rep;
  try {
    rep = JSON.parse(r.stdout);
  } catch {
    throw new Error(`stasis migrate --json printed no JSON: ${r.stdout.slice(0, 300)}`);
  }
  src.ids.delete(id);
  const row = {
    mib, fill, how: compress ? 'migrate --compress' : 'migrate', command: show(argv),
    wireBytes: Number(rep.bytes), transferMs: Number(rep.timingsMs?.transfer), downtimeMs: Number(rep.downtimeMs), totalMs: Number(rep.totalMs),
    timingsMs: rep.timingsMs, compressed: rep.compressed, fromStore: rep.fromStore, wallMs: t1 - t0, warnings: rep.warnings,
  };
  await sleepMs(SETTLE + 50);
  const ticks = parseTicks(run(dst.stasis('exec', id, '--', 'cat', '/ticks')).stdout);
  const g = gapIn(ticks, t0, t1 + SETTLE);
  if (g.before && g.after) row.appDowntimeMs = g.maxMs;
  else row.appNote = !g.before ? 'no tick from before the move there' : 'no tick after the move there';
  quiet(dst.stasis('delete', '-f', id));
  dst.ids.delete(id);
  return row;
}

// ------------------------------------------------------------------ run

const rows = [];
let failure = null;
const stasisVersion = quiet([STASIS, '--version']).stdout.trim() || 'unknown';
let remoteVersion = 'unknown';
try {
  fs.cpSync(opt.rootfs, BASE_A, { recursive: true, verbatimSymlinks: true });
  run(['gcc', '-O2', '-static', '-o', path.join(BASE_A, 'ticker'), path.join(REPO, 'bench', 'fixtures', 'ticker.c')]);
  fs.mkdirSync(CKPTS, { recursive: true });
  await openMaster();
  dst.setup();
  remoteVersion = quiet(dst.stasis('--version')).stdout.trim() || 'unknown';
  for (const mib of SIZES) {
    for (const fill of ['random', 'text']) {
      for (const compress of [false, true]) {
        checkAbort();
        const id = `${TAG}-${mib}-${fill}${compress ? '-z' : ''}`;
        log(`${mib} MiB, ${fill}, ${compress ? 'migrate --compress' : 'reference pipes, then migrate'}`);
        try {
          await startTicker(id, mib, fill);
          if (!compress) {
            for (const row of await referencePipes(id, mib, fill)) {
              rows.push(row);
              log(`  ${row.how}: ${(row.wireBytes / 1e6).toFixed(1)} MB in ${row.transferMs.toFixed(0)} ms`);
            }
          }
          checkAbort();
          const row = await migrate(id, mib, fill, compress);
          rows.push(row);
          log(`  ${row.how}: ${(row.wireBytes / 1e6).toFixed(1)} MB, transfer ${row.transferMs} ms, downtime ${row.downtimeMs} ms`);
        } catch (err) {
          if (interrupted()) throw err;
          const error = String(err.message ?? err);
          rows.push({ mib, fill, how: compress ? 'migrate --compress' : 'migrate', error });
          log(`  FAILED: ${error}`);
          removeAll();
        }
      }
    }
  }
} catch (err) {
  failure = err;
} finally {
  cleanup();
}

/** Deletes (-f) every container the bench started or moved, on both sides. */
function removeAll() {
  for (const id of dst.ids) quiet(dst.stasis('delete', '-f', id));
  dst.ids.clear();
  for (const id of src.ids) quiet(src.stasis('delete', '-f', id));
  src.ids.clear();
  fs.rmSync(SRC_CP, { recursive: true, force: true });
  fs.rmSync(CKPTS, { recursive: true, force: true });
  fs.mkdirSync(CKPTS, { recursive: true });
}

function cleanup() {
  log('cleaning up');
  removeAll();
  const dir = path.join(SRC_SD, 'containers');
  if (fs.existsSync(dir)) {
    for (const id of fs.readdirSync(dir).filter((n) => !n.startsWith('.'))) {
      quiet(src.stasis('delete', '-f', id));
      if (!fs.existsSync(path.join(dir, id))) continue;
      try { process.kill(Number(fs.readFileSync(path.join(dir, id, 'conmon.pid'), 'utf8')), 'SIGKILL'); } catch { /* none */ }
      quiet(['runc', '--root', path.join(SRC_SD, 'runc'), 'delete', '-f', id]);
    }
  }
  if (master !== null && master.exitCode === null) dst.teardown();
  closeMaster();
  if (opt['keep-tmp']) return log(`kept ${TMP}`);
  // Never rm -rf through a mount point.
  const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((p) => p && p.startsWith(`${TMP}/`));
  for (const p of mounts().reverse()) quiet(['umount', '-l', p]);
  if (mounts().length === 0) fs.rmSync(TMP, { recursive: true, force: true });
  else log(`left ${TMP} in place: still mounted: ${mounts().join(', ')}`);
}

// ------------------------------------------------------------------ report

const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const mbps = (bytes, ms) => (Number.isFinite(bytes) && ms > 0 ? bytes / 1e3 / ms : NaN);
const find = (mib, fill, how) => rows.find((r) => r.mib === mib && r.fill === fill && r.how === how && !r.error);
/**
 * The uncompressed bytes a row moved: a pipe's tar stream (GNU tar's --totals,
 * before zstd), a plain move's count; for --compress, the plain move's of the
 * same size and fill (the same memory), else the tar stream's.
 */
const rawBytes = (r) => {
  if (r.how === 'tar' || r.how === 'tar+zstd') return r.streamBytes;
  if (r.how === 'migrate') return r.wireBytes;
  return find(r.mib, r.fill, 'migrate')?.wireBytes ?? find(r.mib, r.fill, 'tar')?.streamBytes ?? NaN;
};
const REF = { migrate: 'tar', 'migrate --compress': 'tar+zstd', tar: null, 'tar+zstd': null };
const LABEL = { tar: 'tar \\| ssh \\| tar', 'tar+zstd': 'tar --zstd \\| ssh \\| tar --zstd', migrate: 'migrate', 'migrate --compress': 'migrate --compress' };

const head = ['touched', 'memory', 'how', 'on the wire', 'transfer', 'MB/s (checkpoint MB / transfer)', 'vs the pipe', 'downtime (reported / app)', 'total'];
const table = [];
const summary = [];
for (const mib of SIZES) {
  for (const fill of ['random', 'text']) {
    for (const how of ['tar', 'migrate', 'tar+zstd', 'migrate --compress']) {
      const r = rows.find((x) => x.mib === mib && x.fill === fill && x.how === how);
      if (!r) continue;
      if (r.error) { table.push([`${mib} MiB`, fill, LABEL[how], 'FAILED', '-', '-', '-', '-', r.error.split('\n')[0].replaceAll('|', '/').slice(0, 160)]); continue; }
      const raw = rawBytes(r);
      const rate = mbps(raw, r.transferMs);
      const ref = REF[how] ? find(mib, fill, REF[how]) : null;
      const ratio = ref ? rate / mbps(rawBytes(ref), ref.transferMs) : NaN;
      r.rateMBps = rate;
      if (ref) r.vsPipe = ratio;
      const isMove = how.startsWith('migrate');
      table.push([
        `${mib} MiB`, fill, LABEL[how],
        `${fmt(r.wireBytes / 1e6, 1)} MB${raw > 0 && how.includes('z') ? ` (${fmt(raw / r.wireBytes, 1)}x)` : ''}`,
        `${fmt(r.transferMs)} ms`, fmt(rate), ref ? `${fmt(ratio, 2)}x` : '-',
        isMove ? `${fmt(r.downtimeMs)} / ${fmt(r.appDowntimeMs)} ms` : '-',
        isMove ? `${fmt(r.totalMs)} ms` : '-',
      ]);
    }
    const plain = find(mib, fill, 'migrate');
    const z = find(mib, fill, 'migrate --compress');
    if (plain && z) {
      summary.push(`${mib} MiB ${fill}: --compress moved ${fmt(z.wireBytes / 1e6, 1)} MB instead of ${fmt(plain.wireBytes / 1e6, 1)}; transfer ${fmt(z.transferMs)} vs ${fmt(plain.transferMs)} ms (${fmt(z.transferMs / plain.transferMs, 2)}x), downtime ${fmt(z.downtimeMs)} vs ${fmt(plain.downtimeMs)} ms (${fmt(z.downtimeMs / plain.downtimeMs, 2)}x)`);
    }
  }
}
const target = rows.filter((r) => r.how === 'migrate' && Number.isFinite(r.vsPipe));

const out = [];
const script = path.relative(process.cwd(), process.argv[1]) || process.argv[1];
out.push(`stasis: full-move throughput over ssh, ${new Date(started).toISOString()}`);
out.push(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}; node ${process.version}; stasis ${STASIS} (${stasisVersion}${STASIS.startsWith(REPO) ? `, commit ${quiet(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.trim()}` : ''}); there: ${RSTASIS} (${remoteVersion})`);
out.push(`destination: ${opt.dest} (ssh: ${SSH.join(' ')}); load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; wall time ${((Date.now() - started) / 1000).toFixed(0)} s`);
out.push(`command: cd ${process.cwd()} && ${show(['node', script.startsWith('..') ? process.argv[1] : script, ...process.argv.slice(2)])}`);
out.push('one sample each; MB = 10^6 bytes; transfer: a move\'s timingsMs.transfer, a pipe\'s wall time; "vs the pipe": migrate against tar | ssh | tar, --compress against tar --zstd | ssh | tar --zstd, same memory');
out.push('');
out.push(`| ${head.join(' | ')} |`);
out.push(`|${head.map(() => '---').join('|')}|`);
for (const r of table) out.push(`| ${r.join(' | ')} |`);
out.push('');
for (const s of summary) out.push(s);
if (target.length > 0) out.push(`target (issue 19): migrate >= 0.9x of tar | ssh | tar: ${target.map((r) => `${r.mib} MiB ${r.fill} ${fmt(r.vsPipe, 2)}x`).join(', ')}: ${target.every((r) => r.vsPipe >= 0.9) ? 'met' : 'MISSED'}`);
else out.push('target (issue 19): migrate >= 0.9x of tar | ssh | tar: not measured');
const stored = rows.filter((r) => r.fromStore > 0);
if (stored.length > 0) out.push(`NOTE: the destination's store gave chunks to ${stored.map((r) => `${r.mib}/${r.fill}/${r.how}`).join(', ')}: those moves sent less than the checkpoint`);
process.stdout.write(`${out.join('\n')}\n`);

if (opt.json) fs.writeFileSync(opt.json, `${JSON.stringify({ date: new Date(started).toISOString(), stasis: STASIS, stasisVersion, remoteStasis: RSTASIS, remoteVersion, dest: opt.dest, ssh: SSH, loadStart, loadEnd: os.loadavg(), rows, failure: failure ? String(failure.message ?? failure) : null }, null, 2)}\n`);
const failedRows = rows.filter((r) => r.error).length;
if (failure) {
  process.stderr.write(`throughput: FAILED: ${failure.stack ?? failure}\n`);
  process.exit(1);
}
if (failedRows > 0) {
  process.stderr.write(`throughput: ${failedRows} row(s) FAILED (above)\n`);
  process.exit(1);
}
