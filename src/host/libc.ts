// A few C library functions, called from the process itself. Only Bun has a
// way to (its FFI, bun:ffi); under Node this is null and the callers do
// without: they run mount(8), or ask node:tty.

interface BunFfi {
  dlopen(library: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: unknown[]) => unknown> };
  read: { i32(pointer: unknown, offset?: number): number };
}

export interface Libc {
  /** mount(2) with no flags; 0, or the errno. */
  mount(source: string, target: string, fstype: string, data: string): number;
  /** umount2(2); 0, or the errno. */
  umount2(target: string, flags: number): number;
  isatty(fd: number): boolean;
  /** pipe2(2) with O_CLOEXEC: [read end, write end], or null when it fails. */
  pipe(): [number, number] | null;
  /** The C library's text for an errno ("Device or resource busy"). */
  strerror(errno: number): string;
}

const O_CLOEXEC = 0o2000000;

let loaded: Libc | null | undefined;

/** libc through bun:ffi, loaded once on first use (about 0.2 ms); null under Node, or where it cannot be loaded. */
export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.versions.bun === undefined || process.platform !== 'linux') return loaded;
  try {
    const ffi = process.getBuiltinModule('bun:ffi') as BunFfi | undefined;
    if (!ffi) return loaded;
    const { symbols: c } = ffi.dlopen('libc.so.6', {
      mount: { args: ['cstring', 'cstring', 'cstring', 'u64', 'cstring'], returns: 'i32' },
      umount2: { args: ['cstring', 'i32'], returns: 'i32' },
      isatty: { args: ['i32'], returns: 'i32' },
      pipe2: { args: ['ptr', 'i32'], returns: 'i32' },
      __errno_location: { args: [], returns: 'ptr' },
      strerror: { args: ['i32'], returns: 'cstring' },
    });
    const cstring = (text: string) => Buffer.from(`${text}\0`);
    const errno = () => ffi.read.i32(c.__errno_location());
    loaded = {
      mount: (source, target, fstype, data) => (c.mount(cstring(source), cstring(target), cstring(fstype), 0n, cstring(data)) === 0 ? 0 : errno()),
      umount2: (target, flags) => (c.umount2(cstring(target), flags) === 0 ? 0 : errno()),
      isatty: (fd) => c.isatty(fd) === 1,
      pipe: () => {
        const fds = new Int32Array(2);
        return c.pipe2(fds, O_CLOEXEC) === 0 ? [fds[0], fds[1]] : null;
      },
      strerror: (code) => String(c.strerror(code)),
    };
  } catch {
    loaded = null;
  }
  return loaded;
}
