import { which } from '../host/which.ts';
import type { OciSpec } from './spec.ts';

// A container with a network namespace of its own has loopback, as `runc spec`
// promises. runc 1.1 brings lo up at create, but a restore gets the namespace
// empty (runc has CRIU leave the network namespace's contents out), and lo
// stays down. runc runs createRuntime hooks at create and, on restore, at
// CRIU's setup-namespaces stage: before CRIU restores any socket, which is
// what a listening server on 127.0.0.1 or an established connection needs.
// So the hook is in the spec of a restore only: at create it would only cost
// run -d its three program starts.

/** The marker that tells stasis's own hook from the user's (it is never carried in a checkpoint). */
export const LOOPBACK_HOOK_MARK = 'stasis-loopback-up';

interface Hook {
  path: string;
  args?: string[];
  timeout?: number;
}

/** The spec without stasis's loopback hook. */
export function withoutLoopbackHook(spec: OciSpec): OciSpec {
  const hooks = spec.hooks as Record<string, Hook[] | undefined> | undefined;
  if (!hooks?.createRuntime) return spec;
  hooks.createRuntime = hooks.createRuntime.filter((hook) => !(hook.args ?? []).includes(LOOPBACK_HOOK_MARK));
  if (hooks.createRuntime.length === 0) delete hooks.createRuntime;
  if (Object.keys(hooks).length === 0) delete spec.hooks;
  return spec;
}

/**
 * Adds the hook that brings lo up, for a spec with a network namespace of its
 * own (one joined by path is someone else's). runc gives a hook no
 * environment, so the programs are named by absolute path; without nsenter
 * or ip nothing is added (`stasis doctor` says so).
 */
export function withLoopbackHook(spec: OciSpec): OciSpec {
  withoutLoopbackHook(spec);
  const ownNetwork = (spec.linux?.namespaces ?? []).some((ns) => ns.type === 'network' && !ns.path);
  const nsenter = which('nsenter');
  const ip = which('ip');
  if (!ownNetwork || nsenter === null || ip === null) return spec;
  // The container's state (JSON with "pid") arrives on the hook's stdin. A static busybox starts
  // in a fraction of dynamically linked nsenter's and ip's time (the hook runs inside the
  // restore's downtime): tried first where there is one; one without those applets falls through.
  const busybox = which('busybox');
  const quick = busybox === null ? '' : `${busybox} nsenter --net=$net ${busybox} ip link set lo up 2>/dev/null || `;
  const script = `read -r state; pid=\${state#*\\"pid\\":}; pid=\${pid%%[!0-9]*}; net=/proc/$pid/ns/net; ${quick}exec ${nsenter} --net=$net ${ip} link set lo up`;
  const hooks = (spec.hooks ?? {}) as Record<string, Hook[]>;
  hooks.createRuntime = [...(hooks.createRuntime ?? []), { path: '/bin/sh', args: ['sh', '-c', script, LOOPBACK_HOOK_MARK], timeout: 10 }];
  spec.hooks = hooks;
  return spec;
}
