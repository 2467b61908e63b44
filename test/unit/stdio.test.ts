// stasis's own output on a pipe whose reader is gone (src/host/stdio.ts): a command ends quietly
// (`stasis ps | head -1`), but a move's destination side, which must undo what it restored when
// its source dies, goes on with its output dropped (outliveClosedOutput). Under Node and, where
// the bun runtime is installed (the one the shipped binary is built with), under Bun: the two
// write their output by different paths.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';

const root = mkdtempSync(join(tmpdir(), 'stasis-stdio-'));
after(() => rmSync(root, { recursive: true, force: true }));
const stdio = resolve(import.meta.dirname, '../../src/host/stdio.ts');
const bun = resolve(import.meta.dirname, '../../node_modules/@oven/bun-linux-x64/bin/bun');

// The child waits until its parent has closed both of its output pipes (the parent then ends its
// stdin), writes to them, and notes in a file that it went on.
const child = join(root, 'child.mjs');
writeFileSync(child, `
import { writeFileSync } from 'node:fs';
import { guardStreams, outliveClosedOutput, writeErr, writeOut } from ${JSON.stringify(stdio)};
guardStreams();
if (process.argv[2] === 'outlive') outliveClosedOutput();
process.stdin.resume();
process.stdin.on('end', async () => {
  for (let i = 0; i < 64; i++) {
    writeOut('x'.repeat(65536));
    writeErr('a line\\n');
    await new Promise((r) => setImmediate(r));
  }
  writeFileSync(process.argv[3], 'went on');
  process.exit(7);
});
`);

async function run(runtime: string, mode: string): Promise<{ code: number | null; wentOn: boolean }> {
  const marker = join(root, `${runtime.split('/').pop()}-${mode}`);
  const proc = spawn(runtime, [child, mode, marker], { stdio: ['pipe', 'pipe', 'pipe'] });
  proc.stdout!.destroy();
  proc.stderr!.destroy();
  proc.stdin!.end();
  const code = await new Promise<number | null>((done) => proc.on('close', (c) => done(c)));
  return { code, wentOn: existsSync(marker) && readFileSync(marker, 'utf8') === 'went on' };
}

const runtimes = [process.execPath, ...(existsSync(bun) ? [bun] : [])];
describe('output to a closed pipe', () => {
  for (const runtime of runtimes) {
    const name = runtime === process.execPath ? 'Node' : 'Bun';
    test(`${name}: a command ends quietly (exit 0), writing nothing more`, async () => {
      assert.deepEqual(await run(runtime, 'plain'), { code: 0, wentOn: false });
    });
    test(`${name}: a process that must outlive its reader goes on, its output dropped`, async () => {
      assert.deepEqual(await run(runtime, 'outlive'), { code: 7, wentOn: true });
    });
  }
});
