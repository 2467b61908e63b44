import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

let tempCounter = 0;

/** Write a file so that readers see either the old or the new content, never a torn one. */
export function writeFileAtomic(path: string, content: string, mode = 0o600): void {
  const tempPath = `${path}.${process.pid}.${tempCounter++}.tmp`;
  const fd = openSync(tempPath, 'wx', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tempPath);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tempPath, path);
  } catch (err) {
    unlinkSync(tempPath);
    throw err;
  }
  // Make the rename itself durable.
  const dirFd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}
