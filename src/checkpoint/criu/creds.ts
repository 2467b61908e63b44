import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { capabilityNames, maskFromWords, CAPABILITY_NAMES } from './capabilities.ts';
import { CriuImageError, decodeMessage, readImageEntries, type ProtoMessage } from './images.ts';

// What CRIU will give the restored processes, read from its images. runc does not
// apply the spec's capabilities, rlimits or namespaces to a restored container:
// CRIU restores each thread's credentials, each task's rlimits, and creates the
// namespaces its images say the tasks had. So these are checked against the policy
// as well as the spec.
//
// Field numbers (CRIU images/*.proto):
//   pstree.img   pstree_entry { pid 1, ppid 2, pgid 3, sid 4, threads 5 (repeated) }
//   core-T.img   core_entry { tc 3 (task_core_entry), ids 4, thread_core 5 (thread_core_entry) }
//                task_core_entry { comm 6, rlimits 8 (task_rlimits_entry { rlimits 1: rlimit_entry { cur 1, max 2 } }),
//                                  old_seccomp_mode 11, oom_score_adj 14 (int32) }
//                thread_core_entry { sched_nice 3 (sint32), sched_policy 4, sched_prio 5, creds 10, seccomp_mode 11, comm 13 }
//   creds.proto  creds_entry { uid 1, gid 2, euid 3, egid 4, suid 5, sgid 6, fsuid 7, fsgid 8,
//                              cap_inh 9, cap_prm 10, cap_eff 11, cap_bnd 12 (repeated u32 words), secbits 13,
//                              groups 14, lsm_profile 15, lsm_sockcreate 16, apparmor_data 17, no_new_privs 18, cap_amb 19 }
//   creds-P.img  old images: one creds_entry per task, used when thread_core has no creds (criu/cr-restore.c rst_prep_creds)
//   ids-P.img    task_kobj_ids_entry { pid_ns_id 5, net_ns_id 6, ipc_ns_id 7, uts_ns_id 8, mnt_ns_id 9,
//                                     user_ns_id 10, cgroup_ns_id 11, time_ns_id 12 }
//   inventory.img inventory_entry { root_ids 3 }: the ids of the dumping CRIU itself. CRIU restores the root
//                task in a new namespace of a type only where the two differ (criu/pstree.c get_clone_mask);
//                where they are equal, the task is restored in CRIU's own namespace, i.e. the host's.

export type SchedPolicy = 'other' | 'fifo' | 'rr' | 'batch' | 'iso' | 'idle' | 'deadline' | `policy-${number}`;
const SCHED_POLICIES: Record<number, SchedPolicy> = { 0: 'other', 1: 'fifo', 2: 'rr', 3: 'batch', 4: 'iso', 5: 'idle', 6: 'deadline' };

export interface Credentials {
  uid: number;
  gid: number;
  euid: number;
  egid: number;
  suid: number;
  sgid: number;
  fsuid: number;
  fsgid: number;
  groups: number[];
  capInh: string[];
  capPrm: string[];
  capEff: string[];
  capBnd: string[];
  /** Ambient set; null in images older than the field (CRIU then leaves it empty). */
  capAmb: string[] | null;
  secbits: number;
  /** null in images older than the field. */
  noNewPrivs: boolean | null;
  lsmProfile: string | null;
}

/** One thread as CRIU will restore it. */
export interface ThreadCreds {
  /** The task (thread group) in the container's PID namespace. */
  pid: number;
  tid: number;
  comm: string | null;
  /**
   * null: the image records none, and CRIU then leaves the thread with the
   * restorer's own credentials (root with every capability): always an excess.
   */
  creds: Credentials | null;
  /** The image the credentials came from (core-T.img, or creds-P.img for old images). */
  credsFile: string | null;
  seccomp: 'disabled' | 'strict' | 'filter';
  sched: { policy: SchedPolicy; nice: number | null; priority: number | null };
  /**
   * A task that has exited and was not reaped (an exec'd process whose parent
   * left, under an init that does not wait): CRIU makes it exit again at once,
   * and none of its code runs, so what it holds is no excess.
   */
  zombie: boolean;
}

export type RlimitValue = number | 'unlimited';
export interface TaskRlimit {
  type: string;
  soft: RlimitValue;
  hard: RlimitValue;
}

export interface CriuTask {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  comm: string | null;
  rlimits: TaskRlimit[];
  oomScoreAdj: number | null;
}

export type NamespaceKind = 'pid' | 'network' | 'ipc' | 'uts' | 'mount' | 'user' | 'cgroup' | 'time';

export interface CriuProcesses {
  tasks: CriuTask[];
  threads: ThreadCreds[];
  /**
   * For each namespace kind, whether the root task gets a namespace of its own
   * (true) or is restored in CRIU's, the host's (false); a kind the image does
   * not record is left out.
   */
  rootNamespaces: Partial<Record<NamespaceKind, boolean>>;
}

/** Linux's RLIMIT_* by number (include/uapi/asm-generic/resource.h); CRIU writes them in this order. */
export const RLIMIT_NAMES: readonly string[] = [
  'RLIMIT_CPU', 'RLIMIT_FSIZE', 'RLIMIT_DATA', 'RLIMIT_STACK', 'RLIMIT_CORE', 'RLIMIT_RSS', 'RLIMIT_NPROC',
  'RLIMIT_NOFILE', 'RLIMIT_MEMLOCK', 'RLIMIT_AS', 'RLIMIT_LOCKS', 'RLIMIT_SIGPENDING', 'RLIMIT_MSGQUEUE',
  'RLIMIT_NICE', 'RLIMIT_RTPRIO', 'RLIMIT_RTTIME',
];

const NAMESPACE_FIELDS: [NamespaceKind, number][] = [
  ['pid', 5], ['network', 6], ['ipc', 7], ['uts', 8], ['mount', 9], ['user', 10], ['cgroup', 11], ['time', 12],
];

const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;
const MAX_TASKS = 65_536;

function rlimitValue(value: bigint): RlimitValue {
  return value === RLIM_INFINITY ? 'unlimited' : Number(value);
}

function seccompMode(value: number | undefined): ThreadCreds['seccomp'] {
  if (value === undefined || value === 0) return 'disabled';
  if (value === 1) return 'strict';
  return 'filter';
}

function decodeCreds(message: ProtoMessage): Credentials {
  const need = (field: number, name: string) => message.needUint32(field, name);
  const caps = (field: number) => capabilityNames(maskFromWords(message.uint32s(field)));
  return {
    uid: need(1, 'uid'),
    gid: need(2, 'gid'),
    euid: need(3, 'euid'),
    egid: need(4, 'egid'),
    suid: need(5, 'suid'),
    sgid: need(6, 'sgid'),
    fsuid: need(7, 'fsuid'),
    fsgid: need(8, 'fsgid'),
    groups: message.uint32s(14),
    capInh: caps(9),
    capPrm: caps(10),
    capEff: caps(11),
    capBnd: caps(12),
    capAmb: message.has(19) ? caps(19) : null,
    secbits: need(13, 'secbits'),
    noNewPrivs: message.has(18) ? message.uint32(18) !== 0 : null,
    lsmProfile: message.string(15) ?? null,
  };
}

/** The one entry of a single-entry image. */
function onlyEntry(path: string, kind: Parameters<typeof readImageEntries>[1], name: string): ProtoMessage {
  const entries = readImageEntries(path, kind);
  if (entries.length !== 1) throw new CriuImageError(path, `holds ${entries.length} entries where CRIU writes one`);
  return decodeMessage(entries[0], path, name);
}

/** Reads pstree.img and every task's and thread's images under a CRIU images folder. */
export function readCriuProcesses(imagesDir: string): CriuProcesses {
  let names: string[];
  try {
    names = readdirSync(imagesDir);
  } catch (err) {
    throw new CriuImageError(imagesDir, `cannot list the folder: ${(err as Error).message}`);
  }
  const present = new Set(names);
  const pstreePath = join(imagesDir, 'pstree.img');
  const pstree = readImageEntries(pstreePath, 'pstree').map((entry) => decodeMessage(entry, pstreePath, 'pstree_entry'));
  if (pstree.length === 0) throw new CriuImageError(pstreePath, 'lists no tasks');
  if (pstree.length > MAX_TASKS) throw new CriuImageError(pstreePath, `lists ${pstree.length} tasks`);

  const tasks: CriuTask[] = [];
  const threads: ThreadCreds[] = [];
  const seenTids = new Set<number>();
  for (const entry of pstree) {
    const pid = entry.needUint32(1, 'pid');
    const threadIds = entry.uint32s(5);
    // CRIU lists the leader among its threads; images without threads have the leader alone,
    // and so does a zombie (CRIU writes no meaningful thread list for one: only its leader is restored).
    let tids = threadIds.length > 0 ? threadIds : [pid];
    if (!tids.includes(pid)) {
      if (!isZombie(imagesDir, pid, present)) throw new CriuImageError(pstreePath, `task ${pid} is not among its own threads ${tids.join(', ')}`);
      tids = [pid];
    }
    let oldCreds: { creds: Credentials; file: string } | null | undefined;
    const task: CriuTask = {
      pid,
      ppid: entry.needUint32(2, 'ppid'),
      pgid: entry.needUint32(3, 'pgid'),
      sid: entry.needUint32(4, 'sid'),
      threads: tids,
      comm: null,
      rlimits: [],
      oomScoreAdj: null,
    };
    for (const tid of tids) {
      if (seenTids.has(tid)) throw new CriuImageError(pstreePath, `thread ${tid} is listed twice`);
      seenTids.add(tid);
      const coreName = `core-${tid}.img`;
      if (!present.has(coreName)) throw new CriuImageError(join(imagesDir, coreName), `missing (pstree.img lists thread ${tid} of task ${pid})`);
      const corePath = join(imagesDir, coreName);
      const core = onlyEntry(corePath, 'core', 'core_entry');
      const taskCore = core.message(3, 'tc');
      const threadCore = core.message(5, 'thread_core');
      if (tid === pid && taskCore) {
        task.comm = taskCore.string(6) ?? null;
        task.oomScoreAdj = taskCore.int32(14) ?? null;
        const rlimits = taskCore.message(8, 'rlimits')?.messages(1, 'rlimit') ?? [];
        task.rlimits = rlimits.map((limit, index) => ({
          type: RLIMIT_NAMES[index] ?? `RLIMIT_${index}`,
          soft: rlimitValue(limit.uint64(1) ?? 0n),
          hard: rlimitValue(limit.uint64(2) ?? 0n),
        }));
      }
      let creds: Credentials | null = null;
      let credsFile: string | null = null;
      const credsMessage = threadCore?.message(10, 'creds');
      if (credsMessage) {
        creds = decodeCreds(credsMessage);
        credsFile = coreName;
      } else if (threadCore) {
        // Old images: one creds-P.img per task, for all its threads.
        if (oldCreds === undefined) {
          const credsName = `creds-${pid}.img`;
          oldCreds = present.has(credsName)
            ? { creds: decodeCreds(onlyEntry(join(imagesDir, credsName), 'creds', 'creds_entry')), file: credsName }
            : null;
        }
        creds = oldCreds?.creds ?? null;
        credsFile = oldCreds?.file ?? null;
      }
      const policy = threadCore?.uint32(4);
      const state = tid === pid ? taskCore?.uint32(1) : undefined;
      threads.push({
        zombie: state === TASK_DEAD || state === TASK_ZOMBIE,
        pid,
        tid,
        comm: threadCore?.string(13) ?? (tid === pid ? task.comm : null),
        creds,
        credsFile,
        seccomp: seccompMode(threadCore?.uint32(11) ?? (tid === pid ? taskCore?.uint32(11) : undefined)),
        sched: {
          policy: policy === undefined ? 'other' : (SCHED_POLICIES[policy] ?? `policy-${policy}`),
          nice: threadCore?.sint32(3) ?? null,
          priority: threadCore?.uint32(5) ?? null,
        },
      });
    }
    tasks.push(task);
  }
  return { tasks, threads, rootNamespaces: readRootNamespaces(imagesDir, tasks[0].pid) };
}

/** Which namespaces CRIU creates for the root task (see get_clone_mask in criu/pstree.c). */
function readRootNamespaces(imagesDir: string, rootPid: number): CriuProcesses['rootNamespaces'] {
  const inventoryPath = join(imagesDir, 'inventory.img');
  const inventory = onlyEntry(inventoryPath, 'inventory', 'inventory_entry');
  const dumper = inventory.message(3, 'root_ids');
  // CRIU refuses to restore without them ("No kIDs provided"); so do we.
  if (!dumper) throw new CriuImageError(inventoryPath, 'has no root_ids (the namespaces CRIU dumped from)');
  const idsPath = join(imagesDir, `ids-${rootPid}.img`);
  const root = onlyEntry(idsPath, 'ids', 'task_kobj_ids_entry');
  const result: CriuProcesses['rootNamespaces'] = {};
  for (const [kind, field] of NAMESPACE_FIELDS) {
    if (!root.has(field) && !dumper.has(field)) continue;
    // A missing optional id reads as 0 in CRIU (protobuf-c default), as here.
    result[kind] = (root.uint32(field) ?? 0) !== (dumper.uint32(field) ?? 0);
  }
  return result;
}

export type CapabilitySet = 'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient';

export interface CapabilityExcess {
  pid: number;
  tid: number;
  comm: string | null;
  set: CapabilitySet;
  capabilities: string[];
}

/**
 * Capabilities a restored thread would hold beyond `allowed` (the policy's
 * bounding set), per thread and set. A thread whose image records no
 * credentials is reported with every capability: CRIU would leave it with the
 * restorer's own.
 */
export function capabilityExcess(threads: readonly ThreadCreds[], allowed: readonly string[]): CapabilityExcess[] {
  const allowedSet = new Set(allowed.map((name) => name.toUpperCase()));
  const excess: CapabilityExcess[] = [];
  for (const thread of threads) {
    if (thread.zombie) continue;
    const sets: [CapabilitySet, readonly string[]][] = thread.creds
      ? [
          ['bounding', thread.creds.capBnd],
          ['effective', thread.creds.capEff],
          ['permitted', thread.creds.capPrm],
          ['inheritable', thread.creds.capInh],
          ['ambient', thread.creds.capAmb ?? []],
        ]
      : [['bounding', CAPABILITY_NAMES], ['effective', CAPABILITY_NAMES], ['permitted', CAPABILITY_NAMES]];
    for (const [set, names] of sets) {
      const extra = names.filter((name) => !allowedSet.has(name));
      if (extra.length > 0) excess.push({ pid: thread.pid, tid: thread.tid, comm: thread.comm, set, capabilities: extra });
    }
  }
  return excess;
}

/** CRIU's task states (compel's): a dead task that is still in the tree is a zombie. */
const TASK_DEAD = 2;
const TASK_ZOMBIE = 6;

function isZombie(imagesDir: string, pid: number, present: ReadonlySet<string>): boolean {
  const name = `core-${pid}.img`;
  if (!present.has(name)) return false;
  const state = onlyEntry(join(imagesDir, name), 'core', 'core_entry').message(3, 'tc')?.uint32(1);
  return state === TASK_DEAD || state === TASK_ZOMBIE;
}
