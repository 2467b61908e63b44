#!/usr/bin/env node
// Restore from an exported .tar.zst archive: stasis next to the raw tools (issue 19).
//
//   sudo node bench/restore-export.mjs [--reps 7] [--rootfs DIR] [--runc PATH] [--criu PATH]
//                                      [--stasis PATH] [--json FILE] [--logs DIR]
//
// Per sample and side, a fresh counter container (`sh -c 'i=0; while …; sleep 0.1'`):
//   stasis  untimed: run -d ID --rootfs R; checkpoint ID --export F.tar.zst
//           timed:   stasis restore ID2 --checkpoint F.tar.zst --rootfs R
//   raw     untimed: runc run -d (bundle as bench.mjs: stdio anonymous pipes); runc checkpoint
//                    --image-path X; tar -c -C X . | zstd -1 > R.tar.zst
//           timed:   sh -c 'zstd -d -c R.tar.zst | tar -x -C NEW' + runc --criu C restore -d
//                    --image-path NEW --bundle B ID2 (fresh anonymous pipes), one clock around both
// then both are deleted, untimed. The sides alternate, the first one rotating. Medians, min-max.
// Everything it starts is removed at the end, on failure and on Ctrl-C too. Needs root and a
// built dist/stasis (node scripts/build.mjs).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { anonymousPipes, procs, releaseAllPipes, releasePipes } from './lib.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string', default: '7' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    runc: { type: 'string', default: '/usr/sbin/runc' },
    criu: { type: 'string', default: '/usr/local/sbin/criu' },
    stasis: { type: 'string', default: path.join(REPO, 'dist', 'stasis') },
    json: { type: 'string' },
    logs: { type: 'string' },
  },
});
const REPS = Number(opt.reps);
const die = (m) => { process.stderr.write(`restore-export: ${m}\n`); process.exit(2); };
const log = (m) => process.stderr.write(`restore-export: ${m}\n`);
if (!Number.isInteger(REPS) || REPS < 1) die('--reps must be a positive integer');
if (process.getuid?.() !== 0) die('run as root');
const { runc: RUNC, criu: CRIU } = opt;
const ROOTFS = path.resolve(opt.rootfs);
for (const p of [RUNC, CRIU, ROOTFS, opt.stasis]) if (!fs.existsSync(p)) die(`not found: ${p}`);
process.env.PATH = `${path.dirname(CRIU)}:${process.env.PATH ?? ''}`;
const COUNTER = 'i=0; while true; do i=$((i+1)); sleep 0.1; done';

const quote = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`);
const show = (argv) => argv.map(quote).join(' ');
function timed(argv, { stdio = ['ignore', 'pipe', 'pipe'], check = true } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (check && (r.error || r.status !== 0)) {
    const why = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit status ${r.status}`;
    throw new Error(`${show(argv)} failed (${why})${r.stderr?.trim() ? `:\n${r.stderr.trim()}` : ''}`);
  }
  return { ms, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const quiet = (argv) => timed(argv, { check: false });
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));

let interrupted = null;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { interrupted = sig; });
const checkAbort = () => { if (interrupted) throw new Error(`interrupted by ${interrupted}`); };


const TAG = `rx${process.pid.toString(36)}`; // in every ID, so a leftover is recognisable
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-restore-export-'));
const SD = path.join(TMP, 'state');
const CPD = path.join(TMP, 'checkpoints');
const RR = path.join(TMP, 'runc-root');
const B = path.join(TMP, 'bundle-counter');
// A private copy of the executable: a rebuild of dist/ during the run changes nothing.
const STASIS = path.join(TMP, 'stasis');
fs.copyFileSync(opt.stasis, STASIS);
fs.chmodSync(STASIS, 0o755);
const stasis = (...a) => [STASIS, '--state-dir', SD, '--checkpoint-dir', CPD, '--runc', RUNC, '--criu', CRIU, ...a];
const runc = (...a) => [RUNC, '--root', RR, ...a];
const runcCriu = (...a) => [RUNC, '--root', RR, '--criu', CRIU, ...a];
const commit = spawnSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
const loadStart = os.loadavg().map((x) => x.toFixed(2));
const started = Date.now();

fs.mkdirSync(B, { recursive: true });
timed([RUNC, 'spec', '--bundle', B]);
const spec = JSON.parse(fs.readFileSync(path.join(B, 'config.json'), 'utf8'));
spec.process.terminal = false;
spec.process.args = ['sh', '-c', COUNTER];
spec.root = { path: ROOTFS, readonly: true };
fs.writeFileSync(path.join(B, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`);

/** Waits (untimed) until conmon's `__exit` hooks for this state dir are done. */
async function settle() {
  for (let i = 0; i < 400; i++) {
    if (procs((n) => { const a = fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0'); return a.includes('__exit') && a.includes(SD); }).length === 0) return;
    await sleepMs(25);
  }
}

const samples = { stasis: [], raw: [], rawUnpack: [], criuStasis: [], criuRaw: [] };
/** CRIU's own time in a restore, from its log: the stamp of "Restore finished". */
function criuMs(log, keepAs) {
  if (opt.logs && fs.existsSync(log)) { fs.mkdirSync(opt.logs, { recursive: true }); fs.copyFileSync(log, path.join(opt.logs, keepAs)); }
  try { const m = /^\((\d+\.\d+)\) Restore finished/m.exec(fs.readFileSync(log, 'utf8')); return m ? Number(m[1]) * 1000 : NaN; } catch { return NaN; }
}
let failure = null;

async function stasisSample(i) {
  const id = `${TAG}-s${i}`, id2 = `${TAG}-s${i}-r`, file = path.join(TMP, `${id}.tar.zst`);
  timed(stasis('run', '-d', id, '--rootfs', ROOTFS, '--', 'sh', '-c', COUNTER));
  await sleepMs(500); // let the loop tick
  timed(stasis('checkpoint', id, '--export', file));
  await settle();
  samples.stasis.push(timed(stasis('restore', id2, '--checkpoint', file, '--rootfs', ROOTFS)).ms);
  samples.criuStasis.push(criuMs(path.join(SD, 'containers', id2, 'restore.log'), `stasis-${i}.log`));
  await sleepMs(300);
  const info = JSON.parse(timed(stasis('info', id2)).stdout);
  if (info.status !== 'running') throw new Error(`stasis container ${id2} is ${info.status} after restore`);
  timed(stasis('delete', '-f', id2));
  timed(stasis('delete', '-f', id));
  fs.rmSync(file, { force: true });
  await settle();
}

async function rawSample(i) {
  const id = `${TAG}-r${i}`, id2 = `${TAG}-r${i}-r`;
  const image = path.join(TMP, `${id}-img`), archive = path.join(TMP, `${id}.tar.zst`), fresh = path.join(TMP, `${id2}-img`);
  let pipes = await anonymousPipes();
  timed(runcCriu('run', '-d', '--bundle', B, id), { stdio: [pipes.r, pipes.w, pipes.w] });
  pipes.close();
  await sleepMs(500);
  timed(runcCriu('checkpoint', '--image-path', image, id));
  releasePipes(pipes.pgid);
  quiet(runc('delete', '-f', id)); // checkpoint already removed it; make sure
  timed(['sh', '-c', `tar -c -C ${quote(image)} . | zstd -q -1 > ${quote(archive)}`]);
  fs.mkdirSync(fresh);
  pipes = await anonymousPipes();
  const t0 = process.hrtime.bigint();
  samples.rawUnpack.push(timed(['sh', '-c', `zstd -d -q -c ${quote(archive)} | tar -x -C ${quote(fresh)}`]).ms);
  timed(runcCriu('restore', '-d', '--image-path', fresh, '--bundle', B, id2), { stdio: [pipes.r, pipes.w, pipes.w] });
  samples.raw.push(Number(process.hrtime.bigint() - t0) / 1e6);
  pipes.close();
  samples.criuRaw.push(criuMs(path.join(fresh, 'restore.log'), `raw-${i}.log`));
  await sleepMs(300);
  const state = JSON.parse(timed(runc('state', id2)).stdout);
  if (state.status !== 'running') throw new Error(`runc container ${id2} is ${state.status} after restore`);
  timed(runc('delete', '-f', id2));
  releasePipes(pipes.pgid);
  for (const p of [image, archive, fresh]) fs.rmSync(p, { recursive: true, force: true });
}

try {
  log(`warm-up, then ${REPS} samples per side (${TMP}, IDs ${TAG}-*)`);
  await stasisSample('w');
  await rawSample('w');
  for (const xs of Object.values(samples)) xs.length = 0;
  for (let i = 0; i < REPS; i++) {
    checkAbort();
    const order = i % 2 === 0 ? [stasisSample, rawSample] : [rawSample, stasisSample];
    for (const f of order) { checkAbort(); await f(i); }
    log(`  ${i + 1}/${REPS}: stasis ${samples.stasis.at(-1).toFixed(0)} ms, raw ${samples.raw.at(-1).toFixed(0)} ms`);
  }
} catch (err) {
  failure = err;
} finally {
  log('cleaning up');
  const cdir = path.join(SD, 'containers');
  const left = fs.existsSync(cdir) ? fs.readdirSync(cdir).filter((n) => !n.startsWith('.')) : [];
  if (left.length) quiet(stasis('delete', '-f', ...left));
  for (const id of fs.existsSync(cdir) ? fs.readdirSync(cdir) : []) {
    try { process.kill(Number(fs.readFileSync(path.join(cdir, id, 'conmon.pid'), 'utf8')), 'SIGKILL'); } catch { /* none */ }
    quiet([RUNC, '--root', path.join(SD, 'runc'), 'delete', '-f', id]);
  }
  if (fs.existsSync(RR)) for (const id of quiet(runc('list', '-q')).stdout.split('\n').filter(Boolean)) quiet(runc('delete', '-f', id));
  releaseAllPipes();
  await settle();
  const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(`${TMP}/`));
  for (const m of mounts().reverse()) quiet(['umount', '-l', m]);
  if (mounts().length === 0) fs.rmSync(TMP, { recursive: true, force: true });
  else log(`left ${TMP} in place: still mounted: ${mounts().join(', ')}`);
  const stray = procs((n) => fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(TAG));
  if (stray.length) log(`warning: processes with ${TAG} in their command line remain: ${stray.join(' ')}`);
}

const loadEnd = os.loadavg().map((x) => x.toFixed(2));
const mm = (xs) => (xs.length ? `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}` : '-');
const fmt = (xs) => (xs.length ? `${median(xs).toFixed(1)} ms` : '-');
const ratio = samples.stasis.length && samples.raw.length ? median(samples.stasis) / median(samples.raw) : NaN;
const out = [
  `restore from a .tar.zst export, stasis ${commit} (${opt.stasis}), ${new Date().toISOString()}`,
  `load average at start ${loadStart.join(' ')}, at end ${loadEnd.join(' ')}; wall time ${((Date.now() - started) / 1000).toFixed(0)} s`,
  '',
  '| side | n | median | min-max |',
  '|---|---|---|---|',
  `| stasis restore ID2 --checkpoint F.tar.zst --rootfs R | ${samples.stasis.length} | ${fmt(samples.stasis)} | ${mm(samples.stasis)} ms |`,
  `| zstd -d -c R.tar.zst \\| tar -x -C NEW + runc restore -d | ${samples.raw.length} | ${fmt(samples.raw)} | ${mm(samples.raw)} ms |`,
  `| stasis/raw | | ${Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-'} | target <= 1.10x: ${ratio <= 1.1 ? 'met' : 'MISSED'} |`,
  '',
  `of the raw side, zstd -d | tar -x alone: ${fmt(samples.rawUnpack)} (${mm(samples.rawUnpack)} ms)`,
  `CRIU's own restore (its log, to "Restore finished"): stasis ${fmt(samples.criuStasis)} (${mm(samples.criuStasis)}), raw ${fmt(samples.criuRaw)} (${mm(samples.criuRaw)} ms)`,
  ...Object.entries(samples).map(([k, xs]) => `samples ${k} (ms): ${xs.map((x) => x.toFixed(0)).join(' ')}`),
];
process.stdout.write(`${out.join('\n')}\n`);
if (opt.json) fs.writeFileSync(opt.json, `${JSON.stringify({ commit, loadStart, loadEnd, samples, failure: failure ? String(failure.message ?? failure) : null }, null, 2)}\n`);
if (failure) { process.stderr.write(`restore-export: FAILED: ${failure.stack ?? failure}\n`); process.exit(1); }
