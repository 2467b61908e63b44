import { isAbsolute, posix } from 'node:path';
import { EXIT_USAGE, StasisError, type ErrorCode } from '../../errors.ts';
import { validateId } from '../../state/ids.ts';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { CRIU_OPTION_NAMES, runcCriuFlags } from '../../runtime/criu.ts';
import { FILES, IMAGES_DIR, META_FILE, hasCriuImages, type CheckpointMeta, type CheckpointVolume } from './layout.ts';

// stasis.json, read as untrusted input: every field is checked, and what reaches a
// command line or a path is rebuilt rather than copied. runc restore's own options
// (--pid-file, --console-socket, --work-path, ...) write host paths as root, so the
// runc flags are never taken from the file: they are rebuilt from the recorded CRIU
// options, each of which must be one stasis knows.

/**
 * CRIU options a checkpoint may record, and the runc restore flags that repeat
 * them: runtime/criu.ts's table, and tcp-close (dumped with it, the connections
 * were closed in the images, so a restore needs nothing, and runc restore has
 * no such flag).
 */
export const RECORDED_CRIU_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  ...Object.fromEntries(CRIU_OPTION_NAMES.map((name) => [name, runcCriuFlags([name])])),
  'tcp-close': [],
};

export interface MetaProblem {
  field: string;
  problem: string;
}

/** stasis.json does not hold what a stasis checkpoint's does; every problem is listed. */
export class CheckpointMetaError extends StasisError {
  readonly problems: MetaProblem[];
  constructor(problems: MetaProblem[], file = 'stasis.json') {
    super(`the checkpoint's ${file} cannot be used:\n${problems.map((p) => `  ${p.field}: ${p.problem}`).join('\n')}`, {
      hint: 'the checkpoint is damaged or was altered; take it again',
    });
    this.name = 'CheckpointMetaError';
    this.problems = problems;
  }
}

/** runc restore flags for recorded CRIU options; throws for an option stasis does not know. */
export function restoreArgsFor(criuOptions: readonly string[]): string[] {
  const unknown = criuOptions.filter((option) => !Object.hasOwn(RECORDED_CRIU_OPTIONS, option));
  if (unknown.length > 0) {
    throw new CheckpointMetaError([{ field: 'criuOptions', problem: unknownOptions(unknown) }]);
  }
  return [...new Set(criuOptions.flatMap((option) => RECORDED_CRIU_OPTIONS[option]))];
}

function unknownOptions(unknown: string[]): string {
  return `${unknown.map((o) => JSON.stringify(o)).join(', ')} ${unknown.length > 1 ? 'are not CRIU options' : 'is not a CRIU option'} stasis restores with (it knows ${Object.keys(RECORDED_CRIU_OPTIONS).join(', ')})`;
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const FINGERPRINT = /^sha256:[0-9a-f]{64}$/;
// Printable text without control characters (they would reach a terminal in messages).
const PRINTABLE = /^[^\u0000-\u001f\u007f]*$/;

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks every field of a parsed stasis.json and returns it typed, restoreArgs rebuilt. */
export function validateCheckpointMeta(raw: unknown): CheckpointMeta {
  const problems: MetaProblem[] = [];
  const problem = (field: string, text: string) => problems.push({ field, problem: text });
  if (!isObject(raw)) throw new CheckpointMetaError([{ field: 'the document', problem: 'is not a JSON object' }]);

  const text = (field: string, value: unknown, max = 256): string => {
    if (typeof value !== 'string') problem(field, 'is not a string');
    else if (value.length > max) problem(field, `is longer than ${max} characters`);
    else if (!PRINTABLE.test(value)) problem(field, 'has control characters');
    else return value;
    return '';
  };
  const path = (field: string, value: unknown, opts: { overlayLayer?: boolean } = {}): string => {
    const given = text(field, value, 4096);
    if (given === '') {
      if (value === '') problem(field, 'is empty');
      return '';
    }
    if (!isAbsolute(given)) problem(field, `${JSON.stringify(given)} is not an absolute path`);
    else if (given.split('/').includes('..')) problem(field, `${JSON.stringify(given)} climbs with ".."`);
    // overlayfs takes lowerdir in a comma- and colon-separated option string.
    else if (opts.overlayLayer && /[,:]/.test(given)) problem(field, `${JSON.stringify(given)} has "," or ":", which an overlay layer's path cannot have`);
    else return posix.normalize(given);
    return '';
  };
  const date = (field: string, value: unknown): string => {
    const given = text(field, value, 64);
    if (given !== '' && (!ISO_DATE.test(given) || Number.isNaN(Date.parse(given)))) problem(field, `${JSON.stringify(given)} is not an RFC 3339 time`);
    return given;
  };
  const strings = (field: string, value: unknown, max: number): string[] => {
    if (!Array.isArray(value)) {
      problem(field, 'is not an array');
      return [];
    }
    if (value.length > max) problem(field, `has more than ${max} entries`);
    return value.map((entry, index) => {
      if (typeof entry !== 'string' || entry.includes('\0')) {
        problem(`${field}[${index}]`, 'is not a string');
        return '';
      }
      return entry;
    });
  };

  if (raw.format !== 1) problem('format', `${JSON.stringify(raw.format)} is not a format this stasis reads (1)`);
  let id = '';
  try {
    id = validateId(raw.id);
  } catch (err) {
    problem('id', (err as Error).message);
  }
  const checkpointedAt = date('checkpointedAt', raw.checkpointedAt);
  const runcVersion = text('runcVersion', raw.runcVersion);
  const criuVersion = text('criuVersion', raw.criuVersion);

  let rootfs: CheckpointMeta['rootfs'] = { kind: 'overlay', base: '', fingerprint: '', userBundle: null };
  if (!isObject(raw.rootfs)) problem('rootfs', 'is not an object');
  else {
    const kind = raw.rootfs.kind;
    if (kind !== 'overlay' && kind !== 'bundle') problem('rootfs.kind', `${JSON.stringify(kind)} is neither "overlay" nor "bundle"`);
    const base = path('rootfs.base', raw.rootfs.base, { overlayLayer: kind === 'overlay' });
    const fingerprint = text('rootfs.fingerprint', raw.rootfs.fingerprint, 80);
    if (fingerprint !== '' && !FINGERPRINT.test(fingerprint)) problem('rootfs.fingerprint', `${JSON.stringify(fingerprint)} is not sha256:<64 hex digits>`);
    let userBundle: string | null = null;
    if (kind === 'bundle') {
      if (raw.rootfs.userBundle === null || raw.rootfs.userBundle === undefined) problem('rootfs.userBundle', 'is missing: the checkpoint of a --bundle container records its bundle');
      else userBundle = path('rootfs.userBundle', raw.rootfs.userBundle);
    }
    else if (raw.rootfs.userBundle !== null && raw.rootfs.userBundle !== undefined) problem('rootfs.userBundle', 'is set, but a --rootfs container has no bundle of the user\'s');
    rootfs = { kind: kind === 'bundle' ? 'bundle' : 'overlay', base, fingerprint, userBundle };
    if (raw.rootfs.baseFiles !== undefined) {
      const files = raw.rootfs.baseFiles;
      if (!Array.isArray(files) || files.length > 4096) problem('rootfs.baseFiles', 'is not an array of at most 4096 files');
      else {
        rootfs.baseFiles = files.map((file: unknown, index) => {
          const field = `rootfs.baseFiles[${index}]`;
          if (!isObject(file)) {
            problem(field, 'is not an object');
            return { path: '', size: 0, sha256: '' };
          }
          const size = file.size;
          if (!Number.isSafeInteger(size) || (size as number) < 0) problem(`${field}.size`, 'is not a size');
          const sha256 = text(`${field}.sha256`, file.sha256, 64);
          if (sha256 !== '' && !/^[0-9a-f]{64}$/.test(sha256)) problem(`${field}.sha256`, 'is not 64 hex digits');
          return { path: path(`${field}.path`, file.path), size: size as number, sha256 };
        });
      }
    }
  }

  if (isObject(raw.rootfs) && raw.rootfs.image !== undefined) {
    const image = raw.rootfs.image;
    if (!isObject(image)) problem('rootfs.image', 'is not an object');
    else {
      const digest = text('rootfs.image.digest', image.digest, 80);
      const configDigest = text('rootfs.image.configDigest', image.configDigest, 80);
      const name = text('rootfs.image.name', image.name, 1024);
      if (!FINGERPRINT.test(digest)) problem('rootfs.image.digest', `${JSON.stringify(digest)} is not sha256:<64 hex digits>`);
      if (!FINGERPRINT.test(configDigest)) problem('rootfs.image.configDigest', `${JSON.stringify(configDigest)} is not sha256:<64 hex digits>`);
      if (!PRINTABLE.test(name)) problem('rootfs.image.name', 'is not printable text');
      rootfs.image = { digest, configDigest, name };
    }
  }

  // CRIU options: each known; runc flags rebuilt from them.
  const criuOptions = [...new Set(strings('criuOptions', raw.criuOptions, 16))];
  const unknown = criuOptions.filter((option) => option !== '' && !Object.hasOwn(RECORDED_CRIU_OPTIONS, option));
  if (unknown.length > 0) problem('criuOptions', unknownOptions(unknown));
  const restoreArgs = unknown.length > 0 ? [] : [...new Set(criuOptions.filter(Boolean).flatMap((option) => RECORDED_CRIU_OPTIONS[option]))];
  // The recorded flags are only compared: anything there that the options do not give is a tampered file.
  if (raw.restoreArgs !== undefined) {
    const recorded = strings('restoreArgs', raw.restoreArgs, 16);
    const foreign = recorded.filter((arg) => !restoreArgs.includes(arg));
    if (foreign.length > 0) {
      problem('restoreArgs', `${foreign.map((a) => JSON.stringify(a)).join(' ')} ${foreign.length > 1 ? 'are' : 'is'} not what its CRIU options (${criuOptions.join(', ') || 'none'}) give; stasis never passes runc restore flags from a checkpoint`);
    }
  }

  const preDump = raw.preDump;
  if (typeof preDump !== 'boolean') problem('preDump', 'is not true or false');
  const parentPath = raw.parentPath === null || raw.parentPath === undefined ? null : path('parentPath', raw.parentPath);
  const command = strings('command', raw.command, 4096);

  const labels: Record<string, string> = {};
  if (raw.labels !== undefined) {
    if (!isObject(raw.labels)) problem('labels', 'is not an object');
    else {
      const entries = Object.entries(raw.labels);
      if (entries.length > 1024) problem('labels', 'has more than 1024 labels');
      for (const [key, value] of entries) {
        if (key === '' || key.length > 256 || !PRINTABLE.test(key) || key.includes('=')) problem(`labels[${JSON.stringify(key.slice(0, 40))}]`, 'is not a label name');
        else if (typeof value !== 'string' || value.length > 4096 || value.includes('\0')) problem(`labels.${key}`, 'is not a string');
        else labels[key] = value;
      }
    }
  }

  const volumes: CheckpointVolume[] = [];
  if (raw.volumes !== undefined) {
    if (!Array.isArray(raw.volumes) || raw.volumes.length > 256) problem('volumes', 'is not a list of at most 256 volumes');
    else {
      raw.volumes.forEach((entry: unknown, index: number) => {
        const field = `volumes[${index}]`;
        if (!isObject(entry)) return problem(field, 'is not an object');
        const destination = path(`${field}.destination`, entry.destination);
        const source = path(`${field}.source`, entry.source);
        if (destination !== '' && !destination.startsWith('/')) problem(`${field}.destination`, 'is not an absolute path');
        if (typeof entry.readonly !== 'boolean' || typeof entry.carried !== 'boolean') problem(field, 'readonly or carried is not true or false');
        if (entry.chown !== undefined && typeof entry.chown !== 'boolean') problem(`${field}.chown`, 'is not true or false');
        const archive = entry.archive === null || entry.archive === undefined ? null : typeof entry.archive === 'string' && /^volumes\/\d{1,3}\.tar$/.test(entry.archive) ? entry.archive : '';
        if (archive === '') problem(`${field}.archive`, 'is not volumes/<n>.tar');
        const id = (name: string, value: unknown, max: number): number | undefined => {
          if (value === undefined) return undefined;
          if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
            problem(`${field}.${name}`, 'is out of range');
            return undefined;
          }
          return value;
        };
        const mode = id('mode', entry.mode, 0o7777);
        const uid = id('uid', entry.uid, 0xffffffff);
        const gid = id('gid', entry.gid, 0xffffffff);
        volumes.push({ destination, source, readonly: entry.readonly === true, ...(entry.chown === true ? { chown: true } : {}), carried: entry.carried === true, archive: archive || null, ...(mode === undefined ? {} : { mode }), ...(uid === undefined ? {} : { uid }), ...(gid === undefined ? {} : { gid }) });
      });
    }
  }

  if (problems.length > 0) throw new CheckpointMetaError(problems);
  return {
    format: 1,
    id,
    checkpointedAt,
    runcVersion,
    criuVersion,
    rootfs,
    restoreArgs,
    criuOptions,
    preDump: preDump as boolean,
    parentPath,
    command,
    labels,
    ...(volumes.length > 0 ? { volumes } : {}),
  };
}

export interface BaseRequest {
  /** --rootfs DIR given on restore. */
  rootfs?: string;
  /** --bundle DIR given on restore. */
  bundle?: string;
}

export interface BasePolicy {
  /** The checkpoint was written by this state directory (its recorded paths are ours). */
  trusted: boolean;
  /** Folders whose images a recorded base may be taken from without --rootfs (e.g. the default rootfs's parent). */
  imageRoots: readonly string[];
  /** Resolves symbolic links (default: realpath, or the path itself when it does not exist). */
  realpath?: (path: string) => string;
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync.native(path);
  } catch {
    return path;
  }
}

export type BaseChoice =
  | { kind: 'overlay'; base: string; from: 'flag' | 'checkpoint' }
  | { kind: 'bundle'; bundle: string; from: 'flag' | 'checkpoint' };

/**
 * Where to restore onto, from validated metadata and the user's flags. The
 * recorded base of an untrusted checkpoint is used only read-only (as an overlay
 * layer, from an image folder) and never as a bundle: a bundle's rootfs is
 * written in place, so a checkpoint that says "bundle" about a shared base would
 * have the restored container write into it. Such a restore needs --bundle.
 */
export function chooseRestoreBase(meta: CheckpointMeta, request: BaseRequest, policy: BasePolicy): BaseChoice {
  const usage = (message: string, code: ErrorCode) => new StasisError(message, { exitCode: EXIT_USAGE, code });
  // The checkpoint's base is not usable here: a failure (1), as for a missing base, whatever its kind.
  const noBase = (message: string, code: ErrorCode) => new StasisError(message, { code });
  if (request.rootfs !== undefined && request.bundle !== undefined) throw usage('a rootfs and a bundle cannot both be restored onto', 'base-both');
  // A bundle's changes were written in place, a rootfs container's are in the archive: the two do not mix.
  if (request.rootfs !== undefined && meta.rootfs.kind === 'bundle') {
    throw usage('this checkpoint is of a bundle container: it restores onto a bundle, whose rootfs holds its changes', 'base-kind-bundle');
  }
  if (request.bundle !== undefined && meta.rootfs.kind === 'overlay') {
    throw usage('this checkpoint is of a container on a read-only rootfs: it restores onto a copy of that rootfs, with its writable layer on top', 'base-kind-overlay');
  }
  if (request.rootfs !== undefined) return { kind: 'overlay', base: request.rootfs, from: 'flag' };
  if (request.bundle !== undefined) return { kind: 'bundle', bundle: request.bundle, from: 'flag' };
  if (meta.rootfs.kind === 'bundle') {
    if (!policy.trusted || meta.rootfs.userBundle === null) {
      // A bundle's rootfs is written in place: stasis writes into one only when the user names it.
      throw noBase(`this checkpoint is of a bundle container (its bundle was ${meta.rootfs.userBundle ?? meta.rootfs.base}) and was not written here: the bundle to restore onto must be named`, 'bundle-not-named');
    }
    return { kind: 'bundle', bundle: meta.rootfs.userBundle, from: 'checkpoint' };
  }
  // Symbolic links resolved on both sides, so that a link in an image folder cannot lead out of it.
  const realpath = policy.realpath ?? realpathOrSelf;
  const base = realpath(meta.rootfs.base);
  const inImageRoot = policy.imageRoots.some((root) => {
    const clean = posix.normalize(realpath(root)).replace(/\/+$/, '');
    return base.startsWith(`${clean}/`);
  });
  if (!policy.trusted && !inImageRoot) {
    throw new StasisError(`the checkpoint's base rootfs ${meta.rootfs.base} is not in ${policy.imageRoots.join(' or ') || 'an image folder'}, and the checkpoint was not written here`, {
      code: 'base-outside-images',
      data: { base: meta.rootfs.base },
    });
  }
  return { kind: 'overlay', base, from: 'checkpoint' };
}

/**
 * checkpoint/descriptors.json, which runc reads on restore: one entry per stdio
 * fd of the container's init, and every "pipe:[N]" entry makes CRIU hand its own
 * fd of that number to the restored process. More than the three stdio entries
 * would pass CRIU's other descriptors into the container, so only three are
 * accepted, each a path or an anonymous pipe, socket or anon inode.
 */
export function validateDescriptors(raw: unknown): string[] {
  const problems: MetaProblem[] = [];
  if (!Array.isArray(raw)) throw new CheckpointMetaError([{ field: 'the document', problem: 'is not an array' }], 'checkpoint/descriptors.json');
  if (raw.length !== 3) problems.push({ field: 'the document', problem: `has ${raw.length} entries where a container's stdio has 3` });
  raw.forEach((entry, index) => {
    const fine = typeof entry === 'string' && entry.length <= 4096 && PRINTABLE.test(entry)
      && (/^(pipe|socket|anon_inode):\[?[\w:-]*\]?$/.test(entry) || (isAbsolute(entry) && !entry.split('/').includes('..')));
    if (!fine) problems.push({ field: `[${index}]`, problem: `${JSON.stringify(entry)} is not a stdio descriptor (a path, or pipe:[N])` });
  });
  if (problems.length > 0) throw new CheckpointMetaError(problems, 'checkpoint/descriptors.json');
  return raw as string[];
}

/** The metadata of checkpoint folder `dir`, read as untrusted input (every field checked). */
export function readMeta(dir: string): CheckpointMeta {
  if (!hasCriuImages(dir)) {
    throw new StasisError(`${dir} is not a checkpoint: it has no ${IMAGES_DIR}/${FILES.inventory}`, { code: 'not-a-checkpoint' });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(join(dir, META_FILE), 'utf8'));
  } catch (err) {
    throw new StasisError(`${dir} is not a stasis checkpoint: ${META_FILE} is ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable'}`, { code: 'no-stasis-meta' });
  }
  return validateCheckpointMeta(raw);
}
