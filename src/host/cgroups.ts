import { readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { debugLog } from '../log.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// A container's cgroup, found without runc: what proves that a process
// belongs to the container when runc's own state is gone or damaged.

/** The folders of cgroup `path` (as in a spec's cgroupsPath) under every mounted hierarchy, v1 and v2. */
export function cgroupDirs(path: string): string[] {
  return cgroupRoots().map((root) => join(root, path));
}

let roots: string[] | null = null;

/** Where each cgroup hierarchy is mounted: read once per process (a host's hierarchies do not move under a command). */
function cgroupRoots(): string[] {
  if (roots !== null) return roots;
  let table: string;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const found = new Set<string>();
  for (const line of table.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!after || !/^cgroup2? /.test(after)) continue;
    found.add(before.split(' ')[4]);
  }
  roots = [...found];
  return roots;
}

/** The PIDs in those cgroups now. */
export function cgroupPids(dirs: string[]): number[] {
  const pids = new Set<number>();
  for (const dir of dirs) {
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.add(Number(line));
    } catch {
      // not in this hierarchy
    }
  }
  return [...pids];
}

/** SIGKILLs every process in the cgroups until none is left (a frozen cgroup is thawed first), then removes the folders. */
export async function killCgroup(dirs: string[], timeoutMs = 5_000): Promise<number[]> {
  const killed = new Set<number>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = cgroupPids(dirs);
    if (pids.length === 0 || Date.now() > deadline) break;
    for (const dir of dirs) thaw(dir);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.add(pid);
      } catch {
        // gone already
      }
    }
    await sleep(10);
  }
  for (const dir of dirs) {
    try {
      rmdirSync(dir);
    } catch (err) {
      // Not there is the usual case; past the deadline, still busy is worth a trace.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') debugLog(`cannot remove the cgroup ${dir}: ${(err as Error).message}`);
    }
  }
  return [...killed];
}

/** A SIGKILL stays pending in a frozen cgroup. */
function thaw(dir: string): void {
  for (const [file, value] of [['freezer.state', 'THAWED'], ['cgroup.freeze', '0']]) {
    try {
      const current = readFileSync(join(dir, file), 'utf8');
      if (current.trim() !== value) {
        writeFileSync(join(dir, file), value);
      }
    } catch {
      // no such controller here
    }
  }
}

/** The freezer's file as read and written, and the pause between tries (a fake in the unit tests: the kernel cannot be made to stay FREEZING on demand). */
export interface FreezerFile {
  write(file: string, value: string): void;
  read(file: string, encoding: 'utf8'): string;
  pause(ms: number): Promise<unknown>;
}

const realFile: FreezerFile = { write: (file, value) => writeFileSync(file, value), read: (file) => readFileSync(file, 'utf8'), pause: (ms) => sleep(ms) };

/** How many times a v1 freeze is asked for before it is given up (with a short pause between the later ones). */
const FREEZE_TRIES = 1000;

/**
 * Freezes a cgroup v1 freezer folder, as `runc pause` does there, without
 * starting runc (about 20 ms here). The kernel may report FREEZING while a
 * task has yet to stop, and a task forked meanwhile can keep it there: the
 * state is asked for again, with a short pause after the first few tries and
 * a thaw now and then to let a stuck fork finish. Given up, the folder is
 * thawed and the error thrown: nothing is left half frozen.
 */
export async function freezeV1(dir: string, io: FreezerFile = realFile): Promise<void> {
  const file = join(dir, 'freezer.state');
  try {
    for (let attempt = 0; attempt < FREEZE_TRIES; attempt++) {
      if (attempt > 0 && attempt % 100 === 0) {
        io.write(file, 'THAWED');
        await io.pause(10);
      }
      io.write(file, 'FROZEN');
      const state = io.read(file, 'utf8').trim();
      if (state === 'FROZEN') return;
      if (state !== 'FREEZING') throw new Error(`${file} says ${state} after FROZEN was written`);
      if (attempt >= 10) await io.pause(1);
    }
    throw new Error(`${file} stayed FREEZING`);
  } catch (err) {
    try {
      io.write(file, 'THAWED');
    } catch {
      // the folder is gone with the container
    }
    throw err;
  }
}

/** Thaws a cgroup v1 freezer folder; throws when it cannot be written or does not read THAWED after. */
export function thawV1(dir: string): void {
  const file = join(dir, 'freezer.state');
  writeFileSync(file, 'THAWED');
  const state = readFileSync(file, 'utf8').trim();
  if (state !== 'THAWED') throw new Error(`${file} says ${state} after THAWED was written`);
}
