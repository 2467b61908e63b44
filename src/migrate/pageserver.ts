import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { socketOwner } from '../host/procfs.ts';
import { IMAGES_DIR } from '../checkpoint/format/layout.ts';
import { encodePagemapImage, type PagemapEntry } from '../checkpoint/criu/pagemap.ts';

// migrate --precopy's dump at the freeze, with its pages sent to stasis
// instead of written into files: CRIU's page-server protocol
// (criu/page-xfer.c), the side that receives. CRIU still writes every other
// image into the checkpoint's folder; stasis writes the pagemap images there
// itself, as CRIU's own page server would, and hands each page image's bytes
// to a PageSink as they arrive (the follower compares them with the pre-copy
// and sends the changed ones). The gain: no page cache to fill with a second
// copy of the container's memory while it is frozen, for a host without room
// for one (servePagesWhen). Through a socket 1 GiB took 0.67 s here every
// time; into the page cache, 0.45-3 s, by how long ago the VM's host had
// taken that memory back, and 0.45-0.86 s once it was warm.

/** STASIS_PAGE_SERVER: whether migrate --precopy's dump at the freeze sends its pages to stasis. */
export type PageServerSetting = 'always' | 'never' | 'auto';

/** The setting from the environment's value (unset or empty: auto); anything else is refused before the move starts. */
export function pageServerSetting(value: string | undefined): PageServerSetting {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'always' || value === 'never') return value;
  throw new StasisError(`STASIS_PAGE_SERVER is ${JSON.stringify(value)}: it is always, never or auto`, { exitCode: 2 });
}

/**
 * Whether the freeze's dump goes through the page server: as `setting` says,
 * and with `auto` where this host has no room for a second copy of the
 * container's memory (MemAvailable below twice its private resident memory,
 * both in bytes). With room to spare, CRIU writing into the page cache while
 * the follower reads it back was faster here: the dump at the freeze took
 * 519-862 ms at 1 GiB, against 1096-1210 ms through the page server
 * (bench/README.md).
 */
export function servePagesWhen(setting: PageServerSetting, resident: () => number, available: () => number): boolean {
  if (setting !== 'auto') return setting === 'always';
  const free = available();
  return free > 0 && free < 2 * resident();
}

/** The commands (the low 16 bits of `cmd`; the high 16 are pagemap flags). */
const PS_IOV_ADD = 1;
const PS_IOV_HOLE = 2;
const PS_IOV_OPEN = 3;
const PS_IOV_OPEN2 = 4;
const PS_IOV_PARENT = 5;
const PS_IOV_ADD_F = 6;
const PS_IOV_CLOSE = 0x1023;
const PS_IOV_FORCE_CLOSE = 0x1024;
/** dst_id: the image's id above 8 bits of type. */
const PS_TYPE_PID = 1;
const PS_TYPE_SHMEM = 2;
/** pagemap_entry.flags. */
const PE_PARENT = 1 << 0;
const PE_PRESENT = 1 << 2;
const PAGE = 4096;
/** Bounds a hostile or broken peer cannot push past: one entry's pages, and an image's id. */
const MAX_RUN_PAGES = 1 << 28;
const MAX_ID = 2 ** 31;

/**
 * The header of each command: u32 cmd, the page count, u64 vaddr, u64 dst_id.
 * CRIU 4.2 made the count a u64 (32 bytes with the padding after cmd); before,
 * a u32 (24 bytes). The first command is always an open with count and vaddr
 * 0 and a non-zero dst_id, which tells the two apart: 24 bytes whose last 8
 * are zero can only be the start of the longer form.
 */
const HEAD_OLD = 24;
const HEAD_NEW = 32;

/** What the server hands on: each page image's bytes in order (whole pages), and its end. */
export interface PageSink {
  /** `path` is relative to the checkpoint folder (checkpoint/pages-N.img); `at` is the offset in it. */
  pages(path: string, bytes: Buffer, at: number): Promise<void>;
  /** The image is complete at `size` bytes. */
  end(path: string, size: number): Promise<void>;
  /** A dump that starts again: false if it may not (its first attempt's pages already went). */
  restart(): boolean;
}

export interface PageServer {
  port: number;
  /**
   * Settles once a connection was closed by CRIU's close command, or rejects
   * with what went wrong. A connection CRIU cut (a PageServerCut: a
   * consequence of its own failure, not a cause) rejects it only once the
   * server is closed with nothing served after it.
   */
  done: Promise<void>;
  /** Stops listening and cuts any connection left: `done` then settles. */
  close(): void;
}

/**
 * Listens on 127.0.0.1 for CRIU's dump (`runc checkpoint --page-server`).
 * `imagesOf()` gives the folder the current attempt writes into (null before
 * it starts). Only a connection whose socket root owns is served.
 */
export async function servePages(imagesOf: () => string | null, sink: PageSink): Promise<PageServer> {
  let finish: () => void = () => undefined;
  let fail: (err: unknown) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  done.catch(() => undefined);
  let connections = 0;
  let active = 0;
  let closed = false;
  // A connection CRIU cut is settled on only once nothing more can come: its dump may be taken again.
  let cutShort: PageServerCut | null = null;
  const settleIfIdle = () => {
    if (closed && active === 0) {
      if (cutShort !== null) fail(cutShort);
      else finish();
    }
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (connections > 1 && !sink.restart()) {
      fail(new StasisError('the dump at the freeze was taken again after its pages had begun to go', { code: 'send-failed' }));
      for (const open of sockets) open.destroy();
      return;
    }
    active++;
    serve(socket, imagesOf, sink)
      .then(
        () => {
          cutShort = null;
          finish();
        },
        (err: unknown) => {
          socket.destroy();
          if (err instanceof PageServerCut) cutShort = err;
          else fail(err);
        },
      )
      .finally(() => {
        active--;
        settleIfIdle();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new StasisError('the page server has no port');
  return {
    port: address.port,
    done,
    close: () => {
      closed = true;
      server.close();
      // A connection still open is CRIU's of a dump that is over: cut, and settled as it ends.
      for (const open of sockets) open.destroy();
      settleIfIdle();
    },
  };
}

/** One image being received: its pagemap entries, and its page image's offset. */
interface Receiving {
  pagemap: string;
  pagesId: number;
  pages: string;
  entries: PagemapEntry[];
  at: number;
}

/** Serves one connection to its close command. */
async function serve(socket: Socket, imagesOf: () => string | null, sink: PageSink): Promise<void> {
  const peer = socket.remotePort;
  if (peer === undefined || socketOwner(peer, socket.localPort!) !== 0) throw new StasisError(`a connection to the page server from 127.0.0.1:${peer ?? '?'} is not root's: refused`);
  const dir = imagesOf();
  if (dir === null) throw new StasisError('CRIU reached the page server before the dump began');
  const reader = new Reader(socket);
  /** The header's width: told by the first command (see HEAD_OLD). */
  let head: number | null = null;
  let nextPagesId = 1;
  let current: { dst: bigint; file: Receiving } | null = null;
  const close = async () => {
    if (current === null) return;
    writeFileSync(join(dir, current.file.pagemap), encodePagemapImage(current.file.pagesId, current.file.entries), { flag: 'wx', mode: 0o600 });
    await sink.end(current.file.pages, current.file.at);
    current = null;
  };
  for (;;) {
    let bytes = await reader.take(head ?? HEAD_OLD);
    if (bytes === null) throw cut('before its close command');
    if (head === null) {
      head = bytes.readBigUInt64LE(16) === 0n ? HEAD_NEW : HEAD_OLD;
      const rest = head === HEAD_NEW ? await reader.take(HEAD_NEW - HEAD_OLD) : Buffer.alloc(0);
      if (rest === null) throw cut('in a command');
      bytes = Buffer.concat([bytes, rest]);
    }
    const cmd = bytes.readUInt32LE(0);
    const count = head === HEAD_NEW ? bytes.readBigUInt64LE(8) : BigInt(bytes.readUInt32LE(4));
    const vaddr = bytes.readBigUInt64LE(head - 16);
    const dst = bytes.readBigUInt64LE(head - 8);
    const op = cmd & 0xffff;
    if (op === PS_IOV_CLOSE || op === PS_IOV_FORCE_CLOSE) {
      await close();
      socket.write(Buffer.alloc(4));
      socket.end();
      return;
    }
    if (op === PS_IOV_PARENT) {
      // No parent images: every page is in this dump.
      socket.write(Buffer.alloc(4));
      continue;
    }
    if (op !== PS_IOV_OPEN && op !== PS_IOV_OPEN2 && op !== PS_IOV_ADD && op !== PS_IOV_ADD_F && op !== PS_IOV_HOLE) throw new StasisError(`the page server got command ${op}, which a dump does not send`);
    // An add without an open (CRIU before 2.x) opens its image too.
    if (current === null || current.dst !== dst) {
      await close();
      current = { dst, file: openImage(dst, nextPagesId++) };
    }
    if (op === PS_IOV_OPEN2) socket.write(Buffer.from([0])); // no parent
    if (op === PS_IOV_OPEN || op === PS_IOV_OPEN2) continue;
    const flags = op === PS_IOV_ADD_F ? cmd >>> 16 : op === PS_IOV_ADD ? PE_PRESENT : PE_PARENT;
    if ((flags & PE_PARENT) !== 0) throw new StasisError('the page server got pages kept in a parent dump, and this dump has none');
    if (count > BigInt(MAX_RUN_PAGES)) throw new StasisError(`the page server got a run of ${count} pages`);
    const pages = Number(count);
    current.file.entries.push({ vaddr, pages, flags });
    if ((flags & PE_PRESENT) === 0) continue;
    let left = pages * PAGE;
    while (left > 0) {
      const chunk = await reader.some(left);
      if (chunk === null) throw cut('in the middle of pages');
      await sink.pages(current.file.pages, chunk, current.file.at);
      current.file.at += chunk.length;
      left -= chunk.length;
    }
  }
}

/** CRIU went away mid-conversation: a consequence of its own failure, which says more. */
export class PageServerCut extends StasisError {}

function cut(where: string): PageServerCut {
  return new PageServerCut(`CRIU closed the page server connection ${where}`);
}

/** The pagemap and page image an open names: pagemap-ID.img (or pagemap-shmem-ID.img) and pages-N.img, N counted from 1 as a local dump counts. */
function openImage(dst: bigint, pagesId: number): Receiving {
  const type = Number(dst & 0xffn);
  const id = dst >> 8n;
  if ((type !== PS_TYPE_PID && type !== PS_TYPE_SHMEM) || id >= BigInt(MAX_ID)) throw new StasisError(`the page server was asked to open image ${dst}, which is neither a process's nor shared memory's`);
  return {
    pagemap: `${type === PS_TYPE_PID ? 'pagemap' : 'pagemap-shmem'}-${id}.img`,
    pagesId,
    pages: `${IMAGES_DIR}/pages-${pagesId}.img`,
    entries: [],
    at: 0,
  };
}

/** Reads a socket as exact pieces (headers) or as whatever is there up to a bound (pages), with its back-pressure. */
class Reader {
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer = Buffer.alloc(0);

  constructor(socket: Socket) {
    this.iterator = (socket as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** False at the end: CRIU closed its side, reset it, or the server cut it (a PageServerCut for the caller, whichever it was). */
  private async fill(): Promise<boolean> {
    const next = await this.iterator.next().catch(() => ({ done: true as const, value: undefined }));
    if (next.done === true) return false;
    this.pending = this.pending.length === 0 ? next.value : Buffer.concat([this.pending, next.value]);
    return true;
  }

  /** Exactly `n` bytes, or null at the end. */
  async take(n: number): Promise<Buffer | null> {
    while (this.pending.length < n) if (!(await this.fill())) return null;
    const out = Buffer.from(this.pending.subarray(0, n));
    this.pending = this.pending.subarray(n);
    return out;
  }

  /** Between 1 and `max` bytes, or null at the end. */
  async some(max: number): Promise<Buffer | null> {
    if (this.pending.length === 0 && !(await this.fill())) return null;
    const out = this.pending.subarray(0, max);
    this.pending = this.pending.subarray(out.length);
    return out;
  }
}
