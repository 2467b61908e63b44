// Checkpoint archives. An archive is untrusted input (it may come from another
// host, or from stdin), so it is unpacked in three steps:
//   1. stasis reads it and decompresses it itself (archive-input.ts), counting
//      the plain tar bytes against the room on the destination's filesystem;
//   2. GNU tar extracts that stream into a fresh folder (gnu-tar.ts), which
//      keeps every write inside the folder;
//   3. the result is checked on disk (safety.ts): no links out of a
//      checkpoint, no device nodes.
// Between 1 and 2, each member's header is looked at before tar gets it
// (headers.ts): an archive with an entry a checkpoint never holds is stopped
// there, whole.
// When any step fails the folder is removed, so a refused archive leaves
// nothing behind. The archive is read once, and decompressed once.

import { randomBytes } from '../../host/digest.ts';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { compressionForPath, type Compression } from './format.ts';
import { openTarInput, UnpackRoom } from './input.ts';
import { createIntoPipe, createToFile, createToStream, extractFromStream } from './gnu-tar.ts';
import { checkExtractedTree, type SafetyOptions } from './safety.ts';
import { TarHeaderCheck } from './headers.ts';

export { compressionForPath, COMPRESSIONS, type Compression } from './format.ts';
export type { SafetyOptions } from './safety.ts';
export { readTarEntries, type TarEntry } from './list.ts';

export interface ExtractOptions extends SafetyOptions {
  /** The most the archive may unpack to, in bytes; the free space of destDir's filesystem is a limit too. */
  maxBytes?: number;
}

/**
 * Extracts a tar archive (plain, gzip or zstd, told by its first bytes) from a
 * file or a stream into destDir, which must be missing (it is made 0700) or an
 * empty folder. Throws, naming the archive, when the archive is damaged,
 * unpacks to too much, or holds what SafetyOptions refuses; destDir is then
 * removed, whether or not it existed before. Resolves with the archive's own bytes read (compressed ones, for a compressed archive).
 */
export async function extractTar(source: string | Readable, destDir: string, opts: ExtractOptions = {}): Promise<number> {
  const fail = (why: string) => new Error(`cannot extract ${typeof source === 'string' ? source : 'the archive stream'}: ${why}`);
  await mkdir(destDir, { recursive: true, mode: 0o700 });
  // tar follows symlinks that already exist in its folder, so only an empty one will do.
  if ((await readdir(destDir)).length > 0) throw fail(`${destDir} is not empty`);
  try {
    const room = await UnpackRoom.of(destDir, opts.maxBytes);
    const input = await openTarInput(source, room.guard, new TarHeaderCheck({ rootfsLayer: opts.rootfsLayer })).catch((err: Error) => {
      throw fail(err.message);
    });
    let tarProblem: string | null;
    try {
      const tooBig = input.knownSize === null ? null : room.tooBig(input.knownSize);
      if (tooBig) throw fail(tooBig.message);
      tarProblem = await extractFromStream(destDir, input.stream);
      await input.finish(tarProblem === null);
    } finally {
      input.close();
    }
    // What stopped the input comes first: tar then only saw the stream end.
    if (input.stoppedBy) throw fail(input.stoppedBy.message);
    if (input.bytes === 0) throw fail('the archive is empty');
    if (tarProblem) throw fail(tarProblem);
    await checkExtractedTree(destDir, opts).catch((err: Error) => {
      throw fail(err.message);
    });
    return input.archiveBytes;
  } catch (err) {
    await rm(destDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Archives the contents of srcDir (entries "checkpoint/", "spec.dump", … with
 * no leading folder). To a file, compressed as its name says unless told,
 * appearing under that name only once it is complete; or onto a stream
 * (stdout), which is left open, with the compression given.
 */
export async function createTar(srcDir: string, file: string, compression?: Compression): Promise<void>;
export async function createTar(srcDir: string, out: Writable, compression: Compression): Promise<void>;
export async function createTar(srcDir: string, target: string | Writable, compression?: Compression): Promise<void> {
  const names = (await readdir(srcDir)).sort();
  if (typeof target !== 'string') {
    if (compression === undefined) throw new Error('cannot write the archive: a stream needs the compression given (none, gzip or zstd)');
    const problem = await createToStream(srcDir, names, target, compression);
    if (problem) throw new Error(`cannot write the archive: ${problem}`);
    return;
  }
  const file = target;
  try {
    compression ??= compressionForPath(file);
  } catch (err) {
    throw new Error(`cannot tell the archive format of ${file}: ${(err as Error).message}`);
  }
  const final = path.resolve(file);
  const temp = path.join(path.dirname(final), `.${path.basename(final)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const problem = await createToFile(srcDir, names, temp, compression);
    if (problem) throw new Error(`cannot create ${file}: ${problem}`);
    await rename(temp, final);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/**
 * Streams the contents of srcDir as a plain tar straight into a pipe (a
 * child's stdin), calling onBytes with what tar has written so far (from
 * /proc/PID/io) while it runs. Resolves with the bytes written; throws when tar fails.
 * `exclude` names top-level entries left out; `leaveOut` paths (relative,
 * '/'-separated) anywhere in the tree; `fast` compresses the stream with
 * zstd's fastest level (the written bytes are then the compressed ones).
 */
export async function pipeTar(srcDir: string, out: Writable, onBytes: (written: number) => void = () => undefined, exclude: readonly string[] = [], leaveOut: readonly string[] = [], fast?: 'zstd'): Promise<number> {
  const names = (await readdir(srcDir)).filter((name) => !exclude.includes(name)).sort();
  const { pid, done } = createIntoPipe(srcDir, names, out, leaveOut, fast);
  let written = 0;
  const sample = () => {
    try {
      const match = /^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
      if (match) {
        written = Number(match[1]);
        onBytes(written);
      }
    } catch {
      // exited meanwhile
    }
  };
  const timer = pid === undefined ? undefined : setInterval(sample, 100);
  try {
    sample();
    const problem = await done;
    if (problem) throw new Error(`cannot send ${srcDir}: ${problem}`);
  } finally {
    clearInterval(timer);
  }
  return written;
}
