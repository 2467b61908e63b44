import { hmacSha256, randomBytes, sameBytes, sha256 } from '../../host/digest.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../state/atomic.ts';
import { META_FILE, SPEC_FILE, replaceFile } from '../format/layout.ts';

// A checkpoint this state directory wrote is trusted; any other is not. The
// proof is a keyed hash (HMAC-SHA256) of its spec and metadata with a key
// that never leaves the state directory: a checkpoint copied from elsewhere,
// or one whose spec.dump or stasis.json was changed, does not carry it. CRIU's
// images are not covered (hashing all memory would cost a second per GiB):
// they are checked against the spec on every restore, trusted or not.

export const SIGNATURE_FILE = 'stasis.sig';
const KEY_FILE = 'checkpoint.key';

function key(stateRoot: string, create: boolean): Buffer | null {
  const path = join(stateRoot, KEY_FILE);
  try {
    return readFileSync(path);
  } catch {
    if (!create) return null;
  }
  try {
    writeFileAtomic(path, randomBytes(32).toString('base64'));
  } catch {
    return null;
  }
  return readFileSync(path);
}

function digest(secret: Buffer, dir: string): Buffer {
  const hmac = hmacSha256(secret);
  for (const name of [SPEC_FILE, META_FILE]) {
    hmac.update(`${name}\n`);
    hmac.update(sha256().update(readFileSync(join(dir, name))).digest());
  }
  return hmac.digest();
}

/** Signs the checkpoint folder `dir` (its spec.dump and stasis.json are written). */
export function signCheckpoint(stateRoot: string, dir: string): void {
  const secret = key(stateRoot, true);
  if (secret !== null) replaceFile(dir, SIGNATURE_FILE, `${digest(secret, dir).toString('hex')}\n`, 0o600);
}

/** Whether `dir` was written by this state directory and not changed since. */
export function signedHere(stateRoot: string, dir: string): boolean {
  const secret = key(stateRoot, false);
  if (secret === null) return false;
  try {
    const given = Buffer.from(readFileSync(join(dir, SIGNATURE_FILE), 'utf8').trim(), 'hex');
    const expected = digest(secret, dir);
    return given.length === expected.length && sameBytes(given, expected);
  } catch {
    return false;
  }
}
