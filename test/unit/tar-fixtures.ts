// Archives for the tar tests: hand-made bytes (for what no honest tar
// writes) and small checkpoint-like trees archived by GNU tar.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

let root = '';
let counter = 0;

/** The folder everything of one test file goes under; call from before(). */
export function makeTestRoot(label: string): string {
  root = mkdtempSync(path.join(tmpdir(), `stasis-${label}-`));
  return root;
}

export function removeTestRoot(): void {
  rmSync(root, { recursive: true, force: true });
}

export function testRoot(): string {
  return root;
}

/** A fresh empty folder under the test root. */
export function freshDir(label: string): string {
  const dir = path.join(root, `${label}-${counter++}`);
  mkdirSync(dir);
  return dir;
}

/** A path under the test root that nothing has created. */
export function unusedPath(label: string): string {
  return path.join(root, `${label}-${counter++}`);
}

export function gnuTar(args: string[]): void {
  execFileSync('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

// --- hand-made tar bytes ------------------------------------------------------

export type RawEntry = { name: string; type?: string; linkName?: string; data?: string | Buffer; devmajor?: number; devminor?: number };

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

export function rawHeader(entry: RawEntry, size: number): Buffer {
  const header = Buffer.alloc(512);
  header.write(entry.name, 0, 100, 'utf8');
  header.write(octal(entry.type === '5' ? 0o755 : 0o644, 8), 100, 'latin1');
  header.write(octal(0, 8), 108, 'latin1');
  header.write(octal(0, 8), 116, 'latin1');
  header.write(octal(size, 12), 124, 'latin1');
  header.write(octal(0, 12), 136, 'latin1');
  header.write(entry.type ?? '0', 156, 'latin1');
  header.write(entry.linkName ?? '', 157, 100, 'utf8');
  header.write('ustar\u000000', 257, 'latin1');
  header.write(octal(entry.devmajor ?? 0, 8), 329, 'latin1');
  header.write(octal(entry.devminor ?? 0, 8), 337, 'latin1');
  return withChecksum(header);
}

export function withChecksum(header: Buffer): Buffer {
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}

export function rawTar(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    blocks.push(rawHeader(entry, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** One pax record; its length prefix counts itself, so settle it by iteration. */
export function paxRecord(key: string, value: string): string {
  let length = 0;
  while (`${length} ${key}=${value}\n`.length !== length) length = `${length} ${key}=${value}\n`.length;
  return `${length} ${key}=${value}\n`;
}

export function writeRawTar(entries: RawEntry[]): string {
  const file = path.join(freshDir('raw'), 'archive.tar');
  writeFileSync(file, rawTar(entries));
  return file;
}

// --- a small checkpoint-like tree -----------------------------------------------

/** Files and folders only, as in a checkpoint folder. */
export function makeTree(): string {
  const dir = freshDir('tree');
  mkdirSync(path.join(dir, 'checkpoint'));
  writeFileSync(path.join(dir, 'checkpoint', 'inventory.img'), Buffer.from([1, 2, 3, 4]));
  writeFileSync(path.join(dir, 'checkpoint', 'pages-1.img'), Buffer.alloc(20000, 7));
  writeFileSync(path.join(dir, 'spec.dump'), '{"ociVersion":"1.0.2"}\n');
  writeFileSync(path.join(dir, 'config.dump'), '{"id":"abc"}\n', { mode: 0o600 });
  mkdirSync(path.join(dir, 'nested', 'deeper'), { recursive: true });
  writeFileSync(path.join(dir, 'nested', 'deeper', 'file'), 'x');
  return dir;
}

export const treeNames = [
  'checkpoint/', 'checkpoint/inventory.img', 'checkpoint/pages-1.img', 'config.dump',
  'nested/', 'nested/deeper/', 'nested/deeper/file', 'spec.dump',
];

export function listTree(dir: string, prefix = ''): string[] {
  const names: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    const stat = lstatSync(full);
    names.push(`${prefix}${name}${stat.isDirectory() ? '/' : ''}`);
    if (stat.isDirectory()) names.push(...listTree(full, `${prefix}${name}/`));
  }
  return names.sort();
}

export function gnuArchive(tree: string, file: string, extra: string[] = []): string {
  gnuTar(['-c', '-f', file, '-C', tree, ...extra, ...readdirSync(tree).sort()]);
  return file;
}

export const COMPRESSED_FORMATS = [
  ['plain', [], 'tar'],
  ['gzip', ['-z'], 'tar.gz'],
  ['zstd', ['--zstd'], 'tar.zst'],
] as const;

/**
 * A refused extraction leaves nothing: the destination is gone, nothing else
 * appeared next to it, and none of `outside` exists.
 */
export function assertNothingLeft(dest: string, outside: string[] = []): void {
  assert.equal(existsSync(dest), false, `${dest} was left behind`);
  assert.deepEqual(readdirSync(path.dirname(dest)), [], 'something was written next to the destination');
  for (const file of outside) assert.equal(existsSync(file), false, `${file} was written`);
}
