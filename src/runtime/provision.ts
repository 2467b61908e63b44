import { closeSync, copyFileSync, lchownSync, lstatSync, mkdirSync, readdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { fnv1a } from '../state/hash.ts';
import type { ContainerRecord, MountRecord } from '../state/store.ts';
import type { RuntimeContext } from './context.ts';
import { isMounted, mount, overlayMount, unmountAll } from './mounts.ts';
import { withLoopbackHook, withoutLoopbackHook } from './network.ts';
import { ASIDE, putBack, setAside, teardown } from './cleanup.ts';
import type { ContainerInfo, ProvisionPlan, StdioPlan } from './types.ts';
import { viewOf } from './view.ts';
import { bestEffort } from '../log.ts';
import { type IdMapping, allocateRange, AUTO_SIZE, mappedRoot, openPathTo, setUserns, ownTree, shiftedBase, shiftTree, USERNS_ANNOTATION, USERNS_LAYER_ANNOTATION } from './userns.ts';
import type { OciSpec } from './spec.ts';

// Bringing a container up (a new one, or one restored from a checkpoint) and
// undoing that when a step fails: claim the ID, write the record, mount the
// rootfs, write config.json, start conmon (which runs runc create/restore).

/** At most this many exit hooks (each a short Node process) run at once. */
const EXIT_HOOK_SLOTS = 4;


/**
 * Claims the ID and provisions the container, returning its state. `replace`
 * is restore's decision to restore in place: the record of the container a
 * checkpoint stopped, which must still be that one (the same incarnation,
 * stopped by its checkpoint) once the lock is held.
 */
export async function provisionContainer(
  ctx: RuntimeContext,
  id: string,
  plan: ProvisionPlan,
  opts: { replace?: ContainerRecord } = {},
): Promise<ContainerInfo> {
  const { store } = ctx;
  store.ensure();
  const lock = await store.lock(id);
  try {
    if (!store.claim(id)) {
      const existing = store.read(id);
      if (existing !== null && opts.replace !== undefined) {
        if (existing.instance !== opts.replace.instance || !existing.checkpointedStop || viewOf(store, existing).status !== 'stopped') {
          throw new StasisError(`container ${id} changed while it was being restored`, { hint: `look at it (stasis info ${id}), then restore again` });
        }
        return await reprovision(ctx, existing, plan);
      }
      throw new StasisError(`container ${id} already exists`, {
        hint: `choose another ID, or remove it first with \`stasis delete -f ${id}\``,
      });
    }
    if (opts.replace !== undefined) {
      store.remove(id);
      throw new StasisError(`container ${id} was removed while it was being restored in place`, { hint: `restore it under an ID from its checkpoint: stasis restore ${id} --checkpoint DIR` });
    }
    try {
      return await provision(ctx, id, plan, null);
    } catch (err) {
      store.remove(id);
      throw err;
    }
  } finally {
    await lock.release();
  }
}

/**
 * Restore in place: the old writable layer is kept aside until the new
 * container runs, or kept mounted as it is when restore decided so
 * (plan.restore.keepLayer: the layer is the one the checkpoint carries).
 */
async function reprovision(ctx: RuntimeContext, previous: ContainerRecord, plan: ProvisionPlan): Promise<ContainerInfo> {
  const dir = ctx.store.containerDir(previous.id);
  const keepLayer = plan.restore?.keepLayer === true;
  await ctx.runc.forceDelete(previous.id);
  if (!keepLayer) await unmountAll(ctx.runner, previous.mounts);
  setAside(ctx, previous, { keepLayer });
  // A bundle container restored in place gets its --rootfs-mount mounts back.
  const rootfsMounts = plan.rootfs.kind === 'bundle' && plan.rootfsMounts.length === 0
    ? previous.mounts.map(({ type, source, options }) => ({ type, source, options }))
    : plan.rootfsMounts;
  try {
    const info = await provision(ctx, previous.id, { ...plan, rootfsMounts }, previous);
    rmSync(join(dir, ASIDE), { recursive: true, force: true });
    return info;
  } catch (err) {
    putBack(ctx, previous.id);
    throw err;
  }
}

function newRecord(id: string, dir: string, plan: ProvisionPlan, previous: ContainerRecord | null): ContainerRecord {
  const { spec, stdio } = plan;
  return {
    id,
    instance: `${Date.now().toString(36)}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
    status: 'creating',
    pid: null,
    bundle: dir,
    createdAt: previous?.createdAt ?? plan.restore?.createdAt ?? new Date().toISOString(),
    command: spec.process?.args ?? [],
    labels: plan.labels,
    restoredFrom: plan.restore?.from ?? null,
    exit: null,
    rootfs: plan.rootfs,
    mounts: [],
    volumes: plan.volumes ?? [],
    stdio: { mode: stdio.inherit !== 'none' || stdio.stdin || stdio.stdout || stdio.stderr ? 'passthrough' : 'log', stdin: stdio.stdin, stdout: stdio.stdout, stderr: stdio.stderr },
    tty: spec.process?.terminal === true,
    autoRemove: plan.autoRemove,
    lastCheckpoint: previous?.lastCheckpoint ?? null,
    checkpointing: false,
    checkpointedStop: false,
  };
}

async function provision(ctx: RuntimeContext, id: string, plan: ProvisionPlan, previous: ContainerRecord | null): Promise<ContainerInfo> {
  const { store, journal } = ctx;
  const dir = store.containerDir(id);
  const spec = plan.spec;
  const record = newRecord(id, dir, plan, previous);
  // Written before any mount so that a crash at any later point leaves a
  // record saying what to undo (delete -f reads record.mounts).
  store.write(record);
  const stdioFds: number[] = [];
  let userRoot: ReturnType<typeof mappedRoot> = null;
  let lentImages: string | null = null;
  let undoOwners = () => undefined as void;
  try {
    await plan.restore?.prepare?.(dir);
    // Another engine's log goes first; in place, the container's own log goes on.
    if (plan.restore?.importLog && previous === null && record.stdio.mode === 'log') copyFileSync(plan.restore.importLog, store.logPath(id));
    let rootPath = plan.rootfs.base;
    const layerRoot = takeUsernsRange(ctx, id, spec);
    userRoot = mappedRoot(spec);
    undoOwners = ownVolumes(spec, plan, layerRoot, userRoot);
    if (plan.rootfs.kind === 'overlay') {
      const upper = join(dir, 'upper');
      const work = join(dir, 'work');
      rootPath = join(dir, 'rootfs');
      // In a user namespace, the base is seen through a copy owned by the range.
      const lower = userRoot ? await shiftedBase(ctx.runner, plan.rootfs.base, userRoot) : plan.rootfs.base;
      const overlay = overlayMount(lower, upper, work, rootPath);
      if (plan.restore?.keepLayer && previous !== null && (await isMounted(rootPath))) {
        record.mounts = previous.mounts;
        store.write(record);
      } else {
        // The upper layer's mode becomes the mode of the container's "/"; the
        // container folder above it is 0700 already.
        for (const sub of [upper, work, rootPath]) mkdirSync(sub, { recursive: true, mode: 0o755 });
        if (!plan.restore?.keepLayer) await plan.restore?.fillLayer?.(upper);
        if (userRoot) {
          // The layer's files follow the container's range: written in another one, they are moved to this one.
          if (layerRoot && (layerRoot.uid !== userRoot.uid || layerRoot.gid !== userRoot.gid) && !plan.restore?.keepLayer) shiftTree(upper, layerRoot, userRoot, userRoot.size);
          // The layer's top is the container's "/": its root's.
          lchownSync(upper, userRoot.uid, userRoot.gid);
        }
        await mountRecorded(ctx, record, overlay);
      }
    } else {
      for (const m of plan.rootfsMounts) await mountRecorded(ctx, record, { ...m, target: rootPath });
    }
    if (userRoot) openPathTo(rootPath, [store.paths.root, store.paths.containers, dir]);
    if (!plan.restore?.keepLayer) await plan.restore?.onRootfs?.(rootPath);
    spec.root = { ...spec.root, path: rootPath };
    spec.linux ??= {};
    // runc removes it on delete; delete -f finds it without runc if runc's state is damaged.
    spec.linux.cgroupsPath = store.cgroupPath(id);
    spec.annotations = { ...spec.annotations, 'io.container.manager': 'stasis', 'org.stasis.id': id };
    // runc brings lo up itself when it creates the namespace: only a restore needs the hook.
    if (plan.restore) withLoopbackHook(spec);
    else withoutLoopbackHook(spec);
    writeFileSync(join(dir, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o600 });

    const stdio = openStdio(dir, plan.stdio, stdioFds);
    // CRIU's restored tasks read the images as the range's root: lent to it for the restore only.
    if (userRoot && plan.restore?.imagesDir) {
      plan.restore.setIdMaps?.((spec.linux?.uidMappings ?? []) as IdMapping[], (spec.linux?.gidMappings ?? []) as IdMapping[]);
      lendImages(plan.restore.imagesDir, { uid: 0, gid: 0 }, userRoot);
      lentImages = plan.restore.imagesDir;
    }
    const pid = await ctx.startMonitor({
      conmon: ctx.config.conmon,
      runc: ctx.config.runc,
      runcGlobalArgs: ctx.runc.globalArgs(),
      id,
      containerDir: dir,
      socketDir: store.paths.sockets,
      logPath: record.stdio.mode === 'log' ? store.logPath(id) : null,
      stdio,
      terminal: record.tty && plan.stdio.inherit === 'none',
      stdin: plan.stdio.attachStdin === true && plan.restore === undefined,
      exitCommand: exitCommand(ctx, id, record.instance),
      restoreImage: plan.restore?.imagesDir,
      restoreArgs: plan.restore?.runcArgs,
    });
    record.pid = pid;
    record.status = plan.restore ? 'running' : 'created';
    store.write(record);
  } catch (err) {
    plan.restore?.onFailure?.(dir);
    await bestEffort(`giving ${record.id}'s volumes back to their owners`, async () => undoOwners());
    await bestEffort(`teardown of the half-made ${record.id}`, teardown(ctx, record));
    throw err;
  } finally {
    for (const fd of stdioFds) closeSync(fd);
    if (lentImages !== null && userRoot) lendImages(lentImages, userRoot, { uid: 0, gid: 0 });
  }
  if (previous === null) journal.append('/containers/create', id, { image: plan.rootfs.base, runtime: 'runc', labels: plan.labels });
  if (plan.restore) {
    journal.append('/tasks/restored', id, { pid: record.pid, checkpoint: plan.restore.from });
  } else {
    journal.append('/tasks/create', id, { pid: record.pid, bundle: dir, rootfs: record.mounts.map((m) => m.target) });
  }
  return viewOf(store, record);
}

/**
 * For a container whose user namespace takes its range from the registry
 * (--userns auto): takes one (the one its spec names when that is free or
 * already its own, else another) and writes it into the spec. Returns the
 * root of the range its writable layer's files were written in (from a
 * checkpoint), or null.
 */
function takeUsernsRange(ctx: RuntimeContext, id: string, spec: OciSpec): { uid: number; gid: number } | null {
  const annotations = spec.annotations ?? {};
  const before = mappedRoot(spec);
  const layerNote = annotations[USERNS_LAYER_ANNOTATION];
  let layerRoot = before && before.uid !== 0 ? { uid: before.uid, gid: before.gid } : null;
  if (layerNote !== undefined) {
    const [uid, gid] = layerNote.split(':').map(Number);
    layerRoot = Number.isSafeInteger(uid) && Number.isSafeInteger(gid) ? { uid, gid } : null;
    delete spec.annotations![USERNS_LAYER_ANNOTATION];
  }
  if (annotations[USERNS_ANNOTATION] !== 'auto' || before === null) return layerRoot;
  const start = allocateRange(ctx.store.paths.root, ctx.store.paths.containers, id, before.uid === 0 ? undefined : before.uid);
  setUserns(spec as Parameters<typeof setUserns>[0], { containerID: 0, hostID: start, size: AUTO_SIZE });
  return layerRoot;
}

/**
 * The volumes' owners. On create, a `:U` volume's files are given to the
 * container's user (as the host sees it through the user namespace): what
 * podman's :U does. On a restore that gives the container another range than
 * the one its files were written in, the folders that follow the range are
 * moved to the new one. Returns what puts the owners back.
 */
function ownVolumes(spec: OciSpec, plan: ProvisionPlan, layerRoot: { uid: number; gid: number } | null, userRoot: ReturnType<typeof mappedRoot>): () => void {
  if (plan.restore === undefined) {
    const owned = (plan.volumes ?? []).filter((v) => v.chown);
    if (owned.length === 0) return () => undefined;
    const user = hostUser(spec);
    for (const volume of owned) ownTree(volume.source, user.uid, user.gid);
    return () => undefined;
  }
  const follow = plan.restore.followRange ?? [];
  if (follow.length === 0 || !userRoot || !layerRoot || (layerRoot.uid === userRoot.uid && layerRoot.gid === userRoot.gid)) return () => undefined;
  const moved: string[] = [];
  for (const source of follow) {
    shiftTree(source, layerRoot, userRoot, userRoot.size);
    moved.push(source);
  }
  return () => {
    for (const source of moved) shiftTree(source, userRoot, layerRoot, userRoot.size);
  };
}

/** The container's process user as the host sees it (through the spec's ID maps, if it has its own user namespace). */
function hostUser(spec: OciSpec): { uid: number; gid: number } {
  const user = (spec.process as { user?: { uid?: number; gid?: number } } | undefined)?.user ?? {};
  const linux = spec.linux as { uidMappings?: IdMapping[]; gidMappings?: IdMapping[] } | undefined;
  const map = (id: number, maps: IdMapping[] | undefined) => {
    if (mappedRoot(spec as Parameters<typeof mappedRoot>[0]) === null) return id;
    const m = (maps ?? []).find((x) => id >= x.containerID && id < x.containerID + x.size);
    if (!m) throw new StasisError(`the container's user ${id} is not mapped by its user namespace: a :U volume cannot be given to it`);
    return m.hostID + id - m.containerID;
  };
  return { uid: map(user.uid ?? 0, linux?.uidMappings), gid: map(user.gid ?? 0, linux?.gidMappings) };
}

/** Gives the files directly in a checkpoint's images folder (and it) from one owner to another. */
function lendImages(dir: string, from: { uid: number; gid: number }, to: { uid: number; gid: number }): void {
  for (const path of [dir, ...readdirSync(dir).map((name) => join(dir, name))]) {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink() || stat.uid !== from.uid) continue;
    lchownSync(path, to.uid, to.gid);
  }
}

async function mountRecorded(ctx: RuntimeContext, record: ContainerRecord, m: MountRecord): Promise<void> {
  record.mounts.push(m);
  ctx.store.write(record);
  await mount(ctx.runner, m);
}

function openStdio(dir: string, plan: StdioPlan, opened: number[]): [number | 'ignore', number | 'ignore', number | 'ignore'] {
  if (plan.inherit === 'none' && !plan.stdin && !plan.stdout && !plan.stderr) return ['ignore', 'ignore', 'ignore'];
  const open = (path: string, flags: string) => {
    const fd = openSync(path, flags, 0o600);
    opened.push(fd);
    return fd;
  };
  const inheritOutput = plan.inherit !== 'none';
  return [
    plan.stdin ? open(plan.stdin, 'r') : plan.inherit === 'all' ? 0 : open('/dev/null', 'r'),
    plan.stdout ? open(plan.stdout, 'a') : inheritOutput ? 1 : open(join(dir, 'stdout.log'), 'a'),
    plan.stderr ? open(plan.stderr, 'a') : inheritOutput ? 2 : open(join(dir, 'stderr.log'), 'a'),
  ];
}

/**
 * What conmon runs when the container exits: `stasis __exit ID INSTANCE`,
 * which records the exit in the journal. When many containers exit at once,
 * each would start a Node process of ~40 MB; behind flock on one of a few
 * slot files, at most EXIT_HOOK_SLOTS run at a time and the rest wait in
 * flock (~1 MB).
 */
function exitCommand(ctx: RuntimeContext, id: string, instance: string): string[] {
  const { config, store } = ctx;
  const hook = [...config.cliCommand, '--state-dir', store.paths.root, '--runc', config.runc, '__exit', id, instance];
  if (!config.flock) return hook;
  const slots = join(store.paths.root, 'exit-hooks');
  mkdirSync(slots, { recursive: true, mode: 0o700 });
  const slot = Number.parseInt(fnv1a(id), 16) % EXIT_HOOK_SLOTS;
  // -w: a hook that cannot get its slot in 10 minutes gives up; the exit
  // is still in conmon's exit file, which every command reads.
  return [config.flock, '-w', '600', join(slots, `slot-${slot}`), ...hook];
}

