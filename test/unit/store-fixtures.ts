import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// What the store's unit tests share: a checkpoint folder as small as the store reads one.

/** The page image a fixture checkpoint holds (a big file: the store cuts it into chunks). */
export const PAGES = 'checkpoint/pages-1.img';

/** Writes at `path` a checkpoint folder whose page image is `pages`; returns `path`. */
export function checkpointFolder(path: string, pages: Buffer): string {
  mkdirSync(join(path, 'checkpoint'), { recursive: true });
  writeFileSync(join(path, 'checkpoint', 'inventory.img'), 'inventory');
  writeFileSync(join(path, PAGES), pages);
  writeFileSync(join(path, 'stasis.json'), JSON.stringify({ preDump: false }));
  return path;
}
