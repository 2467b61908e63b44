import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FILES } from './layout.ts';
import { classifyMounts, privateFileContent, type EngineMount, type ForeignSpec, type PrivateKind } from './engine-spec.ts';
import type { UserMount } from './engine-spec.ts';

// The files an engine makes for each container and bind-mounts in (podman's
// /etc/hosts, /etc/hostname, /run/.containerenv, /dev/shm; CRI-O's and the
// kubelet's resolv.conf, termination-log...). Their sources do not exist here,
// and would not be believed if they did: a restore makes its own, in the new
// container's folder (engine-files/), and grants the spec bind mounts of those.
// runc hands each bind's source to CRIU as the external mount of that
// destination, so the restored processes find them where they were.

export const ENGINE_FILES_DIR = 'engine-files';
/** podman's copy of /dev/shm's files, which stasis writes too for a /dev/shm it made. */
export const SHM_TAR = FILES.shm;

const FILE_NAMES: Record<PrivateKind, string> = {
  hosts: 'hosts',
  hostname: 'hostname',
  'resolv.conf': 'resolv.conf',
  containerenv: 'containerenv',
  shm: 'shm',
  secrets: 'secrets',
  'termination-log': 'termination-log',
};

/** Bind mount options a restore keeps from a checkpoint: no propagation to or from the host, nothing unknown. */
const SAFE_OPTIONS = new Set([
  'bind', 'rbind', 'ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec',
  'private', 'rprivate', 'slave', 'rslave', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'noatime', 'atime', 'nodiratime', 'diratime',
]);

export interface EngineFile {
  kind: PrivateKind;
  destination: string;
  /** The new source, in the container's folder. */
  source: string;
  directory: boolean;
  options: string[];
}

export function safeBindOptions(options: readonly string[]): string[] {
  return options.filter((option) => SAFE_OPTIONS.has(option));
}

/** The files to make in `containerDir` for the engine's private bind mounts (one per destination). */
export function engineFiles(mounts: readonly EngineMount[], containerDir: string): EngineFile[] {
  const files: EngineFile[] = [];
  const used = new Set<string>();
  for (const mount of mounts) {
    if (mount.kind === null || files.some((file) => file.destination === mount.destination)) continue;
    let name = FILE_NAMES[mount.kind];
    for (let n = 2; used.has(name); n++) name = `${FILE_NAMES[mount.kind]}-${n}`;
    used.add(name);
    files.push({
      kind: mount.kind,
      destination: mount.destination,
      source: join(containerDir, ENGINE_FILES_DIR, name),
      directory: mount.fileType === 'directory',
      options: safeBindOptions(mount.options),
    });
  }
  return files;
}

/**
 * The private bind mounts of a stasis checkpoint's spec whose sources are a
 * restore's own engine-files (a container once restored from another engine's
 * checkpoint): made again for the new container.
 */
export function ownEngineMounts(spec: ForeignSpec): EngineMount[] {
  return classifyMounts(spec).private.filter((mount) => mount.source.split('/').includes(ENGINE_FILES_DIR));
}

/** The bind mounts that give the spec the new files (granted to the restore policy as the user's own would be). */
export function engineFileMounts(files: readonly EngineFile[]): UserMount[] {
  return files.map((file) => ({ destination: file.destination, source: file.source, options: file.options }));
}

/**
 * Makes the files in `containerDir`/engine-files: /etc/hosts and /etc/hostname
 * for loopback and the container's host name, empty files and folders for the
 * others, /dev/shm 1777 holding `shmDir`'s files (a folder already unpacked
 * and checked on the same filesystem, moved into place) when there is one.
 */
export function makeEngineFiles(containerDir: string, files: readonly EngineFile[], facts: { hostname: string }, shmDir: string | null): void {
  const dir = join(containerDir, ENGINE_FILES_DIR);
  rmSync(dir, { recursive: true, force: true });
  if (files.length === 0) return;
  mkdirSync(dir, { mode: 0o755 });
  for (const file of files) {
    if (file.kind === 'shm' && file.directory && shmDir !== null) renameSync(shmDir, file.source);
    else if (file.directory) mkdirSync(file.source);
    else writeFileSync(file.source, privateFileContent(file.kind, facts), { mode: 0o644 });
    if (file.directory) chmodSync(file.source, file.kind === 'shm' ? 0o1777 : 0o755);
  }
}
