// mount(2) and umount2(2) called from the process itself, without starting
// mount(8) or umount(8) (a process each: about 4-5 ms here, against under a
// millisecond for the system call). Only the compiled stasis has a way to
// call libc: Bun's FFI (bun:ffi). Under Node there is none, and the callers
// run the commands instead (src/runtime/mounts.ts).

/** MNT_DETACH: a lazy unmount (`umount -l`). */
export const MNT_DETACH = 2;

export interface MountCalls {
  /** mount(2) with no flags; 0, or the errno. */
  mount(source: string, target: string, fstype: string, data: string): number;
  /** umount2(2); 0, or the errno. */
  umount(target: string, flags: number): number;
  /** The C library's text for an errno ("Device or resource busy"). */
  describe(errno: number): string;
}

interface BunFfi {
  dlopen(library: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: unknown[]) => unknown> };
  read: { i32(pointer: unknown, offset?: number): number };
}

let calls: MountCalls | null | undefined;

/** The system calls through libc, or null where they cannot be made (Node, or libc not found). Loaded once, on first use. */
export function mountCalls(): MountCalls | null {
  if (calls !== undefined) return calls;
  calls = null;
  if (process.versions.bun === undefined || process.platform !== 'linux') return calls;
  try {
    const ffi = process.getBuiltinModule('bun:ffi') as BunFfi | undefined;
    if (!ffi) return calls;
    const { symbols: libc } = ffi.dlopen('libc.so.6', {
      mount: { args: ['cstring', 'cstring', 'cstring', 'u64', 'cstring'], returns: 'i32' },
      umount2: { args: ['cstring', 'i32'], returns: 'i32' },
      __errno_location: { args: [], returns: 'ptr' },
      strerror: { args: ['i32'], returns: 'cstring' },
    });
    const cstring = (text: string) => Buffer.from(`${text}\0`);
    const errno = () => ffi.read.i32(libc.__errno_location());
    calls = {
      mount: (source, target, fstype, data) =>
        libc.mount(cstring(source), cstring(target), cstring(fstype), 0n, cstring(data)) === 0 ? 0 : errno(),
      umount: (target, flags) => (libc.umount2(cstring(target), flags) === 0 ? 0 : errno()),
      describe: (code) => String(libc.strerror(code)),
    };
  } catch {
    calls = null;
  }
  return calls;
}
