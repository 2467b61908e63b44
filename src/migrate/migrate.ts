import { pageHasher, randomBytes } from '../host/digest.ts';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StasisError, errorMessage } from '../errors.ts';
import { checkpointHeld } from '../checkpoint/dump.ts';
import { lazyPageBytes } from '../checkpoint/criu/pagemap.ts';
import { keepLog } from '../checkpoint/criu/log.ts';
import { IMAGES_DIR, STATS_FILE } from '../checkpoint/format/layout.ts';
import type { RunResult } from '../host/spawn.ts';
import { CRIU_OPTIONS, CRIU_OPTION_NAMES, type CriuOptions } from '../runtime/criu.ts';
import { DUMP_CONFIG_FILE } from '../runtime/criu-config.ts';
import { runcMessage } from '../runtime/runc.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import { validateId } from '../state/ids.ts';
import { Control } from './control.ts';
import type { Peer } from './peer.ts';
import { cancelReceiver, sendFolder, startReceiver } from './transfer.ts';
import { debugLog } from '../log.ts';
import { memAvailable, privateResident, warmMemory } from '../host/warm.ts';
import { pageServerSetting, servePagesWhen } from './pageserver.ts';
import { deltaDirOf, dumpFollowed, preCopy, sendChanges, type FollowedPages } from './precopy.ts';
import type { ContainerRecord, MigrationMark } from '../state/store.ts';
import { sendChunked } from './chunked.ts';
import { checkDestination } from './check.ts';
import { DELTA_CHUNK, DELTA_CHUNK_OLD } from './delta.ts';
import type { RestoreRequest } from './receive.ts';
import { formatBytes } from '../host/units.ts';

// A move, from the source's side: check the destination (the ID is free,
// the base is there and the same) while the container runs; freeze it and
// dump it with CRIU, leaving it frozen; send the checkpoint; have the
// destination restore it; then commit (the container here is removed) or,
// when anything before the commit fails, thaw it: it goes on here as it was.

import type { MigrateOptions, MigrateProgress, MigrateResult } from './options.ts';

export type { MigrateOptions, MigrateProgress, MigrateResult };

/** What a lazy dump's folder keeps here: CRIU writes them while it serves the pages (and reads its configuration). */
const LAZY_LOCAL_FILES = ['dump.log', 'runc-checkpoint.log', STATS_FILE, DUMP_CONFIG_FILE];

/** A free TCP port on 127.0.0.1 (for the page server). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Thaws the container a move froze; null when it runs (again), else the error.
 * A lazy dump's CRIU, stopped or failed, may have thawed it itself: runc's
 * "not paused" then means it runs already.
 */
async function thawBack(host: CheckpointHost, id: string): Promise<unknown> {
  return host.thaw(id).then(() => null, (err: unknown) => (/not paused/.test(errorMessage(err)) ? null : err));
}

/**
 * A move that did not switch: the container here, thawed where the move left
 * it frozen, is recorded as before the move, and the move's checkpoint and
 * pre-copy here go. Returns the thaw's failure, or null.
 */
async function takeBack(host: CheckpointHost, record: ContainerRecord, previous: ContainerRecord['lastCheckpoint'], checkpointPath: string | null, preDir: string | null, frozen: boolean): Promise<unknown> {
  const thawed = frozen ? await thawBack(host, record.id) : null;
  if (frozen) {
    record.status = thawed === null ? 'running' : 'paused';
    record.lastCheckpoint = previous;
  }
  record.migrating = null;
  host.saveRecord(record);
  for (const path of [checkpointPath, preDir]) if (path !== null) rmSync(path, { recursive: true, force: true });
  return thawed;
}

export async function migrateContainer(host: CheckpointHost, id: string, peer: Peer, opts: MigrateOptions, progress: MigrateProgress = () => undefined): Promise<MigrateResult> {
  const started = Date.now();
  const shown = peer.destination.shown;
  const name = validateId(opts.name ?? id);
  const pageServer = pageServerSetting(process.env.STASIS_PAGE_SERVER);
  const warnings: string[] = [];
  const first = await host.settledRecord(id);
  if (first === null) throw new StasisError(`container ${id} is being created; try again when it runs`);
  if (first.rootfs.kind !== 'overlay') {
    throw new StasisError(`cannot move container ${id}: its rootfs is a bundle written in place, which a move does not carry`, {
      hint: `checkpoint it (stasis checkpoint ${id} --export FILE), copy the bundle, and restore it there with --bundle DIR`,
    });
  }
  const status = host.statusOf(first);
  if (status !== 'running') throw new StasisError(`cannot move container ${id}: it is ${status}`);
  const base = first.rootfs.base;
  const destBase = opts.rootfs ?? base;

  // Ctrl-C or SIGTERM before the switch undoes the move (the channel is cut, so the step under
  // way fails and the container is thawed here); during the switch it waits for the answer.
  let interrupted = false;
  let switching = false;
  let cutNow: () => void = () => undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (switching) {
      process.stderr.write(`stasis: ${signal}: the switch to ${shown} is under way; waiting for its answer\n`);
      return;
    }
    if (!interrupted) process.stderr.write(`stasis: ${signal}: undoing the move; ${id} goes on here\n`);
    interrupted = true;
    cutNow();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stopIfInterrupted = () => {
    if (interrupted) throw new StasisError(`the move of ${id} to ${shown} was interrupted`, { code: 'interrupted' });
  };

  let control: Control | null = null;
  try {
    progress(`connecting to ${shown}`);
    await peer.open();
    control = new Control(peer.stasis(['__migrate', 'serve']), shown);
    cutNow = () => control?.cut();
    progress(`checking ${shown}`);
    const checkStarted = Date.now();
    const { check, rootfsMs, lazy, onDemand } = await checkDestination(host, first, base, peer, control, opts, warnings, progress);
    // A destination whose checkpoint store holds chunks (its check says how many) gets only the chunks it lacks.
    const useStore = !lazy && !opts.precopy && (check.storeChunks ?? 0) > 0;
    const checkMs = Date.now() - checkStarted;

    return await host.withContainer(id, async (record) => {
      const previousCheckpoint = record.lastCheckpoint;
      // Without --keep the checkpoint only passes through: it is written in the state
      // directory's scratch folder, so that nothing is made under the checkpoint
      // directory (not even an empty CHECKPOINT-DIR/ID/); with --keep it stays there.
      const imagePath = opts.keep ? undefined : join(host.scratchDir, `.migrate-out-${id}-${randomBytes(6).toString('hex')}`);
      const criuFlags = { ...Object.fromEntries(CRIU_OPTION_NAMES.map((name) => [CRIU_OPTIONS[name].key, opts[CRIU_OPTIONS[name].key] === true])) as CriuOptions, imagePath, ignoreVolumes: opts.ignoreVolumes === true };
      // The container's own volumes are granted there at the same paths (the user moving it vouches
      // for them), unless the user maps one elsewhere with --mount.
      const userMounts = [...(opts.userMounts ?? [])];
      for (const volume of record.volumes ?? []) {
        if (!userMounts.some((m) => m.destination.replace(/\/+$/, '') === volume.destination)) {
          userMounts.push({ source: volume.source, destination: volume.destination, options: [volume.readonly ? 'ro' : 'rw'] });
        }
      }
      const request: RestoreRequest = {
        token: randomBytes(16).toString('hex'),
        id: name,
        rootfs: destBase,
        source: `${hostname()}:${id}`,
        userMounts,
        ignoreVolumes: opts.ignoreVolumes === true,
        trust: opts.trust,
        criuOptions: [],
        tcpClose: opts.tcpClose,
        createdAt: record.createdAt,
        onDemand,
      };
      // Marked before anything is frozen: a command finding this move killed undoes it (checkpoint/recover.ts).
      const mark: MigrationMark = { to: shown, previous: previousCheckpoint, scratch: imagePath === undefined ? [] : [imagePath], committing: false };
      record.migrating = mark;
      host.saveRecord(record);
      let checkpointPath: string | null = null;
      let dumpMs = 0;
      let transferMs = 0;
      let restoreMs = 0;
      let bytes = 0;
      let pagesServed: Promise<RunResult> | null = null;
      let workDir: string | null = null;
      let checkpointBytes = 0;
      let fromStore = 0;
      let restoredAt = 0;
      // Pre-copy: the whole checkpoint goes while the container runs (frozen only for its local dump).
      // Named, and marked as the move's, before it is made: a kill during the pre-copy leaves nothing an undo would not find.
      const preDir = join(host.scratchDir, `.migrate-pre-${id}-${randomBytes(6).toString('hex')}`);
      if (opts.precopy) {
        mark.scratch.push(preDir, deltaDirOf(preDir));
        host.saveRecord(record);
      }
      // A catch-up round goes where the changed pages can stream (a destination that reads them, not compressed) and are found by their prints.
      const streams = check.pageStream === true && opts.compress !== true;
      const pageHash = check.deltaBase === true && check.deltaUnits?.includes(DELTA_CHUNK) === true ? pageHasher() : null;
      const ready = check.receiverReady === true;
      // The changed pages go while CRIU writes them, where the destination reads that (follow.ts).
      const follow = streams && check.pageFollow === true;
      const pre = !opts.precopy ? null : await preCopy(host, record, peer, control!, criuFlags, progress, { dir: preDir, compress: opts.compress === true, stage: check.deltaBase === true, pageHash, catchUp: streams && pageHash !== null, ready, follow }).catch((err: unknown) => {
        record.lastCheckpoint = previousCheckpoint;
        record.migrating = null;
        host.saveRecord(record);
        const why = errorMessage(err).replace(new RegExp(`^checkpoint ${id} failed: `), '');
        const newline = why.indexOf('\n');
        const [head, tail] = newline < 0 ? [why, ''] : [why.slice(0, newline), why.slice(newline)];
        throw new StasisError(`migrate ${id}: the pre-copy to ${shown}: ${head}; ${id} goes on here${tail}`, { hint: err instanceof StasisError ? err.hint : undefined, code: err instanceof StasisError ? err.code : undefined });
      });
      if (pre !== null) {
        record.lastCheckpoint = previousCheckpoint;
        host.saveRecord(record);
      }
      // --precopy: the changed pages stream ahead of the tar, where the destination reads that (not with --compress: they go in the compressed tar).
      const pageStream = pre !== null && pre.sums !== null && streams;
      const receiver = startReceiver(peer, ['__migrate', 'receive', request.token, ...(pre !== null ? ['--base', pre.token] : []), ...(pageStream ? ['--pages'] : [])], ready);
      let up = false;
      cutNow = () => {
        control?.cut();
        receiver.child.stdin!.destroy();
        // A signal while it starts: it goes, so that the wait below ends (the move is undone after it).
        if (!up) receiver.child.kill();
      };
      // Up before the freeze, where it says so: its start-up (ssh, the stasis there) neither competes with the dump nor delays the send.
      await receiver.ready;
      up = true;
      // A full move's dump writes all the memory into the page cache: into memory freed just now (host/warm.ts; a pre-copy's was, by its own removal).
      if (!lazy && pre === null) {
        const warmStarted = Date.now();
        const warmed = warmMemory(privateResident(host.containerPids(id)), host.scratchDir);
        debugLog(`${warmed} bytes written and freed for the dump in ${Date.now() - warmStarted} ms`);
      }
      const frozenAt = Date.now();
      let dumpedAt: number | null = null;
      let pagesFollowed: FollowedPages | null = null;
      let sending = false;
      // What the move was doing, for a failure's message.
      let phase: string | null = `dumping it with CRIU (frozen) to send it to ${shown}`;
      try {
        stopIfInterrupted();
        if (lazy) {
          // The page server listens here; the destination reaches it through ssh's forward (or directly).
          const port = await freePort();
          request.pageServerPort = await peer.reach(port);
          const cp = await checkpointHeld(host, record, { ...criuFlags, leaveRunning: true, stayFrozen: true, preDump: false, lazyPort: port }, (step) => progress(step));
          checkpointPath = cp.path;
          pagesServed = cp.pagesServed ?? null;
          workDir = cp.path;
        } else if (pageStream && follow) {
          // The pages that changed since the pre-copy go as CRIU writes them: finding and sending them overlap the dump.
          // Where this host has no room for a second copy of the memory (or STASIS_PAGE_SERVER says so), CRIU hands them to stasis instead (not with --keep, whose checkpoint stays here whole).
          const served = !opts.keep && servePagesWhen(pageServer, () => privateResident(host.containerPids(id)), memAvailable);
          debugLog(served ? 'the dump at the freeze sends its pages to stasis (too little memory here for a second copy)' : 'the dump at the freeze writes its pages here');
          const followed = await dumpFollowed(host, record, { ...criuFlags, leaveRunning: true, stayFrozen: true, preDump: false }, (step) => progress(step), pre!, peer, receiver, 'what changed since the pre-copy', (sent) => progress(`sending what changed: ${formatBytes(sent, { si: true })}`), false, served);
          checkpointPath = followed.cp.path;
          dumpedAt = followed.dumpedAt;
          if (followed.error !== null) {
            phase = null;
            sending = true;
            throw followed.error;
          }
          pagesFollowed = followed.paged;
        } else {
          const cp = await checkpointHeld(host, record, { ...criuFlags, leaveRunning: true, stayFrozen: true, preDump: false }, (step) => progress(step));
          checkpointPath = cp.path;
        }
        dumpMs = (dumpedAt ?? Date.now()) - frozenAt;
        debugLog(`frozen and dumped in ${dumpMs} ms`);
        phase = null;
        stopIfInterrupted();
        // The container's log is in the checkpoint (checkpointHeld puts it there).
        const transferStarted = dumpedAt ?? Date.now();
        progress(`sending the checkpoint to ${shown}`);
        sending = true;
        // CRIU still writes its log and statistics into a lazy dump's folder: they stay here.
        if (pre !== null) {
          // In pages where the destination reads them; a stasis there from before, in its 64 KiB.
          const unit = check.deltaUnits?.includes(DELTA_CHUNK) ? DELTA_CHUNK : DELTA_CHUNK_OLD;
          ({ bytes, checkpointBytes } = await sendChanges(host, peer, receiver, pre, checkpointPath, id, progress, opts.compress === true, unit, pageStream, pagesFollowed));
        } else if (useStore) {
          // Its scratch folder is one of the move's (a kill leaves it to the undo).
          const scratch = join(host.scratchDir, `.migrate-chunks-${id}-${randomBytes(6).toString('hex')}`);
          mark.scratch.push(`${scratch}.chunks`);
          host.saveRecord(record);
          ({ bytes, fromStore } = await sendChunked(control!, checkpointPath, scratch, (dir) => sendFolder(peer, receiver, dir, 'the checkpoint', (sent) => progress(`sending: ${formatBytes(sent, { si: true })}`), [], [], opts.compress === true), progress));
        } else {
          bytes = await sendFolder(peer, receiver, checkpointPath, 'the checkpoint', (sent) => progress(`sending: ${formatBytes(sent, { si: true })}`), lazy ? LAZY_LOCAL_FILES : [], [], opts.compress === true);
        }
        transferMs = Date.now() - transferStarted;
        debugLog(`the checkpoint is there (${bytes} bytes sent in ${transferMs} ms)`);
        stopIfInterrupted();
        progress(`restoring ${name} on ${shown}`);
        const restoreStarted = Date.now();
        const restored = await control!.request({ op: 'restore', ...request });
        if (!restored.ok) {
          throw new StasisError(`${shown} could not restore ${name}: ${String(restored.error)}`, { hint: typeof restored.hint === 'string' ? restored.hint : undefined, code: 'restore-failed' });
        }
        if (Array.isArray(restored.warnings)) warnings.push(...restored.warnings.map((w) => `${shown}: ${String(w)}`));
        restoredAt = Date.now();
        restoreMs = restoredAt - restoreStarted;
        debugLog(`restored there in ${restoreMs} ms`);
        // From here on the answer decides: a signal no longer undoes the move.
        switching = true;
        stopIfInterrupted();
      } catch (err) {
        // Not switched: the container goes on here, and the other side removes what it restored.
        if (!sending) await cancelReceiver(receiver);
        await control!.end();
        // The page server goes (its CRIU with it); the frozen processes are then the container's again.
        if (workDir !== null) await host.stopDumpers(workDir);
        // A dump that failed has thawed the container itself (checkpointHeld); a completed one left it frozen.
        const thawed = await takeBack(host, record, previousCheckpoint, checkpointPath, pre?.dir ?? null, checkpointPath !== null);
        let why = errorMessage(err);
        // A failed dump reads as a failed move: what it was doing, then CRIU's words.
        if (phase !== null && !(err instanceof StasisError && err.code === 'interrupted')) why = `migrate ${id}: ${phase}: ${why.replace(new RegExp(`^checkpoint ${id} failed: `), '')}`;
        // "ID goes on here" ends the first line, before any quoted CRIU log lines.
        const newline = why.indexOf('\n');
        const [head, tail] = newline < 0 ? [why, ''] : [why.slice(0, newline), why.slice(newline)];
        if (thawed !== null) {
          throw new StasisError(`${why}; ${id} stays here, but could not be thawed: ${errorMessage(thawed)}`, { hint: `stasis resume ${id}` });
        }
        throw new StasisError(`${head}; ${id} goes on here${tail}`, { hint: err instanceof StasisError ? err.hint : undefined, code: err instanceof StasisError ? err.code : undefined });
      }

      // The switch: once the destination acknowledges, the container is there and not here.
      const toPull = lazy && checkpointPath !== null ? lazyPageBytes(join(checkpointPath, IMAGES_DIR)) : null;
      progress(lazy ? `${shown} pulls ${toPull === null ? 'the memory' : formatBytes(toPull, { si: true })} on demand and in the background` : request.onDemand ? `${shown} loads the memory from its images, on demand and in the background` : 'switching');
      const pagesStarted = Date.now();
      // From here on only the destination knows whether it switched: a command finding this move
      // killed leaves the container frozen here, and ps says what to do.
      mark.committing = true;
      host.saveRecord(record);
      const ack = await control!.request({ op: 'commit' }, (pulled) => {
        const pages = Number(pulled.pages);
        const of = Number(pulled.of);
        if (Number.isFinite(pages) && Number.isFinite(of)) progress(`${shown} has ${formatBytes(pages * 4096, { si: true })} of ${formatBytes(of * 4096, { si: true })}; ${formatBytes(Math.max(0, of - pages) * 4096, { si: true })} (${Math.max(0, of - pages)} pages) left`);
      }).catch(() => null);
      // Post-copy: the destination answers once every page is there (ok) or its transfer broke (not ok).
      let pagesMs: number | null = null;
      let lazyBytes: number | null = null;
      let served: RunResult | null = null;
      if (pagesServed !== null) {
        // The lazy dump left the processes here frozen (--leave-running on a frozen container), so
        // they are whole, as at the switch, until the destination says it has every page. CRIU's
        // own exit says less: it was seen to end well when the daemon there was killed mid-way.
        served = await pagesServed;
        pagesMs = Date.now() - pagesStarted;
        lazyBytes = toPull;
      } else if (request.onDemand) pagesMs = Date.now() - pagesStarted;
      // Only a restore on demand answers "not ok" (its memory did not all come): the copy here, frozen whole, goes on.
      if (ack !== null && !ack.ok) {
        await control!.end();
        if (checkpointPath !== null) keepLog(host.logsDir, id, join(checkpointPath, 'dump.log'));
        const thawed = await takeBack(host, record, previousCheckpoint, checkpointPath, pre?.dir ?? null, true);
        const what = lazy ? `the memory transfer to ${shown} broke` : `loading the memory from the images on ${shown} failed`;
        throw new StasisError(`${what} after the switch (${String(ack.error)}${served !== null && served.exitCode !== 0 ? `; here: ${runcMessage(served.stderr)}` : ''}); ${name} there is removed (its memory was incomplete) and ${id} goes on here as it was at the switch${thawed === null ? '' : `, once thawed: ${errorMessage(thawed)}`}`, {
          hint: thawed === null ? undefined : `stasis resume ${id}`,
          code: 'pages-lost',
        });
      }
      if (ack === null) {
        throw new StasisError(`the connection to ${shown} was lost at the switch: ${name} may be running there; ${id} is frozen here`, {
          hint: `look there (stasis ps); if ${name} runs there, stasis delete -f ${id} here; if not, stasis resume ${id} here`,
          code: 'switch-unknown',
        });
      }
      host.journal.append('/tasks/checkpointed', id, { path: opts.keep ? checkpointPath : null, destination: shown, name, migrated: true, lazy });
      record.checkpointedStop = true;
      mark.switched = true;
      host.saveRecord(record);
      // The checkpoint goes first, and the destination drops its copy: unmounting the overlay
      // below syncs the filesystem, which would otherwise write out those pages first.
      if (!opts.keep && checkpointPath !== null) rmSync(checkpointPath, { recursive: true, force: true });
      if (pre !== null) rmSync(pre.dir, { recursive: true, force: true });
      await control!.end();
      progress(`removing ${id} here`);
      await host.discard(id).catch((err: unknown) => warnings.push(`${id} is on ${shown}, but removing it here failed: ${errorMessage(err)}`));
      return {
        id,
        name,
        destination: shown,
        lazy,
        compressed: opts.compress === true,
        downtimeMs: restoredAt - frozenAt,
        bytes,
        lazyBytes,
        precopy: pre === null ? null : { bytes: pre.bytes, ms: pre.ms, checkpointBytes, onDemand: request.onDemand === true },
        fromStore,
        totalMs: Date.now() - started,
        timingsMs: { check: checkMs, rootfs: rootfsMs, dump: dumpMs, transfer: transferMs, restore: restoreMs, pages: pagesMs },
        checkpoint: opts.keep ? checkpointPath : null,
        warnings,
      };
    });
  } catch (err) {
    await control?.end(10_000);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await peer.close();
  }
}
