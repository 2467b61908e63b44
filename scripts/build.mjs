// Bundles src/cli.ts and its dependencies into one CommonJS file,
// dist/cli.cjs. Start-up is most of a CLI's cost, and measured here
// (bench/README.md) one minified CommonJS file starts faster than ES module
// chunks: ES imports of Node's built-in modules evaluate every lazy export
// (node:fs loads fs/promises and readline, node:util worker_threads...), and
// the ES module loader costs more per file. Each command's code, ora and
// cli-table3 are still evaluated only when used (esbuild turns those dynamic
// imports into lazy initialisers).
//
// Each build goes into its own folder under .build/ and `dist` is a symlink
// switched to it with one rename, so a stasis process that is running while
// someone rebuilds (a container's exit hook, a test) never finds dist/ half
// written. The previous build is kept for processes that already started.
//
// With the Bun devDependency installed (@oven/bun-linux-x64, pinned), the
// same bundle is also compiled into one executable, dist/stasis (`bun build
// --compile --bytecode`): it starts in a fraction of Node's time and is what
// scripts/setup.sh installs. `--no-bin` (or STASIS_BUILD_BIN=0) skips it;
// without the package (another platform, `npm ci --omit=dev`) it is skipped
// with a note, and bin/stasis under Node is what runs.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const lazyUtil = (name) => `const ${name} = (...args) => process.getBuiltinModule('node:util').${name}(...args);\n`;
/** [file under node_modules, text, replacement]: see the lazy-at-load plugin below. */
const LAZY_PATCHES = [
  ['yargs/lib/platform-shims/esm.mjs', "import { inspect } from 'util'\n", lazyUtil('inspect')],
  ['yargs/lib/platform-shims/esm.mjs', "import { fileURLToPath } from 'url';\n", ''],
  ['yargs/lib/platform-shims/esm.mjs', '__dirname = fileURLToPath(import.meta.url);', '__dirname = __filename;'],
  ['yargs/lib/platform-shims/esm.mjs', "stdColumns: typeof process.stdout.columns !== 'undefined' ? process.stdout.columns : null",
    "get stdColumns() { return typeof process.stdout.columns !== 'undefined' ? process.stdout.columns : null }"],
  ['y18n/build/lib/platform-shims/node.js', "import { format } from 'util';\n", lazyUtil('format')],
  ['yargs-parser/build/lib/index.js', "import { format } from 'util';\n", lazyUtil('format')],
  // After starting a command's handler yargs renders the whole help text, in
  // case the handler fails and help is to be shown (showHelpOnFail, which
  // stasis turns off): 3-5 ms, and under Bun about 12 ms more, for cliui asks
  // process.stdout for the terminal's width.
  ['yargs/build/lib/command.js', 'yargs.getInternalMethods().getUsageInstance().cacheHelpMessage();',
    '/* stasis: no help cached (showHelpOnFail is off) */'],
];
const { version } = JSON.parse(await readFile(`${root}package.json`, 'utf8'));
const builds = `${root}.build`;
const name = `${Date.now()}-${process.pid}`;
await mkdir(builds, { recursive: true });
await build({
  entryPoints: { cli: `${root}src/cli.ts` },
  outdir: `${builds}/${name}`,
  outExtension: { '.js': '.cjs' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node22',
  minify: true,
  // Class and function names stay readable in stack traces and error names.
  keepNames: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: { __STASIS_VERSION__: JSON.stringify(version) },
  plugins: [
    {
      // yargs imports node:assert for two checks; the real module costs ~5 ms to load.
      name: 'assert-shim',
      setup(b) {
        b.onResolve({ filter: /^(node:)?assert$/ }, (args) =>
          args.importer.includes('/node_modules/yargs/') ? { path: `${root}src/shims/assert.ts` } : undefined);
      },
    },
    {
      // What yargs and its parts do as they load, done when first used instead:
      // node:util (format, inspect: for messages), node:url (its own path,
      // which in this bundle is __filename), and process.stdout's width (read
      // at load; under Bun making process.stdout costs about 15 ms); and one
      // thing it does that stasis never needs (LAZY_PATCHES). Each text must
      // be found, so a dependency that changes fails the build.
      name: 'lazy-at-load',
      setup(b) {
        b.onLoad({ filter: /\/node_modules\/(yargs|y18n|yargs-parser)\/.*\.m?js$/ }, async (args) => {
          const patches = LAZY_PATCHES.filter(([file]) => args.path.endsWith(`/node_modules/${file}`));
          if (patches.length === 0) return undefined;
          let contents = await readFile(args.path, 'utf8');
          for (const [file, from, to] of patches) {
            if (!contents.includes(from)) throw new Error(`build: ${file} no longer contains ${JSON.stringify(from)} (update LAZY_PATCHES in scripts/build.mjs)`);
            contents = contents.replace(from, to);
          }
          return { contents, loader: 'js' };
        });
      },
    },
  ],
});

const wantBin = !process.argv.includes('--no-bin') && process.env.STASIS_BUILD_BIN !== '0';
if (wantBin) await compileBinary(`${builds}/${name}`);

const dist = `${root}dist`;
const current = await lstat(dist).catch(() => null);
if (current !== null && !current.isSymbolicLink()) await rm(dist, { recursive: true, force: true });
const link = `${builds}/.dist-${name}`;
await symlink(`.build/${name}`, link);
await rename(link, dist);

// Keep this build and the one before it.
const old = (await readdir(builds)).filter((entry) => !entry.startsWith('.')).sort((a, b) => Number.parseInt(a) - Number.parseInt(b)).slice(0, -2);
await Promise.all(old.map((entry) => rm(`${builds}/${entry}`, { recursive: true, force: true })));

/** The Bun executable of the pinned devDependency, or null when it is not installed here. */
function bunExecutable() {
  try {
    return `${dirname(createRequire(`${root}package.json`).resolve('@oven/bun-linux-x64/package.json'))}/bin/bun`;
  } catch {
    return null;
  }
}

/**
 * Compiles out/cli.cjs into out/stasis. The compiled CLI must not read a
 * .env or bunfig.toml from whatever folder it is run in (Bun's executables
 * do by default): a container tool's settings come from its flags and its
 * own environment only.
 *
 * Bun writes the source's path into the executable, so the same bundle is
 * compiled from one folder named after its content (and Bun's version):
 * the same source gives the same bytes, and setup.sh can tell that an
 * installed stasis is already this one.
 */
async function compileBinary(out) {
  const bun = bunExecutable();
  if (bun === null) {
    process.stderr.write('build: dist/stasis not built: @oven/bun-linux-x64 is not installed (bin/stasis runs under Node)\n');
    return;
  }
  const bundle = await readFile(`${out}/cli.cjs`);
  const bunVersion = spawnSync(bun, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const key = createHash('sha256').update(bunVersion).update('\0').update(bundle).digest('hex').slice(0, 16);
  const stage = `${builds}/.bin-${key}`;
  await mkdir(stage, { recursive: true });
  // Each file written aside and renamed: a build of the same content running beside this one reads whole files.
  for (const [file, content] of [['cli.cjs', bundle], ['bin-entry.cjs', "'use strict';\nrequire('./cli.cjs').main(process.argv.slice(2));\n"]]) {
    await writeFile(`${stage}/${file}.${process.pid}`, content);
    await rename(`${stage}/${file}.${process.pid}`, `${stage}/${file}`);
  }
  const r = spawnSync(bun, [
    'build', '--compile', '--bytecode', '--target=bun', '--format=cjs',
    '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig',
    `${stage}/bin-entry.cjs`, '--outfile', `${out}/stasis`,
  ], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`bun build --compile failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}${r.stderr}`);
  }
  // One look that it runs at all, before dist is switched to it.
  const v = spawnSync(`${out}/stasis`, ['--version'], { encoding: 'utf8' });
  if (v.status !== 0 || v.stdout.trim() !== version) {
    throw new Error(`the compiled ${out}/stasis does not run: --version gave ${JSON.stringify(v.stdout.trim())} (exit ${v.status}) ${v.stderr}`);
  }
  // Other contents' folders, once no build can be using them (10 minutes).
  for (const entry of await readdir(builds)) {
    if (!entry.startsWith('.bin-') || entry === `.bin-${key}`) continue;
    const age = Date.now() - (await stat(`${builds}/${entry}`).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age > 600_000) await rm(`${builds}/${entry}`, { recursive: true, force: true });
  }
}
