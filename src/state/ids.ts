import { usageError } from '../errors.ts';

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Checked before an ID touches any path (like runc's validateID). */
export function validateId(id: unknown): string {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    const shown = typeof id === 'string' ? JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}...` : id) : String(id);
    throw usageError(
      `invalid container ID ${shown}`,
      'an ID is 1-128 characters of letters, digits, "_", "." and "-", starting with a letter or digit',
    );
  }
  return id;
}
