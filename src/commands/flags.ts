import { EXIT_USAGE, StasisError, usageError, type ErrorCode } from '../errors.ts';
import { validateId } from '../state/ids.ts';
import type { MountRecord, VolumeMount } from '../state/store.ts';
import { defaultRootfs, planCreate, type CreateOptions } from '../runtime/create-plan.ts';
import { CRIU_OPTIONS, CRIU_OPTION_NAMES, type CriuOptions } from '../runtime/criu.ts';
import type { ProvisionPlan } from '../runtime/types.ts';
import { imageStoreFrom, type GlobalArgs } from './context.ts';
import { parseUserns } from '../runtime/userns.ts';

// Flag groups shared by several commands (as ctr keeps its shared flags in one place).

/**
 * Repeatable flags are plain string options collected into an array: a yargs
 * array option would swallow the positional ID that follows it.
 */
export function toArray(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

const CREATE_GROUP = 'Create options:';

/** The options of create, run and restore's create alias, as one group (like ctr's shared flags). */
export const CREATE_FLAGS = {
  bundle: { type: 'string', requiresArg: true, describe: 'use this OCI bundle (config.json + rootfs) as runc would; its rootfs is written in place', group: CREATE_GROUP },
  rootfs: { type: 'string', requiresArg: true, describe: 'read-only rootfs image; the container writes to its own overlay layer (default: the built-in busybox rootfs)', group: CREATE_GROUP },
  tty: { alias: 't', type: 'boolean', describe: 'give the container a terminal', group: CREATE_GROUP },
  env: { alias: 'e', type: 'string', requiresArg: true, coerce: toArray, describe: 'set an environment variable K=V (repeatable)', group: CREATE_GROUP },
  cwd: { type: 'string', requiresArg: true, describe: 'working directory inside the container', group: CREATE_GROUP },
  label: { type: 'string', requiresArg: true, coerce: toArray, describe: 'attach a label K=V (repeatable)', group: CREATE_GROUP },
  memory: { type: 'string', requiresArg: true, describe: 'memory limit in bytes (k, m, g suffixes)', group: CREATE_GROUP },
  'pids-limit': { type: 'string', requiresArg: true, describe: 'maximum number of processes', group: CREATE_GROUP },
  stdin: { type: 'string', requiresArg: true, describe: "connect the container's stdin to FILE", group: CREATE_GROUP },
  stdout: { type: 'string', requiresArg: true, describe: "write the container's stdout to FILE (default: captured for logs)", group: CREATE_GROUP },
  stderr: { type: 'string', requiresArg: true, describe: "write the container's stderr to FILE (default: captured for logs)", group: CREATE_GROUP },
  'rootfs-mount': { type: 'string', requiresArg: true, coerce: toArray, describe: 'mount type=T,source=S,options=O1:O2 on the rootfs before create, unmounted on delete (repeatable)', group: CREATE_GROUP },
} as const;

const IMAGE_GROUP = 'Image options:';

/** run and create on an image (oci:, oci-archive:, docker://), unpacked into the image store (--image-dir). */
export const IMAGE_FLAGS = {
  image: { type: 'string', requiresArg: true, describe: 'run on this image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://HOST[:PORT]/NAME[:TAG|@DIGEST] or a name in `stasis images`; its Env, User, WorkingDir, Entrypoint and Cmd are used', group: IMAGE_GROUP },
  'tls-verify': { type: 'boolean', describe: 'talk to the registry over TLS, checked (--tls-verify=false: plain HTTP; default: plain HTTP only for localhost and 127.0.0.0/8)', group: IMAGE_GROUP },
} as const;

export interface ImageFlags {
  image?: string;
  tlsVerify?: boolean;
}

/** --image: the image pulled or read into the store and made the container's base (in the options); nothing when not given. */
export async function addImageBase(argv: ImageFlags & CreateFlags & GlobalArgs, options: CreateOptions): Promise<void> {
  if (argv.image === undefined) {
    if (argv.tlsVerify !== undefined) throw usageError('--tls-verify is for --image docker://…');
    return;
  }
  if (argv.rootfs !== undefined) throw usageError('--image and --rootfs cannot be used together');
  if (argv.bundle !== undefined) throw usageError('--image and --bundle cannot be used together');
  if (toArray(argv.rootfsMount).length > 0) throw usageError("--rootfs-mount mounts onto a bundle's rootfs: use it with --bundle, not --image");
  const store = await imageStoreFrom(argv);
  // A spinner on a terminal only (see output/terminal.ts): a pull can take a while.
  const { spinner } = await import('../output/terminal.ts');
  const shown = await spinner(`reading the image ${argv.image}`);
  try {
    const image = await store.pull(argv.image, { tlsVerify: argv.tlsVerify, progress: (step) => shown.step(step) });
    const { baseOf } = await import('../image/config.ts');
    options.image = baseOf(image, argv.image);
  } finally {
    shown.stop();
  }
}

const VOLUME_GROUP = 'Volume options:';

/** Volumes: host folders bind-mounted in (podman's spellings). create, run, and restore (where they map a checkpoint's volume). */
export const VOLUME_FLAGS = {
  volume: { alias: 'v', type: 'string', requiresArg: true, coerce: toArray, describe: "bind-mount the host folder HOST (absolute, existing) on CTR: HOST:CTR[:OPTS], OPTS ro or rw and U, comma-separated (U: the files are the container's user's, through its user namespace; repeatable)", group: VOLUME_GROUP },
  mount: { type: 'string', requiresArg: true, coerce: toArray, describe: 'the same, as type=bind,source=HOST,destination=CTR[,ro][,U] (repeatable)', group: VOLUME_GROUP },
} as const;

const IDENTITY_GROUP = 'User and privilege options:';

/** Who the container's process is and what it may do (create and run). */
export const IDENTITY_FLAGS = {
  user: { alias: 'u', type: 'string', requiresArg: true, describe: "run as NAME|UID[:GROUP|GID], looked up in the rootfs's /etc/passwd and /etc/group", group: IDENTITY_GROUP },
  'cap-add': { type: 'string', requiresArg: true, coerce: toArray, describe: 'add a capability to the default set (NET_ADMIN, CAP_SYS_PTRACE, ALL; repeatable)', group: IDENTITY_GROUP },
  'cap-drop': { type: 'string', requiresArg: true, coerce: toArray, describe: 'drop a capability from the default set (ALL drops every one; repeatable)', group: IDENTITY_GROUP },
  hostname: { type: 'string', requiresArg: true, describe: "the container's host name (default: its ID)", group: IDENTITY_GROUP },
  userns: { type: 'string', requiresArg: true, describe: "user namespace: host (default), auto (a free range of 65536 host IDs) or CONTAINER:HOST:SIZE", group: IDENTITY_GROUP },
} as const;

export interface IdentityFlags {
  user?: string;
  capAdd?: string[];
  capDrop?: string[];
  hostname?: string;
  userns?: string;
}

/**
 * The CRIU options checkpoint, restore and migrate share (ctr's shared flag
 * groups), under a group title that says what they mean for that verb.
 */
export function criuFlags(group: string) {
  return {
    'tcp-established': { type: 'boolean', describe: 'CRIU: established TCP connections', group },
    'ext-unix-sk': { type: 'boolean', describe: 'CRIU: external unix sockets', group },
    'shell-job': { type: 'boolean', describe: 'CRIU: a shell job (a process attached to a session outside)', group },
    'file-locks': { type: 'boolean', describe: 'CRIU: file locks', group },
  } as const;
}

/** The CRIU options given on the command line, as the library takes them. */
export function criuOptionsFrom(argv: CriuOptions): CriuOptions {
  const opts: CriuOptions = {};
  for (const name of CRIU_OPTION_NAMES) if (argv[CRIU_OPTIONS[name].key] === true) opts[CRIU_OPTIONS[name].key] = true;
  return opts;
}

/** create's extra option: restore instead (as `stasis restore`). */
export const CHECKPOINT_FLAG = {
  checkpoint: { type: 'string', requiresArg: true, describe: 'restore from this checkpoint folder, archive, image (oci:DIR, oci-archive:FILE) or - for stdin (as `stasis restore`)', group: CREATE_GROUP },
} as const;

export interface CreateFlags extends IdentityFlags {
  bundle?: string;
  rootfs?: string;
  tty?: boolean;
  env?: string[];
  cwd?: string;
  label?: string[];
  memory?: string;
  pidsLimit?: string;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  rootfsMount?: string[];
  volume?: string[];
  mount?: string[];
  checkpoint?: string;
}

export function parseKeyValues(flag: string, values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values ?? []) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw usageError(`--${flag} ${JSON.stringify(value)}: expected K=V`);
    out[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return out;
}

export function parseEnv(values: string[] | undefined): string[] {
  for (const value of values ?? []) {
    if (value.indexOf('=') <= 0) throw usageError(`--env ${JSON.stringify(value)}: expected K=V`);
  }
  return values ?? [];
}

const SIZE_SUFFIX: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

export function parseBytes(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)([bkmg]?)$/i.exec(value.trim());
  if (!match) throw usageError(`--${flag} ${JSON.stringify(value)}: expected a number of bytes with an optional k, m or g suffix`);
  const bytes = Number(match[1]) * SIZE_SUFFIX[match[2].toLowerCase()];
  if (bytes < 6 * 1024 * 1024 && flag === 'memory') throw usageError(`--memory ${value}: at least 6m is needed to start a container`);
  // The kernel takes up to 2^63 - 1; JavaScript counts exactly to 2^53.
  if (!Number.isSafeInteger(bytes)) throw usageError(`--${flag} ${value}: more than ${Number.MAX_SAFE_INTEGER} bytes`);
  return bytes;
}

export function parsePositiveInt(flag: string, value: string | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw usageError(`--${flag} ${JSON.stringify(value)}: expected a whole number of at least 1`);
  if (Number(value) > max) throw usageError(`--${flag} ${value}: at most ${max}`);
  return Number(value);
}

/** The kernel's own ceiling on PIDs (PID_MAX_LIMIT on 64-bit). */
const MAX_PIDS = 4_194_304;

/** The container command: positional words after the ID plus everything after `--`. */
export function commandWords(argv: { cmd?: unknown; '--'?: unknown }): string[] {
  const words = [...((argv.cmd as string[] | undefined) ?? []), ...((argv['--'] as string[] | undefined) ?? [])];
  return words.map(String);
}

export function idArg(value: unknown): string {
  return validateId(value === undefined ? '' : String(value));
}

/** Flag combinations create and run refuse, before any work. */
function checkCreateFlags(argv: CreateFlags): void {
  if (argv.bundle !== undefined && argv.rootfs !== undefined) throw usageError('--bundle and --rootfs cannot be used together');
  if (argv.rootfs !== undefined && toArray(argv.rootfsMount).length > 0) {
    throw usageError("--rootfs-mount mounts onto a bundle's rootfs: use it with --bundle, not --rootfs");
  }
  const fileStdio = argv.stdin !== undefined || argv.stdout !== undefined || argv.stderr !== undefined;
  if (argv.tty && fileStdio) throw usageError('--tty cannot be combined with --stdin, --stdout or --stderr');
}

/** Maps the create flags to the runtime's typed options. */
export function createOptionsFrom(argv: CreateFlags, args: string[], extra: { autoRemove?: boolean; inheritStdio?: 'none' | 'output' | 'all' } = {}): CreateOptions {
  checkCreateFlags(argv);
  return {
    bundle: argv.bundle,
    rootfs: argv.rootfs,
    args,
    env: parseEnv(argv.env),
    cwd: argv.cwd,
    tty: argv.tty,
    labels: parseKeyValues('label', argv.label),
    memoryBytes: parseBytes('memory', argv.memory),
    pidsLimit: parsePositiveInt('pids-limit', argv.pidsLimit, MAX_PIDS),
    stdin: argv.stdin,
    stdout: argv.stdout,
    stderr: argv.stderr,
    // yargs applies coerce to a dashed option's own key, not to its camel-case copy.
    rootfsMounts: toArray(argv.rootfsMount).map(parseMountFlag),
    volumes: volumesFrom(argv),
    autoRemove: extra.autoRemove ?? false,
    inheritStdio: extra.inheritStdio ?? 'none',
    identity: identityFrom(argv),
  };
}

/** The identity flags as the runtime's options (yargs coerces a dashed option under its own key). */
function identityFrom(argv: IdentityFlags & { 'cap-add'?: unknown; 'cap-drop'?: unknown }): CreateOptions['identity'] {
  return {
    user: argv.user,
    capAdd: toArray(argv['cap-add'] ?? argv.capAdd),
    capDrop: toArray(argv['cap-drop'] ?? argv.capDrop),
    hostname: argv.hostname,
    userns: parseUserns(argv.userns),
  };
}

/** A bind mount as the user wrote it with -v or --mount. */
export interface BindMountFlag {
  source: string;
  destination: string;
  /** ro, rw, and (--mount's options=O1:O2) any other mount option. */
  options: string[];
}

/** `-v HOST:CTR[:ro|rw]` (podman's spelling; HOST absolute: stasis has no named volumes). */
export function parseVolumeFlag(value: string): BindMountFlag {
  const parts = value.split(':');
  const bad = (why: string) => usageError(`-v ${JSON.stringify(value)}: ${why}`, 'write -v HOST:CTR[:OPTS] (OPTS: ro or rw, and U, comma-separated), e.g. -v /srv/data:/data or -v /srv/pg:/var/lib/postgresql:U');
  if (parts.length < 2 || parts.length > 3) throw bad('expected HOST:CTR or HOST:CTR:OPTIONS');
  const [source, destination, options = ''] = parts;
  if (!source.startsWith('/')) throw bad('HOST must be an absolute path (stasis has no named volumes)');
  if (!destination.startsWith('/')) throw bad('CTR must be an absolute path inside the container');
  const opts = options.split(',').filter(Boolean);
  for (const option of opts) {
    if (option !== 'ro' && option !== 'rw' && option !== 'U') throw bad(`unknown option ${JSON.stringify(option)} (stasis knows ro, rw and U)`);
  }
  if (opts.includes('ro') && opts.includes('rw')) throw bad('ro and rw together');
  return { source, destination, options: opts };
}

/**
 * `--mount type=bind,source=S,destination=D[,ro][,options=O1:O2]`, with
 * podman's other spellings (src, dst, target, readonly[=true|false], rw).
 */
export function parseBindMount(value: string): BindMountFlag {
  const bad = (why: string) => usageError(`--mount ${JSON.stringify(value)}: ${why}`, 'write --mount type=bind,source=HOST,destination=CTR[,ro]');
  let type = 'bind';
  let source: string | undefined;
  let destination: string | undefined;
  const options: string[] = [];
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const val = eq < 0 ? undefined : part.slice(eq + 1);
    if (key === 'ro' || key === 'readonly') {
      if (val === undefined || val === 'true' || val === '1') options.push('ro');
      else if (val !== 'false' && val !== '0') throw bad(`${key}=${val}: expected true or false`);
    } else if (key === 'rw' && val === undefined) options.push('rw');
    else if (key === 'U' || key === 'chown') {
      if (val === undefined || val === 'true' || val === '1') options.push('U');
      else if (val !== 'false' && val !== '0') throw bad(`${key}=${val}: expected true or false`);
    }
    else if (val === undefined || key === '') throw bad(`expected key=value pairs, got ${JSON.stringify(part)}`);
    else if (key === 'type') type = val;
    else if (key === 'source' || key === 'src') source = val;
    else if (key === 'destination' || key === 'dst' || key === 'target') destination = val;
    else if (key === 'options') options.push(...val.split(':').filter(Boolean));
    else throw bad(`unknown key ${JSON.stringify(key)} (use type, source, destination, ro, options)`);
  }
  if (type !== 'bind') throw bad(`type=${type}: only type=bind (a host folder) is supported`);
  if (!source || !destination) throw bad('source= and destination= are required');
  if (!destination.startsWith('/')) throw bad('the destination must be an absolute path inside the container');
  return { source, destination, options };
}

/** create and run's volumes: -v and --mount, with HOST absolute and only ro/rw. */
export function volumesFrom(argv: { volume?: unknown; mount?: unknown }): VolumeMount[] {
  const mounts = toArray(argv.mount).map((value) => {
    const parsed = parseBindMount(value);
    if (!parsed.source.startsWith('/')) throw usageError(`--mount ${JSON.stringify(value)}: the source must be an absolute path (stasis has no named volumes)`);
    const other = parsed.options.find((o) => o !== 'ro' && o !== 'rw' && o !== 'U');
    if (other !== undefined) throw usageError(`--mount ${JSON.stringify(value)}: option ${JSON.stringify(other)}: a volume takes ro, rw or U`);
    return parsed;
  });
  return [...toArray(argv.volume).map(parseVolumeFlag), ...mounts].map((m) => ({
    source: m.source,
    destination: m.destination,
    readonly: m.options.includes('ro'),
    ...(m.options.includes('U') ? { chown: true } : {}),
  }));
}

/** Parses `type=T,source=S,options=O1:O2` (the --rootfs-mount flag). */
export function parseMountFlag(flag: string): Omit<MountRecord, 'target'> {
  const fields = new Map<string, string>();
  for (const part of flag.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw usageError(`--rootfs-mount ${JSON.stringify(flag)}: expected key=value pairs, got ${JSON.stringify(part)}`);
    const key = part.slice(0, eq);
    if (!['type', 'source', 'options'].includes(key)) {
      throw usageError(`--rootfs-mount ${JSON.stringify(flag)}: unknown key ${JSON.stringify(key)} (use type, source, options)`);
    }
    fields.set(key, part.slice(eq + 1));
  }
  const type = fields.get('type');
  if (!type) throw usageError(`--rootfs-mount ${JSON.stringify(flag)}: type= is required`);
  const options = fields.get('options');
  return { type, source: fields.get('source') ?? type, options: options ? options.split(':').filter(Boolean) : [] };
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Whether the year, month and day written in an RFC 3339 time name a real date (Date.parse takes 2026-02-31 as 3 March). */
function realDate(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split('-').map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** An RFC 3339 time, or a duration back from now such as 10m or 2h. */
export function parseTimeBound(flag: string, value: string, now = Date.now()): number {
  const duration = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (duration) return now - Number(duration[1]) * UNIT_MS[duration[2]];
  if (/^\d{4}-\d{2}-\d{2}T/.test(value) && realDate(value)) {
    const parsed = Date.parse(value);
    if (!Number.isNaN(parsed)) return parsed;
  }
  throw usageError(`--${flag} ${JSON.stringify(value)}: expected an RFC 3339 time (2026-01-02T15:04:05Z) or a duration like 10m, 2h`);
}

type Rewording = (err: StasisError) => { message?: string; hint?: string; exitCode?: number };

/**
 * The library says what went wrong in its own terms and tags it with a code;
 * the command that knows its flags words it (a promise .catch handler).
 */
export function reword(table: Partial<Record<ErrorCode, Rewording>>): (err: unknown) => never {
  return (err) => {
    const change = err instanceof StasisError && err.code !== undefined ? table[err.code] : undefined;
    if (!change || !(err instanceof StasisError)) throw err;
    const { message, hint, exitCode } = change(err);
    throw new StasisError(message ?? err.message, { exitCode: exitCode ?? err.exitCode, hint: hint ?? err.hint, cause: err, code: err.code, data: { ...err.data } });
  };
}

/** planCreate, with its errors worded for the command line. */
export function planFromFlags(id: string, opts: CreateOptions): ProvisionPlan {
  try {
    return planCreate(id, opts);
  } catch (err) {
    return reword({
      'no-default-rootfs': () => ({
        message: 'create needs --rootfs DIR or --bundle DIR',
        hint: `or build the default rootfs ${defaultRootfs()} with scripts/setup.sh`,
        exitCode: EXIT_USAGE,
      }),
    })(err);
  }
}
