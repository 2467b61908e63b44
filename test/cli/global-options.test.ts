// The global path options (--state-dir, --checkpoint-dir, --runc, --criu): a value given twice or
// empty is a usage error, never an internal one, and nothing is made (the real binary, no root needed).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, TestEnv } from '../helpers.ts';

describe('global path options', () => {
  const env = new TestEnv('cli-global');
  after(() => env.cleanup());

  for (const option of ['--state-dir', '--checkpoint-dir', '--runc', '--criu']) {
    test(`${option} given twice is a usage error: 2 (run: 125)`, async () => {
      const other = join(env.root, 'other');
      await env.fails(2, [option, other, option, join(env.root, 'third'), 'ps'], new RegExp(`^stasis: ${option} given more than once\\n`));
      await env.fails(125, ['run', '-d', 'x', option, other, option, other, '--', 'true'], new RegExp(`^stasis: ${option} given more than once\\n`));
      assert.equal(existsSync(other), false);
      assert.equal(existsSync(join(env.root, 'third')), false);
    });

    test(`${option} '' is a usage error: 2`, () => {
      // Given once: the env's own --state-dir is not added (STASIS_STATE_DIR keeps a broken parse off /run/stasis).
      for (const args of [[option, '', 'ps'], [`${option}=`, 'ps'], ['ps', option, '']]) {
        const result = spawnSync(CLI[0], [...CLI.slice(1), ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', STASIS_STATE_DIR: env.stateDir, STASIS_CHECKPOINT_DIR: env.checkpointDir } });
        assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, new RegExp(`^stasis: ${option}: an empty value\\n`));
      }
    });
  }
});
