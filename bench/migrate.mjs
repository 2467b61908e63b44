#!/usr/bin/env node
// Moving a running container to another state directory (a "host"): the
// downtime the application sees and the total time, in one run on one machine.
//
//   sudo node bench/migrate.mjs [MIB ...] [--modes manual,migrate,lazy] [--reps 1]
//                               [--dest DIR|ssh://[USER@]HOST[:PORT][/STATE_DIR]]
//                               [--stasis PATH] [--remote-stasis PATH] [--rootfs DIR]
//                               [--settle 300] [--json FILE] [--keep-tmp] [--stasis-debug]
//
// Sizes default to 64 256 1024 (MiB of touched memory). The container runs
// bench/fixtures/ticker.c (built here with gcc -O2 -static into a copy of the
// rootfs), which fills MIB MiB with pseudo-random bytes and then appends its
// CLOCK_REALTIME time to /ticks every millisecond, touching a few random pages
// each time. The largest gap between two ticks in [move start, move end +
// settle] is the downtime as the application saw it. Modes:
//   manual       stasis checkpoint ID --export F.tar; cp F DEST/; stasis --state-dir DEST restore ID --checkpoint F --rootfs B
//   manual-zstd  the same with F.tar.zst (not in the default list)
//   migrate      stasis migrate ID DEST --rootfs B --json
//   lazy         stasis migrate ID DEST --rootfs B --json --lazy
//   precopy      stasis migrate ID DEST --rootfs B --json --precopy
// migrate and lazy print "not available" rows when `stasis migrate --help`
// does not describe a migrate command. The source runs on rootfs copy A, the
// destination restores onto copy B (same content, another path). DEST defaults
// to a private state dir next to the source's (same mount namespace; each
// container has its own network namespace). With --dest ssh://..., or
// STASIS_MIGRATE_DEST, the destination is reached with $STASIS_SSH (default
// `ssh`; passed through to stasis migrate too): the bench copies B there into a
// `mktemp -d`, runs the remote stasis through ssh and reads /ticks with
// `stasis exec ID -- cat /ticks`.
//
// Before each move the bench runs `sync` (untimed, on both sides), so that no
// move pays for the writeback of the one before. One sample per row unless
// --reps (then medians). MB are 10^6 bytes. Every container it starts is
// deleted (-f) at the end, on failure and Ctrl-C too. --stasis-debug runs each
// move with --debug and keeps its timed debug lines in the JSON (rows[].debug).
// Needs root, runc, conmon, CRIU, gcc and the stasis CLI (default: dist/stasis of
// this checkout if built, else `stasis` on PATH).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { catchInterrupts, gapIn, nowMs, onPath, parseTicks, quiet, quote, run, show, sleepMs } from './lib.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const started = Date.now();
const loadStart = os.loadavg();

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    modes: { type: 'string', default: 'manual,migrate,lazy,precopy' },
    reps: { type: 'string', default: '1' },
    dest: { type: 'string', default: process.env.STASIS_MIGRATE_DEST ?? '' },
    stasis: { type: 'string' },
    'remote-stasis': { type: 'string', default: 'stasis' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    settle: { type: 'string', default: '300' },
    json: { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    'stasis-debug': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) {
  process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 36).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const die = (message) => { process.stderr.write(`migrate-bench: ${message}\n`); process.exit(2); };
const log = (message) => process.stderr.write(`migrate-bench: ${message}\n`);

const SIZES = (positionals.length ? positionals : ['64', '256', '1024']).map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) die(`not a size in MiB: ${s}`);
  return n;
});
const ALL_MODES = ['manual', 'manual-zstd', 'migrate', 'lazy', 'precopy'];
const MODES = opt.modes.split(',').map((m) => m.trim()).filter(Boolean);
for (const m of MODES) if (!ALL_MODES.includes(m)) die(`unknown mode ${m} (${ALL_MODES.join(', ')})`);
const REPS = Number(opt.reps);
const SETTLE = Number(opt.settle);
if (!Number.isInteger(REPS) || REPS < 1) die('--reps must be a positive integer');
if (!Number.isFinite(SETTLE) || SETTLE < 0) die('--settle must be a number of ms');
const STASIS = opt.stasis ?? (fs.existsSync(path.join(REPO, 'dist', 'stasis')) ? path.join(REPO, 'dist', 'stasis') : onPath('stasis'));
const SSH = (process.env.STASIS_SSH ?? 'ssh').split(/\s+/).filter(Boolean);
if (process.getuid?.() !== 0) die('run as root: containers need it');

// ------------------------------------------------------------------ helpers

const { interrupted, checkAbort } = catchInterrupts();

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ------------------------------------------------------------------ the two sides

const TAG = `mb${process.pid.toString(36)}`;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-mbench-'));
const BASE_A = path.join(TMP, 'rootfs-A');
const BASE_B = path.join(TMP, 'rootfs-B');
const SRC_SD = path.join(TMP, 'src-state');
const SRC_CP = path.join(TMP, 'src-checkpoints');
const EXPORTS = path.join(TMP, 'exports');

const src = {
  name: 'source',
  stasis: (...args) => [STASIS, '--state-dir', SRC_SD, '--checkpoint-dir', SRC_CP, ...args],
  ids: new Set(),
};

/** The destination: a local state dir, or a host reached by ssh. */
function makeDestination(spec) {
  if (!spec.startsWith('ssh://')) {
    // A state dir on this host: a private one in the temp folder unless named.
    if (spec && !path.isAbsolute(spec)) die(`--dest must be an absolute path or ssh://...: ${spec}`);
    const sd = spec || path.join(TMP, 'dst-state');
    const cp = path.join(TMP, 'dst-checkpoints');
    const inbox = path.join(TMP, 'dst-inbox');
    fs.mkdirSync(inbox, { recursive: true });
    return {
      name: 'destination', kind: 'local', private: !spec, migrateDest: sd, stateDir: sd, base: BASE_B, inbox,
      stasis: (...args) => [STASIS, '--state-dir', sd, '--checkpoint-dir', cp, ...args],
      exec: (argv, o) => run(argv, o),
      setup() { fs.cpSync(BASE_A, BASE_B, { recursive: true, verbatimSymlinks: true }); },
      put: (file) => {
        const to = path.join(inbox, path.basename(file));
        return { ms: run(['cp', file, to]).ms, path: to };
      },
      rm: (p) => fs.rmSync(p, { force: true }),
      ticks(id) {
        // The ticks file is in the container's writable layer: read it there (no exec).
        const info = JSON.parse(run(this.stasis('info', '--json', id)).stdout);
        const file = info.stateDir ? path.join(info.stateDir, 'upper', 'ticks') : null;
        if (file && fs.existsSync(file)) return fs.readFileSync(file, 'utf8');
        return run(this.stasis('exec', id, '--', 'cat', '/ticks')).stdout;
      },
      ids: new Set(),
      teardown() {},
    };
  }
  const m = /^ssh:\/\/(?:([^@/]+)@)?([^:/]+)(?::(\d+))?(\/.*)?$/.exec(spec);
  if (!m) die(`--dest: not ssh://[USER@]HOST[:PORT][/STATE_DIR]: ${spec}`);
  const [, user, host, port, stateDir] = m;
  const target = [...(port ? ['-p', port] : []), user ? `${user}@${host}` : host];
  const remote = (argv) => [...SSH, ...target, show(argv)];
  const rstasis = opt['remote-stasis'];
  const d = {
    name: 'destination', kind: 'ssh', migrateDest: spec, stateDir: stateDir ?? null, base: null, inbox: null, tmp: null,
    stasis: (...args) => [rstasis, ...(stateDir ? ['--state-dir', stateDir] : []), ...(d.tmp ? ['--checkpoint-dir', `${d.tmp}/checkpoints`] : []), ...args],
    exec: (argv, o) => run(remote(argv), o),
    setup() {
      d.tmp = run(remote(['mktemp', '-d', '/tmp/stasis-mbench-XXXXXX'])).stdout.trim();
      if (!d.tmp.startsWith('/tmp/stasis-mbench-')) throw new Error(`remote mktemp gave ${JSON.stringify(d.tmp)}`);
      d.base = `${d.tmp}/rootfs-B`;
      d.inbox = `${d.tmp}/inbox`;
      run(remote(['mkdir', '-p', d.base, d.inbox]));
      const tar = path.join(TMP, 'rootfs.tar');
      run(['tar', '-C', BASE_A, '-cf', tar, '.']);
      run([...SSH, ...target, show(['tar', '-C', d.base, '-xf', '-'])], { stdinFile: tar });
      fs.rmSync(tar);
    },
    put(file) {
      const to = `${d.inbox}/${path.basename(file)}`;
      return { ms: run([...SSH, ...target, `cat > ${quote(to)}`], { stdinFile: file }).ms, path: to };
    },
    rm: (p) => quiet(remote(['rm', '-f', p])),
    ticks: (id) => run(d.stasis('exec', id, '--', 'cat', '/ticks')).stdout,
    ids: new Set(),
    teardown() { if (d.tmp) quiet(remote(['rm', '-rf', '--one-file-system', d.tmp])); },
  };
  return d;
}
const dst = makeDestination(opt.dest);

/** Does this stasis have a migrate command? (Unknown commands print the general help, status 0.) */
function migrateAvailable() {
  const r = quiet([STASIS, 'migrate', '--help']);
  return r.status === 0 && /^stasis migrate\b/m.test(r.stdout);
}

// ------------------------------------------------------------------ one move

/** Starts the ticker with `mib` MiB on the source and waits until it is filled and ticking. */
async function startTicker(id, mib) {
  src.ids.add(id);
  run(src.stasis('run', '-d', id, '--rootfs', BASE_A, '--', '/ticker', String(mib), '/ticks', '/ready'));
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
  // Untimed: write back what earlier rows (and the fill) left dirty, so that a
  // move does not pay for the previous one's writeback.
  run(['sync']);
  if (dst.kind === 'ssh') dst.exec(['sync']);
  await sleepMs(500); // a baseline of ticks before the move
}

/** One move of `mib` MiB by `mode`; returns a row. */
async function measure(mib, mode, rep, haveMigrate) {
  const row = { mib, mode, rep };
  if ((mode === 'migrate' || mode === 'lazy' || mode === 'precopy') && !haveMigrate) return { ...row, unavailable: true };
  const id = `${TAG}-${mib}-${mode}-${rep}`;
  await startTicker(id, mib);
  checkAbort();
  let t0;
  let t1;
  if (mode === 'manual' || mode === 'manual-zstd') {
    const file = path.join(EXPORTS, `${id}.${mode === 'manual' ? 'tar' : 'tar.zst'}`);
    t0 = nowMs();
    const cp = run(src.stasis('checkpoint', id, '--export', file));
    const put = dst.put(file);
    dst.ids.add(id);
    const rs = dst.exec(dst.stasis('restore', id, '--checkpoint', put.path, '--rootfs', dst.base));
    t1 = nowMs();
    row.bytes = fs.statSync(file).size;
    row.steps = { checkpointMs: cp.ms, copyMs: put.ms, restoreMs: rs.ms };
    fs.rmSync(file, { force: true });
    dst.rm(put.path);
  } else {
    const argv = src.stasis('migrate', id, dst.migrateDest, '--rootfs', dst.base, '--json', ...(opt['stasis-debug'] ? ['--debug'] : []), ...(mode === 'lazy' ? ['--lazy'] : mode === 'precopy' ? ['--precopy'] : []));
    row.command = show(argv);
    dst.ids.add(id);
    t0 = nowMs();
    const r = run(argv);
    t1 = nowMs();
    try {
      row.reported = JSON.parse(r.stdout);
    } catch {
      throw new Error(`stasis migrate --json printed no JSON: ${r.stdout.slice(0, 300)}`);
    }
    row.bytes = Number(row.reported.bytes);
    // --stasis-debug: the move's own timed steps (its --debug lines), kept in the JSON.
    if (opt['stasis-debug']) row.debug = r.stderr.split('\n').filter((l) => l.includes('debug:'));
    if (typeof row.reported.id === 'string' && row.reported.id !== id) {
      // (The bench passes no --name; follow the ID migrate reports anyway.)
      dst.ids.delete(id);
      dst.ids.add(row.reported.id);
    }
  }
  const destId = row.reported?.id && typeof row.reported.id === 'string' ? row.reported.id : id;
  row.totalMs = t1 - t0;
  await sleepMs(SETTLE + 50); // let it run on the destination
  checkAbort();
  const ticks = parseTicks(dst.ticks(destId));
  const g = gapIn(ticks, t0, t1 + SETTLE);
  if (!g.before) throw new Error(`${id}: the destination's /ticks has no tick from before the move (did the rw layer move?)`);
  if (!g.after) throw new Error(`${id}: no tick later than ${SETTLE} ms after the move: the container is not running on the destination`);
  row.downtimeMs = g.maxMs;
  row.slowGaps = g.over10;
  row.baselineMs = gapIn(ticks, t0 - 500, t0).maxMs; // the largest gap in the 500 ms before the move
  const st = quiet(dst.stasis('info', '--json', destId));
  row.destStatus = st.status === 0 ? JSON.parse(st.stdout).status : 'unknown';
  // Done with it: both sides' records.
  quiet(dst.stasis('delete', '-f', destId));
  dst.ids.delete(destId);
  quiet(src.stasis('delete', '-f', id));
  src.ids.delete(id);
  fs.rmSync(path.join(SRC_CP, id), { recursive: true, force: true }); // the source's image folder
  return row;
}

// ------------------------------------------------------------------ run

const rows = [];
let failure = null;
let haveMigrate = false;
const stasisVersion = quiet([STASIS, '--version']).stdout.trim() || 'unknown';
try {
  fs.cpSync(opt.rootfs, BASE_A, { recursive: true, verbatimSymlinks: true });
  run(['gcc', '-O2', '-static', '-o', path.join(BASE_A, 'ticker'), path.join(REPO, 'bench', 'fixtures', 'ticker.c')]);
  fs.mkdirSync(EXPORTS, { recursive: true });
  dst.setup();
  haveMigrate = migrateAvailable();
  if (!haveMigrate && MODES.some((m) => m === 'migrate' || m === 'lazy')) log(`${STASIS} has no migrate command: those rows say "not available"`);
  for (const mib of SIZES) {
    for (let rep = 0; rep < REPS; rep++) {
      for (let i = 0; i < MODES.length; i++) {
        const mode = MODES[(i + rep) % MODES.length]; // rotate the order between repetitions
        checkAbort();
        log(`${mib} MiB, ${mode}${REPS > 1 ? `, rep ${rep + 1}` : ''}`);
        let row;
        try {
          row = await measure(mib, mode, rep, haveMigrate);
        } catch (err) {
          if (interrupted()) throw err;
          // One row failing (a new command, say) does not cost the others: record it, remove its containers, go on.
          row = { mib, mode, rep, error: String(err.message ?? err) };
          log(`  FAILED: ${row.error}`);
          removeAll();
        }
        rows.push(row);
        if (!row.unavailable && !row.error) log(`  downtime ${row.downtimeMs.toFixed(1)} ms, total ${row.totalMs.toFixed(0)} ms, ${(row.bytes / 1e6).toFixed(1)} MB`);
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
  for (const side of [dst, src]) {
    for (const id of side.ids) quiet(side.stasis('delete', '-f', id));
    side.ids.clear();
  }
  fs.rmSync(SRC_CP, { recursive: true, force: true });
  fs.rmSync(EXPORTS, { recursive: true, force: true });
  fs.mkdirSync(EXPORTS, { recursive: true });
}

function cleanup() {
  log('cleaning up');
  removeAll();
  // Anything left in the private source state dir (and a private destination's;
  // in a state dir named by --dest only the bench's own containers, above).
  for (const side of [src, ...(dst.private ? [dst] : [])]) {
    const sd = side === src ? SRC_SD : dst.stateDir;
    const dir = path.join(sd, 'containers');
    if (!fs.existsSync(dir)) continue;
    for (const id of fs.readdirSync(dir).filter((n) => !n.startsWith('.'))) {
      quiet(side.stasis('delete', '-f', id));
      if (!fs.existsSync(path.join(dir, id))) continue;
      try { process.kill(Number(fs.readFileSync(path.join(dir, id, 'conmon.pid'), 'utf8')), 'SIGKILL'); } catch { /* none */ }
      quiet(['runc', '--root', path.join(sd, 'runc'), 'delete', '-f', id]);
    }
  }
  dst.teardown();
  if (opt['keep-tmp']) return log(`kept ${TMP}`);
  // Never rm -rf through a mount point.
  const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(`${TMP}/`));
  for (const m of mounts().reverse()) quiet(['umount', '-l', m]);
  if (mounts().length === 0) fs.rmSync(TMP, { recursive: true, force: true });
  else log(`left ${TMP} in place: still mounted: ${mounts().join(', ')}`);
}

// ------------------------------------------------------------------ report

const MODE_LABEL = { manual: 'checkpoint --export / cp / restore', 'manual-zstd': 'the same, .tar.zst', migrate: 'migrate', lazy: 'migrate --lazy', precopy: 'migrate --precopy' };
const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const mbps = (bytes, ms) => (Number.isFinite(bytes) && ms > 0 ? bytes / 1e3 / ms : NaN); // MB/s
/** The transfer part migrate reports, if it names one. */
const transferMs = (rep) => Number(rep?.transferMs ?? rep?.streamMs ?? rep?.copyMs ?? NaN);

const agg = []; // one per size and mode: medians over reps
for (const mib of SIZES) {
  for (const mode of MODES) {
    const rs = rows.filter((r) => r.mib === mib && r.mode === mode);
    if (rs.length === 0) continue;
    if (rs[0].unavailable) { agg.push({ mib, mode, unavailable: true }); continue; }
    const ok = rs.filter((r) => !r.error);
    // The failed command's first line of stderr, else the message's first line.
    const errors = rs.filter((r) => r.error).map((r) => { const l = r.error.split('\n'); return l[1] ?? l[0]; });
    if (ok.length === 0) { agg.push({ mib, mode, failed: errors }); continue; }
    const m = (f) => median(ok.map(f));
    agg.push({
      mib, mode, n: ok.length, errors,
      downtimeMs: m((r) => r.downtimeMs), totalMs: m((r) => r.totalMs), bytes: m((r) => r.bytes),
      baselineMs: m((r) => r.baselineMs), slowGaps: m((r) => r.slowGaps),
      checkpointMs: m((r) => r.steps?.checkpointMs), copyMs: m((r) => r.steps?.copyMs), restoreMs: m((r) => r.steps?.restoreMs),
      reportedDowntimeMs: m((r) => Number(r.reported?.downtimeMs)), reportedTotalMs: m((r) => Number(r.reported?.totalMs)),
      transferMs: m((r) => transferMs(r.reported)),
    });
  }
}

const head = ['touched', 'mode', 'downtime (app)', 'total', 'moved', 'MB/s (moved/total)', 'where the time went'];
const table = agg.map((a) => {
  if (a.unavailable) return [`${a.mib} MiB`, MODE_LABEL[a.mode], 'not available', '-', '-', '-', '`stasis migrate` not in this build'];
  if (a.failed) return [`${a.mib} MiB`, MODE_LABEL[a.mode], 'FAILED', '-', '-', '-', a.failed[0].replaceAll('|', '/').slice(0, 200)];
  let where;
  if (a.mode.startsWith('manual')) {
    where = `checkpoint+export ${fmt(a.checkpointMs)} ms (${fmt(mbps(a.bytes, a.checkpointMs))} MB/s), copy ${fmt(a.copyMs)} ms (${fmt(mbps(a.bytes, a.copyMs))} MB/s), restore ${fmt(a.restoreMs)} ms (${fmt(mbps(a.bytes, a.restoreMs))} MB/s)`;
  } else {
    const parts = [`reported: downtime ${fmt(a.reportedDowntimeMs)} ms, total ${fmt(a.reportedTotalMs)} ms`];
    if (Number.isFinite(a.transferMs)) parts.push(`transfer ${fmt(a.transferMs)} ms (${fmt(mbps(a.bytes, a.transferMs))} MB/s)`);
    where = parts.join('; ');
  }
  if (a.slowGaps > 0) where += `; ${fmt(a.slowGaps)} more gaps > 10 ms`;
  if (a.errors.length > 0) where += `; ${a.errors.length} of ${a.errors.length + a.n} runs FAILED`;
  return [`${a.mib} MiB`, MODE_LABEL[a.mode], `${fmt(a.downtimeMs, 1)} ms`, `${fmt(a.totalMs)} ms`, `${fmt(a.bytes / 1e6, 1)} MB`, fmt(mbps(a.bytes, a.totalMs)), where];
});

const out = [];
const script = path.relative(process.cwd(), process.argv[1]) || process.argv[1];
out.push(`stasis: moving a running container, ${new Date(started).toISOString()}`);
out.push(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}; node ${process.version}; stasis ${STASIS} (${stasisVersion}${STASIS.startsWith(REPO) ? `, commit ${quiet(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.trim()}` : ''}); migrate ${haveMigrate ? 'available' : 'not available'}`);
out.push(`destination: ${dst.kind === 'local' ? 'a state dir on this host (same mount namespace)' : opt.dest}; load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; wall time ${((Date.now() - started) / 1000).toFixed(0)} s`);
out.push(`command: cd ${process.cwd()} && ${show(['node', script.startsWith('..') ? process.argv[1] : script, ...process.argv.slice(2)])}${process.env.STASIS_SSH ? `   (STASIS_SSH=${quote(process.env.STASIS_SSH)})` : ''}`);
out.push(`downtime = the largest gap between two ticks (1 ms period) from the move's start to ${SETTLE} ms after its end; ${REPS > 1 ? `medians of ${REPS}` : 'one sample each'}; MB = 10^6 bytes`);
out.push('');
out.push(`| ${head.join(' | ')} |`);
out.push(`|${head.map(() => '---').join('|')}|`);
for (const r of table) out.push(`| ${r.join(' | ')} |`);
out.push('');

// Ratios and targets.
const measured = (a) => !a.unavailable && !a.failed;
const find = (mib, mode) => agg.find((a) => a.mib === mib && a.mode === mode && measured(a));
const lo = Math.min(...SIZES);
const hi = Math.max(...SIZES);
for (const mode of MODES) {
  const a = find(lo, mode);
  const b = find(hi, mode);
  if (a && b && hi !== lo) out.push(`downtime ${hi} MiB / ${lo} MiB, ${MODE_LABEL[mode]}: ${(b.downtimeMs / a.downtimeMs).toFixed(2)}x`);
}
out.push('targets:');
const lazyRows = agg.filter((a) => a.mode === 'lazy' && measured(a));
if (!MODES.includes('lazy')) out.push('  lazy downtime <= 150 ms: not measured (mode not selected)');
else if (lazyRows.length === 0) out.push('  lazy downtime <= 150 ms: not available');
else out.push(`  lazy downtime <= 150 ms: ${lazyRows.map((a) => `${a.mib} MiB ${fmt(a.downtimeMs, 1)} ms`).join(', ')}: ${lazyRows.every((a) => a.downtimeMs <= 150) ? 'met' : 'MISSED'}`);
if (find(1024, 'lazy') && find(64, 'lazy')) {
  const r = find(1024, 'lazy').downtimeMs / find(64, 'lazy').downtimeMs;
  out.push(`  lazy downtime flat, 1 GiB within 1.5x of 64 MiB: ${r.toFixed(2)}x: ${r <= 1.5 ? 'met' : 'MISSED'}`);
} else out.push('  lazy downtime flat (1 GiB / 64 MiB <= 1.5x): not measured');
const full = agg.filter((a) => a.mode === 'migrate' && measured(a));
if (full.length === 0) out.push('  full move >= 1 GB/s on loopback: not available');
else {
  const rate = (a) => (Number.isFinite(a.transferMs) ? mbps(a.bytes, a.transferMs) : mbps(a.bytes, a.totalMs));
  out.push(`  full move >= 1 GB/s on loopback: ${full.map((a) => `${a.mib} MiB ${fmt(rate(a))} MB/s (${Number.isFinite(a.transferMs) ? 'bytes / reported transfer' : 'bytes / total'})`).join(', ')}: ${full.every((a) => rate(a) >= 1000) ? 'met' : 'MISSED'}`);
}
out.push(`the largest gap in the 500 ms before each move (noise floor): ${agg.filter(measured).map((a) => `${a.mib}/${a.mode} ${fmt(a.baselineMs, 1)}`).join(', ')} ms`);
out.push('timed commands (ID, A/B = the two rootfs copies, DEST = the destination state dir):');
out.push(`  source       ${show([STASIS, '--state-dir', 'SRC', '--checkpoint-dir', 'SRCCP'])} run -d ID --rootfs A -- /ticker MIB /ticks /ready`);
out.push(`  manual       source checkpoint ID --export F.tar; cp F.tar DEST-INBOX/; ${show([STASIS, '--state-dir', 'DEST', '--checkpoint-dir', 'DESTCP'])} restore ID --checkpoint DEST-INBOX/F.tar --rootfs B`);
out.push(`  migrate      source migrate ID DEST --rootfs B --json [--lazy|--precopy]`);
process.stdout.write(`${out.join('\n')}\n`);

if (opt.json) fs.writeFileSync(opt.json, `${JSON.stringify({ date: new Date(started).toISOString(), stasis: STASIS, stasisVersion, haveMigrate, dest: opt.dest || 'local', rows, failure: failure ? String(failure.message ?? failure) : null }, null, 2)}\n`);
const failedRows = rows.filter((r) => r.error).length;
if (failedRows > 0 && !failure) {
  process.stderr.write(`migrate-bench: ${failedRows} row(s) FAILED (above)\n`);
  process.exit(1);
}
if (failure) {
  process.stderr.write(`migrate-bench: FAILED: ${failure.stack ?? failure}\n`);
  process.exit(1);
}
