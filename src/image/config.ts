import { lstatSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { StasisError } from '../errors.ts';
import type { ImageBase } from '../runtime/create-plan.ts';

// An image's config (image-spec config.md) is untrusted input: only Env,
// User, WorkingDir, Entrypoint and Cmd are taken, each bounded and checked.
// Everything else (Volumes, ExposedPorts, Labels, StopSignal, Healthcheck,
// and every annotation of the manifest) is ignored: nothing in an image may
// add hooks, devices, mounts, CDI devices or capabilities to a container.

export interface ImageProcess {
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  /** As the image says it: "", a name, uid, name:group, uid:gid. Resolved at create time. */
  user: string;
}

const MAX_LIST = 4096;
const MAX_ITEM = 128 * 1024;
const MAX_TOTAL = 1024 * 1024;
const MAX_ENV = 1024;
const MAX_PATH = 4096;

/** Checks config.config of an image; throws, naming the field, for anything out of bounds. */
export function imageProcess(raw: unknown): ImageProcess {
  const config = (raw as { config?: unknown } | null)?.config ?? {};
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new Error('the image config\'s "config" is not an object');
  const c = config as Record<string, unknown>;
  let total = 0;
  const strings = (field: string, limit: number): string[] => {
    const value = c[field];
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) throw new Error(`the image config's ${field} is not a list of strings`);
    if (value.length > limit) throw new Error(`the image config's ${field} has ${value.length} entries (at most ${limit})`);
    return value.map((item, index) => {
      if (typeof item !== 'string' || item.includes('\0')) throw new Error(`the image config's ${field}[${index}] is not a string`);
      if (item.length > MAX_ITEM) throw new Error(`the image config's ${field}[${index}] is ${item.length} characters long (at most ${MAX_ITEM})`);
      total += item.length;
      if (total > MAX_TOTAL) throw new Error(`the image config's Env, Entrypoint and Cmd hold more than ${MAX_TOTAL} characters`);
      return item;
    });
  };
  const env = strings('Env', MAX_ENV);
  for (const [index, entry] of env.entries()) {
    if (!/^[^=]+=/.test(entry)) throw new Error(`the image config's Env[${index}] ${JSON.stringify(entry.slice(0, 60))} is not NAME=VALUE`);
  }
  const entrypoint = strings('Entrypoint', MAX_LIST);
  const cmd = strings('Cmd', MAX_LIST);
  const text = (field: string): string => {
    const value = c[field];
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string' || value.includes('\0') || value.length > MAX_PATH) throw new Error(`the image config's ${field} is not a string of at most ${MAX_PATH} characters`);
    return value;
  };
  const workingDir = text('WorkingDir');
  if (workingDir !== '') {
    if (!workingDir.startsWith('/')) throw new Error(`the image config's WorkingDir ${JSON.stringify(workingDir)} is not an absolute path`);
    if (workingDir.split('/').includes('..')) throw new Error(`the image config's WorkingDir ${JSON.stringify(workingDir)} has a ".." component`);
  }
  const user = text('User');
  if (user !== '' && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$/.test(user)) {
    throw new Error(`the image config's User ${JSON.stringify(user.slice(0, 80))} is neither NAME[:GROUP] nor UID[:GID]`);
  }
  return { env, entrypoint, cmd, workingDir: workingDir === '' ? '' : posix.normalize(workingDir), user };
}

export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

const MAX_ID = 4294967294;
const MAX_DB = 4 * 1024 * 1024;

/** /etc/passwd or /etc/group of the rootfs, read without following a link anywhere (the image is untrusted); "" when absent. */
function readDb(rootfs: string, name: 'passwd' | 'group'): string {
  const etc = lstatSync(join(rootfs, 'etc'), { throwIfNoEntry: false });
  if (!etc?.isDirectory()) return '';
  const path = join(rootfs, 'etc', name);
  const stat = lstatSync(path, { throwIfNoEntry: false });
  if (!stat) return '';
  if (!stat.isFile()) throw new Error(`the image's /etc/${name} is not a regular file`);
  if (stat.size > MAX_DB) throw new Error(`the image's /etc/${name} is larger than ${MAX_DB} bytes`);
  return readFileSync(path, 'utf8');
}

function rows(db: string): string[][] {
  return db.split('\n').filter((line) => line !== '' && !line.startsWith('#')).map((line) => line.split(':'));
}

function numeric(text: string): number | null {
  if (!/^\d{1,10}$/.test(text)) return null;
  const n = Number(text);
  return n <= MAX_ID ? n : null;
}

/**
 * USER[:GROUP] as podman takes it: numbers as they are, names looked up in
 * the image's own /etc/passwd and /etc/group; a user given without a group
 * gets its passwd group and the groups that list it as a member.
 */
export function resolveUser(spec: string, rootfs: string): ProcessUser {
  if (spec === '') return { uid: 0, gid: 0 };
  const [userPart, groupPart] = spec.split(':');
  let uid = numeric(userPart);
  let gid: number | null = null;
  let name: string | null = null;
  if (uid === null) {
    const entry = rows(readDb(rootfs, 'passwd')).find((row) => row[0] === userPart);
    if (!entry) throw new Error(`user ${JSON.stringify(userPart)} is not in the image's /etc/passwd`);
    uid = numeric(entry[2] ?? '');
    gid = numeric(entry[3] ?? '');
    if (uid === null || gid === null) throw new Error(`the image's /etc/passwd entry for ${JSON.stringify(userPart)} has no valid uid and gid`);
    name = userPart;
  } else {
    const entry = rows(readDb(rootfs, 'passwd')).find((row) => row[2] === userPart);
    gid = entry ? numeric(entry[3] ?? '') : null;
    name = entry?.[0] ?? null;
  }
  if (groupPart !== undefined) {
    let group = numeric(groupPart);
    if (group === null) {
      const entry = rows(readDb(rootfs, 'group')).find((row) => row[0] === groupPart);
      if (!entry) throw new Error(`group ${JSON.stringify(groupPart)} is not in the image's /etc/group`);
      group = numeric(entry[2] ?? '');
      if (group === null) throw new Error(`the image's /etc/group entry for ${JSON.stringify(groupPart)} has no valid gid`);
    }
    return { uid, gid: group };
  }
  const primary = gid ?? 0;
  const additional = name === null ? [] : rows(readDb(rootfs, 'group'))
    .filter((row) => (row[3] ?? '').split(',').includes(name))
    .map((row) => numeric(row[2] ?? ''))
    .filter((g): g is number => g !== null && g !== primary);
  return additional.length > 0 ? { uid, gid: primary, additionalGids: [...new Set(additional)].slice(0, 64) } : { uid, gid: primary };
}

/** A stored image as a container's base (runtime/create-plan.ts ImageBase): its User resolved in its own /etc/passwd. */
export function baseOf(image: { rootfs: string; process: ImageProcess }, name: string): ImageBase {
  let user: ProcessUser;
  try {
    user = resolveUser(image.process.user, image.rootfs);
  } catch (err) {
    throw new StasisError(`the image ${name}: ${(err as Error).message}`, { code: 'bad-image' });
  }
  return { name, rootfs: image.rootfs, entrypoint: image.process.entrypoint, cmd: image.process.cmd, env: image.process.env, workingDir: image.process.workingDir, user };
}
