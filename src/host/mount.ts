import { libc } from './libc.ts';

// mount(2) and umount2(2) called from the process itself, without starting
// mount(8) or umount(8) (a process each: about 4-5 ms here, against under a
// millisecond for the system call). Only the compiled stasis can (libc
// through Bun's FFI); under Node the callers run the commands instead
// (src/runtime/mounts.ts).

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

/** The system calls, or null where they cannot be made (Node). */
export function mountCalls(): MountCalls | null {
  const c = libc();
  if (c === null) return null;
  return { mount: c.mount, umount: c.umount2, describe: c.strerror };
}
