import { closeSync, constants, fstatSync, lstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { StasisError } from '../errors.ts';
import { readAt, writeAll } from '../host/chunks.ts';
import type { Hasher } from '../host/digest.ts';
import { walkTree } from '../host/walk.ts';
import { IMAGES_DIR } from '../checkpoint/format/layout.ts';
import { COMPARE_BLOCK, DELTA_CHUNK, DELTA_MIN, PRINT_BLOCK, changedPages, compareBuffer, pageRuns, type BaseSums, type NewPrints, type OldPages, type PagePrints } from './delta.ts';
import { Batches, MAGIC_FOLLOW, chainEnd, chainHash, runHead, type PageStreamStats } from './pagestream.ts';
import type { PageSink } from './pageserver.ts';

// migrate --precopy's changed pages found and sent while CRIU still writes
// them (a page section of version 2, pagestream.ts), to a destination that
// reads it (CheckReply.pageFollow). CRIU appends to its page images and never
// writes one again, so every whole page below a page image's current size is
// final: it is compared with the pre-copy's (its print, or its bytes) and, if
// it changed, sent at once. Hashing 1 GiB of pages and sending what changed
// then overlap the dump, where they came after it; what is left once CRIU is
// done is the last pages, the other large files, and each file's size.

/** CRIU's page images, which grow while it dumps: followed. Any other file is compared once the dump is done. */
const PAGE_IMAGE = new RegExp(`^${IMAGES_DIR}/pages-\\d+\\.img$`);

/** How long a pass that found nothing new waits before looking again (the dump's end ends the wait at once). */
const IDLE_MS = 2;

/**
 * The dump being followed: `onDumping` is the checkpoint's (CheckpointOptions),
 * called with the folder CRIU writes into as each attempt starts; `done`
 * settles with the checkpoint's folder once the dump is complete, or rejects
 * with its failure.
 */
export interface Followed {
  onDumping: (dir: string) => void;
  result: Promise<PageStreamStats & { prints: Pick<PagePrints, 'files' | 'blocks'> | null }>;
  /** With `served`: where the page server hands CRIU's page images (pageserver.ts), and the folder it writes the pagemaps into. */
  sink: PageSink | null;
  imagesDir: () => string | null;
}

/** One file of the section: opened (its 'F' sent) once it appeared. */
interface Open {
  no: number;
  path: string;
  /** The new file here; null for one the page server hands over (its bytes never touch a file). */
  fd: number | null;
  /** A served file's size, once it ended. */
  size?: number;
  old: OldPages;
  oldFd: number | null;
  /** Bytes compared so far (whole pages while the dump runs). */
  done: number;
  chained: Hasher | null;
  /** With prints in a catch-up round: the new file's, as they are taken (its next base). */
  printed: NewPrints | null;
}

/**
 * Follows a dump into `out`: the pages of its large files (those with a sum
 * in `sums`) that differ from the pre-copy in `base` (its prints, else its
 * files), sent while CRIU writes them. With `chain` (a catch-up round) each
 * file's next name is chained as the receiver chains it, and with prints the
 * new pages' prints are kept (the next round's base, without a second read).
 * A second attempt of the dump (checkpointHeld retries a seize timeout, which
 * comes before any page) is followed instead, as long as nothing of the first
 * was sent; else the move fails. `done` is the dump's folder when complete.
 */
export function followPages(base: string, done: Promise<string>, sums: BaseSums, prints: PagePrints | null, out: Writable, onBytes: (sent: number) => void, chain = false, served = false): Followed {
  let dumping: string | null = null;
  let attempts = 0;
  let wake: () => void = () => undefined;
  const onDumping = (dir: string) => {
    dumping = dir;
    attempts++;
    wake();
  };
  const batches = new Batches(out, onBytes);
  const files = new Map<string, Open>();
  const scratch = compareBuffer();
  const changed: number[] = [];
  const imagesDir = () => (dumping === null ? null : join(dumping, IMAGES_DIR));
  /** A file of the section, opened: its 'F' sent. */
  const addFile = async (path: string, opened: { fd: number | null; old: OldPages; oldFd: number | null }): Promise<Open> => {
    const file: Open = { ...opened, no: files.size, path, done: 0, chained: chain ? chainHash(sums[path]) : null, printed: chain && 'prints' in opened.old ? { pages: [], blocks: [] } : null };
    files.set(path, file);
    await batches.put(Buffer.from(`F${JSON.stringify({ path, base: sums[path] })}\n`));
    return file;
  };
  /** `n` bytes of the file's new contents in `block`, from `file.done` (a multiple of PRINT_BLOCK, as changedPages's block prints want): compared, the changed pages sent. */
  const compare = async (file: Open, block: Buffer, n: number): Promise<void> => {
    changed.length = 0;
    changedPages(file.old, block, n, file.done, DELTA_CHUNK, scratch, changed, file.printed);
    await sendRuns(batches, file, block, n, changed);
    file.done += n;
  };
  // Served (pageserver.ts): CRIU's page images arrive here, never as files, one after another,
  // each ended before the next. A page image with no pre-copy to compare with is written here
  // after all, and goes whole in the tar.
  const local = new Map<string, number>();
  /** The served image's bytes not compared yet: a whole block goes as it fills, the rest at the image's end. */
  const pending = { block: Buffer.alloc(COMPARE_BLOCK), used: 0 };
  /** A served page image's entry: compared where the pre-copy has it, else written here. */
  const startServed = async (path: string): Promise<Open | number> => {
    const known = files.get(path) ?? local.get(path);
    if (known !== undefined) return known;
    const old = sums[path] === undefined ? null : oldPages(base, path, prints);
    if (old !== null) return await addFile(path, { ...old, fd: null });
    const fd = openSync(join(dumping!, path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    local.set(path, fd);
    return fd;
  };
  const sink: PageSink | null = !served
    ? null
    : {
        async pages(path, bytes, at) {
          const entry = await startServed(path);
          if (typeof entry === 'number') return writeAll(entry, bytes, at);
          if (at !== entry.done + pending.used) throw new StasisError(`the page server handed ${path} at ${at}, after ${entry.done + pending.used}`);
          for (let from = 0; from < bytes.length; ) {
            const n = bytes.copy(pending.block, pending.used, from);
            pending.used += n;
            from += n;
            if (pending.used === COMPARE_BLOCK) {
              await compare(entry, pending.block, COMPARE_BLOCK);
              pending.used = 0;
            }
          }
        },
        async end(path, size) {
          const entry = await startServed(path);
          if (typeof entry === 'number') return;
          if (pending.used > 0) await compare(entry, pending.block, pending.used);
          pending.used = 0;
          entry.size = size;
        },
        restart() {
          if (files.size > 0) return false;
          for (const fd of local.values()) closeSync(fd);
          local.clear();
          return true;
        },
      };
  const result = (async () => {
    let complete: string | null = null;
    let failed: { err: unknown } | null = null;
    const settled = done.then(
      (dir) => {
        complete = dir;
      },
      (err: unknown) => {
        failed = { err };
      },
    );
    const block = Buffer.alloc(COMPARE_BLOCK);
    let followedAttempt = 0;
    await batches.put(Buffer.from(`${MAGIC_FOLLOW}\n`));
    try {
      // Served: the page images arrive through the sink while CRIU dumps; the rest is compared once it is done.
      if (served) await settled;
      for (;;) {
        // Read before the pass: a pass begun after the dump's end reads every file to its end.
        const final: string | null = complete;
        if (failed !== null) throw (failed as { err: unknown }).err;
        if (!served && attempts !== followedAttempt) {
          if (files.size > 0) throw new StasisError('the dump at the freeze was taken again after its pages had begun to go', { code: 'send-failed' });
          followedAttempt = attempts;
        }
        let moved = false;
        for (const path of Object.keys(sums)) {
          const during = final === null;
          if (during && (!PAGE_IMAGE.test(path) || dumping === null)) continue;
          if (served && PAGE_IMAGE.test(path)) continue;
          let file = files.get(path);
          if (file === undefined) {
            const opened = openFile(base, final ?? dumping!, path, prints, during);
            if (opened === null) continue;
            file = await addFile(path, opened);
          }
          const size = fstatSync(file.fd!).size;
          // While CRIU writes, whole blocks only (a block print covers 16 pages); at the end, to the last byte.
          const limit = during ? size - (size % PRINT_BLOCK) : size;
          while (file.done < limit) {
            const n = readAt(file.fd!, block.subarray(0, Math.min(COMPARE_BLOCK, limit - file.done)), file.done);
            if (n === 0) break;
            // The reads end on whole blocks until the last.
            await compare(file, block, n);
            moved = true;
          }
        }
        if (final !== null) break;
        // Nothing new: wait for CRIU to write more, or for the dump to end.
        if (!moved) await Promise.race([settled, new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, IDLE_MS);
        })]);
        else await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const newSums: BaseSums = {};
      const newPrints: Pick<PagePrints, 'files' | 'blocks'> = { files: {}, blocks: {} };
      for (const file of files.values()) {
        const size = file.size ?? fstatSync(file.fd!).size;
        const end = Buffer.alloc(13);
        end.write('E', 0, 'latin1');
        end.writeUInt32LE(file.no, 1);
        end.writeBigUInt64LE(BigInt(size), 5);
        await batches.put(end);
        if (file.chained !== null) newSums[file.path] = chainEnd(file.chained, size);
        if (file.printed !== null) {
          newPrints.files[file.path] = BigUint64Array.from(file.printed.pages);
          newPrints.blocks[file.path] = BigUint64Array.from(file.printed.blocks);
        }
      }
      await batches.put(Buffer.from('Z'));
      await batches.flush(true);
      let total = 0;
      for (const entry of walkTree(complete!)) if (entry.kind === 'file') total += entry.stat.size;
      for (const file of files.values()) if (file.fd === null) total += file.size ?? 0;
      return { files: [...files.keys()], sums: newSums, sent: batches.written, total, prints: chain && prints !== null ? newPrints : null };
    } finally {
      for (const file of files.values()) {
        if (file.fd !== null) closeSync(file.fd);
        if (file.oldFd !== null) closeSync(file.oldFd);
      }
      for (const fd of local.values()) closeSync(fd);
      // The dump is awaited whatever happened here: its failure is the caller's to report.
      await settled;
    }
  })();
  return { onDumping, result, sink, imagesDir };
}

/** What a file's new pages are compared with (its prints, else the pre-copy's file, opened), or null where the pre-copy has neither. */
function oldPages(base: string, path: string, prints: PagePrints | null): { old: OldPages; oldFd: number | null } | null {
  const printed = prints?.files[path];
  if (printed !== undefined) return { old: { prints: printed, hash: prints!.hash, seed: prints!.seed, blocks: prints!.blocks[path] }, oldFd: null };
  if (lstatSync(join(base, path), { throwIfNoEntry: false })?.isFile() !== true) return null;
  const oldFd = openSync(join(base, path), 'r');
  return { old: { fd: oldFd }, oldFd };
}

/** The new file and what its pages are compared with, or null where it is not (yet) there or goes whole in the tar. */
function openFile(base: string, dir: string, path: string, prints: PagePrints | null, during: boolean): { fd: number; old: OldPages; oldFd: number | null } | null {
  const printed = prints?.files[path];
  if (printed === undefined) {
    if (lstatSync(join(base, path), { throwIfNoEntry: false })?.isFile() !== true) return null;
  }
  let fd: number;
  try {
    fd = openSync(join(dir, path), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const stat = fstatSync(fd);
  // Once the dump is done, a small file goes whole in the tar, as with version 1; a page image that appeared while it ran is followed from its first page.
  if (!stat.isFile() || (!during && stat.size < DELTA_MIN)) {
    closeSync(fd);
    return null;
  }
  return { fd, ...oldPages(base, path, prints)! };
}

/** Runs of neighbouring changed pages as 'R' records, each page whole (a last short page padded: the file's end cuts it). */
async function sendRuns(batches: Batches, file: Open, block: Buffer, n: number, changed: number[]): Promise<void> {
  for (const [first, count] of pageRuns(changed)) {
    const from = first * DELTA_CHUNK - file.done;
    const head = Buffer.alloc(13);
    head.write('R', 0, 'latin1');
    head.writeUInt32LE(file.no, 1);
    runHead(first, count).copy(head, 5);
    let bytes = block.subarray(from, Math.min(n, from + count * DELTA_CHUNK));
    if (bytes.length < count * DELTA_CHUNK) bytes = Buffer.concat([bytes, Buffer.alloc(count * DELTA_CHUNK - bytes.length)]);
    file.chained?.update(head.subarray(5)).update(bytes);
    await batches.put(head);
    await batches.put(bytes);
  }
}

