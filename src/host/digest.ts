// SHA-256, HMAC-SHA-256 and random names without loading node:crypto in the
// compiled binary: there node:crypto takes 11-15 ms to load (it brings Bun's
// stream modules with it), about a tenth of a restore's own time, while Bun's
// hasher and the Web Crypto global come with the runtime. Under Node,
// node:crypto, loaded when first used. Both give the same bytes.

/** A running hash: update, then digest once. */
export interface Hasher {
  update(data: string | Uint8Array): Hasher;
  digest(): Buffer;
  digest(encoding: 'hex' | 'base64'): string;
}

interface BunHasher {
  update(data: string | Uint8Array): BunHasher;
  digest(): Uint8Array;
  digest(encoding: 'hex' | 'base64'): string;
}
type BunHasherClass = new (algorithm: 'sha256', hmacKey?: string | Uint8Array) => BunHasher;

const bunHasher = (globalThis as { Bun?: { CryptoHasher?: BunHasherClass } }).Bun?.CryptoHasher;

function wrap(inner: BunHasher): Hasher {
  const hasher = {
    update(data: string | Uint8Array) {
      inner.update(data);
      return hasher;
    },
    digest(encoding?: 'hex' | 'base64') {
      return encoding === undefined ? Buffer.from(inner.digest()) : inner.digest(encoding);
    },
  };
  return hasher as Hasher;
}

const nodeCrypto = () => process.getBuiltinModule('node:crypto');

export function sha256(): Hasher {
  return bunHasher ? wrap(new bunHasher('sha256')) : (nodeCrypto().createHash('sha256') as unknown as Hasher);
}

export function hmacSha256(key: string | Uint8Array): Hasher {
  return bunHasher ? wrap(new bunHasher('sha256', key)) : (nodeCrypto().createHmac('sha256', key) as unknown as Hasher);
}

/** A seeded 64-bit hash of a memory page (migrate --precopy's page prints). */
export type PageHash = (data: Uint8Array, seed: bigint) => bigint;

type BunXxHash3 = (data: Uint8Array, seed?: bigint) => bigint;
const bunXxHash3 = (globalThis as { Bun?: { hash?: { xxHash3?: BunXxHash3 } } }).Bun?.hash?.xxHash3;

/**
 * xxHash3 (64 bits), Bun's own: about 0.25 s per GiB of 4 KiB pages (the call, not the bytes, is
 * most of it: 0.1 s per GiB in 64 KiB pieces), where SHA-256 per page takes 1.6-2.8 s (measured
 * under Bun and Node). It returns an unsigned 64-bit bigint itself: no conversion around it (one
 * cost 0.12 s per GiB). Null under Node, which has no such hash: the sender then keeps its
 * pre-copy and compares bytes.
 */
export function pageHasher(): PageHash | null {
  return bunXxHash3 ?? null;
}

/** `size` random bytes (the operating system's generator, as randomBytes). */
export function randomBytes(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  globalThis.crypto.getRandomValues(bytes);
  return bytes;
}

/** Whether two byte strings are equal, in a time that does not depend on where they differ. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
