import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { TarEntry } from '../tar.ts';

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
