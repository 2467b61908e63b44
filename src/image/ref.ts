import { resolve } from 'node:path';
import { parseImageRef } from '../checkpoint/oci/layout.ts';

// The image references `--image`, `--create-image` and `--checkpoint` take.
// Local ones (oci:DIR[:TAG], oci-archive:FILE[:TAG]) are read by stasis
// itself; registry ones (docker://HOST[:PORT]/NAME[:TAG|@DIGEST]) go through
// skopeo, which copies them to or from a local OCI layout.

export type SourceRef =
  | { transport: 'oci' | 'oci-archive'; path: string; reference: string | null }
  | { transport: 'docker'; registry: string; repository: string; tag: string | null; digest: string | null };

const REGISTRY = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/;
const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * docker://HOST[:PORT]/NAME[:TAG|@DIGEST]. The host is required (stasis has
 * no default registry: nothing is fetched from one the user did not name),
 * and a missing tag means "latest", as everywhere. Throws saying what is wrong.
 */
export function parseDockerRef(text: string): SourceRef & { transport: 'docker' } {
  const bad = (why: string) => new Error(`${JSON.stringify(text)} is not a registry reference: ${why} (docker://HOST[:PORT]/NAME[:TAG|@DIGEST])`);
  if (!text.startsWith('docker://')) throw bad('it does not start with docker://');
  let rest = text.slice('docker://'.length);
  if (rest.length > 1024) throw bad('it is longer than 1024 characters');
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`the digest ${JSON.stringify(digest)} is not sha256:<64 hex digits>`);
  }
  const slash = rest.indexOf('/');
  if (slash <= 0) throw bad('it names no registry host');
  const registry = rest.slice(0, slash);
  let repository = rest.slice(slash + 1);
  if (!REGISTRY.test(registry)) throw bad(`${JSON.stringify(registry)} is not a host[:port]`);
  let tag: string | null = null;
  const colon = repository.lastIndexOf(':');
  if (colon >= 0) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`the tag ${JSON.stringify(tag)} is not valid`);
  }
  if (!REPOSITORY.test(repository)) throw bad(`the name ${JSON.stringify(repository)} is not valid (lower-case letters, digits, separators and /)`);
  if (tag === null && digest === null) tag = 'latest';
  return { transport: 'docker', registry, repository, tag, digest };
}

/** An image reference in one of the three forms, or null when it has none of their prefixes. Throws for a malformed docker:// one. */
export function parseSourceRef(text: string): SourceRef | null {
  if (text.startsWith('docker://')) return parseDockerRef(text);
  const local = parseImageRef(text);
  if (local === null) return null;
  return { ...local, path: resolve(local.path) };
}

export function formatSourceRef(ref: SourceRef): string {
  if (ref.transport === 'docker') return `docker://${ref.registry}/${ref.repository}${ref.tag !== null ? `:${ref.tag}` : ''}${ref.digest !== null ? `@${ref.digest}` : ''}`;
  return `${ref.transport}:${ref.path}${ref.reference ? `:${ref.reference}` : ''}`;
}

/** The host part without the port, brackets removed. */
export function registryHost(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const colon = registry.lastIndexOf(':');
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/**
 * Whether a registry is spoken to in plain HTTP without TLS checks: when the
 * user says so (--tls-verify=false, as podman and skopeo spell it), or when it
 * is on this host's loopback (localhost, 127.0.0.0/8, ::1), where there is no
 * network to trust. `tlsVerify` true forces TLS even on loopback.
 */
export function plainHttp(registry: string, tlsVerify: boolean | undefined): boolean {
  if (tlsVerify !== undefined) return !tlsVerify;
  const host = registryHost(registry).toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}
