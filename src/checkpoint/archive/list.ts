// An archive's entries as GNU tar itself reads them (its verbose listing), for
// code that must look at names before extracting: the same reading of the
// headers as the extraction's, with nothing of our own to disagree with it.
// A plain tar in a file is listed by seeking past the file data.

import { listArchive } from './gnu-tar.ts';

export type TarEntry = {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'other';
  linkName: string;
  size: number;
  mode: number;
};

// The first letter of the listing's mode column; 'C' is a contiguous file.
const TYPE_LETTERS: Record<string, TarEntry['type']> = {
  '-': 'file', 'C': 'file', 'd': 'dir', 'l': 'symlink', 'h': 'hardlink', 'c': 'char', 'b': 'block', 'p': 'fifo',
};

const QUOTED = String.raw`"((?:[^"\\]|\\.)*)"`;
// mode, uid/gid, size (or major,minor), date and time, name, then " -> target" or " link to target".
const LINE = new RegExp(String.raw`^(.)([-rwxsStT]{9})\s+\d+/\d+\s+(\d+|\d+,\d+)\s+\S+ \S+\s+${QUOTED}(?: (->|link to) ${QUOTED})?$`);

export async function readTarEntries(file: string): Promise<TarEntry[]> {
  const listing = await listArchive(file);
  if (listing.problem) throw new Error(`cannot read ${file}: ${listing.problem}`);
  const entries: TarEntry[] = [];
  for (const line of listing.lines) {
    const match = LINE.exec(line);
    if (!match) throw new Error(`cannot read ${file}: unexpected line in tar's listing: ${line}`);
    const [, letter, permissions, size, name, link, linkName] = match;
    const type = TYPE_LETTERS[letter] ?? 'other';
    entries.push({
      name: unquote(name),
      type,
      linkName: link === undefined ? '' : unquote(linkName),
      size: type === 'file' ? Number(size) : 0,
      mode: modeBits(permissions),
    });
  }
  return entries;
}

const ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, b: 8, a: 7, '\\': 92, '"': 34, '?': 63 };

/** Undoes --quoting-style=c: C escapes, with bytes outside ASCII as octal. */
function unquote(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '\\') {
      bytes.push(text.charCodeAt(i));
      continue;
    }
    const octal = /^[0-7]{1,3}/.exec(text.slice(i + 1))?.[0];
    if (octal) {
      bytes.push(parseInt(octal, 8));
      i += octal.length;
    } else {
      bytes.push(ESCAPES[text[i + 1]] ?? text.charCodeAt(i + 1));
      i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** "rwsr-xr-x" → 0o4755. */
function modeBits(permissions: string): number {
  let mode = 0;
  for (let i = 0; i < 9; i++) if (!'-ST'.includes(permissions[i])) mode |= 1 << (8 - i);
  if ('sS'.includes(permissions[2])) mode |= 0o4000;
  if ('sS'.includes(permissions[5])) mode |= 0o2000;
  if ('tT'.includes(permissions[8])) mode |= 0o1000;
  return mode;
}
