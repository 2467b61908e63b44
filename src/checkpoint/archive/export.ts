import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { StasisError } from '../../errors.ts';
import { compressionForPath, type Compression } from './format.ts';
import { timestampName } from '../../host/clock.ts';
import { ownedTempPath, sweepOwnedTempDirs } from '../../host/scratch.ts';
import { createToFile, createToStream } from './gnu-tar.ts';
import { DELETED_FILES, DIFF_TAR } from '../format/layout.ts';

// Where `checkpoint --export` writes, and how: a file (named by the user, or
// checkpoint-<id>-<time>.tar.zst in a folder they name, which is the name
// `checkpointctl list` looks for), or a stream (stdout). podman compresses with
// zstd unless told otherwise, whatever the file is called; stasis goes by a
// known ending, and takes zstd (or -c) for a name without one.

/** What --ignore-rootfs leaves out of an archive or image. */
export const ROOTFS_FILES: readonly string[] = [DIFF_TAR, DELETED_FILES];

const ENDING: Record<Compression, string> = { none: '.tar', gzip: '.tar.gz', zstd: '.tar.zst' };

export interface ExportTarget {
  /** The archive file, absolute. */
  file: string;
  compression: Compression;
}

/** The compression a name's ending says, or null for a name without a known ending. */
export function compressionOfName(file: string): Compression | null {
  try {
    return compressionForPath(file);
  } catch {
    return null;
  }
}

/** Endings of archive formats stasis does not write: such a name would mislead whoever reads it. */
const OTHER_FORMATS = ['.zip', '.tar.bz2', '.tbz2', '.tbz', '.bz2', '.tar.xz', '.txz', '.xz', '.tar.lz4', '.lz4', '.tar.lz', '.lz', '.lzma', '.7z', '.rar', '.cpio'];

/**
 * The compression of an export to the file `path` (not a folder), checked:
 * a known ending says it (a conflicting `compression` is an error), the
 * ending of a format stasis does not write is an error, any other name gets
 * `compression` or zstd.
 */
export function exportCompression(path: string, compression: Compression | undefined): Compression {
  const named = compressionOfName(path);
  if (named !== null && compression !== undefined && named !== compression) {
    throw new StasisError(`${path}: the name says ${named === 'none' ? 'an uncompressed tar' : named}, but ${compression} was asked for`, { code: 'export-compression-conflict' });
  }
  const other = named === null ? OTHER_FORMATS.find((ending) => path.toLowerCase().endsWith(ending)) : undefined;
  if (other !== undefined) {
    throw new StasisError(`${path}: stasis does not write ${other} archives (name it .tar, .tar.gz, .tgz, .tar.zst or .tar.zstd; a name without an archive ending gets zstd)`, { code: 'export-format' });
  }
  return named ?? compression ?? 'zstd';
}

/**
 * The file an export to `path` writes. An existing folder gets a new
 * checkpoint-<id>-<time> archive inside it; a name with a known ending is
 * compressed as it says (a conflicting `compression` is an error: a .tar.gz
 * holding zstd would mislead every tool after it); any other name gets
 * `compression`, default zstd.
 */
export function exportTarget(path: string, id: string, compression: Compression | undefined, now: Date): ExportTarget {
  const absolute = resolve(path);
  if (statSync(absolute, { throwIfNoEntry: false })?.isDirectory()) {
    const chosen = compression ?? 'zstd';
    return { file: join(absolute, `checkpoint-${id}-${timestampName(now)}${ENDING[chosen]}`), compression: chosen };
  }
  const chosen = exportCompression(path, compression);
  if (!existsSync(dirname(absolute))) {
    throw new StasisError(`${path}: the folder ${dirname(absolute)} does not exist`, { code: 'export-folder-missing' });
  }
  return { file: absolute, compression: chosen };
}

function names(dir: string, exclude: readonly string[]): string[] {
  return readdirSync(dir).filter((name) => !exclude.includes(name)).sort();
}

/**
 * Writes the checkpoint folder as an archive file, appearing under its name
 * only once complete. Its temporary file names its maker: one left by an
 * export that was killed (whose tar may even have gone on writing it) is
 * removed by the next export to that name.
 */
export async function exportToFile(dir: string, target: ExportTarget, exclude: readonly string[] = []): Promise<void> {
  const prefix = `.${basename(target.file)}.`;
  sweepOwnedTempDirs(dirname(target.file), [prefix]);
  const temp = ownedTempPath(dirname(target.file), prefix);
  try {
    const problem = await createToFile(dir, names(dir, exclude), temp, target.compression);
    if (problem) throw new Error(`cannot create ${target.file}: ${problem}`);
    renameSync(temp, target.file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/** Writes the checkpoint folder as an archive onto a stream (left open). */
export async function exportToStream(dir: string, out: Writable, compression: Compression, exclude: readonly string[] = []): Promise<void> {
  const problem = await createToStream(dir, names(dir, exclude), out, compression);
  if (problem) throw new Error(`cannot write the archive: ${problem}`);
}
