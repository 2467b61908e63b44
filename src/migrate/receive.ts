import { chmodSync, existsSync, lstatSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { StasisError, errorMessage } from '../errors.ts';
import { unprivilegedUffd } from '../runtime/userns.ts';
import { DELTA_UNITS, applyDeltas, hashBase, type BaseSums } from './delta.ts';
import { applyChunked, storeHas } from './chunked.ts';
import { receivePages } from './pagereceive.ts';
import type { UserMount } from '../checkpoint/format/engine-spec.ts';
import { restoreContainer } from '../checkpoint/restore.ts';
import { UNPACK_LIMIT_BYTES } from '../checkpoint/source.ts';
import type { BaseFile } from '../checkpoint/format/layout.ts';
import { changedBaseFiles, fingerprintOf, rootfsManifest } from '../checkpoint/rootfs-diff.ts';
import { extractTar } from '../checkpoint/archive/tar.ts';
import type { Trust } from '../checkpoint/policy/trust.ts';
import { criuFeature } from '../runtime/criu.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import { validateId } from '../state/ids.ts';
import { LineReader, line, type Message } from './channel.ts';
import { restoreLazily, type LazyRestore } from './lazy.ts';
import { bestEffort } from '../log.ts';
import { outliveClosedOutput } from '../host/stdio.ts';

// The destination's side of a move (`stasis __migrate ...`, which migrate
// starts there): `serve` answers the control channel (check, restore,
// commit) and undoes an uncommitted restore when the channel ends; `receive`
// unpacks the checkpoint sent to it; `rootfs` unpacks a base sent with
// --with-rootfs. Everything received is untrusted input, as any archive is.

declare const __STASIS_VERSION__: string;

const TOKEN = /^[0-9a-f]{16,64}$/;

export function stagingDir(host: CheckpointHost, token: string): string {
  if (!TOKEN.test(token)) throw new StasisError(`bad transfer token ${JSON.stringify(token)}`);
  return join(host.scratchDir, `.migrate-${token}`);
}

/**
 * Where `__migrate receive --stage` keeps the sums of a pre-copy's files: inside it, so that
 * whatever removes the pre-copy removes them (a receive still hashing when its move is undone
 * cannot write them after). A pre-copy that holds a file of that name is refused (written 'wx').
 */
function sumsFileOf(staging: string): string {
  return join(staging, '.stasis-sums');
}

function readSums(staging: string): BaseSums | null {
  try {
    const sums = JSON.parse(readFileSync(sumsFileOf(staging), 'utf8')) as unknown;
    return typeof sums === 'object' && sums !== null && !Array.isArray(sums) ? (sums as BaseSums) : null;
  } catch {
    return null;
  }
}

/**
 * `__migrate receive TOKEN [--base TOKEN] [--stage]`: the checkpoint's tar on
 * stdin, unpacked (checked) for the restore; with a base (migrate --precopy),
 * as a delta against the checkpoint that transfer brought, rebuilt and
 * checked. `--stage` (a pre-copy) hashes and flushes its large files while
 * the container still runs at the source, for the delta taken at the freeze.
 */
export async function receiveCheckpoint(host: CheckpointHost, token: string, input: Readable, baseToken?: string, stage = false, pages = false, updateBase = false): Promise<number> {
  const dir = stagingDir(host, token);
  const base = baseToken === undefined ? null : stagingDir(host, baseToken);
  if (existsSync(dir)) throw new StasisError(`a transfer ${token} is already here`);
  if ((pages || updateBase) && base === null) throw new StasisError('changed pages need the pre-copy they change (--base)');
  if (base !== null && !existsSync(base)) throw new StasisError(`the pre-copy ${baseToken} is not here`);
  if (updateBase) return catchUp(base!, input);
  // migrate --precopy: the changed pages first, written into the pre-copy here as they come (pagestream.ts), then the tar.
  const paged = pages ? await receivePages(base!, readSums(base!), input, UNPACK_LIMIT_BYTES) : null;
  // The pre-copy's files written into are the new checkpoint's now: they go with a transfer that fails.
  const dropPaged = () => paged?.files.forEach((rel) => rmSync(join(base!, rel), { force: true }));
  const bytes = await extractTar(paged?.rest ?? input, dir, { maxBytes: UNPACK_LIMIT_BYTES }).catch((err: unknown) => {
    dropPaged();
    throw err;
  });
  try {
    if (stage) writeFileSync(sumsFileOf(dir), JSON.stringify(await hashBase(dir)), { mode: 0o600, flag: 'wx' });
    if (base !== null) applyDeltas(base, dir, readSums(base));
    if (paged !== null) adoptPaged(base!, dir, paged.files);
    // Big files sent as what this host's checkpoint store lacks (chunked.ts).
    await applyChunked(host.checkpointDir, dir);
  } catch (err) {
    dropPaged();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return bytes + (paged?.bytes ?? 0);
}

/**
 * `receive --update-base`: a catch-up round of the pre-copy, the container
 * still running there. Its changed pages are written into the pre-copy here,
 * whose files then go by their new names (the chained sums) for the next
 * pages; nothing may follow them. A round that fails leaves the files it
 * wrote into removed, and the move fails at the freeze if not before.
 */
async function catchUp(base: string, input: Readable): Promise<number> {
  const sums = readSums(base);
  const paged = await receivePages(base, sums, input, UNPACK_LIMIT_BYTES, true);
  try {
    for await (const extra of paged.rest) if ((extra as Buffer).length > 0) throw new StasisError('the catch-up round sent more than its pages', { code: 'bad-delta' });
    const next = join(base, `.stasis-sums.${process.pid}`);
    writeFileSync(next, JSON.stringify({ ...sums, ...paged.sums }), { mode: 0o600, flag: 'wx' });
    renameSync(next, sumsFileOf(base));
  } catch (err) {
    for (const rel of paged.files) rmSync(join(base, rel), { force: true });
    throw err;
  }
  return paged.bytes;
}

/**
 * Moves the pre-copy's files that the changed pages were written into
 * (receivePages) into the unpacked checkpoint, where the tar left them out:
 * into a folder the tar made (no link on the way), never over a file it holds.
 */
function adoptPaged(base: string, dir: string, files: readonly string[]): void {
  for (const rel of files) {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (lstatSync(join(dir, ...parts.slice(0, i)), { throwIfNoEntry: false })?.isDirectory() !== true) {
        throw new StasisError(`the changed pages of ${rel} belong in ${parts.slice(0, i).join('/')}, which the checkpoint sent has no folder for`, { code: 'bad-delta' });
      }
    }
    const target = join(dir, rel);
    if (lstatSync(target, { throwIfNoEntry: false }) !== undefined) throw new StasisError(`${rel} came both as changed pages and whole`, { code: 'bad-delta' });
    renameSync(join(base, rel), target);
  }
}

/** `__migrate rootfs PATH`: a base rootfs on stdin, unpacked beside PATH and renamed into place (PATH must be missing or empty). */
export async function receiveRootfs(path: string, input: Readable, rootMode?: number): Promise<number> {
  if (!path.startsWith('/')) throw new StasisError(`the base's path ${JSON.stringify(path)} is not absolute`);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat && !(stat.isDirectory() && readdirSync(path).length === 0)) throw new StasisError(`${path} exists and is not empty: a base is never written over`);
  const partial = join(dirname(path), `.${basename(path)}.partial-${process.pid}`);
  rmSync(partial, { recursive: true, force: true });
  // A base has what a root filesystem has (device nodes in /dev, setuid programs): checked as a layer is.
  const bytes = await extractTar(input, partial, { rootfsLayer: true, maxBytes: UNPACK_LIMIT_BYTES });
  // The archive holds the base's contents, not its root folder (made 0700 to unpack into): it gets the source's mode (no set-id bits).
  chmodSync(partial, (rootMode ?? 0o755) & 0o1777);
  if (stat) rmSync(path, { recursive: true, force: true });
  renameSync(partial, path);
  return bytes;
}

export interface CheckRequest {
  id: string;
  base: { path: string; fingerprint: string; manifest: string[]; files: BaseFile[] };
  lazy: boolean;
  /** migrate --precopy: whether this host could restore the memory on demand is asked too. */
  precopy?: boolean;
}

export interface CheckReply {
  ok: true;
  version: string;
  idFree: boolean;
  base: { exists: boolean; matches: boolean; differences: string[] };
  uffd: boolean;
  /**
   * Whether a task without CAP_SYS_PTRACE on this host (any task of a
   * container's own user namespace) may open a userfaultfd: the kernel's
   * vm.unprivileged_userfaultfd (CRIU opens one in each restored task).
   * Absent from older stasis: taken as true.
   */
  uffdUnprivileged?: boolean;
  /** How many chunks this host's checkpoint store holds (chunked.ts); absent from older stasis: none. */
  storeChunks?: number;
  /** The units of a --precopy delta this host reads (delta.ts); absent from older stasis: 64 KiB only. */
  deltaUnits?: number[];
  /** Whether this host hashes a pre-copy as it arrives (receive --stage) and reads deltas against it; absent from older stasis: no. */
  deltaBase?: boolean;
  /** Whether this host takes the changed pages at the freeze as a stream before the tar (receive --pages, pagestream.ts); absent from older stasis: no. */
  pageStream?: boolean;
  /** Whether those pages may come as a section of version 2, sent while the dump is still written (pagestream.ts, follow.ts); absent from older stasis: no. */
  pageFollow?: boolean;
  /** Whether `receive --ready` says when it is up (transfer.ts: Receiver.ready); absent from older stasis: no. */
  receiverReady?: boolean;
}

/** What differs between two manifests (rootfsManifest's lines), as the destination would say it. */
function manifestDifferences(wanted: readonly string[], have: readonly string[]): string[] {
  const haveByPath = new Map(have.map((entry) => [entry.split('\t')[0], entry]));
  const wantedPaths = new Set(wanted.map((entry) => entry.split('\t')[0]));
  const out: string[] = [];
  for (const entry of wanted) {
    const [path, type, size] = entry.split('\t');
    const there = haveByPath.get(path);
    if (there === undefined) out.push(`/${path} is missing`);
    else if (there !== entry) {
      const [, otherType, otherSize] = there.split('\t');
      out.push(otherType !== type ? `/${path} is another kind of file` : `/${path} has ${otherSize} bytes, not ${size}`);
    }
  }
  for (const path of haveByPath.keys()) if (!wantedPaths.has(path)) out.push(`/${path} is there and not in the base`);
  return out;
}

export async function checkDestination(host: CheckpointHost, request: CheckRequest): Promise<CheckReply> {
  const id = validateId(request.id);
  const path = String(request.base?.path ?? '');
  const exists = path.startsWith('/') && statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
  let matches = false;
  let differences: string[] = [];
  if (exists) {
    const manifest = rootfsManifest(path);
    const wanted = Array.isArray(request.base.manifest) ? request.base.manifest.map(String) : [];
    differences = fingerprintOf(manifest) === request.base.fingerprint ? [] : manifestDifferences(wanted, manifest);
    if (differences.length === 0 && fingerprintOf(manifest) !== request.base.fingerprint) differences = ['its files differ'];
    const files = Array.isArray(request.base.files) ? request.base.files : [];
    differences.push(...changedBaseFiles(path, files).map((file) => `${file} differs from the file the processes use`));
    matches = differences.length === 0;
  }
  return {
    ok: true,
    version: typeof __STASIS_VERSION__ === 'string' ? __STASIS_VERSION__ : 'dev',
    idFree: !host.exists(id),
    base: { exists, matches, differences: differences.slice(0, 8) },
    uffd: request.lazy || request.precopy === true ? await criuFeature(host.criu, 'uffd-noncoop') : false,
    uffdUnprivileged: unprivilegedUffd(),
    // A store that cannot be read (a damaged manifest) only means the checkpoint comes whole.
    storeChunks: request.lazy ? 0 : await storeHas(host.checkpointDir, []).then((has) => has.stored, () => 0),
    deltaUnits: [...DELTA_UNITS],
    deltaBase: true,
    pageStream: true,
    pageFollow: true,
    receiverReady: true,
  };
}

export interface RestoreRequest {
  token: string;
  id: string;
  rootfs: string;
  source: string;
  userMounts?: UserMount[];
  ignoreVolumes?: boolean;
  trust?: Trust;
  criuOptions?: string[];
  tcpClose?: boolean;
  /** The container's creation time at the source, which it keeps (RFC 3339). */
  createdAt?: string;
  /** Post-copy: the port on this side's 127.0.0.1 that reaches the source's page server. */
  pageServerPort?: number;
  /** migrate --precopy: the memory comes on demand from the images here (an older stasis ignores it and restores it whole). */
  onDemand?: boolean;
}

/** Writes one reply; a channel that is gone is not an error here (the end of input says what to do). */
function reply(message: Message): void {
  try {
    writeSync(1, line(message));
  } catch {
    // EPIPE: the source is gone
  }
}

/**
 * `__migrate serve`: answers requests until its input ends. A restore that
 * was not committed when the input ends (the source went away, or said
 * abort) is undone: the container is removed here, so it runs in one place.
 */
export async function serve(host: CheckpointHost, input: Readable): Promise<number> {
  // Replies go to the descriptor directly; a broken channel must not end this process before it
  // cleans up, nor must a line it writes to its stderr (a pipe to the source too) once that is gone.
  outliveClosedOutput();
  process.on('SIGPIPE', () => undefined);
  process.on('SIGHUP', () => undefined);
  const reader = new LineReader(input);
  let restored: string | null = null;
  let lazy: LazyRestore | null = null;
  // migrate --precopy's restore on demand: its pages are here, so they come whether or not the source is still there.
  let pagesHere = false;
  let committed = false;
  const tokens = new Set<string>();
  try {
    for (;;) {
      const message = await reader.next();
      if (message === null) break;
      const op = message.op;
      try {
        if (op === 'check') reply(await checkDestination(host, message as unknown as CheckRequest) as unknown as Message);
        else if (op === 'have') reply(await storeHas(host.checkpointDir, message.hashes) as unknown as Message);
        else if (op === 'restore') {
          if (restored !== null) throw new StasisError('a restore was done already');
          const request = message as unknown as RestoreRequest;
          tokens.add(request.token);
          const id = validateId(request.id);
          const options = {
            checkpoint: stagingDir(host, request.token),
            base: { kind: 'overlay' as const, dir: request.rootfs },
            userMounts: request.userMounts,
            ignoreVolumes: request.ignoreVolumes === true,
            trust: request.trust,
            criuOptions: request.criuOptions,
            tcpClose: request.tcpClose === true,
            from: typeof request.source === 'string' ? request.source.slice(0, 500) : undefined,
            createdAt: creationTime(request.createdAt),
          };
          const started = Date.now();
          if (request.pageServerPort !== undefined || request.onDemand === true) {
            pagesHere = request.pageServerPort === undefined;
            lazy = await restoreLazily(host, id, options, request.pageServerPort ?? null);
            restored = id;
            reply({ ok: true, id, restoreMs: Date.now() - started, warnings: lazy.warnings });
          } else {
            const result = await restoreContainer(host, id, options);
            restored = id;
            reply({ ok: true, id, restoreMs: Date.now() - started, warnings: result.warnings });
          }
        } else if (op === 'stage') {
          // migrate --precopy: the checkpoint sent while the container ran; removed with the rest at the end.
          stagingDir(host, String(message.token));
          tokens.add(String(message.token));
          reply({ ok: true });
        } else if (op === 'commit') {
          committed = restored !== null;
          // Post-copy: the move is over once every page is here (see the end).
          if (lazy !== null) {
            // What has come so far, a few times a second, for the source's progress line.
            const current = lazy;
            const ticker = setInterval(() => {
              const now = current.pulled();
              if (now !== null) reply({ progress: now });
            }, 250);
            const pulled = await lazy.done.finally(() => clearInterval(ticker));
            reply(pulled.ok ? { ok: true } : { ok: false, error: `${pulled.error}; ${restored} is removed here (its memory is incomplete)` });
          } else reply({ ok: true });
        } else if (op === 'abort') break;
        else reply({ ok: false, error: `unknown request ${JSON.stringify(op)}` });
      } catch (err) {
        reply({ ok: false, error: errorMessage(err), hint: err instanceof StasisError ? err.hint : undefined });
      }
    }
  } finally {
    // Post-copy decides by the pages, not by the commit: a transfer that broke
    // left pages out (CRIU would fill them with zeros), so this copy goes and
    // the source, whose processes wait frozen for this answer, thaws its own;
    // with every page here this copy is whole and stays (a source that heard
    // nothing keeps its own frozen and says so: one of them is removed by hand).
    // A restore on demand from the images here (--precopy) needs both: the
    // commit, as any restore (a source gone before it undoes the move and runs
    // its own), and every page.
    let keep = committed;
    if (restored !== null && lazy !== null) keep = (!pagesHere || committed) && (await lazy.done).ok;
    if (restored !== null && !keep) {
      const id = restored;
      await lazy?.stop();
      await bestEffort(`discarding the uncommitted ${id}`, host.withContainer(id, () => host.discard(id)));
    }
    for (const token of tokens) rmSync(stagingDir(host, token), { recursive: true, force: true });
    if (restored !== null && !keep) return 1;
  }
  return 0;
}

/** The source's creation time, if it is one (an RFC 3339 time in the past); else the restore's own. */
function creationTime(value: unknown): string | undefined {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T[0-9:.]+(Z|[+-]\d{2}:\d{2})$/.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) || at > Date.now() ? undefined : new Date(at).toISOString();
}
