import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { StasisError } from '../errors.ts';
import type { MountRecord, VolumeMount } from '../state/store.ts';
import { addVolumesToSpec, checkVolumes } from './volumes.ts';
import type { ProvisionPlan } from './types.ts';
import { applyIdentity, type IdentityOptions } from './identity.ts';
import { applyOverrides, defaultSpec, loadBundleSpec, type OciSpec, type SpecOverrides } from './spec.ts';

export const DEFAULT_ROOTFS = '/var/lib/stasis/rootfs/busybox';

/** An image of the store as a container's base: its unpacked tree and what its config says to run. */
export interface ImageBase {
  /** The reference it was named by, for messages. */
  name: string;
  rootfs: string;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  /** "" when the image names none. */
  workingDir: string;
  user: { uid: number; gid: number; additionalGids?: number[] };
}

export interface CreateOptions extends SpecOverrides {
  bundle?: string;
  rootfs?: string;
  image?: ImageBase;
  labels: Record<string, string>;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  rootfsMounts: Omit<MountRecord, 'target'>[];
  /** -v/--volume and --mount type=bind: host folders bind-mounted in. */
  volumes?: VolumeMount[];
  autoRemove: boolean;
  /** Attached run: which of the caller's own stdio the container uses directly. */
  inheritStdio: 'none' | 'output' | 'all';
  /** --user, --cap-add/--cap-drop, --hostname. */
  identity?: IdentityOptions;
}

export function defaultRootfs(): string {
  return process.env.STASIS_DEFAULT_ROOTFS || DEFAULT_ROOTFS;
}

/** Checks a rootfs image folder and returns its absolute path. */
export function checkRootfsDir(path: string): string {
  const absolute = resolve(path);
  let isDir = false;
  try {
    isDir = statSync(absolute).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new StasisError(`rootfs ${path} is not a directory`, { hint: 'give the folder holding the root filesystem' });
  // overlayfs takes lowerdir in a comma- and colon-separated option string.
  if (/[,:]/.test(absolute)) throw new StasisError(`rootfs ${path}: a path with "," or ":" cannot be an overlay layer`);
  return absolute;
}

/** An OCI bundle used as runc would: its spec, and its rootfs as the container's base. */
export function bundleBase(bundle: string): { rootfs: ProvisionPlan['rootfs']; spec: OciSpec } {
  const bundleDir = resolve(bundle);
  const { spec, rootfs } = loadBundleSpec(bundleDir);
  return { spec, rootfs: { kind: 'bundle', base: rootfs, userBundle: bundleDir } };
}

/**
 * Everything is checked here, before any side effect. Combinations of
 * options are the command layer's to refuse (it knows the flags' names).
 */
export function planCreate(id: string, opts: CreateOptions): ProvisionPlan {
  if (opts.stdin !== undefined) {
    try {
      accessSync(opts.stdin, constants.R_OK);
    } catch {
      throw new StasisError(`cannot read ${opts.stdin}, the file given for the container's stdin`);
    }
  }
  for (const [stream, file] of [['stdout', opts.stdout], ['stderr', opts.stderr]] as const) {
    if (file !== undefined && !existsSync(dirname(resolve(file)))) {
      throw new StasisError(`the folder of ${file}, the file given for the container's ${stream}, does not exist`);
    }
  }
  let plan: ProvisionPlan['rootfs'];
  let spec: OciSpec;
  if (opts.image !== undefined) {
    ({ spec, rootfs: plan } = imagePlan(id, opts.image, opts.args ?? []));
    // The command line's words replaced Cmd already (after the Entrypoint).
    applyOverrides(spec, { ...opts, args: undefined });
    return finishPlan(spec, plan, opts);
  }
  if (opts.bundle !== undefined) {
    ({ spec, rootfs: plan } = bundleBase(opts.bundle));
  } else {
    const rootfs = opts.rootfs ?? defaultRootfs();
    if (opts.rootfs === undefined && !existsSync(rootfs)) {
      throw new StasisError(`no rootfs or bundle was given, and the default rootfs ${rootfs} does not exist`, { code: 'no-default-rootfs' });
    }
    spec = defaultSpec(id, opts.args ?? []);
    plan = { kind: 'overlay', base: checkRootfsDir(rootfs), userBundle: null };
  }
  applyOverrides(spec, opts);
  return finishPlan(spec, plan, opts);
}

function finishPlan(spec: OciSpec, plan: ProvisionPlan['rootfs'], opts: CreateOptions): ProvisionPlan {
  const rootfsMounts = opts.rootfsMounts;
  const volumes = checkVolumes(opts.volumes ?? []);
  addVolumesToSpec(spec, volumes);
  // --user names are looked up in the files the container will see (a bundle's rootfs mounts are not made yet).
  if (opts.identity) applyIdentity(spec, plan.base, opts.identity);
  return {
    spec,
    rootfs: plan,
    rootfsMounts,
    volumes,
    stdio: {
      stdin: opts.stdin ? resolve(opts.stdin) : null,
      stdout: opts.stdout ? resolve(opts.stdout) : null,
      stderr: opts.stderr ? resolve(opts.stderr) : null,
      inherit: opts.inheritStdio,
    },
    labels: opts.labels,
    autoRemove: opts.autoRemove,
  };
}

/**
 * An image's config used as podman uses it: the command is Entrypoint then
 * Cmd, the command line's words replacing Cmd; Env over the defaults;
 * WorkingDir and User as the image says (flags override them afterwards).
 */
export function imagePlan(id: string, image: ImageBase, commandLine: string[]): { spec: OciSpec; rootfs: ProvisionPlan['rootfs'] } {
  const args = [...image.entrypoint, ...(commandLine.length > 0 ? commandLine : image.cmd)];
  if (args.length === 0) {
    throw new StasisError(`the image ${image.name} names no command (no Entrypoint or Cmd)`, { hint: 'give the command after the container ID', code: 'image-no-command' });
  }
  const spec = defaultSpec(id, args);
  const process = spec.process!;
  const env = new Map((process.env ?? []).map((entry) => [entry.split('=')[0], entry]));
  for (const entry of image.env) env.set(entry.split('=')[0], entry);
  process.env = [...env.values()];
  if (image.workingDir !== '') process.cwd = image.workingDir;
  process.user = image.user.additionalGids ? { ...image.user, additionalGids: [...image.user.additionalGids] } : { uid: image.user.uid, gid: image.user.gid };
  return { spec, rootfs: { kind: 'overlay', base: checkRootfsDir(image.rootfs), userBundle: null } };
}
