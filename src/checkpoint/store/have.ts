import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { StasisError } from '../../errors.ts';
import { CHUNK_BYTES } from '../../host/chunks.ts';
import { withChunkReader } from './store.ts';

// The have-list: what a receiver's checkpoint store holds, as it tells a
// sender ahead of an export (`stasis checkpoint ls --chunks`, read by
// `stasis checkpoint ID --export FILE --have LIST`). Text, so that it goes
// through ssh, mail or a terminal unharmed:
//   stasis-have 1 <chunk bytes> <count>\n
//   <sha256, 64 lowercase hex digits>\n      (count lines, in increasing order)
// 65 bytes a chunk: about 0.1% of the 64 KiB each one stands for.

export const HAVE_MAGIC = 'stasis-have';
const HAVE_FORMAT = 1;
/** 4 million chunks (256 GiB of checkpoints): more than a have-list is ever read. */
export const MAX_HAVE_BYTES = 300 * 1024 * 1024;

/** The have-list of `hashes` (any order; duplicates dropped). */
export function formatHaveList(hashes: Iterable<string>): string {
  const sorted = [...new Set(hashes)].sort();
  return `${HAVE_MAGIC} ${HAVE_FORMAT} ${CHUNK_BYTES} ${sorted.length}\n${sorted.map((h) => `${h}\n`).join('')}`;
}

/** The have-list of the store in `checkpointDir` (its chunk files and its materialised checkpoints' chunks); empty when it does not exist. */
export async function storeHaveList(checkpointDir: string): Promise<string> {
  return withChunkReader(checkpointDir, (held) => formatHaveList(held));
}

function badList(name: string, why: string): StasisError {
  return new StasisError(`${name} is not a have-list of stasis checkpoint ls --chunks: ${why}`, { code: 'bad-have-list', exitCode: 2 });
}

/** The hashes of a have-list, checked whole (a cut or altered list is refused); `name` names it in errors. */
export function parseHaveList(text: string, name: string): Set<string> {
  if (!text.endsWith('\n')) throw badList(name, text === '' ? 'it is empty' : 'its last line is cut short');
  const lines = text.slice(0, -1).split('\n');
  const head = /^stasis-have (\d+) (\d+) (\d+)$/.exec(lines[0]);
  if (head === null) throw badList(name, `its first line is not "${HAVE_MAGIC} ${HAVE_FORMAT} ${CHUNK_BYTES} COUNT"`);
  if (Number(head[1]) !== HAVE_FORMAT) throw badList(name, `format ${head[1]} (this stasis reads ${HAVE_FORMAT})`);
  if (Number(head[2]) !== CHUNK_BYTES) throw badList(name, `chunks of ${head[2]} bytes (this stasis cuts ${CHUNK_BYTES})`);
  const count = Number(head[3]);
  if (lines.length - 1 !== count) throw badList(name, `it says ${count} chunks and lists ${lines.length - 1}`);
  const hashes = new Set<string>();
  for (let i = 1; i < lines.length; i++) {
    if (!/^[0-9a-f]{64}$/.test(lines[i])) throw badList(name, `line ${i + 1} is not a SHA-256 in lowercase hex`);
    if (i > 1 && lines[i] <= lines[i - 1]) throw badList(name, `line ${i + 1} is not after line ${i} (the hashes are in increasing order, once each)`);
    hashes.add(lines[i]);
  }
  return hashes;
}

/** Reads and checks the have-list in the file (or FIFO) `path`; `shown` names it in errors. */
export function readHaveList(path: string, shown = path): Set<string> {
  let text: string;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new StasisError(`--have ${shown}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { code: 'bad-have-list', exitCode: 2 });
  }
  try {
    if (fstatSync(fd).isDirectory()) throw badList(shown, 'it is a folder');
    const parts: Buffer[] = [];
    let total = 0;
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      total += n;
      if (total > MAX_HAVE_BYTES) throw badList(shown, `it is larger than ${MAX_HAVE_BYTES} bytes`);
      parts.push(Buffer.from(buffer.subarray(0, n)));
    }
    text = Buffer.concat(parts).toString('latin1');
  } finally {
    closeSync(fd);
  }
  return parseHaveList(text, shown);
}
