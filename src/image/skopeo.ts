import { existsSync } from 'node:fs';
import { StasisError } from '../errors.ts';
import { run } from '../host/spawn.ts';
import { which } from '../host/which.ts';
import { formatSourceRef, plainHttp, type SourceRef } from './ref.ts';

// skopeo is stasis's client of the registry protocol: it copies an image
// between a registry and a local OCI layout, and stasis reads and writes only
// the layout (checking every blob against its digest itself).

const COPY_TIMEOUT_MS = 30 * 60 * 1000;

export interface RegistryOptions {
  /** --tls-verify: undefined lets loopback registries be plain HTTP (ref.ts plainHttp). */
  tlsVerify?: boolean;
}

function skopeo(): string {
  const found = which(process.env.STASIS_SKOPEO ?? 'skopeo');
  if (found === null) {
    throw new StasisError('cannot reach a registry: skopeo is not installed', { hint: 'install it (scripts/setup/registry.sh, or apt-get install skopeo)', code: 'no-skopeo' });
  }
  return found;
}

/** skopeo's own signature policy when the host has one (/etc/containers/policy.json), else none: stasis checks digests itself. */
function policyArgs(): string[] {
  return existsSync('/etc/containers/policy.json') ? [] : ['--insecure-policy'];
}

/** The last lines of skopeo's stderr, which say why it failed. */
function why(stderr: string): string {
  const lines = stderr.trim().split('\n').map((line) => line.replace(/^time="[^"]*" level=\w+ msg="(.*)"$/, '$1').trim()).filter(Boolean);
  return lines.slice(-3).join('; ') || 'no message';
}

/** Copies docker://… into the OCI layout layoutDir (made by skopeo) as its image `tag`. */
export async function pullToLayout(ref: SourceRef & { transport: 'docker' }, layoutDir: string, tag: string, opts: RegistryOptions = {}): Promise<void> {
  const tls = plainHttp(ref.registry, opts.tlsVerify) ? ['--src-tls-verify=false'] : [];
  const args = [...policyArgs(), 'copy', '--quiet', ...tls, formatSourceRef(ref), `oci:${layoutDir}:${tag}`];
  const result = await run(skopeo(), args, { timeout: COPY_TIMEOUT_MS });
  if (result.exitCode !== 0) {
    throw new StasisError(`cannot pull ${formatSourceRef(ref)}: skopeo copy failed: ${why(result.stderr)}`, { code: 'pull-failed' });
  }
}

/** Pushes the image `tag` of the OCI layout layoutDir to docker://…, as an OCI manifest (annotations and all). */
export async function pushFromLayout(layoutDir: string, tag: string, ref: SourceRef & { transport: 'docker' }, opts: RegistryOptions = {}): Promise<void> {
  const tls = plainHttp(ref.registry, opts.tlsVerify) ? ['--dest-tls-verify=false'] : [];
  const args = [...policyArgs(), 'copy', '--quiet', '--format', 'oci', ...tls, `oci:${layoutDir}:${tag}`, formatSourceRef(ref)];
  const result = await run(skopeo(), args, { timeout: COPY_TIMEOUT_MS });
  if (result.exitCode !== 0) {
    throw new StasisError(`cannot push to ${formatSourceRef(ref)}: skopeo copy failed: ${why(result.stderr)}`, { code: 'push-failed' });
  }
}
