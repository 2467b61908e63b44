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
import { build } from 'esbuild';
import { lstat, mkdir, readdir, readFile, rename, rm, symlink } from 'node:fs/promises';

const root = new URL('..', import.meta.url).pathname;
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
  define: { __STASIS_VERSION__: JSON.stringify(version), 'import.meta.url': '__stasisModuleUrl' },
  // yargs' ES module shim reads import.meta.url; in CommonJS it is this file's URL.
  banner: { js: 'const __stasisModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
  plugins: [
    {
      // yargs imports node:assert for two checks; the real module costs ~5 ms to load.
      name: 'assert-shim',
      setup(b) {
        b.onResolve({ filter: /^(node:)?assert$/ }, (args) =>
          args.importer.includes('/node_modules/yargs/') ? { path: `${root}src/shims/assert.ts` } : undefined);
      },
    },
  ],
});

const dist = `${root}dist`;
const current = await lstat(dist).catch(() => null);
if (current !== null && !current.isSymbolicLink()) await rm(dist, { recursive: true, force: true });
const link = `${builds}/.dist-${name}`;
await symlink(`.build/${name}`, link);
await rename(link, dist);

// Keep this build and the one before it.
const old = (await readdir(builds)).filter((entry) => !entry.startsWith('.')).sort((a, b) => Number.parseInt(a) - Number.parseInt(b)).slice(0, -2);
await Promise.all(old.map((entry) => rm(`${builds}/${entry}`, { recursive: true, force: true })));
