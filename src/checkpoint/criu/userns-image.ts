import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CriuImageError, encodeVarint, IMG_COMMON_MAGIC } from './images.ts';

// CRIU restores a user namespace with the ID maps of its userns-N.img
// (UsernsEntry: repeated UidGidExtent uid_map = 1, gid_map = 2; an extent is
// first = 1, lower_first = 2, count = 3, all uint32). A restore onto another
// host range, or of a checkpoint from elsewhere (whose maps are untrusted),
// gets the maps of the spec it is restored with written in their place.

/** criu/include/magic.h USERNS_MAGIC. */
const USERNS_MAGIC = 0x55474906;

export interface IdExtent {
  containerID: number;
  hostID: number;
  size: number;
}

function extent(field: number, map: IdExtent): number[] {
  const body = [0x08, ...encodeVarint(map.containerID), 0x10, ...encodeVarint(map.hostID), 0x18, ...encodeVarint(map.size)];
  return [(field << 3) | 2, ...encodeVarint(body.length), ...body];
}

/** The bytes of a userns image holding exactly these maps. */
export function usernsImage(uidMap: readonly IdExtent[], gidMap: readonly IdExtent[]): Buffer {
  const entry = Buffer.from([...uidMap.flatMap((m) => extent(1, m)), ...gidMap.flatMap((m) => extent(2, m))]);
  const header = Buffer.alloc(12);
  header.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  header.writeUInt32LE(USERNS_MAGIC, 4);
  header.writeUInt32LE(entry.length, 8);
  return Buffer.concat([header, entry]);
}

/**
 * Writes the spec's maps into every userns image of `imagesDir` whose maps
 * differ; returns the files changed. A file that is not a userns image is an error.
 */
export function setUsernsImages(imagesDir: string, uidMap: readonly IdExtent[], gidMap: readonly IdExtent[]): string[] {
  const wanted = usernsImage(uidMap, gidMap);
  const changed: string[] = [];
  for (const name of readdirSync(imagesDir)) {
    if (!/^userns-\d+\.img$/.test(name)) continue;
    const path = join(imagesDir, name);
    const bytes = readFileSync(path);
    if (bytes.length < 8 || bytes.readUInt32LE(0) !== IMG_COMMON_MAGIC || bytes.readUInt32LE(4) !== USERNS_MAGIC) {
      throw new CriuImageError(name, 'not a userns image');
    }
    if (bytes.equals(wanted)) continue;
    writeFileSync(path, wanted);
    changed.push(name);
  }
  return changed;
}
