// scripts/check-rooms.mjs: the import rules between src/checkpoint's rooms
// hold for the real tree, and each kind of break is caught in a made-up one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'check-rooms.mjs');

function check(files: Record<string, string> | null): { status: number | null; output: string } {
  const args = [SCRIPT];
  let dir: string | null = null;
  if (files) {
    dir = mkdtempSync(join(tmpdir(), 'stasis-rooms-'));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    args.push('--src', dir);
  }
  const run = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (dir) rmSync(dir, { recursive: true, force: true });
  return { status: run.status, output: run.stdout + run.stderr };
}

test('the real tree follows the room rules', () => {
  const { status, output } = check(null);
  assert.equal(status, 0, output);
});

test('a sub-room importing a verb, criu/ importing stasis, migrate/ decoding images: each is caught', () => {
  const ok = "export const x = 1;\n";
  const { status, output } = check({
    'errors.ts': ok,
    'checkpoint/dump.ts': ok,
    'checkpoint/format/layout.ts': "import { x } from '../dump.ts';\n",
    'checkpoint/criu/images.ts': "import { x } from '../../runtime/spec.ts';\nimport { y } from '../../errors.ts';\n",
    'runtime/spec.ts': ok,
    'migrate/migrate.ts': "import type { T } from '../checkpoint/criu/images.ts';\nimport { x } from '../checkpoint/dump.ts';\n",
  });
  assert.equal(status, 1, output);
  assert.match(output, /checkpoint\/format\/layout\.ts imports checkpoint\/dump\.ts/);
  assert.match(output, /checkpoint\/criu\/images\.ts imports runtime\/spec\.ts/);
  assert.match(output, /migrate\/migrate\.ts imports checkpoint\/criu\/images\.ts/);
  assert.doesNotMatch(output, /imports errors\.ts|migrate\.ts imports checkpoint\/dump\.ts/);
  assert.match(output, /3 import\(s\) break the room rules/);
});
