import { CheckpointSpecError, clone, isAbsolutePath, isObject, isString } from './shape.ts';
import { trusts, type Trust, type TrustArea } from './trust.ts';

// The restore policy for the linux section of a checkpoint's spec: namespaces, devices
// and resource limits (applyRestorePolicy in policy.ts calls these).

const NAMESPACE_TYPES: readonly string[] = ['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time'];

export function restoreNamespaces(
  linux: Record<string, unknown>,
  policyValue: unknown,
  resultLinux: Record<string, unknown>,
  trust: Trust | undefined,
  refuse: (area: TrustArea, what: string, asked: string, grant?: string) => void,
  warnings: string[],
): void {
  const value = linux.namespaces;
  if (value !== undefined && !Array.isArray(value)) throw new CheckpointSpecError('linux.namespaces', 'is not an array');
  const asked = (value ?? []) as unknown[];
  const entries = asked.map((ns, index) => {
    if (!isObject(ns) || !isString(ns.type) || !NAMESPACE_TYPES.includes(ns.type)) throw new CheckpointSpecError(`linux.namespaces[${index}]`, 'is not a namespace of a known type');
    if (ns.path !== undefined && !isAbsolutePath(ns.path)) throw new CheckpointSpecError(`linux.namespaces[${index}].path`, 'is not an absolute path');
    return { type: ns.type, path: ns.path as string | undefined };
  });
  const policyTypes = new Set(((policyValue ?? []) as { type: string }[]).map((ns) => ns.type));
  const askedTypes = new Set(entries.map((ns) => ns.type));
  if (trusts(trust, 'namespaces')) {
    resultLinux.namespaces = entries.map((ns) => (ns.path === undefined ? { type: ns.type } : { type: ns.type, path: ns.path }));
    // The ID mappings belong with the user namespace they were dumped in.
    if (askedTypes.has('user')) {
      for (const field of ['uidMappings', 'gidMappings'] as const) {
        if (linux[field] !== undefined) resultLinux[field] = clone(linux[field]);
      }
    }
    return;
  }
  for (const type of policyTypes) {
    if (!askedTypes.has(type)) refuse('namespaces', `${type} namespace`, `none: the container shared the host's ${type} namespace, and CRIU would restore it there`);
  }
  if (askedTypes.has('user') && !policyTypes.has('user')) {
    refuse('namespaces', 'user namespace', 'a user namespace with the checkpoint\'s own ID mappings');
  }
  for (const ns of entries) {
    if (ns.path === undefined) continue;
    if (ns.type === 'network') warnings.push(`the checkpoint joined the network namespace ${ns.path}; it is restored in a new one with loopback only`);
    else refuse('namespaces', `${ns.type} namespace ${ns.path}`, `joining an existing ${ns.type} namespace`);
  }
  resultLinux.namespaces = entries.map((ns) => ({ type: ns.type }));
}

export function restoreDevices(
  linux: Record<string, unknown>,
  policyLinux: Record<string, unknown>,
  resultLinux: Record<string, unknown>,
  trust: Trust | undefined,
  refuse: (area: TrustArea, what: string, asked: string, grant?: string) => void,
): void {
  const rules = (linux.resources === undefined ? undefined : isObject(linux.resources) ? linux.resources.devices : null) as unknown;
  if (rules === null) throw new CheckpointSpecError('linux.resources', 'is not an object');
  if (rules !== undefined && (!Array.isArray(rules) || !rules.every(isObject))) throw new CheckpointSpecError('linux.resources.devices', 'is not an array of rules');
  if (linux.devices !== undefined && (!Array.isArray(linux.devices) || !linux.devices.every(isObject))) throw new CheckpointSpecError('linux.devices', 'is not an array of devices');
  const policyRules = ((isObject(policyLinux.resources) ? policyLinux.resources.devices : undefined) ?? []) as Record<string, unknown>[];
  const policyNodes = (policyLinux.devices ?? []) as Record<string, unknown>[];
  if (trusts(trust, 'devices')) {
    const resources = (resultLinux.resources ??= {}) as Record<string, unknown>;
    if (rules !== undefined) resources.devices = clone(rules);
    if (linux.devices !== undefined) resultLinux.devices = clone(linux.devices);
    return;
  }
  for (const rule of (rules ?? []) as Record<string, unknown>[]) {
    if (rule.allow !== true) continue;
    if (policyRules.some((allowed) => allowed.allow === true && sameRule(allowed, rule))) continue;
    refuse('devices', `device rule ${describeRule(rule)}`, 'access to host devices beyond the policy\'s');
  }
  for (const node of (linux.devices ?? []) as Record<string, unknown>[]) {
    if (policyNodes.some((allowed) => allowed.path === node.path && allowed.type === node.type && allowed.major === node.major && allowed.minor === node.minor)) continue;
    refuse('devices', `device ${String(node.path)}`, `a ${String(node.type)} device node ${String(node.major)}:${String(node.minor)} in the container`);
  }
}

function sameRule(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const type = (rule: Record<string, unknown>) => rule.type ?? 'a';
  const num = (value: unknown) => (value === undefined || value === null || value === -1 ? '*' : String(value));
  const access = (rule: Record<string, unknown>) => new Set(String(rule.access ?? 'rwm').split(''));
  if (type(a) !== type(b) || num(a.major) !== num(b.major) || num(a.minor) !== num(b.minor)) return false;
  const allowed = access(a);
  return [...access(b)].every((c) => allowed.has(c));
}

function describeRule(rule: Record<string, unknown>): string {
  const num = (value: unknown) => (value === undefined || value === null || value === -1 ? '*' : String(value));
  return `${String(rule.type ?? 'a')} ${num(rule.major)}:${num(rule.minor)} ${String(rule.access ?? 'rwm')}`;
}

/**
 * Memory, pids and CPU limits are kept (they protect the host, and the restored
 * processes may need what they had); where the policy sets one too, the lower wins.
 */
export function restoreResources(value: unknown, resultLinux: Record<string, unknown>, warnings: string[]): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new CheckpointSpecError('linux.resources', 'is not an object');
  const resources = (resultLinux.resources ??= {}) as Record<string, unknown>;
  const lower = (policyValue: unknown, asked: number): number => {
    // OCI: zero or a negative limit means none.
    if (typeof policyValue !== 'number' || policyValue <= 0) return asked;
    return asked <= 0 ? policyValue : Math.min(policyValue, asked);
  };
  const limits = (field: 'memory' | 'pids', names: string[]) => {
    const object = value[field];
    if (object === undefined) return;
    if (!isObject(object)) throw new CheckpointSpecError(`linux.resources.${field}`, 'is not an object');
    const policyObject = isObject(resources[field]) ? (resources[field] as Record<string, unknown>) : {};
    const kept: Record<string, unknown> = { ...policyObject };
    for (const name of names) {
      const n = object[name];
      if (n === undefined) continue;
      if (!Number.isSafeInteger(n)) throw new CheckpointSpecError(`linux.resources.${field}.${name}`, 'is not an integer');
      kept[name] = lower(policyObject[name], n as number);
    }
    resources[field] = kept;
  };
  limits('memory', ['limit', 'reservation', 'swap']);
  limits('pids', ['limit']);
  if (value.cpu !== undefined && resources.cpu === undefined) {
    if (!isObject(value.cpu)) throw new CheckpointSpecError('linux.resources.cpu', 'is not an object');
    const cpu: Record<string, unknown> = {};
    for (const name of ['shares', 'quota', 'period']) {
      const n = value.cpu[name];
      if (n === undefined) continue;
      if (!Number.isSafeInteger(n)) throw new CheckpointSpecError(`linux.resources.cpu.${name}`, 'is not an integer');
      cpu[name] = n;
    }
    for (const name of ['cpus', 'mems']) {
      const set = value.cpu[name];
      if (set === undefined) continue;
      if (!isString(set) || !/^[0-9,-]*$/.test(set)) throw new CheckpointSpecError(`linux.resources.cpu.${name}`, 'is not a CPU list');
      cpu[name] = set;
    }
    resources.cpu = cpu;
  }
  const other = Object.keys(value).filter((name) => !['memory', 'pids', 'cpu', 'devices'].includes(name));
  if (other.length > 0) warnings.push(`the checkpoint's linux.resources ${other.join(', ')} are not used`);
}
