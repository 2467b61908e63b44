import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { CriuImageError, decodeMessage, readImageEntries, type ProtoMessage } from './images.ts';

// What a process's memory images say about it: how much memory CRIU wrote
// for it, how much it had mapped, and its command line. CRIU keeps no command
// line of its own; mm-<pid>.img records where the kernel put it (mm_entry
// mm_arg_start = 8, mm_arg_end = 9: the NUL-separated argv at the top of the
// stack), and the bytes are in the dumped pages: pagemap-<pid>.img lists the
// dumped ranges (pagemap_head pages_id = 1, then pagemap_entry vaddr = 1,
// nr_pages = 2 or, from CRIU 4, compat_nr_pages = 2 and nr_pages = 5,
// in_parent = 3, flags = 4), and pages-<pages_id>.img holds the pages of the
// present entries back to back, with no header (images/mm.proto,
// vma.proto, pagemap.proto; criu/include/pagemap.h, magic.h). CRIU flags
// every anonymous private run PE_LAZY, lazy dump or not (measured: a plain
// dump's pages-N.img is the size of all present runs); only a --lazy-pages
// dump leaves those runs out, so the file's size tells which layout it has.

const PAGE = 4096;
const PE_PARENT = 1 << 0;
const PE_LAZY = 1 << 1;
const PE_PRESENT = 1 << 2;
/** More than any argv the kernel takes (ARG_MAX is 2 MiB with the environment, and a page of it is argv's usual share). */
const MAX_ARGS_BYTES = 256 * 1024;
const MAX_ARGS = 4096;

export interface TaskMemory {
  /** Bytes of memory pages written for the task (its pages-N.img; 0 when missing). */
  dumpedBytes: number;
  /** Bytes of its mappings (the VMAs' sizes). */
  mappedBytes: number;
  /** Its argv, read from the dumped pages; null when the pages do not hold it (in a parent dump, lazy, or missing). */
  args: string[] | null;
}

interface PageRun {
  vaddr: bigint;
  pages: number;
  /** Where the run's bytes start in pages-N.img, or null when they are not there. */
  fileOffset: number | null;
}

interface RawRun {
  vaddr: bigint;
  pages: number;
  present: boolean;
  lazy: boolean;
}

function readPagemap(pagemapPath: string): { pagesId: number; runs: RawRun[] } {
  const entries = readImageEntries(pagemapPath, 'pagemap');
  if (entries.length === 0) throw new CriuImageError(pagemapPath, 'has no pagemap_head');
  const head = decodeMessage(entries[0], pagemapPath, 'pagemap_head');
  const pagesId = head.needUint32(1, 'pages_id');
  const runs = entries.slice(1).map((entry) => {
    const e = decodeMessage(entry, pagemapPath, 'pagemap_entry');
    const vaddr = e.uint64(1);
    if (vaddr === undefined) throw new CriuImageError(pagemapPath, 'a pagemap_entry has no vaddr');
    const pages = Number(e.uint64(5) ?? BigInt(e.uint32(2) ?? 0));
    if (pages > 1 << 30) throw new CriuImageError(pagemapPath, `a pagemap_entry of ${pages} pages`);
    const flags = e.uint32(4);
    // Before flags (CRIU < 3), an entry was present unless in_parent.
    const present = flags === undefined ? e.bool(3) !== true : (flags & PE_PRESENT) !== 0 && (flags & PE_PARENT) === 0;
    return { vaddr, pages, present, lazy: flags !== undefined && (flags & PE_LAZY) !== 0 };
  });
  return { pagesId, runs };
}

/** Where each run's bytes are in a pages file of `fileBytes`: with the lazy runs, or without them (a --lazy-pages dump); null when neither fits. */
function pageRuns(runs: readonly RawRun[], fileBytes: number): PageRun[] | null {
  for (const withLazy of [true, false]) {
    let offset = 0;
    const placed = runs.map((r) => {
      const inFile = r.present && (withLazy || !r.lazy);
      const run = { vaddr: r.vaddr, pages: r.pages, fileOffset: inFile ? offset : null };
      if (inFile) offset += r.pages * PAGE;
      return run;
    });
    if (offset === fileBytes) return placed;
  }
  return null;
}

function fileSize(path: string): number | null {
  try {
    const fd = openSync(path, 'r');
    try {
      const stat = fstatSync(fd);
      return stat.isFile() ? stat.size : null;
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

/** Reads [start, end) of the task's memory from the pages file, or null when some of it is not there. */
function readRange(pagesPath: string, runs: readonly PageRun[], start: bigint, end: bigint): Buffer | null {
  if (end <= start || end - start > BigInt(MAX_ARGS_BYTES)) return null;
  const out = Buffer.alloc(Number(end - start));
  let fd: number;
  try {
    fd = openSync(pagesPath, 'r');
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    let addr = start;
    while (addr < end) {
      const run = runs.find((r) => addr >= r.vaddr && addr < r.vaddr + BigInt(r.pages * PAGE));
      if (!run || run.fileOffset === null) return null;
      const runEnd = run.vaddr + BigInt(run.pages * PAGE);
      const take = Number((end < runEnd ? end : runEnd) - addr);
      const at = run.fileOffset + Number(addr - run.vaddr);
      const into = Number(addr - start);
      if (readSync(fd, out, into, take, at) !== take) return null;
      addr += BigInt(take);
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

function argvFrom(bytes: Buffer): string[] {
  const text = bytes.toString('utf8');
  const args = (text.endsWith('\0') ? text.slice(0, -1) : text).split('\0');
  return args.slice(0, MAX_ARGS);
}

/** The memory of task `pid` in a CRIU images folder (mm-PID.img, pagemap-PID.img, pages-N.img). */
export function readTaskMemory(imagesDir: string, pid: number): TaskMemory {
  const mmPath = join(imagesDir, `mm-${pid}.img`);
  const mmEntries = readImageEntries(mmPath, 'mm');
  if (mmEntries.length !== 1) throw new CriuImageError(mmPath, `holds ${mmEntries.length} entries where CRIU writes one`);
  const mm: ProtoMessage = decodeMessage(mmEntries[0], mmPath, 'mm_entry');
  let mappedBytes = 0;
  for (const vma of mm.messages(14, 'vma_entry')) {
    const start = vma.uint64(1);
    const end = vma.uint64(2);
    if (start !== undefined && end !== undefined && end > start) mappedBytes += Number(end - start);
  }
  const { pagesId, runs: raw } = readPagemap(join(imagesDir, `pagemap-${pid}.img`));
  const pagesPath = join(imagesDir, `pages-${pagesId}.img`);
  const size = fileSize(pagesPath);
  const runs = size === null ? null : pageRuns(raw, size);
  const dumpedBytes = size ?? 0;
  const argStart = mm.uint64(8);
  const argEnd = mm.uint64(9);
  const argBytes = runs && argStart !== undefined && argEnd !== undefined ? readRange(pagesPath, runs, argStart, argEnd) : null;
  return { dumpedBytes, mappedBytes, args: argBytes ? argvFrom(argBytes) : null };
}
