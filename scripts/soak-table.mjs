// soak-table.mjs DIR N — the table scripts/soak.sh prints: per test that failed in any of the N
// runs whose logs (run-I-compiled.log, run-I-node.log: `npm test`'s output; its exit status in
// run-I-PASS.status) are in DIR, how often.
// The spec reporter ends a red run with "✖ failing tests:", then for each one "test at
// FILE:LINE:COL" and "✖ NAME (TIME)". A step of `npm test` that failed before any test ran (the
// cycle check, the build) is counted as one row of its own.
import { readdirSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** The tests a log says failed, as "FILE › NAME"; a red run (`npm test` exited non-zero) whose log names none gives one row saying so. */
export function failedTests(text, red) {
  const seen = new Set();
  const at = text.lastIndexOf('✖ failing tests:');
  if (at >= 0) {
    const lines = text.slice(at).split('\n');
    for (let i = 0; i < lines.length; i++) {
      const where = /^test at (?:.*?\/)?(test\/\S+?):\d+:\d+$/.exec(lines[i]);
      const what = where && /^✖ (.*?)(?: \([\d.]+m?s\))?$/.exec(lines[i + 1] ?? '');
      if (where && what) seen.add(`${where[1]} › ${what[1]}`);
    }
  }
  if (seen.size === 0 && red) seen.add('(npm test failed outside a test: see its log)');
  return [...seen];
}

/** The Markdown table: one row per failed test, failures per pass (compiled, Node) out of `runs`. `logs`: [file name, text, exit status]. */
export function soakTable(logs, runs) {
  const failed = new Map();
  for (const [name, text, status] of logs) {
    const pass = /-compiled\.log$/.test(name) ? 'compiled' : 'node';
    for (const key of failedTests(text, status !== 0)) {
      const row = failed.get(key) ?? { compiled: 0, node: 0 };
      row[pass]++;
      failed.set(key, row);
    }
  }
  const rows = ['| test | failed (compiled) | failed (Node) |', '|---|---|---|'];
  if (failed.size === 0) rows.push(`| (none: every test passed in each of the ${runs} runs) | 0/${runs} | 0/${runs} |`);
  for (const [key, row] of [...failed].sort(([a], [b]) => (a < b ? -1 : 1))) rows.push(`| ${key.replaceAll('|', '\\|')} | ${row.compiled}/${runs} | ${row.node}/${runs} |`);
  return rows.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [dir, runs] = process.argv.slice(2);
  // Each log's exit status is in the file of the same name ending in .status.
  const status = (n) => Number(readFileSync(`${dir}/${n.replace(/\.log$/, '.status')}`, 'utf8').trim());
  const logs = readdirSync(dir).filter((n) => n.endsWith('.log')).sort().map((n) => [n, readFileSync(`${dir}/${n}`, 'utf8'), status(n)]);
  console.log(soakTable(logs, Number(runs)));
}
