#!/usr/bin/env node
// Times unpacking a large checkpoint archive: GNU tar alone, stasis's
// extractTar as of an older commit (the header check before extraction), and
// the current one (stasis decompresses and counts, GNU tar extracts, then a
// walk checks the result). Also a layer of many small files, where the walk
// costs the most. See bench/README.md ("Unpacking archives").
//
//   node bench/tar-extract.mjs [--dir D] [--reps N] [--old REV] [--mib N] [--files N]
//
// --dir is where the archives and the extraction go (default: the temp dir);
// a tmpfs there stands for /run, where stasis unpacks, and keeps disk noise out.

import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    reps: { type: 'string', default: '5' },
    old: { type: 'string', default: 'dbcf982' },
    mib: { type: 'string', default: '1024' },
    files: { type: 'string', default: '20000' },
  },
});
const reps = Number(values.reps);
const MiB = 1024 * 1024;
const work = mkdtempSync(path.join(values.dir, 'stasis-tar-bench-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
process.on('SIGINT', () => process.exit(130));

/** A checkpoint-like tree: one big pages image (4/10 random, 3/10 zeros, 3/10 text), 300 small images, a diff tar. */
function checkpointTree(dir, mib) {
  mkdirSync(path.join(dir, 'checkpoint'), { recursive: true });
  const text = Buffer.alloc(MiB, 'the quick brown fox jumps over the lazy dog 0123456789\n');
  const zeros = Buffer.alloc(MiB);
  const fill = (file, size) => {
    const fd = openSync(file, 'w');
    for (let i = 0; i < size; i++) writeSync(fd, i % 10 < 4 ? randomBytes(MiB) : i % 10 < 7 ? zeros : text);
    closeSync(fd);
  };
  fill(path.join(dir, 'checkpoint', 'pages-1.img'), mib);
  for (let i = 0; i < 300; i++) writeFileSync(path.join(dir, 'checkpoint', `core-${i}.img`), randomBytes(4096));
  fill(path.join(dir, 'rootfs-diff.tar'), Math.round(mib / 4));
  for (const name of ['spec.dump', 'config.dump', 'stasis.json']) writeFileSync(path.join(dir, name), '{}\n');
}

/** A rootfs layer of many small files in folders of 100. */
function manyFilesTree(dir, files) {
  for (let i = 0; i < files; i++) {
    const folder = path.join(dir, 'usr', `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, `f${i}`), randomBytes(1024 + (i % 7) * 1024));
  }
}

function archive(tree, file, flags) {
  execFileSync('tar', ['-c', '-f', file, ...flags, '-C', tree, '.']);
  return file;
}

/** extractTar as of commit `rev`, importing the current spawn.ts and log.ts (unchanged since). */
async function oldExtractTar(rev) {
  let source = execFileSync('git', ['-C', repo, 'show', `${rev}:src/checkpoint/tar.ts`], { encoding: 'utf8' });
  for (const module of ['host/spawn.ts', 'log.ts']) {
    source = source.replace(`'../${module}'`, `'${pathToFileURL(path.join(repo, 'src', module)).href}'`);
  }
  const file = path.join(work, `old-tar-${rev}.ts`);
  writeFileSync(file, source);
  return (await import(pathToFileURL(file).href)).extractTar;
}

/**
 * Runs each of `cases` ([label, run(dest)]) `reps` times, interleaved (one of
 * each per round), so that a busy moment of the machine hits them all alike.
 */
async function timed(cases) {
  const samples = cases.map(() => []);
  const dest = path.join(work, 'dest');
  for (let rep = 0; rep < reps; rep++) {
    for (const [index, [, run, prepare]] of cases.entries()) {
      rmSync(dest, { recursive: true, force: true });
      await prepare?.(dest);
      spawnSync('sync');
      const started = performance.now();
      await run(dest);
      samples[index].push((performance.now() - started) / 1000);
    }
  }
  rmSync(dest, { recursive: true, force: true });
  for (const [index, [label]] of cases.entries()) {
    const sorted = samples[index].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    console.log(`${label.padEnd(52)} median ${median.toFixed(2)} s   min ${sorted[0].toFixed(2)}   max ${sorted.at(-1).toFixed(2)}`);
  }
}

function gnuAlone(file, flags) {
  return (dest) => {
    mkdirSync(dest);
    execFileSync('tar', ['-x', '-f', file, ...flags, '-C', dest, '--numeric-owner', '--same-permissions', '--no-overwrite-dir', '--xattrs', '--xattrs-include=*']);
  };
}

const { extractTar } = await import(pathToFileURL(path.join(repo, 'src', 'checkpoint', 'tar.ts')).href);
const { checkExtractedTree } = await import(pathToFileURL(path.join(repo, 'src', 'checkpoint', 'tar-safety.ts')).href);
const oldExtract = await oldExtractTar(values.old);

const big = path.join(work, 'big');
checkpointTree(big, Number(values.mib));
const many = path.join(work, 'many');
manyFilesTree(many, Number(values.files));
const archives = {
  plain: archive(big, path.join(work, 'big.tar'), []),
  zstd: archive(big, path.join(work, 'big.tar.zst'), ['--zstd']),
  layer: archive(many, path.join(work, 'layer.tar'), []),
};
rmSync(big, { recursive: true });
rmSync(many, { recursive: true });
for (const [name, file] of Object.entries(archives)) console.log(`${name}: ${(statSync(file).size / MiB).toFixed(0)} MiB`);
console.log(`${reps} runs each, interleaved; each run starts after sync, into a fresh folder\n`);

for (const [name, flags] of [['plain', []], ['zstd', ['--zstd']]]) {
  const file = archives[name];
  await timed([
    [`${name}: GNU tar alone (tar -x -f)`, gnuAlone(file, flags)],
    [`${name}: stasis at ${values.old} (check, then extract)`, (dest) => oldExtract(file, dest)],
    [`${name}: stasis now (extract, then check on disk)`, (dest) => extractTar(file, dest)],
    // The walk alone, on what GNU tar extracted.
    [`${name}: of which the check on disk`, (dest) => checkExtractedTree(dest, {}), gnuAlone(file, flags)],
  ]);
}
const layer = { rootfsLayer: true };
await timed([
  [`layer, ${values.files} files: GNU tar alone`, gnuAlone(archives.layer, [])],
  [`layer, ${values.files} files: stasis at ${values.old}`, (dest) => oldExtract(archives.layer, dest, layer)],
  [`layer, ${values.files} files: stasis now`, (dest) => extractTar(archives.layer, dest, layer)],
  [`layer, ${values.files} files: of which the check on disk`, (dest) => checkExtractedTree(dest, layer), gnuAlone(archives.layer, [])],
]);
