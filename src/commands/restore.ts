import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isDebug } from '../log.ts';
import { EXIT_USAGE, usageError } from '../errors.ts';
import type { UserMount } from '../checkpoint/format/engine-spec.ts';
import { TRUST_AREAS, type Trust, type TrustArea } from '../checkpoint/policy/trust.ts';
import { restoreContainer } from '../checkpoint/restore.ts';
import type { CheckpointSource } from '../checkpoint/source.ts';
import { criuStatsLines } from '../checkpoint/criu/stats.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { defaultCheckpointDir, imageStoreFrom, runtimeFrom, type GlobalArgs } from './context.ts';
import { defineCommand } from './define.ts';
import { criuOptionNames, type CriuOptions } from '../runtime/criu.ts';
import { allContainers, checkSelection, eachContainer, latestContainer } from './select.ts';
import { commandWords, criuFlags, criuOptionsFrom, idArg, parseBindMount, parseKeyValues, parseMountFlag, parseVolumeFlag, reword, toArray, type CreateFlags, type ImageFlags } from './flags.ts';

const CRIU_GROUP = "CRIU options (stasis checkpoints record them; give them for other engines' checkpoints):";

export const command = defineCommand({
  command: 'restore [id]',
  describe: "restore a container from a checkpoint (default: ID's latest); same as create --checkpoint",
  positionals: {
    id: { type: 'string', describe: 'container ID (a container a checkpoint stopped is restored in place); with --checkpoint, default: the ID recorded in the checkpoint' },
  },
  options: {
    all: { alias: 'a', type: 'boolean', describe: 'restore every container a checkpoint stopped, in place, one after the other; each is reported, and the command fails (1) if any failed' },
    latest: { alias: 'l', type: 'boolean', describe: 'restore the most recently created container (in place, from its latest checkpoint)' },
    checkpoint: { alias: ['import', 'i'], type: 'string', requiresArg: true, describe: 'checkpoint folder, archive (- reads it from stdin) or image oci:DIR[:NAME] | oci-archive:FILE[:NAME] | docker://HOST[:PORT]/NAME[:TAG|@DIGEST], of stasis, podman, CRI-O or containerd (default: the latest checkpoint of ID)' },
    image: { type: 'string', requiresArg: true, describe: "restore onto this image (oci:, oci-archive:, docker:// or a name in `stasis images`), pulled into the image store (default: the checkpoint's base image, when the store has it)" },
    'tls-verify': { type: 'boolean', describe: 'with docker:// references: talk to the registry over TLS, checked (--tls-verify=false: plain HTTP; default: plain HTTP only for localhost and 127.0.0.0/8)' },
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
    ...criuFlags(CRIU_GROUP),
  },
  examples: [
    ['$0 restore web', 'bring back the container a checkpoint stopped'],
    ['$0 restore web2 --checkpoint web.tar.zst --rootfs /srv/web', 'restore an archive under another ID'],
    ['$0 restore --import ctr.tar.zst --rootfs /srv/busybox --trust-checkpoint capabilities', "a podman export, under the name podman gave it"],
    ['$0 checkpoint web --export - | $0 --state-dir /run/other restore web --checkpoint - --rootfs /srv/web', 'through a pipe'],
    ['$0 restore web2 --checkpoint docker://127.0.0.1:5000/web-ckpt:1', 'pull a checkpoint image; its base image comes from the image store'],
  ],
  handler: async (argv) => {
    if (argv.id !== undefined && argv.name !== undefined && argv.id !== argv.name) {
      throw usageError(`two IDs given: ${argv.id} and --name ${argv.name}`, 'give the ID once, as the argument or with --name');
    }
    const given = argv.id ?? argv.name;
    const runtime = () => runtimeFrom(argv);
    if (argv.all || argv.latest) {
      checkSelection('restore', { id: given, all: argv.all, latest: argv.latest }, '');
      const single = ([['checkpoint', argv.checkpoint], ['rootfs', argv.rootfs], ['bundle', argv.bundle]] as const).find(([, value]) => value !== undefined);
      const many = argv.all ? '--all' : '--latest';
      if (single) throw usageError(`${many} and --${single[0]} cannot be used together: ${many} restores containers in place, from their latest checkpoints`);
    }
    if (argv.latest) return restoreFromFlags(runtime(), await latestContainer(runtime()), argv);
    if (argv.all) {
      const ids = await allContainers(runtime(), (c) => c.status === 'stopped' && c.checkpointed);
      const { results, failed } = await eachContainer('restore', ids, async (id) => {
        const result = await restoreOne(runtime(), id, argv);
        if (!isJson()) printLine(result.id);
        return result;
      });
      if (isJson()) printJson(results);
      if (failed) throw failed;
      return;
    }
    if (given === undefined && argv.checkpoint === undefined) {
      throw usageError('restore needs the ID of a container a checkpoint stopped, or --checkpoint PATH', 'stasis restore ID, stasis restore [ID] --checkpoint PATH, or stasis restore --all | --latest');
    }
    await restoreFromFlags(runtime(), given === undefined ? undefined : idArg(given), argv);
  },
});

type RestoreFlags = CreateFlags & ImageFlags & GlobalArgs & {
  cmd?: string[];
  ignoreVolumes?: boolean;
  '--'?: string[];
  mount?: string[];
  trustCheckpoint?: string[];
  printStats?: boolean;
  tcpClose?: boolean;
} & CriuOptions;

/** The checkpoint flag as the library takes it: `-` is the archive on stdin. */
function checkpointSource(value: string | undefined): CheckpointSource | undefined {
  if (value !== '-') return value;
  if (process.stdin.isTTY) throw usageError('--checkpoint -: stdin is a terminal, not an archive', 'pipe the archive in, e.g. stasis checkpoint ID --export - | stasis restore ID --checkpoint -');
  return { stream: process.stdin, name: 'stdin' };
}

/** Shared by `restore` and `create --checkpoint`: restores, then prints the container's ID or its JSON. */
export async function restoreFromFlags(runtime: Runtime, id: string | undefined, argv: RestoreFlags): Promise<void> {
  const result = await restoreOne(runtime, id, argv);
  if (isJson()) printJson(result);
  else printLine(result.id);
}

/** One restore; create's other options do not apply to a restore. Returns what --json shows. */
async function restoreOne(runtime: Runtime, id: string | undefined, argv: RestoreFlags) {
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
  const criuOptions = criuOptionNames(criuOptionsFrom(argv));
  if (argv.image !== undefined && base !== undefined) throw usageError(`--image and ${argv.rootfs !== undefined ? '--rootfs' : '--bundle'} cannot be used together`);
  const registryCheckpoint = argv.checkpoint?.startsWith('docker://') === true;
  if (argv.tlsVerify !== undefined && !registryCheckpoint && !argv.image?.startsWith('docker://')) throw usageError('--tls-verify is for docker:// references');
  let checkpoint = checkpointSource(argv.checkpoint);
  const shownId = id ?? 'the container';
  const progress = await spinner(`restoring ${shownId}`);
  let pulled: string | null = null;
  try {
    if (registryCheckpoint) {
      // The checkpoint image is copied into a layout under the checkpoint directory, read as oci:, then removed.
      const { parseDockerRef } = await import('../image/ref.ts');
      const { pullToLayout } = await import('../image/skopeo.ts');
      let ref;
      try {
        ref = parseDockerRef(argv.checkpoint!);
      } catch (err) {
        throw usageError(`--checkpoint ${(err as Error).message}`);
      }
      const parent = resolve(argv.checkpointDir ?? defaultCheckpointDir());
      mkdirSync(parent, { recursive: true });
      pulled = mkdtempSync(join(parent, '.pull-'));
      progress.step(`pulling ${argv.checkpoint}`);
      await pullToLayout(ref, join(pulled, 'layout'), 'checkpoint', { tlsVerify: argv.tlsVerify });
      checkpoint = `oci:${join(pulled, 'layout')}:checkpoint`;
    }
    const baseImage = async (want: { digest: string | null; id: string | null; name: string | null }): Promise<string | null> => {
      const store = await imageStoreFrom(argv);
      if (argv.image !== undefined) return (await store.pull(argv.image, { tlsVerify: argv.tlsVerify, progress: (step) => progress.step(`${shownId}: ${step}`) })).rootfs;
      for (const key of [want.digest, want.id]) {
        const found = key === null ? null : store.find(key);
        if (found) return found.rootfs;
      }
      // By name only when nothing says which image it was: a name may have moved to another image since.
      if (want.name !== null && want.id === null && want.digest === null) return store.find(want.name)?.rootfs ?? null;
      return null;
    };
    const result = await restoreContainer(
      runtime,
      id,
      { checkpoint, base, rootfsMounts, userMounts, ignoreVolumes: argv.ignoreVolumes === true, trust, criuOptions, tcpClose: argv.tcpClose === true, labels: argv.label ? parseKeyValues('label', argv.label) : undefined, baseImage, from: registryCheckpoint ? argv.checkpoint : undefined },
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
      'base-missing-bundle': () => ({ hint: 'copy it here, or name a copy with --bundle DIR' }),
      'mounts-need-bundle': () => ({
        message: "--rootfs-mount mounts onto a bundle's rootfs: this checkpoint is of a --rootfs container",
        hint: 'its writable layer is carried in the checkpoint and restored into a layer of its own',
        exitCode: EXIT_USAGE,
      }),
      'base-differs': () => ({ hint: 'restore onto the image the container ran on, or an exact copy of it (--rootfs DIR)' }),
      'base-both': () => ({ message: '--bundle and --rootfs cannot be used together' }),
      'bundle-not-named': () => ({ hint: 'name the bundle to restore onto with --bundle DIR' }),
      'base-outside-images': (err) => ({ hint: `name the base to restore onto with --rootfs DIR (e.g. --rootfs ${JSON.stringify(err.data.base ?? 'DIR')} if that is the image it ran on)` }),
      'foreign-needs-rootfs': () => ({ hint: "name the image with --image REF (e.g. docker://HOST/NAME:TAG), or a folder holding its root filesystem with --rootfs DIR (podman image mount IMAGE prints one)" }),
      'base-image-missing': () => ({ hint: 'name it with --image REF (e.g. the docker:// reference it was pulled as), or a copy of its tree with --rootfs DIR' }),
      'foreign-bundle': () => ({ hint: "restore it with --rootfs DIR, a folder holding the image's root filesystem" }),
    }));
    progress.stop();
    printWarnings(result.warnings);
    if (argv.printStats && !isJson()) process.stderr.write(criuStatsLines('restore', result.criu, result.timingsMs.total).map((line) => `${line}\n`).join(''));
    return { ...result.container, checkpoint: result.checkpoint, inPlace: result.inPlace, trusted: result.trusted, engine: result.engine, warnings: result.warnings, timingsMs: result.timingsMs, criu: result.criu };
  } finally {
    progress.stop();
    if (pulled !== null) rmSync(pulled, { recursive: true, force: true });
  }
}

/**
 * The policy's routine replacements of a checkpoint's security settings
 * (noNewPrivileges, seccomp, masked and read-only paths...), which every
 * checkpoint from another engine meets: what each warning replaced, or null
 * for a warning of another kind.
 */
export function policyReplacement(warning: string): string | null {
  const match = /^the checkpoint's (?:spec turns (noNewPrivileges) off|spec has no linux\.(\w+);|linux\.(\w+) (?:leaves out|is not used)|process\.(\w+) .* is not used; the policy's is)/.exec(warning);
  return match === null ? null : match.slice(1).find((field) => field !== undefined) ?? null;
}

/** A restore's warnings: the policy's routine replacements in one line (each under --debug), the others each on its own. */
function printWarnings(warnings: string[]): void {
  const replaced = warnings.map(policyReplacement);
  const fields = [...new Set(replaced.filter((field) => field !== null))];
  if (fields.length > 0) {
    process.stderr.write(`stasis: warning: stasis's policy replaced the checkpoint's ${fields.join(', ')} (details: --debug, or stasis checkpoint-inspect PATH)\n`);
    if (isDebug()) for (const [at, warning] of warnings.entries()) if (replaced[at] !== null) process.stderr.write(`stasis: debug: ${warning}\n`);
  }
  for (const [at, warning] of warnings.entries()) if (replaced[at] === null) process.stderr.write(`stasis: warning: ${warning}\n`);
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
  const parsed = noChownOnRestore(parseBindMount(flag), `--mount ${flag}`);
  return { source: resolve(parsed.source), destination: parsed.destination, options: parsed.options.length > 0 ? parsed.options : undefined };
}

/** U belongs to the container (given on create, kept in its checkpoints), not to one restore. */
function noChownOnRestore<T extends { options: string[] }>(parsed: T, spelled: string): T {
  if (parsed.options.includes('U')) {
    throw usageError(`${spelled}: U is given when the container is created, and its checkpoints keep it`, 'a volume created with :U follows the container\'s user namespace range on every restore; leave U out here');
  }
  return parsed;
}

/** -v HOST:CTR[:ro] on restore or migrate: a grant, as --mount. */
export function parseVolumeGrant(flag: string): UserMount {
  const parsed = noChownOnRestore(parseVolumeFlag(flag), `-v ${flag}`);
  return { source: parsed.source, destination: parsed.destination, options: parsed.options.length > 0 ? parsed.options : undefined };
}
