#!/usr/bin/env node
// Checkpoint and restore of a container with 512 MiB of touched memory:
// stasis next to raw runc, in one run on one machine.
//
//   sudo node bench/bigmem.mjs [--mib 512] [--reps 3] [--rootfs DIR] [--runc PATH]
//
// Both run test/fixtures/services/bigmem.c (built here with gcc -static), which
// fills MiB of memory and then sleeps. stasis: `checkpoint ID` then `restore ID`
// (in place). runc: `runc checkpoint --image-path DIR ID` then `runc restore -d
// --image-path DIR ID` on a bundle over a copy of the same rootfs. The samples
// alternate between the two; medians are reported. Everything is removed at the end.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    mib: { type: 'string', default: '512' },
    reps: { type: 'string', default: '3' },
    rootfs: { type: 'string', default: '/var/lib/stasis/rootfs/busybox' },
    runc: { type: 'string', default: '/usr/sbin/runc' },
  },
});
const MIB = Number(opt.mib);
const REPS = Number(opt.reps);
const RUNC = opt.runc;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-bench-bigmem-'));
const stateDir = path.join(tmp, 'state');
const runcRoot = path.join(tmp, 'runc');
const stasis = (...args) => [process.execPath, path.join(REPO, 'bin', 'stasis'), '--state-dir', stateDir, '--checkpoint-dir', path.join(tmp, 'cp'), ...args];

function must(argv, what) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${what}: ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function timed(argv, what) {
  const started = process.hrtime.bigint();
  must(argv, what);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Waits until `fn` is true (the memory is filled). */
function waitFor(fn, what, ms = 120_000) {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    spawnSync('sleep', ['0.2']);
  }
}

try {
  // A rootfs copy with the program in it.
  const base = path.join(tmp, 'base');
  fs.cpSync(opt.rootfs, base, { recursive: true, verbatimSymlinks: true });
  fs.mkdirSync(path.join(base, 'srv'), { recursive: true });
  must(['gcc', '-O2', '-static', '-o', path.join(base, 'srv', 'bigmem'), path.join(REPO, 'test', 'fixtures', 'services', 'bigmem.c')], 'compiling bigmem');

  // stasis: a --rootfs container.
  must(stasis('run', '-d', 'big', '--rootfs', base, '--', '/srv/bigmem', String(MIB)), 'stasis run');
  waitFor(() => must(stasis('logs', 'big'), 'logs').includes('filled'), 'stasis container to fill its memory');

  // runc: a bundle over another copy of the base, stdio to files (a terminal cannot be checkpointed).
  const bundle = path.join(tmp, 'bundle');
  fs.mkdirSync(bundle);
  fs.cpSync(base, path.join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  must([RUNC, 'spec', '--bundle', bundle], 'runc spec');
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['/srv/bigmem', String(MIB)];
  spec.root.readonly = false;
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  // stdio /dev/null: a file of the host's would be an external file CRIU cannot dump.
  const run = spawnSync(RUNC, ['--root', runcRoot, 'run', '-d', '--bundle', bundle, 'rbig'], { stdio: 'ignore' });
  if (run.status !== 0) throw new Error('runc run failed');
  const pid = JSON.parse(must([RUNC, '--root', runcRoot, 'state', 'rbig'], 'runc state')).pid;
  const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  waitFor(() => rssMiB() >= MIB, 'runc container to fill its memory');

  const rows = { stasisCheckpoint: [], stasisRestore: [], runcCheckpoint: [], runcRestore: [] };
  for (let rep = 0; rep < REPS; rep++) {
    const order = rep % 2 === 0 ? ['stasis', 'runc'] : ['runc', 'stasis'];
    for (const who of order) {
      if (who === 'stasis') {
        rows.stasisCheckpoint.push(timed(stasis('checkpoint', 'big'), 'stasis checkpoint'));
        rows.stasisRestore.push(timed(stasis('restore', 'big'), 'stasis restore'));
      } else {
        const images = path.join(tmp, `runc-images-${rep}`);
        rows.runcCheckpoint.push(timed([RUNC, "--root", runcRoot, "checkpoint", "--image-path", images, "rbig"], "runc checkpoint"));
        rows.runcRestore.push(timed([RUNC, '--root', runcRoot, 'restore', '-d', '--image-path', images, '--bundle', bundle, 'rbig'], 'runc restore'));
        fs.rmSync(images, { recursive: true, force: true });
      }
    }
  }
  const m = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, median(v)]));
  const line = (what, s, r) => `| ${what} (${MIB} MiB) | ${s.toFixed(0)} ms | ${r.toFixed(0)} ms | ${(s / r).toFixed(2)}x |`;
  process.stdout.write(`| operation | stasis | raw runc | ratio |\n|---|---|---|---|\n`);
  process.stdout.write(`${line('checkpoint', m.stasisCheckpoint, m.runcCheckpoint)}\n${line('restore', m.stasisRestore, m.runcRestore)}\n`);
  process.stdout.write(`(medians of ${REPS}; samples ms: ${JSON.stringify(Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, v.map((x) => Math.round(x))])))})\n`);
} finally {
  spawnSync(process.execPath, [path.join(REPO, 'bin', 'stasis'), '--state-dir', stateDir, 'delete', '-f', 'big'], { stdio: 'ignore' });
  spawnSync(RUNC, ['--root', runcRoot, 'delete', '-f', 'rbig'], { stdio: 'ignore' });
  if (!process.env.KEEP) fs.rmSync(tmp, { recursive: true, force: true });
}
