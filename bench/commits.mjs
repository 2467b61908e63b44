#!/usr/bin/env node
// What each change bought: the compiled stasis (dist/stasis) of several
// commits, timed on the same commands in one run, the commits interleaved.
//
//   sudo node bench/commits.mjs [--reps 15] [--rootfs DIR] COMMIT...
//
// Each commit is exported (git archive) into a temp folder, given this
// checkout's node_modules and built (node scripts/build.mjs). Timed, per
// commit and repetition: `stasis --version`, `stasis ps` with one container,
// `stasis run -d ID --rootfs ROOTFS -- sleep 1000` and `stasis delete -f ID`
// (bench.mjs times the rest). Every commit has its own state dir. Medians,
// then each commit against the first. Needs root and what bench.mjs needs.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt, positionals: commits } = parseArgs({
  options: { reps: { type: 'string', default: '15' }, rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' } },
  allowPositionals: true,
});
const REPS = Number(opt.reps);
if (commits.length === 0 || !Number.isInteger(REPS) || REPS < 1) {
  process.stderr.write('usage: node bench/commits.mjs [--reps N] [--rootfs DIR] COMMIT...\n');
  process.exit(2);
}
if (process.getuid?.() !== 0) throw new Error('run as root');

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-commits-'));
const log = (m) => process.stderr.write(`commits: ${m}\n`);
function run(argv, opts = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return { ms, stdout: r.stdout };
}
/** Waits (untimed) until no exit hook of this run is left (conmon runs one after each delete -f). */
function settle() {
  for (let i = 0; i < 400; i++) {
    const busy = fs.readdirSync('/proc').some((p) => {
      if (!/^\d+$/.test(p)) return false;
      try {
        const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        return argv.includes('__exit') && argv.some((a) => a.startsWith(TMP));
      } catch {
        return false;
      }
    });
    if (!busy) return;
    spawnSync('sleep', ['0.025']);
  }
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const builds = [];
try {
  for (const commit of commits) {
    const dir = path.join(TMP, commit);
    fs.mkdirSync(dir);
    run(['sh', '-c', `git -C '${REPO}' archive '${commit}' | tar -x -C '${dir}'`]);
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
    run([process.execPath, path.join(dir, 'scripts', 'build.mjs')]);
    const sd = path.join(dir, 'state');
    const bin = path.join(dir, 'dist', 'stasis');
    builds.push({ commit, bin, sd, cmd: (...a) => [bin, '--state-dir', sd, ...a], t: { version: [], ps1: [], run: [], delete: [] } });
    log(`built ${commit}`);
  }
  for (const b of builds) run(b.cmd('run', '-d', 'keep', '--rootfs', opt.rootfs, '--', 'sleep', '1000'));
  for (let i = 0; i < REPS; i++) {
    for (let j = 0; j < builds.length; j++) {
      const b = builds[(i + j) % builds.length];
      b.t.version.push(run([b.bin, '--version']).ms);
      b.t.ps1.push(run(b.cmd('ps')).ms);
      b.t.run.push(run(b.cmd('run', '-d', `c${i}`, '--rootfs', opt.rootfs, '--', 'sleep', '1000')).ms);
      b.t.delete.push(run(b.cmd('delete', '-f', `c${i}`)).ms);
      settle();
    }
  }
} finally {
  for (const b of builds) spawnSync(b.bin, ['--state-dir', b.sd, 'delete', '-f', ...(fs.existsSync(path.join(b.sd, 'containers')) ? fs.readdirSync(path.join(b.sd, 'containers')) : [])]);
  const mounted = fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${TMP}/`);
  if (!mounted) fs.rmSync(TMP, { recursive: true, force: true });
  else log(`left ${TMP}: something is still mounted there`);
}

const rows = ['version', 'ps1', 'run', 'delete'];
const names = { version: '--version', ps1: 'ps (1 container)', run: 'run -d', delete: 'delete -f' };
const first = builds[0];
const out = [`compiled stasis by commit, ${new Date().toISOString()}, ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; medians of ${REPS}, ms (ratio to ${first.commit})`, ''];
out.push(`| commit | ${rows.map((r) => names[r]).join(' | ')} |`);
out.push(`|---|${rows.map(() => '---').join('|')}|`);
for (const b of builds) {
  out.push(`| ${b.commit} | ${rows.map((r) => `${median(b.t[r]).toFixed(1)}${b === first ? '' : ` (${(median(b.t[r]) / median(first.t[r])).toFixed(2)}x)`}`).join(' | ')} |`);
}
process.stdout.write(`${out.join('\n')}\n`);
