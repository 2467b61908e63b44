// A minimal protobuf encoder and CRIU image writer for tests: enough to craft
// images (or re-encode real ones with a field changed) for the image readers.
import { decodeMessage, encodeVarint, IMAGE_MAGIC, IMG_COMMON_MAGIC, type ImageKind } from '../../src/checkpoint/criu/images.ts';

export type Value = number | bigint | boolean | string | Buffer | Field[] | { fixed: Buffer };
export type Field = [number, Value];

/** Encodes fields in the order given (repeated fields: give the number again). */
export function encode(fields: readonly Field[]): Buffer {
  const parts: Buffer[] = [];
  for (const [number, value] of fields) {
    if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
      parts.push(encodeVarint(BigInt(number) << 3n), encodeVarint(BigInt(typeof value === 'boolean' ? Number(value) : value)));
    } else if (typeof value === 'object' && 'fixed' in value && !Array.isArray(value)) {
      parts.push(encodeVarint((BigInt(number) << 3n) | (value.fixed.length === 8 ? 1n : 5n)), value.fixed);
    } else {
      const body = typeof value === 'string' ? Buffer.from(value) : Buffer.isBuffer(value) ? value : encode(value as Field[]);
      parts.push(encodeVarint((BigInt(number) << 3n) | 2n), encodeVarint(BigInt(body.length)), body);
    }
  }
  return Buffer.concat(parts);
}

/** A CRIU image file: the magic numbers, then each entry with its u32 length. */
export function imageFile(kind: ImageKind, entries: readonly Buffer[]): Buffer {
  const head: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n >>> 0);
    return b;
  };
  if (kind !== 'inventory') head.push(u32(IMG_COMMON_MAGIC));
  head.push(u32(IMAGE_MAGIC[kind]));
  return Buffer.concat([...head, ...entries.flatMap((entry) => [u32(entry.length), entry])]);
}

/** The fields of an encoded message, raw (nested messages stay bytes), for re-encoding. */
export function fieldsOf(bytes: Buffer): Field[] {
  const message = decodeMessage(bytes, 'test', 'msg');
  const fields: Field[] = [];
  for (const [number, values] of message.fields) {
    for (const value of values) {
      if (value.wire === 0) fields.push([number, value.value]);
      else if (value.wire === 2) fields.push([number, value.bytes]);
      else fields.push([number, { fixed: value.bytes }]);
    }
  }
  return fields;
}

/** Re-encodes `bytes` with the message at `path` (field numbers, each a single embedded message) edited. */
export function patch(bytes: Buffer, path: readonly number[], edit: (fields: Field[]) => Field[]): Buffer {
  const fields = fieldsOf(bytes);
  if (path.length === 0) return encode(edit(fields));
  const [head, ...rest] = path;
  const index = fields.findIndex(([number]) => number === head);
  if (index < 0) throw new Error(`no field ${head} to patch`);
  fields[index] = [head, patch(fields[index][1] as Buffer, rest, edit)];
  return encode(fields);
}

/** Replaces every occurrence of field `number` with `values` (one entry each, unpacked). */
export function replaceRepeated(fields: Field[], number: number, values: readonly Value[]): Field[] {
  const at = fields.findIndex(([n]) => n === number);
  const kept = fields.filter(([n]) => n !== number);
  kept.splice(at < 0 ? kept.length : at, 0, ...values.map((value): Field => [number, value]));
  return kept;
}

// ------------------------------------------------------------ synthetic images

const DEFAULT_CAPS = (1n << 5n) | (1n << 10n) | (1n << 29n); // CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE

export function capWords(mask: bigint): number[] {
  return [Number(mask & 0xffff_ffffn), Number(mask >> 32n)];
}

export interface SyntheticTask {
  pid: number;
  threads?: number[];
  comm?: string;
  capBnd?: bigint;
  capEff?: bigint;
  capPrm?: bigint;
  capInh?: bigint;
  capAmb?: bigint;
  /** Leave the creds out of thread_core (and give no creds-P.img). */
  noCreds?: boolean;
  /** Put the creds in creds-P.img, as old CRIU did. */
  oldCredsImage?: boolean;
  schedPolicy?: number;
  nice?: number;
  seccompMode?: number;
  oomScoreAdj?: number;
  rlimits?: [bigint, bigint][];
  /** task_core's task_state: 1 alive (default), 2 dead, 6 zombie. */
  state?: number;
}

export interface SyntheticMount {
  id: number;
  parent: number;
  mountpoint: string;
  fstype: number;
  rootDev: number;
  root?: string;
  source?: string;
  options?: string;
  flags?: number;
  extKey?: string;
  fsname?: string;
}

export const FSTYPE = { proc: 1, sysfs: 2, tmpfs: 5, devpts: 6, cgroup: 12, mqueue: 14, auto: 16, overlay: 17, cgroup2: 23 };

/** The mount tree of a stasis container on cgroup v2, as CRIU records it. */
export function stasisMounts(): SyntheticMount[] {
  const RO = 1;
  return [
    { id: 72, parent: 49, mountpoint: '/', fstype: FSTYPE.overlay, rootDev: 100, source: 'overlay', options: 'lowerdir=/var/lib/stasis/rootfs/busybox' },
    { id: 73, parent: 72, mountpoint: '/proc', fstype: FSTYPE.proc, rootDev: 101, source: 'proc' },
    { id: 74, parent: 72, mountpoint: '/dev', fstype: FSTYPE.tmpfs, rootDev: 102, source: 'tmpfs' },
    { id: 75, parent: 74, mountpoint: '/dev/pts', fstype: FSTYPE.devpts, rootDev: 103, source: 'devpts' },
    { id: 76, parent: 74, mountpoint: '/dev/shm', fstype: FSTYPE.tmpfs, rootDev: 104, source: 'shm' },
    { id: 77, parent: 74, mountpoint: '/dev/mqueue', fstype: FSTYPE.mqueue, rootDev: 105, source: 'mqueue' },
    { id: 78, parent: 72, mountpoint: '/sys', fstype: FSTYPE.sysfs, rootDev: 106, source: 'sysfs', flags: RO },
    { id: 79, parent: 78, mountpoint: '/sys/fs/cgroup', fstype: FSTYPE.cgroup2, rootDev: 107, source: 'cgroup2', flags: RO },
    { id: 80, parent: 73, mountpoint: '/proc/bus', fstype: FSTYPE.proc, rootDev: 101, root: '/bus', flags: RO },
    { id: 81, parent: 73, mountpoint: '/proc/fs', fstype: FSTYPE.proc, rootDev: 101, root: '/fs', flags: RO },
    { id: 82, parent: 73, mountpoint: '/proc/irq', fstype: FSTYPE.proc, rootDev: 101, root: '/irq', flags: RO },
    { id: 83, parent: 73, mountpoint: '/proc/sys', fstype: FSTYPE.proc, rootDev: 101, root: '/sys', flags: RO },
    { id: 84, parent: 73, mountpoint: '/proc/acpi', fstype: FSTYPE.tmpfs, rootDev: 108, flags: RO },
    { id: 85, parent: 73, mountpoint: '/proc/keys', fstype: FSTYPE.tmpfs, rootDev: 102, root: '/null', extKey: '/dev/null' },
    { id: 86, parent: 73, mountpoint: '/proc/timer_list', fstype: FSTYPE.tmpfs, rootDev: 102, root: '/null', extKey: '/dev/null' },
    { id: 87, parent: 78, mountpoint: '/sys/firmware', fstype: FSTYPE.tmpfs, rootDev: 109, flags: RO },
  ];
}

export interface SyntheticImages {
  tasks?: SyntheticTask[];
  mounts?: SyntheticMount[];
  /** Namespace kinds (ids fields 5-12) in which the root task shares the dumping CRIU's namespace. */
  hostNamespaces?: number[];
}

/** Files of a CRIU images folder for `opts` (name → bytes). */
export function syntheticImages(opts: SyntheticImages = {}): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const tasks = opts.tasks ?? [{ pid: 1, comm: 'sleep' }];
  files.set('pstree.img', imageFile('pstree', tasks.map((task, index) => encode([
    [1, task.pid], [2, index === 0 ? 0 : tasks[0].pid], [3, tasks[0].pid], [4, tasks[0].pid],
    ...(task.threads ?? [task.pid]).map((tid): Field => [5, tid]),
  ]))));
  for (const task of tasks) {
    const creds: Field[] = [
      [1, 0], [2, 0], [3, 0], [4, 0], [5, 0], [6, 0], [7, 0], [8, 0],
      ...capWords(task.capInh ?? 0n).map((w): Field => [9, w]),
      ...capWords(task.capPrm ?? DEFAULT_CAPS).map((w): Field => [10, w]),
      ...capWords(task.capEff ?? DEFAULT_CAPS).map((w): Field => [11, w]),
      ...capWords(task.capBnd ?? DEFAULT_CAPS).map((w): Field => [12, w]),
      [13, 0], [18, 1],
      ...capWords(task.capAmb ?? 0n).map((w): Field => [19, w]),
    ];
    const rlimits = task.rlimits ?? Array.from({ length: 16 }, (_, i): [bigint, bigint] => (i === 7 ? [1024n, 1024n] : [0xffff_ffff_ffff_ffffn, 0xffff_ffff_ffff_ffffn]));
    for (const tid of task.threads ?? [task.pid]) {
      const threadCore: Field[] = [[1, 0], [2, 0], [3, ((task.nice ?? 0) << 1) ^ ((task.nice ?? 0) >> 31)], [4, task.schedPolicy ?? 0]];
      if (!task.noCreds && !task.oldCredsImage) threadCore.push([10, creds]);
      if (task.seccompMode !== undefined) threadCore.push([11, task.seccompMode]);
      const core: Field[] = [[1, 1]];
      if (tid === task.pid) {
        core.push([3, [[1, task.state ?? 1], [2, 0], [3, 0], [4, 0], [5, 0], [6, task.comm ?? 'task'],
          [8, rlimits.map(([cur, max]): Field => [1, [[1, cur], [2, max]]])], [14, task.oomScoreAdj ?? 0]]]);
      }
      core.push([5, threadCore]);
      files.set(`core-${tid}.img`, imageFile('core', [encode(core)]));
    }
    if (task.oldCredsImage) files.set(`creds-${task.pid}.img`, imageFile('creds', [encode(creds)]));
    const host = new Set(opts.hostNamespaces ?? []);
    const ids: Field[] = [[1, 1], [2, 2], [3, 3], [4, 4]];
    for (let field = 5; field <= 12; field++) ids.push([field, host.has(field) ? field : 100 + field]);
    files.set(`ids-${task.pid}.img`, imageFile('ids', [encode(ids)]));
  }
  const rootIds: Field[] = [[1, 90], [2, 91], [3, 92], [4, 93]];
  for (let field = 5; field <= 12; field++) rootIds.push([field, field]);
  files.set('inventory.img', imageFile('inventory', [encode([[1, 2], [3, rootIds]])]));
  const mounts = opts.mounts ?? stasisMounts();
  files.set('mountpoints-13.img', imageFile('mountpoints', mounts.map((m) => encode([
    [1, m.fstype], [2, m.id], [3, m.rootDev], [4, m.parent], [5, m.flags ?? 0],
    [6, m.root ?? '/'], [7, m.mountpoint], [8, m.source ?? ''], [9, m.options ?? ''],
    ...(m.fsname ? [[14, m.fsname] as Field] : []),
    ...(m.extKey ? [[18, m.extKey] as Field] : []),
  ]))));
  return files;
}
