// stasis events: time bounds are checked before anything is read (the real binary, no root needed).
import { after, describe, test } from 'node:test';
import { TestEnv } from '../helpers.ts';

describe('events checks its time bounds', () => {
  const env = new TestEnv('cli-events');
  after(() => env.cleanup());

  test('a day February does not have (2026-02-31) is a usage error, for --since and --until', async () => {
    await env.fails(2, ['events', '--since', '2026-02-31T00:00:00Z'], /^stasis: --since "2026-02-31T00:00:00Z": expected an RFC 3339 time \(2026-01-02T15:04:05Z\) or a duration like 10m, 2h\n$/);
    await env.fails(2, ['events', '--no-follow', '--until', '2026-02-31T00:00:00Z'], /^stasis: --until "2026-02-31T00:00:00Z": expected an RFC 3339 time/);
    await env.fails(2, ['events', '--since', 'yesterday'], /^stasis: --since "yesterday"/);
  });
});
