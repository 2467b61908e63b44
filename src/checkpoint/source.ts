import { existsSync, lstatSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { StasisError, errorMessage } from '../errors.ts';
import type { CheckpointHost, Progress } from '../runtime/types.ts';
import { formatImageRef, parseImageRef, type ImageRef } from './oci/layout.ts';
import { IMAGES_DIR } from './format/layout.ts';
import { readCheckpointImage } from './oci/image.ts';
import { extractTar } from './archive/tar.ts';
import { UnpackRoom } from './archive/input.ts';
import { openFifo } from '../host/fifo.ts';
import { checkCheckpointFolder, PARENT_LINK } from './archive/safety.ts';
import { pagesImageProblems } from './criu/pagemap.ts';
import { UNPACK_PREFIX, ownedTempDir, sweepOwnedTempDirs } from '../host/scratch.ts';

/** Removes the unpack folders of restores that were killed (their stasis no longer runs). */
export function sweepUnpackFolders(scratchDir: string): string[] {
  return sweepOwnedTempDirs(scratchDir, [UNPACK_PREFIX]);
}

// Where a restore's checkpoint comes from, made into a folder to read: a
// folder as it is; an archive (a file, or a stream such as stdin) unpacked
// into a fresh folder in the state directory; a checkpoint image (oci:DIR,
// oci-archive:FILE, or a layout or oci-archive given without its prefix) whose
// one layer is unpacked there. Everything unpacked is checked as untrusted
// input (tar.ts) and size-limited.

/**
 * The most an archive may unpack to, whatever the free space (which is
 * checked too): a few hundred KiB of zstd can expand to many GiB, and the
 * state directory is often in RAM (/run).
 */
export const UNPACK_LIMIT_BYTES = 64 * 1024 ** 3;

/** A checkpoint folder, archive or image reference; or an archive on a stream, with the name messages give it. */
export type CheckpointSource = string | { stream: Readable; name: string };

export interface OpenedCheckpoint {
  /** The folder to read. */
  dir: string;
  /** The checkpoint as the user named it, for messages and restoredFrom. */
  shown: string;
  /** The checkpoint image's annotations (empty for folders and archives). */
  annotations: Record<string, string>;
  /** A folder of ours to remove afterwards (null: the user's own folder). */
  temp: string | null;
  unpackMs: number | null;
}

/** Unpacks an archive into a fresh folder, checked; returns that folder. */
export async function unpackArchive(host: CheckpointHost, archive: string | Readable, shown = typeof archive === 'string' ? archive : 'stdin'): Promise<string> {
  const target = ownedTempDir(host.scratchDir, UNPACK_PREFIX);
  try {
    await extractTar(archive, target, { maxBytes: UNPACK_LIMIT_BYTES });
  } catch (err) {
    rmSync(target, { recursive: true, force: true });
    // extractTar's message names the archive already (a stream as "the archive stream").
    const message = errorMessage(err).replace(/^cannot extract the archive stream: /, `cannot restore from ${shown}: `);
    throw new StasisError(message.startsWith('cannot') ? message : `cannot restore from ${shown}: ${message}`);
  }
  return target;
}

/**
 * Unpacks an archive for a restore: an export written for this host's store
 * (checkpoint --export --have) has every big file rebuilt from its chunks and
 * the store, each chunk checked, before anything reads it (store/transfer.ts).
 */
async function unpackRebuilt(host: CheckpointHost, archive: string | Readable, shown: string, progress: Progress): Promise<string> {
  const dir = await unpackArchive(host, archive, shown);
  try {
    const room = await UnpackRoom.of(dir, UNPACK_LIMIT_BYTES);
    const { rebuildChunkedArchive, readChunkedSummary } = await import('./store/transfer.ts');
    if (readChunkedSummary(dir) !== null) progress(`rebuilding ${shown}'s memory from the checkpoint store`);
    await rebuildChunkedArchive(host.checkpointDir, dir, (bytes) => room.tooBig(bytes));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new StasisError(`cannot restore from ${shown}: ${errorMessage(err)}`, {
      code: 'bad-pages',
      hint: /is not in this host's checkpoint store/.test(errorMessage(err)) ? `it was exported with --have for a store holding that chunk: export it again with a have-list of this host (stasis checkpoint ls --chunks), or without --have` : undefined,
    });
  }
  return dir;
}

/**
 * A folder or an image is read as it is: one holding what an export with
 * --have carries instead of its memory (an archive unpacked by hand) is
 * refused, clearly, rather than failing later on its page maps.
 */
async function notChunked(opened: OpenedCheckpoint): Promise<OpenedCheckpoint> {
  const { CHUNKED_MARKER, chunksFilesIn } = await import('./store/transfer.ts');
  const found = existsSync(join(opened.dir, CHUNKED_MARKER)) ? CHUNKED_MARKER : chunksFilesIn(opened.dir)[0]?.path;
  if (found === undefined) return opened;
  if (opened.temp !== null) rmSync(opened.temp, { recursive: true, force: true });
  throw new StasisError(`cannot restore from ${opened.shown}: it holds ${found}, what an export with --have carries: only its archive is restored (rebuilt from this host's checkpoint store)`, { code: 'bad-pages' });
}

/** An OCI layout at the top of a folder, and no checkpoint: an image given without oci: or oci-archive:. */
function isImageLayout(dir: string): boolean {
  return existsSync(join(dir, 'oci-layout')) && existsSync(join(dir, 'index.json')) && !existsSync(join(dir, IMAGES_DIR));
}

async function readImage(host: CheckpointHost, ref: ImageRef, shown: string): Promise<{ dir: string; annotations: Record<string, string> }> {
  const dir = ownedTempDir(host.scratchDir, UNPACK_PREFIX);
  try {
    const read = await readCheckpointImage(ref, dir, { maxBytes: UNPACK_LIMIT_BYTES });
    return { dir, annotations: read.annotations };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const message = errorMessage(err);
    const prefix = `${formatImageRef(ref)}: `;
    throw new StasisError(`cannot restore from ${shown}: ${message.startsWith(prefix) ? message.slice(prefix.length) : message}`, { code: 'bad-image' });
  }
}

/** Opens a checkpoint for reading: see the comment at the top. */
export async function openCheckpoint(host: CheckpointHost, source: CheckpointSource, progress: Progress): Promise<OpenedCheckpoint> {
  const started = Date.now();
  sweepUnpackFolders(host.scratchDir);
  if (typeof source !== 'string') {
    progress(`unpacking ${source.name}`);
    const dir = await unpackRebuilt(host, source.stream, source.name, progress);
    return checkedPages(await layoutAsImage(host, { dir, shown: source.name, annotations: {}, temp: dir, unpackMs: Date.now() - started }));
  }
  const ref = parseImageRef(source);
  if (ref !== null) {
    const absolute = { ...ref, path: resolve(ref.path) };
    const shown = formatImageRef(absolute);
    progress(`reading the image ${shown}`);
    if (absolute.transport === 'oci' && statSync(absolute.path, { throwIfNoEntry: false })?.isDirectory()) checkFolder(absolute.path, shown);
    const { dir, annotations } = await readImage(host, absolute, shown);
    return checkedPages(await notChunked({ dir, shown, annotations, temp: dir, unpackMs: Date.now() - started }));
  }
  const path = resolve(source);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) throw new StasisError(`checkpoint ${path} does not exist`, { code: 'checkpoint-missing' });
  if (stat.isDirectory()) {
    const folder = await openFolder(host, path, path);
    return checkedPages(await notChunked(await layoutAsImage(host, { dir: folder.dir, shown: path, annotations: {}, temp: folder.temp, unpackMs: folder.temp === null ? null : Date.now() - started })));
  }
  if (stat.isFIFO()) {
    // Waited for before anything is made: a Ctrl-C meanwhile leaves nothing behind.
    const stream = await openFifo(path, () => progress(`waiting for a writer on the FIFO ${path} (Ctrl-C to stop)`));
    progress(`unpacking ${path}`);
    const dir = await unpackRebuilt(host, stream, path, progress);
    return checkedPages(await layoutAsImage(host, { dir, shown: path, annotations: {}, temp: dir, unpackMs: Date.now() - started }));
  }
  progress(`unpacking ${path}`);
  const dir = await unpackRebuilt(host, path, path, progress);
  return checkedPages(await layoutAsImage(host, { dir, shown: path, annotations: {}, temp: dir, unpackMs: Date.now() - started }));
}

/**
 * A folder the user names (a checkpoint, or an OCI layout) gets the checks an
 * unpacked archive gets (archive/safety.ts), in place, before anything of it
 * is read: only folders and regular files, and CRIU's parent link.
 */
export function checkFolder(dir: string, shown: string, doing = 'restore from'): void {
  try {
    checkCheckpointFolder(dir, { maxBytes: UNPACK_LIMIT_BYTES });
  } catch (err) {
    throw new StasisError(`cannot ${doing} ${shown}: ${errorMessage(err)}`, { code: 'unsafe-checkpoint' });
  }
}

/**
 * Refuses, before CRIU runs, a checkpoint whose pages images are not the
 * size their pagemaps say (and so for each parent): CRIU spun for ever on a
 * pages image shorter than its pagemap. The opened checkpoint is closed (its
 * temporary folder removed) when it is refused.
 */
export function checkedPages(opened: OpenedCheckpoint): OpenedCheckpoint {
  try {
    let images = join(opened.dir, IMAGES_DIR);
    for (let depth = 0; depth <= 32 && lstatSync(images, { throwIfNoEntry: false })?.isDirectory(); depth++) {
      const problems = pagesImageProblems(images, (file) => {
        const stat = lstatSync(file, { throwIfNoEntry: false });
        return stat?.isFile() ? stat.size : null;
      });
      const where = depth === 0 ? IMAGES_DIR : `the parent checkpoint ${depth} up`;
      if (problems.length > 0) throw new StasisError(`cannot restore from ${opened.shown}: its memory images do not match their page maps (${where}): ${problems.join('; ')}`, { code: 'bad-pages' });
      const parent = join(images, PARENT_LINK);
      if (!lstatSync(parent, { throwIfNoEntry: false })?.isSymbolicLink()) break;
      images = realpathSync(parent);
    }
  } catch (err) {
    if (opened.temp !== null) rmSync(opened.temp, { recursive: true, force: true });
    if (err instanceof StasisError) throw err;
    throw new StasisError(`cannot restore from ${opened.shown}: ${errorMessage(err)}`, { code: 'bad-pages' });
  }
  return opened;
}

/** A folder (or unpacked archive) that is an OCI layout is read as the checkpoint image it holds. */
async function layoutAsImage(host: CheckpointHost, opened: OpenedCheckpoint): Promise<OpenedCheckpoint> {
  if (!isImageLayout(opened.dir)) return opened;
  const started = Date.now();
  try {
    const { dir, annotations } = await readImage(host, { transport: 'oci', path: opened.dir, reference: null }, opened.shown);
    return { dir, shown: opened.shown, annotations, temp: dir, unpackMs: (opened.unpackMs ?? 0) + Date.now() - started };
  } finally {
    if (opened.temp !== null) rmSync(opened.temp, { recursive: true, force: true });
  }
}

/**
 * A checkpoint folder to read, checked in place: as it is, or for a packed
 * checkpoint of the store (its big files only in chunks) a folder of ours
 * materialised from the store, every chunk checked (to remove afterwards).
 */
export async function openFolder(host: CheckpointHost, path: string, shown: string, doing = 'restore from'): Promise<{ dir: string; temp: string | null }> {
  checkFolder(path, shown, doing);
  const { isPacked, keptPath, materialiseCopy } = await import('./store/store.ts');
  if (!isPacked(path)) return { dir: path, temp: null };
  if (keptPath(host.checkpointDir, path) === null) {
    throw new StasisError(`cannot ${doing} ${shown}: it is a packed checkpoint (its memory is in a checkpoint store) outside the checkpoint directory ${host.checkpointDir}`, {
      hint: 'name it in the checkpoint directory it was kept in (--checkpoint-dir)',
      code: 'checkpoint-missing',
    });
  }
  const temp = ownedTempDir(host.scratchDir, UNPACK_PREFIX);
  const into = join(temp, 'checkpoint');
  try {
    await materialiseCopy(host.checkpointDir, path, into, shown);
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
  return { dir: into, temp };
}

/** A JSON file of a checkpoint (untrusted input): a clear error, naming the user's checkpoint, when it is missing or damaged. */
export function readCheckpointJson<T = unknown>(dir: string, name: string, shown: string = dir): T {
  try {
    return JSON.parse(readFileSync(join(dir, name), 'utf8')) as T;
  } catch (err) {
    throw new StasisError(`checkpoint ${shown}: ${name} is ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not valid JSON (${errorMessage(err)})`}`);
  }
}
