// What ps and info say of a record (src/runtime/view.ts), from conmon's exit file and whether the
// recorded process runs, without runc.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { viewOf } from '../../src/runtime/view.ts';
import type { ContainerRecord, StateStore } from '../../src/state/store.ts';

/** A store whose only file is conmon's exit file with `exit` in it (or none). */
const storeWith = (exit: string | null) => ({ readContainerFile: (_id: string, name: string) => (name === 'exit' && exit !== null ? { text: exit, mtime: new Date(0) } : null) }) as unknown as StateStore;
const record = (over: Partial<ContainerRecord>) => ({
  id: 'c', status: 'running', pid: process.pid, bundle: '/b', createdAt: new Date(0).toISOString(), command: ['sh'], labels: {}, restoredFrom: null, exit: null,
  rootfs: { kind: 'overlay', base: '/base', userBundle: null }, mounts: [], stdio: { mode: 'log', stdin: null, stdout: null, stderr: null },
  tty: false, autoRemove: false, lastCheckpoint: null, checkpointing: false, checkpointedStop: false, ...over,
}) as ContainerRecord;
// A PID whose process has ended (and been reaped).
const gone = spawnSync('true').pid!;

describe('the view of a record', () => {
  test('running, its process running: running', () => {
    assert.equal(viewOf(storeWith(null), record({})).status, 'running');
  });
  test('an exit file: stopped, with its status', () => {
    const view = viewOf(storeWith('3'), record({}));
    assert.deepEqual([view.status, view.pid, view.exit?.status], ['stopped', null, 3]);
  });
  test('a checkpoint under way, its process running (frozen for the dump): as recorded, and an exit file is not taken for its exit', () => {
    assert.equal(viewOf(storeWith('137'), record({ checkpointing: true })).status, 'running');
  });
  test('a checkpoint marked whose processes are gone (its command killed after the dump; its recovery not run yet): stopped, without an exit status', () => {
    const view = viewOf(storeWith('137'), record({ checkpointing: true, pid: gone }));
    assert.deepEqual([view.status, view.pid, view.exit], ['stopped', null, null]);
  });
});
