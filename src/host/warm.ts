import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from './digest.ts';

// Memory made ready for a dump, while its container still runs. On a VM whose
// host takes back memory the guest has freed (as these Firecracker VMs do a few
// seconds after), CRIU's dump of 1 GiB into the page cache froze its container
// 1.2-1.5 s into such memory, and 0.4 s into memory freed just before (its log's
// page transfer: 1.1-1.5 s against 0.2 s; bench/README.md). Writing that much
// into a file on the dump's filesystem and removing it, just before the dump,
// leaves the kernel that much memory freed just now. (Through a tmpfs it did
// not help: shared memory is freed elsewhere.)

const PAGE = 4096;

/** The private memory resident in these processes (statm's resident less shared pages): about what a dump of them writes. */
export function privateResident(pids: readonly number[]): number {
  let pages = 0;
  for (const pid of pids) {
    try {
      const [, resident, shared] = readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ').map(Number);
      if (resident > shared) pages += resident - shared;
    } catch {
      // gone meanwhile
    }
  }
  return pages * PAGE;
}

/** MemAvailable of /proc/meminfo, in bytes (0 when it cannot be read). */
export function memAvailable(): number {
  try {
    const match = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'latin1'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Writes up to `bytes` (never more than half of `available`, the memory available) into a
 * file in `dir`, removed as soon as it is made so that its pages go back
 * whatever ends this process, and closes it: its page cache is freed, unwritten.
 * Returns the bytes written: fewer where the filesystem fills up, none where
 * the folder cannot be written.
 */
export function warmMemory(bytes: number, dir: string, available = memAvailable()): number {
  const want = Math.min(bytes, Math.floor(available / 2));
  if (want <= 0) return 0;
  const path = join(dir, `.stasis-warm-${process.pid}-${randomBytes(6).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch {
    return 0;
  }
  let written = 0;
  try {
    rmSync(path);
    const block = Buffer.alloc(1 << 20, 0x5a);
    while (written < want) written += writeSync(fd, block, 0, Math.min(block.length, want - written));
  } catch {
    // full: what it took is made ready
  } finally {
    closeSync(fd);
  }
  return written;
}
