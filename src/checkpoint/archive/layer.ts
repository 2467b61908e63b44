import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { walkTree, type TreeEntry } from '../../host/walk.ts';
import type { TarEntry } from './tar.ts';

// Putting another engine's rootfs-diff.tar into a stasis writable layer.

export interface ParentDir {
  /** Relative to the container root, no leading slash. */
  path: string;
  mode: number;
  uid: number;
  gid: number;
}

function parts(name: string): string[] {
  return name.split('/').filter((part) => part !== '' && part !== '.');
}

/**
 * The folders that entries of the diff sit in but that the diff does not
 * list, as the base has them. podman and CRI-O list only what was added or
 * changed (pkg/checkpoint/crutils CRCreateRootFsDiffTar: "tmp/new.txt" without
 * "tmp/"), and apply the tar onto the mounted root, where those folders exist.
 * Extracted into an empty upper layer instead, tar would create them 0755 and
 * they would hide the base's modes (/tmp 1777 becomes 0755). Create these in
 * the upper layer first, shallowest first; tar's --no-overwrite-dir keeps them.
 * Folders the base lacks are left to tar, and so are symlinks in the base (an
 * entry under one is refused by the archive check anyway).
 */
export function missingParentDirs(entryNames: string[], baseDir: string): ParentDir[] {
  const listed = new Set(entryNames.map((name) => parts(name).join('/')));
  const wanted = new Set<string>();
  for (const name of entryNames) {
    const path = parts(name);
    for (let depth = 1; depth < path.length; depth++) {
      const parent = path.slice(0, depth).join('/');
      if (!listed.has(parent)) wanted.add(parent);
    }
  }
  const dirs: ParentDir[] = [];
  for (const path of [...wanted].sort((a, b) => parts(a).length - parts(b).length || a.localeCompare(b))) {
    const stat = lstatSync(join(baseDir, path), { throwIfNoEntry: false });
    if (!stat?.isDirectory()) continue;
    dirs.push({ path, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid });
  }
  return dirs;
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

export interface Whiteouts {
  /** Container paths the layer deletes ("/etc/group"), for applyDeletions on the mounted root. */
  deleted: string[];
  /** Container folders whose base contents the layer hides ("/var/cache"). */
  opaque: string[];
  /** The marker entries themselves, to remove from the layer after extraction. */
  markers: string[];
}

/**
 * An OCI layer marks deletions with whiteout files (image-spec layer.md:
 * ".wh.NAME" deletes NAME, ".wh..wh..opq" hides the whole folder's lower
 * contents). containerd's kubelet archive carries its rootfs-diff.tar as such
 * a layer (gzip, from the snapshot diff) and has no deleted.files.
 */
export function layerWhiteouts(entries: TarEntry[]): Whiteouts {
  const result: Whiteouts = { deleted: [], opaque: [], markers: [] };
  for (const entry of entries) {
    const path = parts(entry.name);
    const base = path[path.length - 1];
    if (base === undefined || !base.startsWith(WHITEOUT_PREFIX)) continue;
    const folder = path.slice(0, -1);
    result.markers.push(path.join('/'));
    if (base === OPAQUE_MARKER) result.opaque.push(`/${folder.join('/')}`);
    else result.deleted.push(`/${[...folder, base.slice(WHITEOUT_PREFIX.length)].join('/')}`);
  }
  return result;
}

function safeParts(path: string): string[] | null {
  const list = parts(path);
  return list.length === 0 || list.includes('..') ? null : list;
}

/** The path's type in `root` without following links, or null when a component is missing or not a folder. */
function lstatInside(root: string, path: string[]): ReturnType<typeof lstatSync> | null {
  let current = root;
  for (const [index, part] of path.entries()) {
    current = join(current, part);
    const stat = lstatSync(current, { throwIfNoEntry: false });
    if (!stat) return null;
    if (index < path.length - 1 && !stat.isDirectory()) return null;
    if (index === path.length - 1) return stat;
  }
  return null;
}

/**
 * Gives the folders tar made for missingParentDirs' entries the base's mode
 * and owner (in the extracted layer, shallowest first). A path that is not a
 * folder there (tar did not make it, or an entry replaced it) is left alone.
 */
export function fixParentDirs(layerDir: string, dirs: readonly ParentDir[], ops: { chmod: (path: string, mode: number) => void; lchown: (path: string, uid: number, gid: number) => void }): number {
  let fixed = 0;
  for (const dir of dirs) {
    const path = safeParts(dir.path);
    if (!path || !lstatInside(layerDir, path)?.isDirectory()) continue;
    const full = join(layerDir, ...path);
    ops.lchown(full, dir.uid, dir.gid);
    ops.chmod(full, dir.mode);
    fixed++;
  }
  return fixed;
}

/**
 * Removes the whiteout marker files from an extracted OCI layer (overlayfs
 * would show them as files named .wh.NAME); the deletions they stand for are
 * applied on the mounted root instead. Returns the markers removed.
 */
export function removeWhiteoutMarkers(layerDir: string, markers: readonly string[], rm: (path: string) => void): number {
  let removed = 0;
  for (const marker of markers) {
    const path = safeParts(marker);
    const stat = path ? lstatInside(layerDir, path) : null;
    if (!path || !stat || stat.isDirectory()) continue;
    rm(join(layerDir, ...path));
    removed++;
  }
  return removed;
}

/**
 * What an opaque folder (".wh..wh..opq" in `folder`) hides: every entry of the
 * base's folder that the layer does not have, at any depth, as container paths
 * to delete on the mounted root (which is what overlayfs's own opaque marker,
 * an xattr, would do). A folder in both is looked into; a link is never
 * followed, on either side.
 */
export function opaqueDeletions(baseDir: string, layerDir: string, folder: string): string[] {
  const path = parts(folder);
  if (path.includes('..')) return [];
  const baseStat = path.length === 0 ? lstatSync(baseDir, { throwIfNoEntry: false }) : lstatInside(baseDir, path);
  const layerStat = path.length === 0 ? lstatSync(layerDir, { throwIfNoEntry: false }) : lstatInside(layerDir, path);
  if (!baseStat?.isDirectory() || !layerStat?.isDirectory()) return [];
  const inLayer = (entry: TreeEntry) => lstatInside(layerDir, [...path, ...entry.path.split('/')]);
  const deleted: string[] = [];
  for (const entry of walkTree(join(baseDir, ...path), { enter: (entry) => inLayer(entry)?.isDirectory() === true })) {
    if (!inLayer(entry)) deleted.push(`/${[...path, entry.path].join('/')}`);
  }
  return deleted;
}
