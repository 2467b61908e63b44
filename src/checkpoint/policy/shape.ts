import { isAbsolute, posix } from 'node:path';
import { StasisError } from '../../errors.ts';

// Checking the shape of an untrusted spec (a checkpoint's spec.dump): the type tests,
// the error for a malformed field, and mounts as both halves of the policy read them.

export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
export const isString = (value: unknown): value is string => typeof value === 'string' && !value.includes('\0');
export const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every(isString);
export const isUint32 = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff_ffff;

/** A malformed field: the spec cannot be used at all. */
export class CheckpointSpecError extends StasisError {
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`the checkpoint's spec.dump is not a usable OCI spec: ${field} ${problem}`, {
      hint: 'the checkpoint is damaged or was not written by a container engine; take it again',
    });
    this.name = 'CheckpointSpecError';
    this.field = field;
  }
}

export function isAbsolutePath(value: unknown): value is string {
  return isString(value) && isAbsolute(value) && value.length <= 4096;
}

/** "/a/./b/" → "/a/b" (and "/../x" → "/x": runc resolves destinations inside the rootfs anyway). */
export function cleanPath(path: string): string {
  const clean = posix.normalize(path);
  return clean.length > 1 ? clean.replace(/\/+$/, '') : clean;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [key: string]: unknown;
}

export function readMounts(value: unknown, field: string): OciMount[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new CheckpointSpecError(field, 'is not an array');
  return value.map((mount, index) => {
    if (!isObject(mount) || !isAbsolutePath(mount.destination)) throw new CheckpointSpecError(`${field}[${index}]`, 'has no absolute destination');
    if (mount.type !== undefined && !isString(mount.type)) throw new CheckpointSpecError(`${field}[${index}].type`, 'is not a string');
    if (mount.source !== undefined && !isString(mount.source)) throw new CheckpointSpecError(`${field}[${index}].source`, 'is not a string');
    if (mount.options !== undefined && !isStringArray(mount.options)) throw new CheckpointSpecError(`${field}[${index}].options`, 'is not an array of strings');
    return { ...mount, destination: cleanPath(mount.destination) } as OciMount;
  });
}

export function isBind(mount: OciMount): boolean {
  return mount.type === 'bind' || mount.type === undefined || (mount.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

export function describeMount(mount: OciMount): string {
  const options = mount.options && mount.options.length > 0 ? mount.options.join(',') : 'no options';
  const writable = (mount.options ?? []).includes('ro') ? 'read-only' : 'read-write';
  if (isBind(mount)) return `a ${writable} bind mount of ${mount.source ?? '(no source)'} (${options})`;
  return `a ${mount.type} mount of ${mount.source ?? mount.type} (${options})`;
}

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function clone<T>(value: T): T {
  return structuredClone(value);
}
