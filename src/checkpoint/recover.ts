import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';
import { DUMP_CONFIG_FILE } from '../runtime/criu-config.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import type { ContainerRecord, MigrationMark } from '../state/store.ts';
import { META_FILE, STATS_FILE, hasCriuImages, removeReplaceLeftovers } from './format/layout.ts';

/**
 * A `stasis checkpoint` killed half way leaves the record marked, the
 * container perhaps frozen, and a partial image folder. The next command
 * that takes the container's lock calls this: a dump that completed (CRIU
 * writes its statistics last; the metadata was written before it started)
 * becomes the checkpoint it was meant to be; anything less is removed; a
 * container that still runs is thawed.
 */
export async function recoverCheckpoint(host: CheckpointHost, record: ContainerRecord): Promise<void> {
  const move = record.migrating ?? null;
  // Asked to switch: only the destination knows whether it did, so nothing here is touched (ps says so).
  if (move?.committing) return;
  const work = record.checkpointWork ?? null;
  // A move's post-copy dump serves pages until stopped: its move is dead, so is its page server.
  if (move !== null && work !== null) await host.stopDumpers(work.workDir);
  // runc and CRIU outlive a killed stasis: the dump they are doing decides what is kept. So does
  // a `runc pause` it had started, which would freeze the container again after the thaw below.
  // Each runc the checkpoint started was noted here before it could act (RunOptions.gate): that
  // exact process is waited for. One it was starting when killed, and had not noted yet, never
  // runs (its gate's pipe closed with stasis). (A record from a stasis before that is waited for
  // by the scans below alone.)
  if (work?.started) await host.waitForExit(work.started);
  await host.waitForPause(record.id);
  if (work !== null) await host.waitForDumpers(work.workDir);
  // CRIU writes its statistics into its work folder (the checkpoint folder) when the dump has succeeded.
  const completeIn = (dir: string) => existsSync(join(dir, STATS_FILE)) && hasCriuImages(dir) && existsSync(join(dir, META_FILE));
  const complete = work !== null && completeIn(work.workDir);
  // Killed after the rename and before the record was saved: the final folder is the checkpoint.
  const renamed = work !== null && !existsSync(work.workDir) && completeIn(work.finalPath);
  record.checkpointing = false;
  record.checkpointWork = null;
  let kept = false;
  if (work !== null && complete && !existsSync(work.finalPath)) {
    // Killed while the metadata was being written again after the dump: the first one stands.
    removeReplaceLeftovers(work.workDir);
    renameSync(work.workDir, work.finalPath);
    record.lastCheckpoint = { path: work.finalPath, at: work.at };
    kept = true;
  } else if (renamed) {
    record.lastCheckpoint = { path: work!.finalPath, at: work!.at };
    kept = true;
  } else if (work !== null) {
    rmSync(work.workDir, { recursive: true, force: true });
  }
  // The CRIU configuration the dump named (runtime/criu-config.ts) is not a file of the checkpoint.
  if (kept) rmSync(join(work!.finalPath, DUMP_CONFIG_FILE), { force: true });
  // A completed dump without --leave-running has ended the container (CRIU
  // kills it; its exit may not be seen yet): what it left is the checkpoint.
  const alive = kept ? work!.leaveRunning : host.statusOf(record) !== 'stopped';
  if (alive) {
    // It may be frozen (killed while paused or dumping), or already running: runc says "not paused" then.
    const thawed = await host.thaw(record.id).then(
      () => true,
      (err: unknown) => /not paused/i.test(errorMessage(err)),
    );
    if (!thawed) record.status = 'paused';
    // A move froze it and said so in the record (paused): thawed, it runs again.
    else if (move !== null) record.status = 'running';
  } else if (kept) {
    record.status = 'stopped';
    record.checkpointedStop = true;
    record.pid = null;
  }
  if (move !== null) {
    undoMove(host, record, move);
    return;
  }
  host.saveRecord(record);
  if (kept) host.journal.append('/tasks/checkpointed', record.id, { path: work!.finalPath, exported: null, leftRunning: alive, recovered: true });
}

/**
 * A move killed before it asked the destination to switch (which, its control channel closed,
 * removes what it restored): the container goes on here, thawed above, and the move's dumps go.
 */
function undoMove(host: CheckpointHost, record: ContainerRecord, move: MigrationMark): void {
  const dumps = [...move.scratch];
  if (record.lastCheckpoint !== null && record.lastCheckpoint.path !== move.previous?.path) dumps.push(record.lastCheckpoint.path);
  record.lastCheckpoint = move.previous;
  record.migrating = null;
  host.saveRecord(record);
  for (const dir of dumps) rmSync(dir, { recursive: true, force: true });
  host.journal.append('/tasks/resumed', record.id, { migrationUndone: move.to });
}
