import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage, readImageEntries } from './images.ts';

/**
 * The bytes of memory a lazy dump left to be pulled: the pages its pagemap
 * images mark lazy (pagemap_entry: nr_pages, or compat_nr_pages; flags PE_LAZY), or null.
 */
export function lazyPageBytes(imagesDir: string): number | null {
  const PE_LAZY = 1 << 1;
  let pages = 0;
  try {
    for (const name of readdirSync(imagesDir).filter((n) => /^pagemap-\d+\.img$/.test(n))) {
      const path = join(imagesDir, name);
      // The first entry is the pagemap_head.
      for (const entry of readImageEntries(path, 'pagemap').slice(1)) {
        const message = decodeMessage(entry, path, 'pagemap_entry');
        if (((message.uint32(4) ?? 0) & PE_LAZY) === 0) continue;
        pages += Number(message.uint64(5) ?? BigInt(message.uint32(2) ?? 0));
      }
    }
  } catch {
    return null;
  }
  return pages * 4096;
}
