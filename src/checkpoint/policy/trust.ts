import { readFileSync } from 'node:fs';
import { StasisError } from '../../errors.ts';
import type { RlimitValue } from '../criu/creds.ts';

// The trust model of a restore: the areas in which a checkpoint can ask for more than
// stasis's restore policy, how such an excess is refused and granted, and this host's
// limits, which a fresh container could not exceed. The policy itself is in policy.ts
// (the spec) and policy-images.ts (CRIU's images).
//
// Grant model. Each thing a checkpoint can ask for beyond the policy belongs to one
// trust area. Restore refuses a checkpoint that asks for more than the policy in an area
// the caller did not trust, listing every excess with the way to grant it; nothing that
// matters is dropped silently, because CRIU restores the mount tree, credentials and
// namespaces its images record, so a restore that quietly left an extra mount or
// capability out of the spec would either fail inside CRIU or not take it away at all.
//   - mounts: a bind mount is granted one destination at a time by the user naming its
//     source (userMounts), or by a bundle whose config.json has it; trusting the area
//     takes the checkpoint's own sources.
//   - everything else is granted per area (`trust`), or all at once ('all'): an admin's
//     explicit, knowing decision for a checkpoint they vouch for.
// Hooks are never taken from an untrusted checkpoint unless the area is trusted, and
// dropping them is safe, so they are dropped with a warning rather than refused. The same
// goes for fields the policy replaces without loss (seccomp, AppArmor, masked paths in the
// spec): the spec gets the policy's, a warning says what the checkpoint asked for, and
// what the processes really get is checked in CRIU's images (checkRestoredImages).

export type TrustArea = 'hooks' | 'mounts' | 'capabilities' | 'devices' | 'namespaces' | 'security' | 'rlimits';
export const TRUST_AREAS: readonly TrustArea[] = ['hooks', 'mounts', 'capabilities', 'devices', 'namespaces', 'security', 'rlimits'];

/** Spellings of the command-line grants named in refusals (data for the message; the command layer owns the flags). */
export const GRANT_FLAGS = {
  trust: '--trust-checkpoint',
  mount: '--mount',
  bundle: '--bundle',
};

export type Trust = readonly TrustArea[] | 'all';

export interface PolicyRefusal {
  area: TrustArea;
  /** The thing asked for: "mount /data", "capability CAP_SYS_ADMIN". */
  what: string;
  /** What the checkpoint asks, in words. */
  asked: string;
  /** How to grant it, naming the command-line flags. */
  grant: string;
  /** Where it was found: spec.dump, or a CRIU image. */
  source: string;
}

/** A refusal as one error: every excess on its own line, the grants in the hint. */
export class RestorePolicyError extends StasisError {
  readonly refused: PolicyRefusal[];
  constructor(refused: PolicyRefusal[], subject = 'the checkpoint') {
    const lines = refused.map((r) => `  ${r.what}: ${r.asked} (${r.source})`);
    const grants = [...new Set(refused.map((r) => r.grant))];
    super(`${subject} asks for more than stasis's restore policy allows:\n${lines.join('\n')}`, {
      hint: `to grant it: ${grants.join('; ')}`,
    });
    this.name = 'RestorePolicyError';
    this.refused = refused;
  }
}

export function trusts(trust: Trust | undefined, area: TrustArea): boolean {
  return trust === 'all' || (trust?.includes(area) ?? false);
}

export function grantTrust(area: TrustArea): string {
  return `${GRANT_FLAGS.trust} ${area}`;
}

// ------------------------------------------------------------------ host limits

const PROC_LIMIT_NAMES: Record<string, string> = {
  'Max cpu time': 'RLIMIT_CPU',
  'Max file size': 'RLIMIT_FSIZE',
  'Max data size': 'RLIMIT_DATA',
  'Max stack size': 'RLIMIT_STACK',
  'Max core file size': 'RLIMIT_CORE',
  'Max resident set': 'RLIMIT_RSS',
  'Max processes': 'RLIMIT_NPROC',
  'Max open files': 'RLIMIT_NOFILE',
  'Max locked memory': 'RLIMIT_MEMLOCK',
  'Max address space': 'RLIMIT_AS',
  'Max file locks': 'RLIMIT_LOCKS',
  'Max pending signals': 'RLIMIT_SIGPENDING',
  'Max msgqueue size': 'RLIMIT_MSGQUEUE',
  'Max nice priority': 'RLIMIT_NICE',
  'Max realtime priority': 'RLIMIT_RTPRIO',
  'Max realtime timeout': 'RLIMIT_RTTIME',
};

/** Hard limits from the text of /proc/PID/limits (Node has no getrlimit). */
export function parseProcLimits(text: string): Map<string, RlimitValue> {
  const limits = new Map<string, RlimitValue>();
  for (const line of text.split('\n')) {
    const match = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    const type = match ? PROC_LIMIT_NAMES[match[1]] : undefined;
    if (!match || !type) continue;
    const hard = match[3] === 'unlimited' ? 'unlimited' : Number(match[3]);
    if (hard === 'unlimited' || Number.isFinite(hard)) limits.set(type, hard);
  }
  return limits;
}

let hostLimitsCache: Map<string, RlimitValue> | null = null;
export function readHostRlimits(): Map<string, RlimitValue> {
  if (hostLimitsCache === null) {
    try {
      hostLimitsCache = parseProcLimits(readFileSync('/proc/self/limits', 'utf8'));
    } catch {
      hostLimitsCache = new Map();
    }
  }
  return hostLimitsCache;
}

export function exceeds(value: RlimitValue, limit: RlimitValue | undefined): boolean {
  if (limit === undefined || limit === 'unlimited') return false;
  return value === 'unlimited' || value > limit;
}
