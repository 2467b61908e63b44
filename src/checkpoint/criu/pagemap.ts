import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_MAGIC, IMG_COMMON_MAGIC, decodeMessage, encodeVarint, readImageEntries } from './images.ts';

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

/** pagemap_entry.flags (criu/include/pagemap.h). */
const PE_PARENT = 1 << 0;
const PE_PRESENT = 1 << 2;
/** CRIU's page size on the architectures stasis runs on. */
const PAGE_SIZE = 4096;

/**
 * Compares each pages-ID.img with what the pagemap images that name it say
 * it holds (the pages marked present, nr_pages of 4 KiB each): a pages image
 * shorter than its pagemap said made CRIU spin for ever in the restore, so a
 * mismatch is refused before CRIU runs. Returns the problems (empty: all
 * agree). `sizeOf` gives a pages image's size without following links (null: missing).
 */
export function pagesImageProblems(imagesDir: string, sizeOf: (path: string) => number | null): string[] {
  const expected = new Map<number, { bytes: number; from: string[] }>();
  for (const name of readdirSync(imagesDir).filter((n) => /^pagemap-\d+\.img$/.test(n)).sort()) {
    const path = join(imagesDir, name);
    const [head, ...entries] = readImageEntries(path, 'pagemap');
    if (head === undefined) continue;
    const pagesId = decodeMessage(head, path, 'pagemap_head').needUint32(1, "pages_id");
    let pages = 0;
    for (const entry of entries) {
      const message = decodeMessage(entry, path, 'pagemap_entry');
      // Images without flags (older CRIU): in_parent, or else present.
      const flags = message.uint32(4) ?? (message.bool(3) ? PE_PARENT : PE_PRESENT);
      if ((flags & PE_PRESENT) === 0) continue;
      pages += Number(message.uint64(5) ?? BigInt(message.uint32(2) ?? 0));
    }
    const sum = expected.get(pagesId) ?? { bytes: 0, from: [] };
    sum.bytes += pages * PAGE_SIZE;
    sum.from.push(name);
    expected.set(pagesId, sum);
  }
  const problems: string[] = [];
  for (const [id, { bytes, from }] of expected) {
    const size = sizeOf(join(imagesDir, `pages-${id}.img`));
    if (size === null && bytes === 0) continue;
    if (size === null) problems.push(`pages-${id}.img is missing; ${from.join(', ')} says it holds ${bytes} bytes`);
    else if (size !== bytes) problems.push(`pages-${id}.img holds ${size} bytes; ${from.join(', ')} says it holds ${bytes} bytes`);
  }
  return problems;
}

/** One pagemap_entry: `pages` pages from `vaddr`, with its flags (PE_PRESENT: in the page image). */
export interface PagemapEntry {
  vaddr: bigint;
  pages: number;
  flags: number;
}

/**
 * A pagemap image as CRIU writes one (migrate --precopy's page server writes
 * them for the pages it takes in CRIU's stead): the two magics,
 * pagemap_head { pages_id = 1 }, then each pagemap_entry { vaddr = 1,
 * compat_nr_pages = 2 (required: 0), flags = 4, nr_pages = 5 }, each after its u32 length.
 */
export function encodePagemapImage(pagesId: number, entries: readonly PagemapEntry[]): Buffer {
  const messages = [Buffer.concat([Buffer.from([0x08]), encodeVarint(pagesId)])];
  for (const { vaddr, pages, flags } of entries) {
    messages.push(Buffer.concat([Buffer.from([0x08]), encodeVarint(vaddr), Buffer.from([0x10, 0x00, 0x20]), encodeVarint(flags), Buffer.from([0x28]), encodeVarint(pages)]));
  }
  const magic = Buffer.alloc(8);
  magic.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  magic.writeUInt32LE(IMAGE_MAGIC.pagemap, 4);
  const parts = [magic];
  for (const message of messages) {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(message.length, 0);
    parts.push(length, message);
  }
  return Buffer.concat(parts);
}
