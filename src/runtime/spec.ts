import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { StasisError } from '../errors.ts';
import { DEFAULT_CAPABILITIES } from './identity.ts';

// A minimal view of the OCI runtime spec: the parts stasis reads or sets.
export interface OciSpec {
  ociVersion: string;
  process?: {
    terminal?: boolean;
    args?: string[];
    env?: string[];
    cwd?: string;
    [key: string]: unknown;
  };
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: unknown[];
  annotations?: Record<string, string>;
  linux?: {
    resources?: { memory?: { limit?: number }; pids?: { limit: number }; [key: string]: unknown };
    cgroupsPath?: string;
    namespaces?: { type: string; path?: string }[];
    [key: string]: unknown;
  };
  [key: string]: unknown;
}


/** The spec `runc spec` would write, for a container named `id` running `args`. */
export function defaultSpec(id: string, args: string[]): OciSpec {
  const hostname = id.length <= 63 ? id : id.slice(0, 63);
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: args.length > 0 ? args : ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      // A copy per set: a caller that changes one set must not change the others, or the next spec.
      capabilities: {
        bounding: [...DEFAULT_CAPABILITIES],
        effective: [...DEFAULT_CAPABILITIES],
        permitted: [...DEFAULT_CAPABILITIES],
        ambient: [...DEFAULT_CAPABILITIES],
      },
      // Kept at runc's own default: raising it above the caller's hard limit is refused.
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [
        '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
        '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** Reads and checks a bundle's config.json; relative root paths are made absolute. */
export function loadBundleSpec(bundleDir: string): { spec: OciSpec; rootfs: string } {
  const configPath = resolve(bundleDir, 'config.json');
  let text: string;
  try {
    if (!statSync(bundleDir).isDirectory()) throw new Error('not a directory');
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new StasisError(`bundle ${bundleDir}: cannot read ${code === 'ENOENT' && !safeIsDir(bundleDir) ? 'the bundle' : 'config.json'}: ${why}`, {
      hint: 'a bundle is a folder with config.json and a rootfs, as `runc spec` makes',
    });
  }
  let spec: OciSpec;
  try {
    spec = JSON.parse(text) as OciSpec;
  } catch (err) {
    throw new StasisError(`bundle ${bundleDir}: config.json is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof spec !== 'object' || spec === null || typeof spec.ociVersion !== 'string' || typeof spec.root?.path !== 'string') {
    throw new StasisError(`bundle ${bundleDir}: config.json is not an OCI runtime spec (needs ociVersion and root.path)`);
  }
  if (!Array.isArray(spec.process?.args) || spec.process.args.length === 0) {
    throw new StasisError(`bundle ${bundleDir}: config.json has no process.args`);
  }
  const rootfs = isAbsolute(spec.root.path) ? spec.root.path : resolve(bundleDir, spec.root.path);
  if (!safeIsDir(rootfs)) {
    throw new StasisError(`bundle ${bundleDir}: rootfs ${rootfs} is not a directory`);
  }
  return { spec, rootfs };
}

function safeIsDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export interface SpecOverrides {
  args?: string[];
  env?: string[];
  cwd?: string;
  tty?: boolean;
  memoryBytes?: number;
  pidsLimit?: number;
}

/** Applies create options to a spec (in place) and returns it. */
export function applyOverrides(spec: OciSpec, overrides: SpecOverrides): OciSpec {
  spec.process ??= {};
  if (overrides.args && overrides.args.length > 0) spec.process.args = overrides.args;
  if (overrides.env && overrides.env.length > 0) {
    const env = new Map((spec.process.env ?? []).map((entry) => [entry.split('=')[0], entry]));
    for (const entry of overrides.env) env.set(entry.split('=')[0], entry);
    spec.process.env = [...env.values()];
  }
  if (overrides.cwd !== undefined) spec.process.cwd = overrides.cwd;
  if (overrides.tty !== undefined) spec.process.terminal = overrides.tty;
  spec.linux ??= {};
  if (overrides.memoryBytes !== undefined || overrides.pidsLimit !== undefined) {
    spec.linux.resources ??= {};
    if (overrides.memoryBytes !== undefined) spec.linux.resources.memory = { ...spec.linux.resources.memory, limit: overrides.memoryBytes };
    if (overrides.pidsLimit !== undefined) spec.linux.resources.pids = { limit: overrides.pidsLimit };
  }
  return spec;
}
