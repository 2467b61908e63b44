// host/warm.ts: memory written and freed just before a dump, and the estimate of what a dump writes.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { privateResident, warmMemory } from '../../src/host/warm.ts';

const root = mkdtempSync(join(tmpdir(), 'stasis-warm-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('warmMemory', () => {
  test('writes what it is asked into the folder and leaves nothing there', () => {
    assert.equal(warmMemory(3 * 1024 * 1024 + 5, root), 3 * 1024 * 1024 + 5);
    assert.deepEqual(readdirSync(root), []);
  });

  test('nothing asked, nothing written; a folder it cannot write in is no error', () => {
    assert.equal(warmMemory(0, root), 0);
    assert.equal(warmMemory(1 << 20, join(root, 'missing')), 0);
  });

  test('never more than half the memory available', () => {
    assert.equal(warmMemory(10 * 1024 * 1024, root, 2 * 1024 * 1024), 1024 * 1024);
    assert.equal(warmMemory(10 * 1024 * 1024, root, 0), 0);
    assert.deepEqual(readdirSync(root), []);
  });
});

describe('privateResident', () => {
  test('this process has private memory resident; a process that is gone has none', () => {
    assert.ok(privateResident([process.pid]) > 1024 * 1024);
    assert.equal(privateResident([0x7ffffffe]), 0);
  });
});
