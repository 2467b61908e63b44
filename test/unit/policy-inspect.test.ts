import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { formatInspectReport, inspectCheckpoint } from '../../src/checkpoint/inspect.ts';
import { defaultSpec } from '../../src/runtime/spec.ts';
import { syntheticImages, type SyntheticImages } from './criu-encode.ts';

let root: string;
let counter = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'stasis-inspect-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

const EXISTING = new Set(['/proc/acpi', '/proc/keys', '/proc/timer_list', '/sys/firmware', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys']);
const OPTS = { pathExists: (p: string) => EXISTING.has(p), hostLimits: new Map<string, number>([['RLIMIT_NOFILE', 524288]]) };

function specDump(): Record<string, any> {
  const spec = JSON.parse(JSON.stringify(defaultSpec('c1', ['sleep', '1000'])));
  spec.annotations = { 'io.container.manager': 'stasis', 'org.stasis.id': 'c1', 'io.kubernetes.cri.container-name': 'c1' };
  return spec;
}

function stasisJson(): Record<string, any> {
  return {
    format: 1, id: 'c1', checkpointedAt: '2026-12-01T09:45:40.163Z', runcVersion: '1.1.5', criuVersion: '4.1.1',
    rootfs: { kind: 'overlay', base: '/var/lib/stasis/rootfs/busybox', fingerprint: `sha256:${'0'.repeat(64)}`, userBundle: null },
    restoreArgs: [], criuOptions: [], preDump: false, parentPath: null, command: ['sleep', '1000'], labels: {},
  };
}

function checkpointDir(files: { spec?: unknown; meta?: unknown; config?: unknown; images?: SyntheticImages; extra?: Record<string, string> }): string {
  const dir = join(root, `ckpt-${counter++}`);
  mkdirSync(join(dir, 'checkpoint'), { recursive: true });
  for (const [name, bytes] of syntheticImages(files.images)) writeFileSync(join(dir, 'checkpoint', name), bytes);
  writeFileSync(join(dir, 'checkpoint', 'pages-1.img'), Buffer.alloc(8192));
  if (files.spec !== undefined) writeFileSync(join(dir, 'spec.dump'), JSON.stringify(files.spec));
  if (files.meta !== undefined) writeFileSync(join(dir, 'stasis.json'), JSON.stringify(files.meta));
  if (files.config !== undefined) writeFileSync(join(dir, 'config.dump'), JSON.stringify(files.config));
  for (const [name, text] of Object.entries(files.extra ?? {})) writeFileSync(join(dir, name), text);
  return dir;
}

describe('inspectCheckpoint', () => {
  test('a stasis checkpoint: what it holds, restorable', () => {
    const report = inspectCheckpoint(checkpointDir({ spec: specDump(), meta: stasisJson(), config: { id: 'c1', name: 'c1', createdTime: '2026-12-01T09:45:39.998Z' } }), OPTS);
    assert.equal(report.engine, 'stasis');
    assert.deepEqual(report.container, { id: 'c1', name: 'c1' });
    assert.deepEqual(report.command, ['sleep', '1000']);
    assert.equal(report.base.path, '/var/lib/stasis/rootfs/busybox');
    assert.deepEqual(report.namespaces.map((ns) => [ns.type, ns.restoredAs]), [['pid', 'own'], ['network', 'own'], ['ipc', 'own'], ['uts', 'own'], ['mount', 'own']]);
    assert.deepEqual(report.capabilities.processes[0].capabilities?.bounding, ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE']);
    assert.equal(report.sizes.memoryBytes, 8192);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.verdict, { restorable: true, refused: [], warnings: [] });
    assert.match(formatInspectReport(report), /Verdict +restorable/);
  });

  test('a hostile checkpoint: every excess of the spec and the images, with its grant', () => {
    const spec = specDump();
    spec.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'id'] }] };
    spec.mounts.push({ destination: '/data', type: 'bind', source: '/', options: ['rbind'] });
    spec.process.capabilities.bounding = [...spec.process.capabilities.bounding, 'CAP_SYS_MODULE'];
    const meta = { ...stasisJson(), restoreArgs: ['--pid-file', '/etc/passwd'] };
    const report = inspectCheckpoint(checkpointDir({
      spec, meta,
      images: { tasks: [{ pid: 1, comm: 'sh', capBnd: (1n << 21n) | (1n << 5n) }], hostNamespaces: [6] },
    }), OPTS);
    assert.equal(report.verdict.restorable, false);
    assert.deepEqual(report.verdict.refused.map((r) => r.what), ['capability CAP_SYS_MODULE', 'mount /data', 'capability CAP_SYS_ADMIN', 'network namespace']);
    assert.deepEqual(report.hooks, [{ kind: 'prestart', path: '/bin/sh', args: ['sh', '-c', 'id'] }]);
    assert.equal(report.mounts.find((m) => m.destination === '/data')?.verdict, 'refused');
    assert.equal(report.namespaces.find((ns) => ns.type === 'network')?.restoredAs, 'host');
    assert.ok(report.problems.some((p) => /stasis\.json: restoreArgs: "--pid-file" "\/etc\/passwd"/.test(p)), report.problems.join('\n'));
    const text = formatInspectReport(report);
    assert.match(text, /\/data +bind +\/ +REFUSED/);
    assert.match(text, /grant: --trust-checkpoint capabilities/);
    assert.match(text, /network \(the host's!\)/);
    assert.match(text, /hooks are not run: prestart \/bin\/sh/);
  });

  test('engines are told apart by their files and annotations', () => {
    const withAnnotations = (annotations: Record<string, string>) => ({ ...specDump(), annotations });
    const podman = inspectCheckpoint(checkpointDir({ spec: withAnnotations({ 'io.container.manager': 'libpod' }), config: { id: 'f11d1184', name: 'magical_murdock', rootfsImageName: 'quay.io/x/y:latest' } }), OPTS);
    assert.deepEqual([podman.engine, podman.container.name, podman.base.image], ['podman', 'magical_murdock', 'quay.io/x/y:latest']);
    const crio = inspectCheckpoint(checkpointDir({ spec: withAnnotations({ 'io.kubernetes.cri-o.Metadata': '{"name":"counter"}', 'io.kubernetes.cri-o.Created': '2023-02-13T16:20:09Z' }) }), OPTS);
    assert.deepEqual([crio.engine, crio.container.name, crio.createdAt], ['cri-o', 'counter', '2023-02-13T16:20:09Z']);
    const containerd = inspectCheckpoint(checkpointDir({ spec: withAnnotations({ 'io.kubernetes.cri.container-name': 'web' }), extra: { status: '{}' } }), OPTS);
    assert.deepEqual([containerd.engine, containerd.container.name], ['containerd', 'web']);
  });

  test('damaged files are problems, not crashes; a folder without images is not a checkpoint', () => {
    const dir = checkpointDir({ spec: specDump() });
    writeFileSync(join(dir, 'checkpoint', 'core-1.img'), Buffer.from([1, 2, 3]));
    writeFileSync(join(dir, 'config.dump'), '{not json');
    const report = inspectCheckpoint(dir, OPTS);
    assert.ok(report.problems.some((p) => /core-1\.img/.test(p)), report.problems.join('\n'));
    assert.ok(report.problems.some((p) => /config\.dump: not valid JSON/.test(p)));
    assert.equal(report.verdict.restorable, false);
    assert.match(formatInspectReport(report), /Problems/);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    assert.throws(() => inspectCheckpoint(empty), /is not a checkpoint/);
  });
});
