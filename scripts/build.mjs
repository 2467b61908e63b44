// Bundles src/cli.ts into one entry file plus lazily loaded chunks (each
// command, ora and cli-table3 load only when used).
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
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: { __STASIS_VERSION__: JSON.stringify(version) },
  // Some CommonJS dependencies (yargs' helpers, cli-table3) call require().
  banner: { js: "import { createRequire as __stasisRequire } from 'node:module'; const require = __stasisRequire(import.meta.url);" },
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
