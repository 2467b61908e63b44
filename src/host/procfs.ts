import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

// What /proc says about host processes: cheap checks used on every `ps`, and
// the rows `top` shows.

/** Whether a process exists (kill(pid, 0)); a zombie counts. Cheap: one system call. */
export function pidAlive(pid: number | null): boolean {
  if (pid === null || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface ProcStat {
  /** The command name between the parentheses (it may hold spaces or ")"). */
  name: string;
  state: string;
  ppid: number;
  startTime: number;
}

/** /proc/PID/stat, or null when the process is gone. */
export function readProcStat(pid: number): ProcStat | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // "PID (comm) S PPID ...": the fields after comm follow its last ')'.
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return { name: stat.slice(stat.indexOf('(') + 1, close), state: fields[0], ppid: Number(fields[1]), startTime: Number(fields[19]) };
}

/**
 * Whether a process still runs: exists and is not a zombie. A daemonised
 * monitor is reaped by whatever init adopted it, which may be late (a CI
 * runner's PID namespace); until then kill(pid, 0) still answers for it.
 * A container's own process is reaped by its monitor (a subreaper), but a
 * monitor that died leaves it to an init that may never reap it: `ps` asks
 * this of those too.
 */
export function processRunning(pid: number | null): boolean {
  if (!pidAlive(pid)) return false;
  const stat = readProcStat(pid!);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * Whether the process that had this PID and start time still runs: not
 * when it is gone, a zombie, or the PID names another process now.
 */
export function sameProcessRuns(process: { pid: number; startTime: number }): boolean {
  const stat = readProcStat(process.pid);
  return stat !== null && stat.startTime === process.startTime && stat.state !== 'Z' && stat.state !== 'X';
}

export interface ProcessRow {
  pid: number;
  ppid: number;
  state: string;
  command: string;
}

/** One host process as `top` shows it; null when it exited meanwhile. */
export function processRow(pid: number): ProcessRow | null {
  const stat = readProcStat(pid);
  if (stat === null) return null;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return null;
  }
  return { pid, ppid: stat.ppid, state: stat.state, command: cmdline || `[${stat.name}]` };
}

/** Whether process `pid` runs (not a zombie) with `word` among its arguments: a PID may have been reused. */
export function commandLineHas(pid: number, word: string): boolean {
  if (!processRunning(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(word);
  } catch {
    return false;
  }
}

/** The PIDs of running processes with `word` among their arguments (a scan of /proc: for rare paths only). */
export function processesWithArg(word: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid !== process.pid && commandLineHas(pid, word)) pids.push(pid);
  }
  return pids;
}

/** The PIDs of the running children of `parent` (a scan of /proc). */
export function childrenOf(parent: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readProcStat(Number(name));
    if (stat !== null && stat.ppid === parent && stat.state !== 'Z') pids.push(Number(name));
  }
  return pids;
}

/**
 * The uid that owns the TCP socket bound to 127.0.0.1:`local` and connected
 * to 127.0.0.1:`remote` (/proc/net/tcp), or null: migrate --precopy's page server serves root only.
 */
export function socketOwner(local: number, remote: number, table = '/proc/net/tcp'): number | null {
  const hex = (port: number) => `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync(table, 'latin1').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === hex(local) && fields[2] === hex(remote)) return Number(fields[7]);
  }
  return null;
}

/** The network interfaces of `pid`'s network namespace (/proc/PID/net/dev), or null when they cannot be read. */
export function netInterfaces(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/net/dev`, 'utf8')
      .split('\n')
      .slice(2)
      .map((line) => line.split(':')[0].trim())
      .filter((name) => name !== '');
  } catch {
    return null;
  }
}

/** The processes (a scan of /proc) whose network namespace is `pid`'s; null when `pid`'s cannot be read. */
export function sharingNetns(pid: number): number[] | null {
  let ns: string;
  try {
    ns = readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/net`) === ns) pids.push(Number(name));
    } catch {
      // gone, or a kernel thread's
    }
  }
  return pids;
}
