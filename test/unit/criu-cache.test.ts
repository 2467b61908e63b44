import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { criuCacheState, keepCriuCache } from '../../src/runtime/criu-cache.ts';

// What stasis decides about CRIU's kernel cache (src/runtime/criu-cache.ts),
// on paths of the test's own: nothing here mounts or runs CRIU.

const TMPFS_MAGIC = 0x01021994;
let root = '';

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'stasis-criu-cache-test-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

test('a cache with content is kept as it is', () => {
  const kdat = path.join(root, 'kept.kdat');
  writeFileSync(kdat, Buffer.alloc(912, 1));
  assert.equal(criuCacheState(kdat), 'kept');
});

test('a missing or empty cache on a disk folder is for stasis to make; on tmpfs CRIU makes it', () => {
  const onTmpfs = statfsSync(root).type === TMPFS_MAGIC;
  const missing = path.join(root, 'missing.kdat');
  const empty = path.join(root, 'empty.kdat');
  writeFileSync(empty, '');
  assert.equal(criuCacheState(missing), onTmpfs ? 'criu-keeps-it' : 'missing');
  // An empty file is what a reboot leaves of the mount: CRIU takes it as stale.
  assert.equal(criuCacheState(empty), onTmpfs ? 'criu-keeps-it' : 'missing');
});

test('a link where the cache should be is not taken for a cache', () => {
  const target = path.join(root, 'target.kdat');
  writeFileSync(target, Buffer.alloc(912, 1));
  const link = path.join(root, 'link.kdat');
  symlinkSync(target, link);
  assert.notEqual(criuCacheState(link), 'kept');
});

test('keepCriuCache leaves a kept cache alone and never throws', async () => {
  const kdat = path.join(root, 'alone.kdat');
  writeFileSync(kdat, Buffer.alloc(912, 2));
  await keepCriuCache('/nonexistent/criu', kdat);
  assert.equal(criuCacheState(kdat), 'kept');
});
