import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CriuImageError, decodeMessage, numberedImages, readImageEntries } from './images.ts';

// The mount tree CRIU rebuilds in the restored mount namespace (mountpoints-N.img,
// one per mount namespace). runc's spec mounts do not make that tree: CRIU mounts
// what its image lists, with the sources and options recorded there, so a crafted
// image could mount a host block device (an "auto" filesystem), an overlay whose
// lowerdir is a host path, or leave out the masks over /proc/kcore. Only
// external mounts (ext_key) take their source from runc, which maps each key to
// the source of the spec's bind mount with that destination (or /dev/null for
// masked files): those follow the restore spec.
//
// mnt.proto mnt_entry { fstype 1, mnt_id 2, root_dev 3, parent_mnt_id 4, flags 5, root 6,
//   mountpoint 7, source 8, options 9, shared_id 10, master_id 11, with_plugin 12, ext_mount 13,
//   fsname 14, internal_sharing 15, deleted 16, sb_flags 17, ext_key 18 }

/** mnt.proto's fstype enum. */
export const FSTYPES: Record<number, string> = {
  0: 'unsupported', 1: 'proc', 2: 'sysfs', 3: 'devtmpfs', 4: 'binfmt_misc', 5: 'tmpfs', 6: 'devpts', 7: 'simfs',
  8: 'pstore', 9: 'securityfs', 10: 'fusectl', 11: 'debugfs', 12: 'cgroup', 13: 'aufs', 14: 'mqueue', 15: 'fuse',
  16: 'auto', 17: 'overlay', 18: 'autofs', 19: 'tracefs', 23: 'cgroup2',
};

const MS_RDONLY = 1;

export interface ImageMount {
  /** mountpoints-N.img: N is the mount namespace's id. */
  namespace: number;
  id: number;
  parentId: number;
  /** Where it is mounted, relative to the container's root ("/" for the root mount). */
  mountpoint: string;
  /** mnt.proto's fstype, by name; for "auto", the kernel's name is in fsname. */
  fstype: string;
  fsname: string | null;
  source: string;
  options: string;
  /** The path within its filesystem that is mounted (not "/" for bind mounts). */
  root: string;
  rootDev: number;
  readOnly: boolean;
  /** Set when runc supplies the source (a bind mount of the spec, or /dev/null for a masked file). */
  externalKey: string | null;
  /** The mount namespace's root, which CRIU replaces with the restore's rootfs. */
  isRoot: boolean;
  /**
   * A bind of part of the root filesystem (same device as the root mount): CRIU
   * binds it from the new rootfs rather than mounting its source.
   */
  bindOfRoot: boolean;
}

export function readImageMounts(imagesDir: string): ImageMount[] {
  let names: string[];
  try {
    names = readdirSync(imagesDir);
  } catch (err) {
    throw new CriuImageError(imagesDir, `cannot list the folder: ${(err as Error).message}`);
  }
  const mounts: ImageMount[] = [];
  for (const { name, id: namespace } of numberedImages(names, 'mountpoints')) {
    const path = join(imagesDir, name);
    const entries = readImageEntries(path, 'mountpoints').map((entry) => decodeMessage(entry, path, 'mnt_entry'));
    const inNamespace: ImageMount[] = entries.map((entry) => {
      const fstypeCode = entry.needUint32(1, 'fstype');
      const flags = entry.needUint32(5, 'flags');
      const sbFlags = entry.uint32(17) ?? 0;
      const mountpoint = entry.string(7);
      if (mountpoint === undefined) throw new CriuImageError(path, 'a mount has no mountpoint');
      return {
        namespace,
        id: entry.needUint32(2, 'mnt_id'),
        parentId: entry.needUint32(4, 'parent_mnt_id'),
        mountpoint: normalizeMountpoint(mountpoint),
        fstype: FSTYPES[fstypeCode] ?? `fstype-${fstypeCode}`,
        fsname: entry.string(14) ?? null,
        source: entry.string(8) ?? '',
        options: entry.string(9) ?? '',
        root: entry.string(6) ?? '/',
        rootDev: entry.needUint32(3, 'root_dev'),
        readOnly: (flags & MS_RDONLY) !== 0 || (sbFlags & MS_RDONLY) !== 0,
        externalKey: entry.string(18) ?? null,
        isRoot: false,
        bindOfRoot: false,
      };
    });
    // The root is the mount whose parent is not in the image (CRIU: the tree's top).
    const ids = new Set(inNamespace.map((mount) => mount.id));
    const roots = inNamespace.filter((mount) => !ids.has(mount.parentId) || mount.parentId === mount.id);
    if (inNamespace.length > 0 && roots.length !== 1) {
      throw new CriuImageError(path, `has ${roots.length} mounts without a parent in the image, where a mount tree has one root`);
    }
    const root = roots[0];
    for (const mount of inNamespace) {
      mount.isRoot = mount === root;
      mount.bindOfRoot = !mount.isRoot && root !== undefined && mount.rootDev === root.rootDev && mount.externalKey === null;
    }
    mounts.push(...inNamespace);
  }
  return mounts;
}

/** CRIU records mountpoints as "/x" (new images) or "./x" relative to the root (older ones). */
function normalizeMountpoint(mountpoint: string): string {
  let path = mountpoint.startsWith('./') ? mountpoint.slice(1) : mountpoint === '.' ? '/' : mountpoint;
  if (!path.startsWith('/')) path = `/${path}`;
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}
