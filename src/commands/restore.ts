import { resolve } from 'node:path';
import { EXIT_USAGE, usageError } from '../errors.ts';
import type { UserMount } from '../checkpoint/format/engine-spec.ts';
import { TRUST_AREAS, type Trust, type TrustArea } from '../checkpoint/policy/trust.ts';
import { restoreContainer } from '../checkpoint/restore.ts';
import type { CheckpointSource } from '../checkpoint/source.ts';
import { criuStatsLines } from '../checkpoint/criu/stats.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { commandWords, idArg, parseBindMount, parseKeyValues, parseMountFlag, parseVolumeFlag, reword, toArray, type CreateFlags } from './flags.ts';

const CRIU_GROUP = 'CRIU options:';

export const command = defineCommand({
  command: 'restore [id]',
  describe: "restore a container from a checkpoint (default: ID's latest); same as create --checkpoint",
  positionals: {
    id: { type: 'string', describe: 'container ID (a container a checkpoint stopped is restored in place); with --checkpoint, default: the ID recorded in the checkpoint' },
  },
  options: {
    checkpoint: { alias: 'import', type: 'string', requiresArg: true, describe: 'checkpoint folder, archive (- reads it from stdin) or image oci:DIR[:NAME] | oci-archive:FILE[:NAME], of stasis, podman, CRI-O or containerd (default: the latest checkpoint of ID)' },
    name: { alias: 'n', type: 'string', requiresArg: true, describe: 'the ID to restore under (podman\'s spelling of the ID argument)' },
    rootfs: { type: 'string', requiresArg: true, describe: "restore onto this copy of the base rootfs (default: the checkpoint's; another engine's checkpoint needs it)" },
    bundle: { type: 'string', requiresArg: true, describe: "restore onto this bundle's rootfs, written in place" },
    'rootfs-mount': { type: 'string', requiresArg: true, coerce: toArray, describe: "mount type=T,source=S,options=O1:O2 on the bundle's rootfs first (repeatable; in place: the container's own)" },
    label: { type: 'string', requiresArg: true, coerce: toArray, describe: "labels K=V (default: the checkpointed container's)" },
    mount: { type: 'string', requiresArg: true, coerce: toArray, describe: 'grant a checkpoint from elsewhere a bind mount: type=bind,source=DIR,destination=PATH[,options=O1:O2] (repeatable; the source is yours)' },
    volume: { alias: 'v', type: 'string', requiresArg: true, coerce: toArray, describe: "map the checkpoint's volume on CTR to the host folder HOST: HOST:CTR[:ro] (repeatable; carried contents go into HOST, which must be new or empty)" },
    'ignore-volumes': { type: 'boolean', describe: "use the volumes' host folders as they are, even where the checkpoint carries their contents" },
    'trust-checkpoint': { type: 'string', requiresArg: true, coerce: toArray, describe: `grant a checkpoint from elsewhere what it asks beyond stasis's policy, by area: ${TRUST_AREAS.join(', ')}, or all (repeatable)` },
    'print-stats': { type: 'boolean', describe: "print CRIU's restore statistics on stderr (with --json: in the JSON only)" },
    keep: { type: 'boolean', describe: "keep CRIU's restore log and statistics (stasis always does; accepted for podman's sake)" },
    'tcp-close': { type: 'boolean', describe: 'CRIU: restore established TCP connections closed', group: CRIU_GROUP },
    'tcp-established': { type: 'boolean', describe: 'CRIU: restore established TCP connections (recorded by stasis checkpoints; for other engines\' give it)', group: CRIU_GROUP },
    'ext-unix-sk': { type: 'boolean', describe: 'CRIU: external unix sockets (as above)', group: CRIU_GROUP },
    'shell-job': { type: 'boolean', describe: 'CRIU: a shell job (as above)', group: CRIU_GROUP },
    'file-locks': { type: 'boolean', describe: 'CRIU: file locks (as above)', group: CRIU_GROUP },
  },
  examples: [
    ['$0 restore web', 'bring back the container a checkpoint stopped'],
    ['$0 restore web2 --checkpoint web.tar.zst --rootfs /srv/web', 'restore an archive under another ID'],
    ['$0 restore --import ctr.tar.zst --rootfs /srv/busybox --trust-checkpoint capabilities', "a podman export, under the name podman gave it"],
    ['$0 checkpoint web --export - | $0 --state-dir /run/other restore web --checkpoint - --rootfs /srv/web', 'through a pipe'],
  ],
  handler: async (argv) => {
    if (argv.id !== undefined && argv.name !== undefined && argv.id !== argv.name) {
      throw usageError(`two IDs given: ${argv.id} and --name ${argv.name}`, 'give the ID once, as the argument or with --name');
    }
    const given = argv.id ?? argv.name;
    if (given === undefined && argv.checkpoint === undefined) {
      throw usageError('restore needs the ID of a container a checkpoint stopped, or --checkpoint PATH', 'stasis restore ID, or stasis restore [ID] --checkpoint PATH');
    }
    await restoreFromFlags(runtimeFrom(argv), given === undefined ? undefined : idArg(given), argv);
  },
});

type RestoreFlags = CreateFlags & {
  cmd?: string[];
  ignoreVolumes?: boolean;
  '--'?: string[];
  mount?: string[];
  trustCheckpoint?: string[];
  printStats?: boolean;
  tcpClose?: boolean;
  tcpEstablished?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  fileLocks?: boolean;
};

/** The checkpoint flag as the library takes it: `-` is the archive on stdin. */
function checkpointSource(value: string | undefined): CheckpointSource | undefined {
  if (value !== '-') return value;
  if (process.stdin.isTTY) throw usageError('--checkpoint -: stdin is a terminal, not an archive', 'pipe the archive in, e.g. stasis checkpoint ID --export - | stasis restore ID --checkpoint -');
  return { stream: process.stdin, name: 'stdin' };
}

/** Shared by `restore` and `create --checkpoint`: create's other options do not apply to a restore. */
export async function restoreFromFlags(runtime: Runtime, id: string | undefined, argv: RestoreFlags): Promise<void> {
  const ignored = (['tty', 'env', 'cwd', 'memory', 'pidsLimit', 'stdin', 'stdout', 'stderr', 'user', 'hostname', 'userns'] as const).filter((key) => argv[key] !== undefined);
  const command = commandWords(argv).length > 0;
  const capFlags = (['cap-add', 'cap-drop'] as const).filter((flag) => toArray((argv as Record<string, unknown>)[flag]).length > 0);
  if (ignored.length > 0 || capFlags.length > 0 || command) {
    const names = [...ignored.map((key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`), ...capFlags.map((flag) => `--${flag}`)];
    throw usageError(`${[...names, ...(command ? ['a command'] : [])].join(', ')} cannot be used with a restore: the checkpoint's own spec is restored`);
  }
  if (argv.rootfs !== undefined && argv.bundle !== undefined) throw usageError('--bundle and --rootfs cannot be used together');
  const base = argv.rootfs !== undefined ? { kind: 'overlay' as const, dir: argv.rootfs } : argv.bundle !== undefined ? { kind: 'bundle' as const, dir: argv.bundle } : undefined;
  // yargs applies coerce to a dashed option's own key, not to its camel-case copy.
  const rootfsMounts = toArray(argv.rootfsMount).map(parseMountFlag);
  const userMounts = [...toArray(argv.volume).map(parseVolumeGrant), ...toArray(argv.mount).map(parseBindMountFlag)];
  const trust = parseTrust(toArray(argv.trustCheckpoint));
  const criuOptions = ([['tcpEstablished', 'tcp-established'], ['extUnixSk', 'ext-unix-sk'], ['shellJob', 'shell-job'], ['fileLocks', 'file-locks']] as const)
    .filter(([key]) => argv[key] === true)
    .map(([, option]) => option);
  const checkpoint = checkpointSource(argv.checkpoint);
  const shownId = id ?? 'the container';
  const progress = await spinner(`restoring ${shownId}`);
  try {
    const result = await restoreContainer(
      runtime,
      id,
      { checkpoint, base, rootfsMounts, userMounts, ignoreVolumes: argv.ignoreVolumes === true, trust, criuOptions, tcpClose: argv.tcpClose === true, labels: argv.label ? parseKeyValues('label', argv.label) : undefined },
      (step) => progress.step(`${shownId}: ${step}`),
    ).catch(reword({
      'no-checkpoint': () => ({ hint: 'name one with --checkpoint PATH' }),
      'no-id': () => ({ message: 'restore needs the ID of a container a checkpoint stopped, or --checkpoint PATH' }),
      duplicate: (err) => ({ hint: id === undefined ? 'the checkpoint names that ID: restore it under another with --name ID, or remove the container first' : err.hint }),
      'base-kind-bundle': () => ({
        message: 'this checkpoint is of a --bundle container: restore it onto a bundle with --bundle DIR',
        hint: 'its rootfs changes were written in place, so the checkpoint does not carry them',
      }),
      'base-kind-overlay': () => ({
        message: 'this checkpoint is of a --rootfs container: restore it onto a copy of its base with --rootfs DIR',
        hint: 'the checkpoint carries its writable layer, which goes on top of that base',
      }),
      'base-missing-overlay': () => ({ hint: 'copy it here, or name a copy with --rootfs DIR' }),
      'base-missing-bundle': () => ({ hint: 'copy it here, or name a copy with --rootfs DIR or --bundle DIR' }),
      'mounts-need-bundle': () => ({
        message: "--rootfs-mount mounts onto a bundle's rootfs: this checkpoint is of a --rootfs container",
        hint: 'its writable layer is carried in the checkpoint and restored into a layer of its own',
        exitCode: EXIT_USAGE,
      }),
      'base-differs': () => ({ hint: 'restore onto the image the container ran on, or an exact copy of it (--rootfs DIR)' }),
      'base-both': () => ({ message: '--bundle and --rootfs cannot be used together' }),
      'bundle-not-named': () => ({ hint: 'name the bundle to restore onto with --bundle DIR' }),
      'base-outside-images': (err) => ({ hint: `name the base to restore onto with --rootfs DIR (e.g. --rootfs ${err.message.split(' ')[4]} if that is the image it ran on)` }),
      'foreign-needs-rootfs': () => ({ hint: "name a folder holding that image's root filesystem with --rootfs DIR (podman image mount IMAGE prints one)" }),
      'foreign-bundle': () => ({ hint: "restore it with --rootfs DIR, a folder holding the image's root filesystem" }),
    }));
    progress.stop();
    for (const warning of result.warnings) process.stderr.write(`stasis: warning: ${warning}\n`);
    if (argv.printStats && !isJson()) process.stderr.write(criuStatsLines('restore', result.criu, result.timingsMs.total).map((line) => `${line}\n`).join(''));
    if (isJson()) {
      printJson({ ...result.container, checkpoint: result.checkpoint, inPlace: result.inPlace, trusted: result.trusted, engine: result.engine, warnings: result.warnings, timingsMs: result.timingsMs, criu: result.criu });
    } else printLine(result.container.id);
  } finally {
    progress.stop();
  }
}

/** `--trust-checkpoint AREA` (repeatable) or `all`. */
export function parseTrust(values: string[]): Trust | undefined {
  if (values.length === 0) return undefined;
  if (values.includes('all')) return 'all';
  for (const value of values) {
    if (!(TRUST_AREAS as readonly string[]).includes(value)) throw usageError(`--trust-checkpoint ${JSON.stringify(value)}: not an area`, `areas: ${TRUST_AREAS.join(', ')}, or all`);
  }
  return values as TrustArea[];
}

/** A bind mount granted on restore or migrate (--mount or -v): the source is the user's, made absolute. */
export function parseBindMountFlag(flag: string): UserMount {
  const parsed = parseBindMount(flag);
  return { source: resolve(parsed.source), destination: parsed.destination, options: parsed.options.length > 0 ? parsed.options : undefined };
}

/** -v HOST:CTR[:ro] on restore or migrate: a grant, as --mount. */
export function parseVolumeGrant(flag: string): UserMount {
  const parsed = parseVolumeFlag(flag);
  return { source: parsed.source, destination: parsed.destination, options: parsed.options.length > 0 ? parsed.options : undefined };
}
