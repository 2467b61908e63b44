// A pass over the tar headers of an archive as its plain bytes stream to GNU
// tar: each member is looked at before tar is handed the block that holds its
// header, and an archive holding what a checkpoint never holds is stopped
// there, whole (the folder it was going into is removed). GNU tar on its own
// rewrites some of these silently (it strips a leading "/", takes a pax
// header's name over the header's own), so a hostile archive would otherwise
// go on to be restored. What is refused:
//   - a member name that is absolute or has a ".." component;
//   - a pax header (or GNU long name) that renames a member: its name must
//     begin with the member header's own (GNU tar writes the header's name
//     cut to 100 bytes), and a global pax header may not name members at all;
//   - sparse members (type S, GNU.sparse.* pax keys), multi-volume and
//     volume-label headers, and any type GNU tar does not make for a tree;
//   - devices; and, outside a rootfs layer, symlinks, hard links and FIFOs;
//     in a layer, a hard link whose target is absolute or has "..";
//   - a link, folder or FIFO header with data (writers put none; reading past
//     it or not is where two tar readers could disagree);
//   - a header whose checksum is wrong, and bytes that do not begin with a
//     tar header at all (such as /dev/urandom's);
//   - more than 16 MiB after the end-of-archive marker (/dev/zero's bytes).
// The check on disk after extraction (safety.ts) stays: this pass refuses
// earlier, and refuses what leaves no trace on disk.

const BLOCK = 512;
const MAX_META_BYTES = 1024 * 1024;
const MAX_TRAILING_BYTES = 16 * 1024 * 1024;

export interface HeaderCheckOptions {
  /** A container's writable layer: symlinks, hard links inside it and FIFOs are its data. */
  rootfsLayer?: boolean;
}

type Pax = Map<string, string>;

function cBytes(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0);
  return end === -1 ? bytes : bytes.subarray(0, end);
}

function cString(bytes: Buffer): string {
  return cBytes(bytes).toString('utf8');
}

/** An octal field, or GNU's base-256 (first byte 0x80); null when neither. */
function numberField(bytes: Buffer): number | null {
  if (bytes[0] === 0x80) {
    let value = 0;
    for (let i = 1; i < bytes.length; i++) value = value * 256 + bytes[i];
    return Number.isSafeInteger(value) ? value : null;
  }
  const text = bytes.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : null;
}

function checksumOk(header: Buffer): boolean {
  const stored = numberField(header.subarray(148, 156));
  if (stored === null) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** "%d key=value\n" records; null when damaged. */
function parsePax(data: Buffer): Pax | null {
  const records: Pax = new Map();
  let offset = 0;
  while (offset < data.length) {
    if (data[offset] === 0) break;
    const space = data.indexOf(0x20, offset);
    if (space === -1) return null;
    const length = Number(data.subarray(offset, space).toString('latin1'));
    if (!Number.isSafeInteger(length) || length <= space - offset || offset + length > data.length) return null;
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals === -1) return null;
    records.set(record.slice(0, equals), record.slice(equals + 1));
    offset += length;
  }
  return records;
}

const TYPE_NAMES: Record<string, string> = {
  '3': 'char device not allowed',
  '4': 'block device not allowed',
  S: 'a sparse member (a checkpoint has none)',
  M: 'a multi-volume continuation (a checkpoint has none)',
  V: 'a volume label (a checkpoint has none)',
  N: 'an old GNU long-name header (a checkpoint has none)',
  D: 'a GNU incremental folder listing (a checkpoint has none)',
};

/**
 * Fed the plain tar bytes in order; says when the archive must stop, before
 * the bytes that hold the offending header are passed on.
 */
export class TarHeaderCheck {
  private readonly layer: boolean;
  private pending = Buffer.alloc(0);
  /** Data bytes of the current member still to pass, then its padding. */
  private skip = 0;
  /** A meta member's data being gathered (pax x/g, GNU L/K), with its padded size. */
  private meta: { type: string; size: number; padded: number; chunks: Buffer[]; got: number } | null = null;
  private pax: Pax = new Map();
  private longName: string | null = null;
  private longLink: string | null = null;
  private offset = 0;
  private members = 0;
  private ended = false;
  private trailing = 0;

  constructor(opts: HeaderCheckOptions = {}) {
    this.layer = opts.rootfsLayer === true;
  }

  /** Looks at the next bytes of the plain tar; an Error when the archive is refused. */
  push(chunk: Buffer): Error | null {
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (data.length > 0) {
      if (this.ended) {
        this.trailing += data.length;
        if (this.trailing > MAX_TRAILING_BYTES) return new Error(`more than ${MAX_TRAILING_BYTES} bytes follow the end-of-archive marker (not a tar archive, or a damaged one)`);
        return null;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length);
        this.skip -= n;
        this.offset += n;
        data = data.subarray(n);
        continue;
      }
      if (this.meta) {
        const n = Math.min(this.meta.padded - this.meta.got, data.length);
        const useful = Math.max(0, Math.min(n, this.meta.size - this.meta.got));
        if (useful > 0) this.meta.chunks.push(data.subarray(0, useful));
        this.meta.got += n;
        this.offset += n;
        data = data.subarray(n);
        if (this.meta.got === this.meta.padded) {
          const problem = this.endMeta();
          if (problem) return problem;
        }
        continue;
      }
      if (data.length < BLOCK) {
        this.pending = Buffer.from(data);
        return null;
      }
      const problem = this.header(data.subarray(0, BLOCK));
      if (problem) return problem;
      this.offset += BLOCK;
      data = data.subarray(BLOCK);
    }
    return null;
  }

  private header(block: Buffer): Error | null {
    if (block.every((byte) => byte === 0)) {
      // The end-of-archive marker (an empty folder's archive is only that); zeros from /dev/zero stop at MAX_TRAILING_BYTES.
      this.ended = true;
      return null;
    }
    if (!checksumOk(block)) {
      return new Error(this.members === 0 && this.offset === 0
        ? 'not a tar archive: its first 512 bytes are not a tar header'
        : `the tar header at byte ${this.offset} is damaged (its checksum is wrong)`);
    }
    const type = String.fromCharCode(block[156] || 0x30);
    const size = numberField(block.subarray(124, 136));
    if (size === null) return new Error(`the tar header at byte ${this.offset} is damaged (its size is not a number)`);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META_BYTES) return new Error(`the tar header at byte ${this.offset} carries ${size} bytes of names or attributes (at most ${MAX_META_BYTES})`);
      this.meta = { type, size, padded, chunks: [], got: 0 };
      if (padded === 0) return this.endMeta();
      return null;
    }
    this.members++;
    const ownBytes = this.headerName(block);
    const ownName = ownBytes.toString('utf8');
    const name = this.pax.get('path') ?? this.longName ?? ownName;
    const refuse = (why: string) => new Error(`unsafe archive entry "${name}": ${why}`);
    // GNU tar cuts the header's own name to 100 bytes, maybe inside a UTF-8 character: compare bytes.
    const renamed = (this.pax.has('path') || this.longName !== null) && !Buffer.from(name, 'utf8').subarray(0, ownBytes.length).equals(ownBytes);
    const linkName = this.pax.get('linkpath') ?? this.longLink ?? cString(block.subarray(157, 257));
    const ownLink = cString(block.subarray(157, 257));
    const linkRenamed = (this.pax.has('linkpath') || this.longLink !== null) && !linkName.startsWith(ownLink);
    const sparse = [...this.pax.keys()].some((key) => key.startsWith('GNU.sparse.'));
    const paxSize = this.pax.get('size');
    const dataSize = paxSize === undefined ? size : Number(paxSize);
    this.pax = new Map();
    this.longName = null;
    this.longLink = null;

    if (name === '') return refuse('an empty name');
    if (renamed) return refuse(`a pax header or long name renames the member "${ownName}"`);
    if (linkRenamed) return refuse(`a pax header or long name changes its link target from "${ownLink}"`);
    if (name.startsWith('/')) return refuse('an absolute name (a checkpoint has none)');
    if (name.split('/').includes('..')) return refuse('path contains ".."');
    if (sparse) return refuse('a sparse member (a checkpoint has none)');
    if (!Number.isSafeInteger(dataSize) || dataSize < 0) return refuse('its pax size is not a number');
    const isFile = type === '0' || type === '7' || block[156] === 0;
    if (TYPE_NAMES[type]) return refuse(TYPE_NAMES[type]);
    if (!isFile && !['1', '2', '5', '6'].includes(type)) return refuse(`an entry of tar type "${type}" (a checkpoint has none)`);
    if (!isFile && dataSize !== 0) return refuse(`a ${type === '5' ? 'folder' : type === '6' ? 'FIFO' : 'link'} header followed by ${dataSize} bytes of data (a tar writer puts none)`);
    if (!this.layer) {
      if (type === '2') return refuse(`a symlink to "${linkName}" (a checkpoint archive has none)`);
      if (type === '1') return refuse('a hard link (a checkpoint archive has none)');
      if (type === '6') return refuse('fifo not allowed here');
    } else if (type === '1' && (linkName.startsWith('/') || linkName.split('/').includes('..'))) {
      return refuse(`a hard link to "${linkName}", out of the layer`);
    }
    this.skip = Math.ceil(dataSize / BLOCK) * BLOCK;
    return null;
  }

  /** POSIX ustar: prefix "/" name; GNU's header keeps other fields where the prefix would be. */
  private headerName(block: Buffer): Buffer {
    const name = cBytes(block.subarray(0, 100));
    const posix = block.subarray(257, 263).toString('latin1') === 'ustar\0';
    const prefix = posix ? cBytes(block.subarray(345, 500)) : Buffer.alloc(0);
    return prefix.length === 0 ? name : Buffer.concat([prefix, Buffer.from('/'), name]);
  }

  private endMeta(): Error | null {
    const meta = this.meta!;
    this.meta = null;
    const data = Buffer.concat(meta.chunks);
    const at = `the ${meta.type === 'g' ? 'global pax' : meta.type === 'x' ? 'pax' : 'GNU long-name'} header before byte ${this.offset}`;
    if (meta.type === 'L' || meta.type === 'K') {
      const text = cString(data);
      if (meta.type === 'L') this.longName = text;
      else this.longLink = text;
      return null;
    }
    const records = parsePax(data);
    if (records === null) return new Error(`${at} is damaged`);
    if (meta.type === 'g') {
      for (const key of ['path', 'linkpath', 'size']) {
        if (records.has(key)) return new Error(`unsafe archive entry "${records.get(key)}": a global pax header sets every member's ${key} (a checkpoint has none)`);
      }
      if ([...records.keys()].some((key) => key.startsWith('GNU.sparse.'))) return new Error(`${at} makes members sparse (a checkpoint has none)`);
      return null;
    }
    for (const [key, value] of records) this.pax.set(key, value);
    return null;
  }
}
