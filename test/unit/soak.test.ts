// scripts/soak-table.mjs: the per-test failure table of scripts/soak.sh, from `npm test` logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
// @ts-expect-error: a plain .mjs script without types
import { failedTests, soakTable } from '../../scripts/soak-table.mjs';

const SUMMARY = (fail: number) => `ℹ tests 3\nℹ suites 1\nℹ pass ${3 - fail}\nℹ fail ${fail}\nℹ cancelled 0\nℹ skipped 0\nℹ todo 0\nℹ duration_ms 1234.5\n`;
const RED = [
  '> stasis@0.1.0 test', '▶ ps', '  ✖ a | b (12.5ms)', SUMMARY(2),
  '✖ failing tests:', '',
  'test at test/integration/ps.test.ts:95:3', '✖ a | b (12.5ms)', '  AssertionError [ERR_ASSERTION]: x', '',
  'test at /work/x/test/serial/crash.test.ts:104:3', '✖ kill -9 at 100 points (1000ms)', '',
].join('\n');

test('a red log names each failed test by file and name', () => {
  assert.deepEqual(failedTests(RED, true), ['test/integration/ps.test.ts › a | b', 'test/serial/crash.test.ts › kill -9 at 100 points']);
  assert.deepEqual(failedTests(SUMMARY(0), false), []);
  assert.deepEqual(failedTests('npm error Lifecycle script `test` failed\n', true), ['(npm test failed outside a test: see its log)']);
});

test('the table counts failures per test and per pass, out of the runs', () => {
  const table = soakTable([
    ['run-1-compiled.log', RED, 1], ['run-1-node.log', SUMMARY(0), 0],
    ['run-2-compiled.log', RED, 1], ['run-2-node.log', RED, 1],
  ], 2);
  assert.equal(table, [
    '| test | failed (compiled) | failed (Node) |', '|---|---|---|',
    '| test/integration/ps.test.ts › a \\| b | 2/2 | 1/2 |',
    '| test/serial/crash.test.ts › kill -9 at 100 points | 2/2 | 1/2 |',
  ].join('\n'));
  assert.match(soakTable([['run-1-compiled.log', SUMMARY(0), 0], ['run-1-node.log', SUMMARY(0), 0]], 1), /\| \(none: every test passed in each of the 1 runs\) \| 0\/1 \| 0\/1 \|$/);
});
