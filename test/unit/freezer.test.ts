// The cgroup v1 freeze stasis does itself in place of `runc pause` (src/host/cgroups.ts): the
// kernel's FREEZING state cannot be held on demand, so the freezer's file is a fake here. The real
// freezer is exercised by every checkpoint test (test/integration/checkpoint.test.ts checks the
// container was frozen through it and runs again after).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freezeV1, thawV1, type FreezerFile } from '../../src/host/cgroups.ts';

/** A freezer file that answers FREEZING until `frozenAfter` writes of FROZEN (never, with Infinity); its pauses are counted, not waited. */
function fakeFreezer(frozenAfter: number, answer = 'FREEZING'): FreezerFile & { writes: string[]; pauses: number[] } {
  const writes: string[] = [];
  const pauses: number[] = [];
  let state = 'THAWED';
  return {
    writes,
    pauses,
    pause: async (ms) => pauses.push(ms),
    write(_file, value) {
      writes.push(value);
      const frozenWrites = writes.filter((w) => w === 'FROZEN').length;
      state = value === 'THAWED' ? 'THAWED' : frozenWrites >= frozenAfter ? 'FROZEN' : answer;
    },
    read: () => `${state}\n`,
  };
}

describe('the cgroup v1 freeze', () => {
  test('FREEZING is asked again until the kernel says FROZEN; nothing is thawed', async () => {
    const io = fakeFreezer(3);
    await freezeV1('/sys/fs/cgroup/freezer/c1', io);
    assert.deepEqual(io.writes, ['FROZEN', 'FROZEN', 'FROZEN']);
  });

  test('a freezer that stays FREEZING: thawed now and then, given up, and left THAWED', async () => {
    const io = fakeFreezer(Infinity);
    await assert.rejects(freezeV1('/sys/fs/cgroup/freezer/c1', io), /freezer\.state stayed FREEZING/);
    assert.equal(io.writes.filter((w) => w === 'FROZEN').length, 1000);
    // A thaw every hundred tries, and the last write thaws it.
    assert.equal(io.writes.filter((w) => w === 'THAWED').length, 10);
    assert.equal(io.writes.at(-1), 'THAWED');
  });

  test('a state that is neither: given up at once, and thawed', async () => {
    const io = fakeFreezer(Infinity, 'SOMETHING');
    await assert.rejects(freezeV1('/sys/fs/cgroup/freezer/c1', io), /says SOMETHING after FROZEN was written/);
    assert.deepEqual(io.writes, ['FROZEN', 'THAWED']);
  });

  test('a freezer that cannot be written (the container gone): the error, with no further write', async () => {
    const writes: string[] = [];
    const io: FreezerFile = {
      write(_file, value) {
        writes.push(value);
        throw Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' });
      },
      read: () => 'THAWED',
      pause: async () => undefined,
    };
    await assert.rejects(freezeV1('/sys/fs/cgroup/freezer/gone', io), /ENOENT/);
    assert.deepEqual(writes, ['FROZEN', 'THAWED']);
  });

  test('thaw: the file written and read back; one that does not read THAWED is an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-freezer-'));
    try {
      writeFileSync(join(dir, 'freezer.state'), 'FROZEN');
      thawV1(dir);
      assert.equal(readFileSync(join(dir, 'freezer.state'), 'utf8'), 'THAWED');
      assert.throws(() => thawV1(join(dir, 'missing')), /ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
