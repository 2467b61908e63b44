// Bundles src/cli.ts into dist/: one entry file plus lazily loaded chunks
// (each command, ora and cli-table3 load only when used).
import { build } from 'esbuild';
import { readFile, rm } from 'node:fs/promises';

const root = new URL('..', import.meta.url).pathname;
const { version } = JSON.parse(await readFile(`${root}package.json`, 'utf8'));
await rm(`${root}dist`, { recursive: true, force: true });
await build({
  entryPoints: { cli: `${root}src/cli.ts` },
  outdir: `${root}dist`,
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
