// What the move benches (migrate.mjs, throughput.mjs, postcopy.mjs) share:
// running commands, finding programs, Ctrl-C between steps, and reading the
// ticker's ticks (bench/fixtures/ticker.c) into the gap the application saw.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** `name` on PATH (its full path), or the name itself. @param {string} name */
export function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  return name;
}

/** @param {string} a */
export const quote = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${String(a).replaceAll("'", "'\\''")}'`);
/** @param {string[]} argv */
export const show = (argv) => argv.map(quote).join(' ');
/** Wall-clock time in ms with a fraction (the ticks are CLOCK_REALTIME too). */
export const nowMs = () => performance.timeOrigin + performance.now();

/**
 * Runs argv to completion; returns { ms, stdout, stderr, status }. Throws on a non-zero exit unless
 * check is false. stdinFile: a file as its stdin; env: added to this process's environment; stdio:
 * its descriptors, as spawnSync takes them (in place of the default pipes).
 * @param {string[]} argv
 * @param {{ check?: boolean, input?: string, stdinFile?: string, timeout?: number, env?: Record<string, string>, stdio?: import('node:child_process').StdioOptions }} [opts]
 */
export function run(argv, { check = true, input, stdinFile, timeout = 600_000, env, stdio } = {}) {
  let fd = null;
  if (stdinFile) fd = fs.openSync(stdinFile, 'r');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), {
    encoding: 'utf8', input, timeout, maxBuffer: 512 << 20, env: env ? { ...process.env, ...env } : process.env,
    stdio: stdio ?? [fd ?? (input === undefined ? 'ignore' : 'pipe'), 'pipe', 'pipe'],
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (fd !== null) fs.closeSync(fd);
  if (check && (r.error || r.status !== 0)) {
    const why = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit status ${r.status}`;
    throw new Error(`${show(argv)} failed (${why})${r.stderr?.trim() ? `:\n${r.stderr.trim()}` : ''}`);
  }
  return { ms, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
/** @param {string[]} argv @param {Parameters<typeof run>[1]} [opts] */
export const quiet = (argv, opts = {}) => run(argv, { ...opts, check: false });
// Asynchronous, so that the signal handlers get to run between steps.
/** @param {number} ms */
export const sleepMs = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGINT, SIGTERM and SIGHUP noted, not acted on: `interrupted()` names the signal, `checkAbort()` throws between steps. */
export function catchInterrupts() {
  /** @type {string | null} */
  let caught = null;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { caught = sig; });
  return {
    interrupted: () => caught,
    checkAbort: () => { if (caught) throw new Error(`interrupted by ${caught}`); },
  };
}

/** Tick timestamps (µs) from the ticker's file; a line being written is dropped. */
/** @param {string} text */
export const parseTicks = (text) => text.split('\n').filter((l) => /^\d{16}$/.test(l)).map(Number);

/**
 * The largest gap (ms) between consecutive ticks where the later one is at or
 * after `fromMs` and the earlier one at or before `toMs`, and when it began (ms
 * after fromMs); also how many other gaps in that window exceed 10 ms, and
 * whether ticks exist on both sides.
 * @param {number[]} ticks @param {number} fromMs @param {number} toMs
 */
export function gapIn(ticks, fromMs, toMs) {
  const from = fromMs * 1000;
  const to = toMs * 1000;
  const gaps = [];
  for (let i = 1; i < ticks.length; i++) {
    if (ticks[i] >= from && ticks[i - 1] <= to) gaps.push({ ms: (ticks[i] - ticks[i - 1]) / 1000, at: ticks[i - 1] / 1000 });
  }
  gaps.sort((a, b) => b.ms - a.ms);
  return {
    maxMs: gaps[0]?.ms ?? NaN,
    startsAtMs: gaps[0] ? gaps[0].at - fromMs : NaN,
    over10: Math.max(0, gaps.filter((g) => g.ms > 10).length - 1),
    before: ticks.some((t) => t < from),
    after: ticks.some((t) => t > to),
  };
}

/** The PIDs in /proc (other than this process) for which pred(pid as a string) holds; a process gone meanwhile is skipped. @param {(n: string) => boolean} pred */
export function procs(pred) {
  const out = [];
  for (const n of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(n) || Number(n) === process.pid) continue;
    try { if (pred(n)) out.push(Number(n)); } catch { /* gone */ }
  }
  return out;
}
/** @param {string | number} n */
export const ppidOf = (n) => { const s = fs.readFileSync(`/proc/${n}/stat`, 'utf8'); return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]); };

// Anonymous pipes for raw runc's stdio (what stasis gives a container; see bench.mjs): the
// middle sleep of `sleep | sleep | sleep` has a pipe's read end as stdin and another's write end as stdout.
/** @type {Set<number>} */
const holders = new Set();
export async function anonymousPipes() {
  const holder = spawn('sh', ['-c', 'sleep 100000000 | sleep 100000000 | sleep 100000000'], { stdio: 'ignore', detached: true });
  const pgid = /** @type {number} */ (holder.pid);
  holders.add(pgid);
  for (let i = 0; i < 400; i++) {
    for (const child of procs((n) => ppidOf(n) === pgid)) {
      try {
        if (!fs.readlinkSync(`/proc/${child}/fd/0`).startsWith('pipe:') || !fs.readlinkSync(`/proc/${child}/fd/1`).startsWith('pipe:')) continue;
        const r = fs.openSync(`/proc/${child}/fd/0`, fs.constants.O_RDONLY);
        const w = fs.openSync(`/proc/${child}/fd/1`, fs.constants.O_WRONLY);
        return { pgid, r, w, close() { fs.closeSync(r); fs.closeSync(w); } };
      } catch { /* not ready */ }
    }
    await sleepMs(5);
  }
  throw new Error('could not set up anonymous pipes');
}
/** Ends the sleeps that hold one pair of pipes. @param {number} pgid */
export function releasePipes(pgid) { try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ } holders.delete(pgid); }
/** Ends every holder anonymousPipes started (cleanup). */
export function releaseAllPipes() { for (const pgid of [...holders]) releasePipes(pgid); }
