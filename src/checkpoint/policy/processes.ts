import { existsSync, readFileSync } from 'node:fs';
import type { OciSpec } from '../../runtime/spec.ts';
import { capabilityExcess, readCriuProcesses, type CriuProcesses, type NamespaceKind, type RlimitValue } from '../criu/creds.ts';
import { readImageMounts, type ImageMount } from '../criu/mounts.ts';
import { cleanPath, isBind, type OciMount } from './shape.ts';
import { exceeds, GRANT_FLAGS, grantTrust, readHostRlimits, trusts, type PolicyRefusal, type Trust, type TrustArea } from './trust.ts';

// The restore policy for CRIU's images: what the restored processes would get from
// them (credentials, namespaces, scheduling, rlimits, seccomp, LSM, mounts) beyond the
// spec applyRestorePolicy (policy.ts) returned.

const NAMESPACE_KIND: Record<string, NamespaceKind> = {
  pid: 'pid', network: 'network', mount: 'mount', ipc: 'ipc', uts: 'uts', user: 'user', cgroup: 'cgroup', time: 'time',
};

export interface CriuImageFacts {
  processes: CriuProcesses;
  mounts: ImageMount[];
}

export interface ImagePolicyOptions {
  trust?: Trust;
  /** This host's hard limits; default: /proc/self/limits. */
  hostLimits?: ReadonlyMap<string, RlimitValue>;
  /**
   * Whether a masked or read-only path exists in a fresh container here. Those are
   * /proc and /sys paths, which show the host kernel's, so the default asks the host.
   */
  pathExists?: (path: string) => boolean;
  /** The oom_score_adj a new container starts with here; default: this process's. */
  hostOomScoreAdj?: number;
}

/** Decodes what checkRestoredImages needs (throws CriuImageError for a damaged image). */
export function readCriuImageFacts(imagesDir: string): CriuImageFacts {
  return { processes: readCriuProcesses(imagesDir), mounts: readImageMounts(imagesDir) };
}

/** checkRestoredImages on the images in `imagesDir`. */
export function checkCriuImages(imagesDir: string, spec: OciSpec, opts: ImagePolicyOptions = {}): { refused: PolicyRefusal[]; warnings: string[] } {
  return checkRestoredImages(readCriuImageFacts(imagesDir), spec, opts);
}

/** Device nodes runc always creates and maps on restore (libcontainer/specconv AllowedDevices). */
const RUNC_DEVICES = ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty'];
const MOUNT_TYPES_FOR: Record<string, string[]> = {
  proc: ['proc'],
  sysfs: ['sysfs'],
  devpts: ['devpts'],
  mqueue: ['mqueue'],
  tmpfs: ['tmpfs'],
  cgroup: ['cgroup', 'cgroup2', 'tmpfs'],
  cgroup2: ['cgroup2'],
};

function readOomScoreAdj(): number {
  try {
    return Number.parseInt(readFileSync('/proc/self/oom_score_adj', 'utf8'), 10) || 0;
  } catch {
    return 0;
  }
}

function taskName(pid: number, comm: string | null): string {
  return comm ? `${pid} (${comm})` : String(pid);
}

/**
 * What the restored processes would get from CRIU's images beyond `spec` (the
 * spec applyRestorePolicy returned): capabilities outside its bounding set, a
 * namespace it has that the root task would be restored without (the host's),
 * mounts it does not have, missing masks and read-only paths, rlimits above this
 * host's hard limits, real-time scheduling, and a seccomp filter or LSM profile
 * the spec has that the processes lack.
 */
export function checkRestoredImages(facts: CriuImageFacts, spec: OciSpec, opts: ImagePolicyOptions = {}): { refused: PolicyRefusal[]; warnings: string[] } {
  const refused: PolicyRefusal[] = [];
  const warnings: string[] = [];
  const trust = opts.trust;
  const refuse = (area: TrustArea, what: string, asked: string, source: string, grant = grantTrust(area)) => {
    refused.push({ area, what, asked, grant, source });
  };
  const process = (spec.process ?? {}) as Record<string, unknown>;
  const linux = (spec.linux ?? {}) as Record<string, unknown>;
  const bounding = ((process.capabilities as Record<string, string[]> | undefined)?.bounding ?? []).map((name) => name.toUpperCase());
  const hasCap = (name: string) => bounding.includes(name);
  const { mounts } = facts;
  // A zombie runs none of its code again (CRIU makes it exit at once): only the live tasks count.
  const processes = { ...facts.processes, threads: facts.processes.threads.filter((thread) => !thread.zombie) };

  // --- capabilities, per capability with the tasks that would hold it.
  if (!trusts(trust, 'capabilities')) {
    const byCapability = new Map<string, Map<string, Set<string>>>();
    for (const excess of capabilityExcess(processes.threads, bounding)) {
      for (const name of excess.capabilities) {
        const tasks = byCapability.get(name) ?? new Map<string, Set<string>>();
        const task = taskName(excess.pid, excess.comm);
        tasks.set(task, (tasks.get(task) ?? new Set()).add(excess.set));
        byCapability.set(name, tasks);
      }
    }
    for (const [name, tasks] of byCapability) {
      const held = [...tasks].map(([task, sets]) => `task ${task} in its ${[...sets].join(', ')} set${sets.size > 1 ? 's' : ''}`);
      refuse('capabilities', `capability ${name}`, `CRIU would restore ${held.join('; ')}`, 'CRIU core images');
    }
    for (const thread of processes.threads) {
      if (thread.creds === null) {
        refuse('capabilities', `credentials of task ${taskName(thread.pid, thread.comm)}`, 'none recorded: CRIU would leave it with its own (root, every capability)', `core-${thread.tid}.img`);
      }
      const realtime = thread.sched.policy === 'fifo' || thread.sched.policy === 'rr' || thread.sched.policy === 'deadline';
      if ((realtime || (thread.sched.nice ?? 0) < 0) && !hasCap('CAP_SYS_NICE')) {
        const how = realtime ? `SCHED_${thread.sched.policy.toUpperCase()} priority ${thread.sched.priority ?? 0}` : `nice ${thread.sched.nice}`;
        refuse('capabilities', `scheduling of task ${taskName(thread.pid, thread.comm)}`, `${how}, which needs CAP_SYS_NICE`, `core-${thread.tid}.img`);
      }
    }
    const floor = opts.hostOomScoreAdj ?? readOomScoreAdj();
    for (const task of processes.tasks) {
      if (task.oomScoreAdj !== null && task.oomScoreAdj < floor && !hasCap('CAP_SYS_RESOURCE')) {
        refuse('capabilities', `oom_score_adj of task ${taskName(task.pid, task.comm)}`, `${task.oomScoreAdj}, below ${floor}, which needs CAP_SYS_RESOURCE`, `core-${task.pid}.img`);
      }
    }
  }

  // --- rlimits: CRIU sets them as root; a fresh container could not exceed the host's hard limits.
  if (!trusts(trust, 'rlimits') && !hasCap('CAP_SYS_RESOURCE')) {
    const hostLimits = opts.hostLimits ?? readHostRlimits();
    const over = new Map<string, string[]>();
    for (const task of processes.tasks) {
      for (const limit of task.rlimits) {
        const hostHard = hostLimits.get(limit.type);
        if (exceeds(limit.hard, hostHard)) over.set(`${limit.type} ${limit.hard} (this host's hard limit is ${hostHard})`, [...(over.get(limit.type) ?? []), taskName(task.pid, task.comm)]);
      }
    }
    for (const [limit, tasks] of over) {
      refuse('rlimits', `rlimit ${limit.split(' ')[0]}`, `${limit.slice(limit.indexOf(' ') + 1)} for task${tasks.length > 1 ? 's' : ''} ${tasks.join(', ')}`, 'CRIU core images');
    }
  }

  // --- namespaces: the root task must get each namespace the spec creates.
  if (!trusts(trust, 'namespaces')) {
    for (const ns of (linux.namespaces ?? []) as { type: string; path?: string }[]) {
      const kind = NAMESPACE_KIND[ns.type];
      // CRIU does not create cgroup namespaces from its clone mask (criu/pstree.c get_clone_mask).
      if (ns.path !== undefined || kind === undefined || kind === 'cgroup') continue;
      if (processes.rootNamespaces[kind] !== true) {
        refuse('namespaces', `${ns.type} namespace`, `the images restore the processes in the host's ${ns.type} namespace (their namespace is the one CRIU dumped from)`, 'ids and inventory images');
      }
    }
  }

  // --- seccomp, LSM, no_new_privs
  if (!trusts(trust, 'security')) {
    if (linux.seccomp !== undefined) {
      const unfiltered = processes.threads.filter((thread) => thread.seccomp === 'disabled');
      if (unfiltered.length > 0) {
        refuse('security', 'seccomp', `tasks ${unfiltered.map((t) => taskName(t.pid, t.comm)).join(', ')} would run without the seccomp filter the policy requires`, 'CRIU core images');
      }
    }
    for (const field of ['apparmorProfile', 'selinuxLabel'] as const) {
      const wanted = process[field];
      if (typeof wanted !== 'string') continue;
      const others = processes.threads.filter((thread) => (thread.creds?.lsmProfile ?? '').replace(/ \([a-z]+\)\n?$/, '').trim() !== wanted);
      if (others.length > 0) {
        refuse('security', field === 'apparmorProfile' ? 'AppArmor profile' : 'SELinux label', `tasks ${others.map((t) => `${taskName(t.pid, t.comm)} ${JSON.stringify(t.creds?.lsmProfile ?? null)}`).join(', ')} instead of ${wanted}`, 'CRIU core images');
      }
    }
  }
  if (process.noNewPrivileges === true) {
    const without = processes.threads.filter((thread) => thread.creds?.noNewPrivs === false);
    if (without.length > 0) warnings.push(`tasks ${without.map((t) => taskName(t.pid, t.comm)).join(', ')} run without no_new_privs (the images say so); their bounding set still limits what they can gain`);
  }

  // --- mounts
  checkImageMounts(mounts, spec, opts, refuse);
  return { refused, warnings };
}

function checkImageMounts(
  mounts: ImageMount[],
  spec: OciSpec,
  opts: ImagePolicyOptions,
  refuse: (area: TrustArea, what: string, asked: string, source: string, grant?: string) => void,
): void {
  const linux = (spec.linux ?? {}) as Record<string, unknown>;
  const specMounts = (spec.mounts ?? []) as OciMount[];
  const masked = ((linux.maskedPaths ?? []) as string[]).map(cleanPath);
  const readonly = ((linux.readonlyPaths ?? []) as string[]).map(cleanPath);
  const pathExists = opts.pathExists ?? existsSync;
  const file = (mount: ImageMount) => `mountpoints-${mount.namespace}.img`;
  const cgroupRoots = specMounts.filter((m) => m.type === 'cgroup' || m.type === 'cgroup2').map((m) => m.destination);
  const under = (path: string, dir: string) => path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);

  if (!trusts(opts.trust, 'mounts')) {
    const externalKeys = new Set<string>(['/dev/null', ...RUNC_DEVICES]);
    for (const m of specMounts) if (isBind(m)) externalKeys.add(m.destination);
    for (const device of (linux.devices ?? []) as { path?: unknown }[]) if (typeof device.path === 'string') externalKeys.add(device.path);
    for (const mount of mounts) {
      if (mount.isRoot || mount.bindOfRoot) continue;
      if (mount.externalKey !== null) {
        const key = mount.externalKey;
        if (externalKeys.has(key) || cgroupRoots.some((root) => under(key, root) && key !== root)) continue;
        refuse('mounts', `mount ${mount.mountpoint}`, `a bind mount whose source runc must supply (key ${key}), which the restore spec does not have`, file(mount),
          `${GRANT_FLAGS.mount} type=bind,source=DIR,destination=${key}, or ${grantTrust('mounts')}`);
        continue;
      }
      if (mount.fstype === 'tmpfs') continue;
      const specMount = specMounts.find((m) => m.destination === mount.mountpoint && !isBind(m));
      if (specMount && (MOUNT_TYPES_FOR[specMount.type ?? ''] ?? []).includes(mount.fstype)) continue;
      if ((masked.includes(mount.mountpoint) || readonly.includes(mount.mountpoint)) && ['proc', 'sysfs'].includes(mount.fstype)) continue;
      if ((mount.fstype === 'cgroup' || mount.fstype === 'cgroup2') && cgroupRoots.some((root) => under(mount.mountpoint, root))) continue;
      const type = mount.fstype === 'auto' ? (mount.fsname ?? 'unknown') : mount.fstype;
      refuse('mounts', `mount ${mount.mountpoint}`, `${mount.source || '(no source)'}${mount.root !== '/' ? ` (its ${mount.root})` : ''} of type ${type} with options ${mount.options || '(none)'}, which CRIU would mount as recorded`, file(mount));
    }
  }

  if (!trusts(opts.trust, 'security')) {
    // Every mount namespace: a nested one is a copy of the container's, masks included.
    const namespaces = [...new Set(mounts.map((m) => m.namespace))];
    for (const namespace of namespaces) {
      const tree = mounts.filter((m) => m.namespace === namespace);
      const at = (path: string) => tree.filter((m) => m.mountpoint === path);
      for (const path of masked) {
        if (!pathExists(path)) continue;
        const masks = at(path).filter((m) => m.externalKey === '/dev/null' || (m.fstype === 'tmpfs' && m.readOnly));
        if (masks.length === 0) refuse('security', `masked path ${path}`, 'left visible: the checkpoint\'s mount tree does not mask it', `mountpoints-${namespace}.img`);
      }
      for (const path of readonly) {
        if (!pathExists(path)) continue;
        if (!at(path).some((m) => m.readOnly)) refuse('security', `read-only path ${path}`, 'left writable: the checkpoint\'s mount tree does not mount it read-only', `mountpoints-${namespace}.img`);
      }
      for (const m of specMounts) {
        if (!(m.options ?? []).includes('ro')) continue;
        const isCgroup = m.type === 'cgroup' || m.type === 'cgroup2';
        const found = isCgroup
          ? tree.filter((t) => (t.fstype === 'cgroup' || t.fstype === 'cgroup2') && under(t.mountpoint, m.destination))
          : at(m.destination);
        const writable = found.filter((t) => !t.readOnly);
        if (writable.length > 0) {
          refuse('security', `read-only mount ${m.destination}`, `mounted writable: ${writable.map((t) => t.mountpoint).join(', ')}`, `mountpoints-${namespace}.img`);
        }
      }
      if (spec.root?.readonly === true && tree.some((t) => t.isRoot && !t.readOnly)) {
        refuse('security', 'read-only root', 'the checkpoint\'s root is mounted writable', `mountpoints-${namespace}.img`);
      }
    }
  }
}
