// stasis restore from what is not an archive: refused at once, nothing left (the real binary, no container).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { TestEnv } from '../helpers.ts';

describe('restore --checkpoint of a device', () => {
  const env = new TestEnv('cli-restore');
  after(() => env.cleanup());

  for (const device of ['/dev/zero', '/dev/urandom']) {
    test(`${device}: "not an archive", and nothing is left in the state directory`, async () => {
      // They never end: before the fix the restore read them for ever (the time limit here is only a backstop).
      const result = await env.run(['restore', 'r1', '--checkpoint', device], { timeoutMs: 60_000 });
      assert.equal(result.signal, null, `ended by the test's time limit\nstderr: ${result.stderr}`);
      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`^stasis: cannot extract ${device}: not an archive: ${device} is a character device\\n`));
      const left = existsSync(env.stateDir) ? readdirSync(env.stateDir).filter((name) => name.startsWith('.restore-')) : [];
      assert.deepEqual(left, []);
    });
  }
});
