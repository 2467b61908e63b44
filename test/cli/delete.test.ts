// stasis delete of containers that do not exist: how failures are reported (the real binary, no root needed).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TestEnv } from '../helpers.ts';

describe('delete reports every failure', () => {
  const env = new TestEnv('cli-delete');
  after(() => env.cleanup());

  test('--json: one JSON document on stderr with both causes, and no text line before it; exit 1', async () => {
    const result = await env.run(['--json', 'delete', 'ghost1', 'ghost2']);
    assert.equal(result.code, 1);
    assert.deepEqual(JSON.parse(result.stdout), [], 'stdout: the (empty) list of deleted containers');
    assert.equal(result.stderr.split('\n').length, 2, `one line on stderr:\n${result.stderr}`);
    assert.deepEqual(JSON.parse(result.stderr), {
      error: '2 of 2 containers could not be deleted',
      errors: [
        { id: 'ghost1', error: 'no such container: ghost1', hint: 'list containers with `stasis ps`' },
        { id: 'ghost2', error: 'no such container: ghost2', hint: 'list containers with `stasis ps`' },
      ],
    });
  });

  test('text: each cause once, with its hint, then the summary; exit 1', async () => {
    const result = await env.run(['delete', 'ghost1', 'ghost2']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, [
      'stasis: no such container: ghost1',
      'hint: list containers with `stasis ps`',
      'stasis: no such container: ghost2',
      'hint: list containers with `stasis ps`',
      'stasis: 2 of 2 containers could not be deleted',
      '',
    ].join('\n'));
  });

  test('one missing container: its own error, exit 1', async () => {
    await env.fails(1, ['delete', 'ghost'], /^stasis: no such container: ghost\nhint: list containers with `stasis ps`\n$/);
    await env.fails(1, ['delete', '-f', 'ghost'], /^stasis: no such container: ghost\n/);
  });
});
