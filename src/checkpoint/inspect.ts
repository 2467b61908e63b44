import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { treeBytes } from '../host/walk.ts';
import { StasisError } from '../errors.ts';
import { defaultSpec, type OciSpec } from '../runtime/spec.ts';
import { readCriuProcesses, type CriuProcesses } from './criu/creds.ts';
import { decodeMessage, readImageEntries } from './criu/images.ts';
import { readImageMounts, type ImageMount } from './criu/mounts.ts';
import { readTaskMemory, type TaskMemory } from './criu/memory.ts';
import { detectEngine, type Engine } from './format/engines.ts';
import { FILES, hasCriuImages } from './format/layout.ts';
import { validateCheckpointMeta } from './format/meta.ts';
import { applyRestorePolicy, type RestorePolicyOptions } from './policy/spec.ts';
import { checkRestoredImages, type ImagePolicyOptions } from './policy/processes.ts';
import type { PolicyRefusal, TrustArea } from './policy/trust.ts';
import { formatBytes } from '../host/units.ts';

// What a checkpoint folder holds and what restoring it would ask for, without
// restoring it: for `stasis checkpoint-inspect`. Everything in the folder is
// untrusted; a file that is missing or damaged becomes a line in `problems`,
// never an exception (except for a folder that is not a checkpoint at all).
// An archive is unpacked (with its entries checked) by the caller first.


export interface InspectOptions {
  /** The policy to judge by; default: stasis's default spec for this container. */
  policySpec?: OciSpec;
  /** How it would be restored; default: as it was run (the checkpoint's rootfs kind), else onto a --rootfs base. */
  kind?: 'overlay' | 'bundle';
  userMounts?: RestorePolicyOptions['userMounts'];
  trust?: RestorePolicyOptions['trust'];
  hostLimits?: RestorePolicyOptions['hostLimits'];
  pathExists?: ImagePolicyOptions['pathExists'];
}

export interface ReportMount {
  destination: string;
  type: string | null;
  source: string | null;
  options: string[];
  /** policy: replaced by the policy's mount there; kept: taken as it is (a tmpfs, or a grant); refused. */
  verdict: 'policy' | 'kept' | 'refused';
}

export interface ReportProcess {
  pid: number;
  tid: number;
  comm: string | null;
  uid: number | null;
  gid: number | null;
  capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] } | null;
  seccomp: string;
  lsmProfile: string | null;
}

export interface CheckpointReport {
  path: string;
  engine: Engine;
  /** Why that engine: the files and annotations that say so. */
  engineEvidence: string[];
  container: { id: string | null; name: string | null };
  command: string[] | null;
  createdAt: string | null;
  checkpointedAt: string | null;
  versions: { runc: string | null; criu: string | null };
  base: { kind: 'overlay' | 'bundle' | null; path: string | null; fingerprint: string | null; image: string | null };
  criuOptions: string[];
  hooks: { kind: string; path: string; args: string[] }[];
  mounts: ReportMount[];
  /** The mount tree CRIU would rebuild (from mountpoints-N.img). */
  imageMounts: { mountpoint: string; fstype: string; source: string; readOnly: boolean; externalKey: string | null }[];
  capabilities: { spec: Record<string, string[]> | null; processes: ReportProcess[] };
  namespaces: { type: string; path: string | null; restoredAs: 'own' | 'host' | null }[];
  /**
   * pstree.img's tasks, parents first, with core's comm and, from the memory
   * images (criu/memory.ts), the command line (argv as it was in the
   * process's memory) and the bytes of memory CRIU wrote (dumped) and the
   * process had mapped; null where the images do not say.
   */
  processes: { pid: number; ppid: number; comm: string | null; threads: number; command: string[] | null; memoryBytes: number | null; mappedBytes: number | null }[];
  sizes: { totalBytes: number; imagesBytes: number; memoryBytes: number; rootfsDiffBytes: number | null };
  /** An export written with --have: its big files travel as chunks, the rest is to come from the restoring host's checkpoint store. */
  chunked?: { files: string[]; fromStoreBytes: number; chunksFromStore: number } | null;
  /** Files that are missing or do not decode. */
  problems: string[];
  verdict: { restorable: boolean; refused: PolicyRefusal[]; warnings: string[] };
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);

function readJson(dir: string, name: string, problems: string[]): unknown {
  const path = join(dir, name);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    problems.push(`${name}: not valid JSON (${(err as Error).message})`);
    return undefined;
  }
}

/** The bytes of a regular file, or of the regular files under a folder; a link (and what it names) counts nothing. */
function sizeOf(path: string): number {
  const stat = lstatSync(path, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (stat.isFile()) return stat.size;
  return stat.isDirectory() ? treeBytes(path, { onUnreadable: 'skip' }) : 0;
}

/** Reports what the checkpoint folder `dir` holds and what restoring it would ask for. */
export function inspectCheckpoint(dir: string, opts: InspectOptions = {}): CheckpointReport {
  const images = join(dir, FILES.images);
  if (!hasCriuImages(dir)) {
    throw new StasisError(`${dir} is not a checkpoint: it has no ${FILES.images}/${FILES.inventory}`, {
      hint: 'give the folder `stasis checkpoint` printed, or an archive it, podman or CRI-O exported',
    });
  }
  const problems: string[] = [];
  const rawSpec = readJson(dir, 'spec.dump', problems);
  const spec = isObject(rawSpec) ? rawSpec : {};
  if (rawSpec === undefined && !problems.some((p) => p.startsWith('spec.dump'))) problems.push('spec.dump: missing');
  const rawConfig = readJson(dir, 'config.dump', problems);
  const config = isObject(rawConfig) ? rawConfig : {};
  const annotations = isObject(spec.annotations) ? spec.annotations : {};
  const detected = detectEngine(dir);
  const { engine, evidence } = detected;

  // stasis.json, checked as restore checks it.
  const rawMeta = readJson(dir, 'stasis.json', problems);
  let meta: ReturnType<typeof validateCheckpointMeta> | null = null;
  if (rawMeta !== undefined) {
    try {
      meta = validateCheckpointMeta(rawMeta);
    } catch (err) {
      problems.push(`stasis.json: ${(err as Error).message.replace(/^[^\n]*:\n/, '').replace(/\n\s*/g, '; ').trim()}`);
    }
  }
  const looseMeta = isObject(rawMeta) ? rawMeta : {};
  const looseRootfs = isObject(looseMeta.rootfs) ? looseMeta.rootfs : {};

  // CRIU's images.
  let processes: CriuProcesses | null = null;
  let mounts: ImageMount[] = [];
  try {
    processes = readCriuProcesses(images);
  } catch (err) {
    problems.push((err as Error).message);
  }
  try {
    mounts = readImageMounts(images);
  } catch (err) {
    problems.push((err as Error).message);
  }
  let tcpClose = false;
  try {
    const [inventory] = readImageEntries(join(images, 'inventory.img'), 'inventory');
    if (inventory) tcpClose = decodeMessage(inventory, 'inventory.img', 'inventory_entry').bool(10) === true;
  } catch (err) {
    problems.push((err as Error).message);
  }

  const process = isObject(spec.process) ? spec.process : {};
  const command = Array.isArray(process.args) && process.args.every((a) => typeof a === 'string') ? (process.args as string[]) : null;
  const id = meta?.id ?? str(looseMeta.id) ?? str(config.id) ?? str(annotations['org.stasis.id']);
  const kind = meta?.rootfs.kind ?? (looseRootfs.kind === 'bundle' || looseRootfs.kind === 'overlay' ? looseRootfs.kind : null);

  // The verdict: the spec through the policy, then the images against what it would give.
  const policySpec = opts.policySpec ?? defaultSpec(id && id.length > 0 ? id : 'checkpoint', []);
  const restoreKind = opts.kind ?? kind ?? 'overlay';
  const refused: PolicyRefusal[] = [];
  const warnings: string[] = [];
  let restoreSpec: OciSpec | null = null;
  if (rawSpec !== undefined) {
    try {
      const base: RestorePolicyOptions = { policySpec, kind: restoreKind, userMounts: opts.userMounts, trust: opts.trust, hostLimits: opts.hostLimits };
      const result = applyRestorePolicy(rawSpec, base);
      warnings.push(...result.warnings);
      if (result.ok) restoreSpec = result.spec;
      else {
        refused.push(...result.refused);
        // To list what the images ask beyond that too, judge them by the spec the refused grants would give.
        const granted = [...new Set(result.refused.map((r) => r.area))];
        const trust: TrustArea[] | 'all' = opts.trust === 'all' ? 'all' : [...(opts.trust ?? []), ...granted];
        const provisional = applyRestorePolicy(rawSpec, { ...base, trust });
        if (provisional.ok) restoreSpec = provisional.spec;
      }
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (restoreSpec && processes) {
    const images = checkRestoredImages({ processes, mounts }, restoreSpec, { trust: opts.trust, hostLimits: opts.hostLimits, pathExists: opts.pathExists });
    for (const r of images.refused) if (!refused.some((o) => o.area === r.area && o.what === r.what)) refused.push(r);
    warnings.push(...images.warnings);
  }

  const refusedMounts = new Set(refused.filter((r) => r.area === 'mounts').map((r) => r.what));
  const policyDestinations = new Set(((policySpec.mounts ?? []) as { destination?: string }[]).map((m) => m.destination));
  const reportMounts: ReportMount[] = (Array.isArray(spec.mounts) ? spec.mounts : []).filter(isObject).map((m) => {
    const destination = str(m.destination) ?? '(none)';
    return {
      destination,
      type: str(m.type),
      source: str(m.source),
      options: Array.isArray(m.options) ? m.options.map(String) : [],
      verdict: refusedMounts.has(`mount ${destination}`) ? 'refused' : policyDestinations.has(destination) ? 'policy' : 'kept',
    };
  });

  const hooks: CheckpointReport['hooks'] = [];
  if (isObject(spec.hooks)) {
    for (const [hookKind, list] of Object.entries(spec.hooks)) {
      for (const hook of Array.isArray(list) ? list : []) {
        if (!isObject(hook)) continue;
        hooks.push({ kind: hookKind, path: str(hook.path) ?? '(no path)', args: Array.isArray(hook.args) ? hook.args.map(String) : [] });
      }
    }
  }

  const linux = isObject(spec.linux) ? spec.linux : {};
  const namespaces = (Array.isArray(linux.namespaces) ? linux.namespaces : []).filter(isObject).map((ns) => {
    const type = str(ns.type) ?? '(none)';
    const kindOf = ({ pid: 'pid', network: 'network', ipc: 'ipc', uts: 'uts', mount: 'mount', user: 'user', cgroup: 'cgroup', time: 'time' } as const)[type as 'pid'];
    const own = kindOf ? processes?.rootNamespaces[kindOf] : undefined;
    return { type, path: str(ns.path), restoredAs: own === undefined ? null : own ? ('own' as const) : ('host' as const) };
  });

  const specCaps = isObject(process.capabilities)
    ? Object.fromEntries(Object.entries(process.capabilities).filter(([, v]) => Array.isArray(v)).map(([k, v]) => [k, (v as unknown[]).map(String)]))
    : null;

  const criuOptions = meta?.criuOptions ?? (Array.isArray(looseMeta.criuOptions) ? looseMeta.criuOptions.map(String) : []);
  if (tcpClose && !criuOptions.includes('tcp-close')) criuOptions.push('tcp-close');

  const pages = existsSync(images) ? readdirSync(images).filter((name) => /^pages-\d+\.img$/.test(name)) : [];
  const diff = join(dir, 'rootfs-diff.tar');

  return {
    path: dir,
    engine,
    engineEvidence: evidence,
    container: { id, name: detected.name ?? null },
    command,
    createdAt: str(config.createdTime) ?? str(annotations['io.kubernetes.cri-o.Created']),
    checkpointedAt: meta?.checkpointedAt ?? str(looseMeta.checkpointedAt) ?? str(config.checkpointedTime),
    versions: { runc: meta?.runcVersion ?? null, criu: meta?.criuVersion ?? null },
    base: {
      kind,
      path: meta?.rootfs.base ?? str(looseRootfs.base) ?? str(config.rootfsImage),
      fingerprint: meta?.rootfs.fingerprint ?? str(looseRootfs.fingerprint) ?? str(config.rootfsImageRef),
      image: str(config.rootfsImageName),
    },
    criuOptions,
    hooks,
    mounts: reportMounts,
    imageMounts: mounts.map((m) => ({ mountpoint: m.mountpoint, fstype: m.fstype === 'auto' ? (m.fsname ?? 'auto') : m.fstype, source: m.source, readOnly: m.readOnly, externalKey: m.externalKey })),
    capabilities: {
      spec: specCaps,
      processes: (processes?.threads ?? []).map((t) => ({
        pid: t.pid,
        tid: t.tid,
        comm: t.comm,
        uid: t.creds?.uid ?? null,
        gid: t.creds?.gid ?? null,
        capabilities: t.creds
          ? { bounding: t.creds.capBnd, effective: t.creds.capEff, permitted: t.creds.capPrm, inheritable: t.creds.capInh, ambient: t.creds.capAmb ?? [] }
          : null,
        seccomp: t.seccomp,
        lsmProfile: t.creds?.lsmProfile ?? null,
      })),
    },
    namespaces,
    processes: (processes?.tasks ?? []).map((t) => {
      let memory: TaskMemory | null = null;
      try {
        memory = readTaskMemory(images, t.pid);
      } catch (err) {
        // Sizes and command lines are for the reader; restore does not use
        // these images' contents, so only damage is a problem, not absence.
        if (existsSync(join(images, `mm-${t.pid}.img`))) problems.push((err as Error).message);
      }
      return { pid: t.pid, ppid: t.ppid, comm: t.comm, threads: t.threads.length, command: memory?.args ?? null, memoryBytes: memory?.dumpedBytes ?? null, mappedBytes: memory?.mappedBytes ?? null };
    }),
    sizes: {
      totalBytes: sizeOf(dir),
      imagesBytes: sizeOf(images),
      memoryBytes: pages.reduce((total, name) => total + sizeOf(join(images, name)), 0),
      rootfsDiffBytes: existsSync(diff) ? sizeOf(diff) : null,
    },
    problems,
    verdict: { restorable: refused.length === 0 && problems.length === 0 && restoreSpec !== null, refused, warnings },
  };
}

/** The report as plain text (no colour): what `stasis checkpoint-inspect` prints. */
export function formatInspectReport(report: CheckpointReport): string {
  const lines: string[] = [];
  const row = (label: string, value: string) => lines.push(`${label.padEnd(14)}${value}`);
  const list = (values: readonly string[]) => (values.length > 0 ? values.join(', ') : 'none');
  row('Checkpoint', report.path);
  row('Engine', `${report.engine}${report.engineEvidence.length > 0 ? ` (${report.engineEvidence.join(', ')})` : ''}`);
  row('Container', `${report.container.id ?? '?'}${report.container.name && report.container.name !== report.container.id ? ` (name ${report.container.name})` : ''}`);
  row('Command', report.command ? report.command.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(' ') : '?');
  if (report.createdAt) row('Created', report.createdAt);
  row('Checkpointed', report.checkpointedAt ?? '?');
  const base = report.base;
  row('Base', base.path ? `${base.kind ?? ''} ${base.path}${base.fingerprint ? ` (${base.fingerprint})` : ''}${base.image && base.image !== base.path ? `, image ${base.image}` : ''}`.trim() : '?');
  if (report.versions.runc || report.versions.criu) row('Versions', `runc ${report.versions.runc ?? '?'}, CRIU ${report.versions.criu ?? '?'}`);
  row('CRIU options', list(report.criuOptions));
  const size = report.sizes;
  row('Size', `${formatBytes(size.totalBytes)} (memory ${formatBytes(size.memoryBytes)}${size.rootfsDiffBytes !== null ? `, rootfs changes ${formatBytes(size.rootfsDiffBytes)}` : ''})`);
  if (report.chunked) row('Chunked', `${report.chunked.files.join(', ')}: ${formatBytes(report.chunked.fromStoreBytes)} (${report.chunked.chunksFromStore} chunks) to come from a checkpoint store holding them (only stasis restores it)`);
  row('Namespaces', list(report.namespaces.map((ns) => `${ns.type}${ns.path ? ` ${ns.path}` : ''}${ns.restoredAs === 'host' ? ' (the host\'s!)' : ''}`)));
  row('Hooks', list(report.hooks.map((h) => `${h.kind} ${h.path}`)));
  if (report.capabilities.spec) {
    lines.push('Capabilities in the spec');
    for (const [set, names] of Object.entries(report.capabilities.spec)) lines.push(`  ${set.padEnd(12)}${list(names)}`);
  }
  lines.push('Process tree   (memory: written by CRIU / mapped)');
  const children = new Map<number, CheckpointReport['processes']>();
  const pids = new Set(report.processes.map((p) => p.pid));
  for (const p of report.processes) {
    const parent = pids.has(p.ppid) ? p.ppid : 0;
    children.set(parent, [...(children.get(parent) ?? []), p]);
  }
  const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg));
  const tree = (parent: number, depth: number, seen: Set<number>) => {
    for (const p of children.get(parent) ?? []) {
      if (seen.has(p.pid)) continue;
      seen.add(p.pid);
      const memory = p.memoryBytes === null ? '?' : `${formatBytes(p.memoryBytes)} / ${p.mappedBytes === null ? '?' : formatBytes(p.mappedBytes)}`;
      const command = p.command ? p.command.map(quote).join(' ') : `[${p.comm ?? '?'}]`;
      lines.push(`  ${'  '.repeat(depth)}${String(p.pid).padEnd(8)}${memory.padEnd(22)}${command}${p.threads > 1 ? ` (${p.threads} threads)` : ''}`);
      tree(p.pid, depth + 1, seen);
    }
  };
  tree(0, 0, new Set());
  lines.push('Processes');
  for (const p of report.capabilities.processes) {
    const caps = p.capabilities ? `bounding ${list(p.capabilities.bounding)}; effective ${list(p.capabilities.effective)}` : 'no credentials recorded';
    lines.push(`  ${`${p.pid}${p.tid !== p.pid ? `/${p.tid}` : ''}`.padEnd(8)}${(p.comm ?? '?').padEnd(16)}uid ${p.uid ?? '?'}  ${caps}`);
  }
  lines.push('Mounts');
  for (const m of report.mounts) {
    lines.push(`  ${m.destination.padEnd(22)}${(m.type ?? '?').padEnd(8)}${(m.source ?? '').padEnd(20)}${m.verdict === 'refused' ? 'REFUSED' : m.verdict === 'policy' ? 'policy' : 'kept'}`);
  }
  if (report.problems.length > 0) {
    lines.push('Problems');
    for (const problem of report.problems) lines.push(`  ${problem}`);
  }
  if (report.verdict.restorable) lines.push('Verdict       restorable under stasis\'s policy');
  else if (report.verdict.refused.length > 0) {
    lines.push('Verdict       refused: it asks for more than the policy allows');
    for (const r of report.verdict.refused) {
      lines.push(`  ${r.what}: ${r.asked} (${r.source})`);
      lines.push(`    grant: ${r.grant}`);
    }
  } else lines.push('Verdict       not restorable: see the problems');
  if (report.verdict.warnings.length > 0) {
    lines.push('Warnings');
    for (const w of report.verdict.warnings) lines.push(`  ${w}`);
  }
  return `${lines.join('\n')}\n`;
}
