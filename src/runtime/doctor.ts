import { accessSync, constants, readFileSync } from 'node:fs';
import { CRIU_KDAT, criuCacheFailedThisBoot, criuCacheState } from './criu-cache.ts';
import { criuFeature, criuVersion as criuVersionOf, lazyPageServerProblem, softDirtyTracking } from './criu.ts';
import { run, versionOf } from '../host/spawn.ts';
import type { Runtime } from './runtime.ts';
import { which } from '../host/which.ts';
import { unprivilegedUffd } from './userns.ts';

/**
 * CRIU probes the kernel's features at every start (80-100 ms here) unless it
 * finds its cache, /run/criu.kdat; it writes that cache only where /run is a
 * tmpfs (so that a reboot into another kernel drops it). Elsewhere stasis
 * makes it at the next checkpoint or restore (criu-cache.ts).
 */
function kdatCache(): { ok: boolean; detail: string; hint?: string } {
  switch (criuCacheState()) {
    case 'kept':
      return { ok: true, detail: `${CRIU_KDAT} is kept: CRIU starts without probing the kernel` };
    case 'criu-keeps-it':
      return { ok: true, detail: `/run is a tmpfs: CRIU keeps ${CRIU_KDAT} after its first run` };
    default:
      return criuCacheFailedThisBoot()
        ? {
          ok: false,
          detail: `/run is not a tmpfs, and making ${CRIU_KDAT} failed this boot: CRIU probes the kernel on every checkpoint and restore (80-100 ms each)`,
          hint: 'stasis --debug checkpoint ID shows why (the try is made again after a reboot)',
        }
        : { ok: false, detail: `/run is not a tmpfs, where CRIU keeps no cache: the next checkpoint or restore has CRIU make it, mounted on ${CRIU_KDAT} until the next boot` };
  }
}

export interface DoctorCheck {
  name: string;
  ok: boolean;
  /** A failed required check makes `doctor` exit 1; others are warnings. */
  required: boolean;
  detail: string;
  hint?: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
}

const SETUP_HINT = 'run scripts/setup.sh from the stasis checkout (as root)';

export async function runDoctor(runtime: Runtime): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const { runc, criu, conmon } = runtime.config;

  const runcVersion = which(runc) ? await versionOf(runc, ['--version'], /runc version (\S+)/) : null;
  checks.push({ name: 'runc', ok: runcVersion !== null, required: true, detail: runcVersion ? `${runc} ${runcVersion}` : `${runc}: not found`, hint: 'apt-get install runc' });

  const conmonVersion = which(conmon) ? await versionOf(conmon, ['--version'], /conmon version (\S+)/) : null;
  checks.push({ name: 'conmon (monitor)', ok: conmonVersion !== null, required: true, detail: conmonVersion ? `${conmon} ${conmonVersion}` : `${conmon}: not found`, hint: 'apt-get install conmon' });

  const criuVersion = which(criu) ? await criuVersionOf(criu) : null;
  const criuMajor = criuVersion ? Number(criuVersion.split('.')[0]) : 0;
  checks.push({
    name: 'criu',
    ok: criuMajor >= 4,
    required: true,
    detail: criuVersion ? `${criu} ${criuVersion}${criuMajor < 4 ? ' (4.0 or newer is needed on this kernel; 4.2 for sockets on Linux 6.16 and later)' : ''}` : `${criu}: not found`,
    hint: SETUP_HINT,
  });
  if (criuVersion) {
    const check = await run(criu, ['check']).catch(() => null);
    const good = check !== null && /Looks good/.test(`${check.stdout}${check.stderr}`);
    const lastError = check ? `${check.stdout}${check.stderr}`.trim().split('\n').filter((l) => /error/i.test(l)).pop() : undefined;
    checks.push({ name: 'criu check', ok: good, required: true, detail: good ? 'Looks good.' : lastError ?? 'failed', hint: SETUP_HINT });
    const [dirty, uffd, timens] = await Promise.all([
      softDirtyTracking(criu),
      criuFeature(criu, 'uffd-noncoop'),
      criuFeature(criu, 'timens'),
    ]);
    const kdat = kdatCache();
    checks.push({
      name: "CRIU's kernel cache",
      ok: kdat.ok,
      required: false,
      detail: kdat.detail,
      hint: kdat.hint,
    });
    checks.push({
      name: 'soft-dirty tracking',
      ok: dirty,
      required: false,
      detail: dirty ? 'available: checkpoint --pre-dump works' : 'not available in this kernel: checkpoint --pre-dump cannot work',
    });
    // CRIU before 4.2 asks the kernel for a socket option that Linux 6.16 dropped: no TCP or UDP socket can be dumped.
    const sockets = versionAtLeast(criuVersion, [4, 2]) || !versionAtLeast(kernelRelease(), [6, 16]);
    checks.push({
      name: 'TCP/UDP sockets',
      ok: sockets,
      required: false,
      detail: sockets
        ? 'CRIU can dump network sockets: servers and (with --tcp-established) connections'
        : `CRIU ${criuVersion} cannot dump any TCP or UDP socket on Linux ${kernelRelease()} (4.2 or newer is needed from 6.16 on)`,
      hint: SETUP_HINT,
    });
    checks.push({
      name: 'post-copy (uffd)',
      ok: uffd,
      required: false,
      detail: uffd ? 'userfaultfd is usable: lazy memory transfer is possible' : 'userfaultfd (non-cooperative) is not available: memory is always copied before the restore',
    });
    if (uffd) {
      const inUserns = unprivilegedUffd();
      checks.push({
        name: 'post-copy in a userns',
        ok: inUserns,
        required: false,
        detail: inUserns
          ? 'a --userns container can take its memory on demand here (migrate --lazy to this host)'
          : 'vm.unprivileged_userfaultfd is 0: a --userns container moved here with --lazy has all its memory moved first',
        hint: inUserns ? undefined : 'sysctl -w vm.unprivileged_userfaultfd=1 allows it (it lets any process use userfaultfd)',
      });
    }
    const pageServer = lazyPageServerProblem();
    checks.push({
      name: 'post-copy page server',
      ok: pageServer === null,
      required: false,
      detail: pageServer === null ? 'CRIU can serve pages from here (migrate --lazy as the source)' : `${pageServer}: migrate --lazy from here falls back to a full move`,
      hint: pageServer === null ? undefined : SETUP_HINT,
    });
    checks.push({
      name: 'time namespace',
      ok: timens,
      required: false,
      detail: timens ? 'CRIU restores clocks in a time namespace; stasis exec joins it' : 'not available: clocks jump on restore',
    });
  }
  checks.push(nonRootCheckpointCheck(safeRead('/proc/self/status')));
  const nsenter = which('nsenter');
  const ip = which('ip');
  checks.push({
    name: 'loopback on restore',
    ok: nsenter !== null && ip !== null,
    required: false,
    detail: nsenter !== null && ip !== null
      ? `${ip} brings lo up in a restored container (runc restores its network namespace empty)`
      : `${nsenter === null ? 'nsenter' : 'ip'} not found: a restored container's loopback stays down`,
    hint: 'apt-get install iproute2 util-linux',
  });

  const flock = runtime.config.flock ?? null;
  checks.push({
    name: 'flock (exit hooks)',
    ok: flock !== null,
    required: false,
    detail: flock ? `${flock}: at most 4 exit hooks run at once` : 'not found: when many containers exit at once, every exit starts its hook at once',
    hint: 'apt-get install util-linux',
  });
  const iptables = which('iptables');
  checks.push({ name: 'iptables', ok: iptables !== null, required: true, detail: iptables ?? 'not found (CRIU locks the network with it)', hint: 'apt-get install iptables' });

  const filesystems = safeRead('/proc/filesystems');
  const overlay = /\toverlay\n/.test(filesystems);
  checks.push({ name: 'overlayfs', ok: overlay, required: true, detail: overlay ? 'supported' : 'not in /proc/filesystems', hint: 'modprobe overlay' });

  const cgroups = safeRead('/proc/self/mountinfo');
  const v2 = / - cgroup2 /.test(cgroups) && !/ - cgroup /.test(cgroups);
  const freezer = v2 || /[ ,]freezer[ ,\n]/.test(cgroups);
  checks.push({ name: 'cgroup freezer', ok: freezer, required: true, detail: freezer ? (v2 ? 'cgroup v2' : 'cgroup v1 freezer') : 'missing (pause and checkpoint need it)' });

  let stateOk = true;
  try {
    runtime.store.ensure();
    accessSync(runtime.store.paths.root, constants.W_OK);
  } catch {
    stateOk = false;
  }
  checks.push({ name: 'state directory', ok: stateOk, required: true, detail: `${runtime.store.paths.root}${stateOk ? ' (writable, 0700)' : ' is not writable'}`, hint: 'run as root or pass --state-dir' });

  return { ok: checks.every((c) => c.ok || !c.required), checks };
}

/** CAP_SYS_RESOURCE (bit 24): CRIU needs it to read the rlimits of a process of another uid (prlimit). */
const CAP_SYS_RESOURCE_BIT = 24n;

/**
 * Whether this host can checkpoint a container whose processes run as a user
 * other than root without a user namespace: CRIU reads every task's rlimits,
 * which for another uid needs CAP_SYS_RESOURCE in stasis's own CapEff.
 */
export function nonRootCheckpointCheck(status: string): DoctorCheck {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  const capEff = match ? match[1] : null;
  const has = capEff !== null && ((BigInt(`0x${capEff}`) >> CAP_SYS_RESOURCE_BIT) & 1n) === 1n;
  return {
    name: 'non-root checkpoint',
    ok: has,
    required: false,
    detail: has
      ? 'stasis holds CAP_SYS_RESOURCE: CRIU can checkpoint processes of any user'
      : `stasis runs without CAP_SYS_RESOURCE (CapEff ${capEff ?? 'unknown'}): CRIU cannot read the resource limits of a process of another user ` +
        '("Can\'t get rlimit 0: Operation not permitted"), so a container whose processes run as non-root cannot be checkpointed outside a user namespace',
    hint: has ? undefined : 'create such containers with --userns auto (a user namespace mapping their users)',
  };
}

function kernelRelease(): string {
  return safeRead('/proc/sys/kernel/osrelease').trim();
}

/** Whether a dotted version ("4.2.1", "6.18.44-fc") is at least `least`. */
function versionAtLeast(version: string, least: number[]): boolean {
  const parts = version.split(/[.-]/).map((part) => Number.parseInt(part, 10));
  for (let i = 0; i < least.length; i++) {
    const part = Number.isNaN(parts[i]) ? 0 : parts[i] ?? 0;
    if (part !== least[i]) return part > least[i];
  }
  return true;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
