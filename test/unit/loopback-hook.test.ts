// The loopback hook a restore's spec gets (src/runtime/network.ts), run as runc runs it: the
// container's state on stdin, no environment, against a real network namespace whose lo is down.
// Needs root (unshare -n); busybox, nsenter and ip as the host has them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOOPBACK_HOOK_MARK, withLoopbackHook } from '../../src/runtime/network.ts';
import type { OciSpec } from '../../src/runtime/spec.ts';
import { which } from '../../src/host/which.ts';

const busyboxApplets = () => spawnSync('busybox', ['--list'], { encoding: 'utf8' }).stdout?.split('\n') ?? [];
const missing = process.getuid?.() !== 0
  ? 'needs root'
  : ['unshare', 'nsenter', 'ip', 'busybox'].find((p) => which(p) === null) ?? (['nsenter', 'ip'].every((a) => busyboxApplets().includes(a)) ? undefined : "busybox's nsenter and ip applets");

/** The hook's command line for a spec with a network namespace of its own, with PATH as given while it is made. */
function hookFor(path: string): string[] {
  const saved = process.env.PATH;
  process.env.PATH = path;
  try {
    const spec = withLoopbackHook({ linux: { namespaces: [{ type: 'network' }] } } as OciSpec);
    const hook = (spec.hooks as { createRuntime: { path: string; args: string[] }[] }).createRuntime[0];
    assert.ok(hook.args.includes(LOOPBACK_HOOK_MARK));
    return [hook.path, ...hook.args.slice(1)];
  } finally {
    process.env.PATH = saved;
  }
}

/** Runs the hook against a fresh network namespace; returns whether lo is up there after, and what the hook said. */
async function runAgainstFreshNamespace(hook: string[]): Promise<{ up: boolean; code: number | null; stderr: string }> {
  // The holder says so once it is inside its new namespace.
  const holder = spawn('unshare', ['-n', 'sh', '-c', 'echo in; exec sleep 1000'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', () => reject(new Error('unshare -n ended')));
    });
    const ns = `/proc/${holder.pid}/ns/net`;
    const linkUp = () => /[<,]UP[,>]/.test(spawnSync('nsenter', [`--net=${ns}`, 'ip', '-o', 'link', 'show', 'lo'], { encoding: 'utf8' }).stdout);
    assert.equal(linkUp(), false, 'lo starts down');
    const state = JSON.stringify({ ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: holder.pid, bundle: '/nonexistent' });
    const result = spawnSync(hook[0], [...hook.slice(1)], { input: `${state}\n`, env: {}, encoding: 'utf8' });
    return { up: linkUp(), code: result.status, stderr: result.stderr };
  } finally {
    holder.kill('SIGKILL');
  }
}

describe('the loopback hook of a restore', { skip: missing && `${missing} missing` }, () => {
  test('with busybox on PATH: busybox brings lo up, and nsenter and ip are not needed', async () => {
    const hook = hookFor(process.env.PATH ?? '');
    assert.match(hook.join(' '), /busybox nsenter --net=\$net \S+busybox ip link set lo up/);
    // The fallback's programs replaced by ones that fail: busybox alone must have done it.
    const broken = hook.map((arg) => arg.replace(/exec \S+ --net/, 'exec /bin/false --net'));
    assert.notDeepEqual(broken, hook);
    const { up, code, stderr } = await runAgainstFreshNamespace(broken);
    assert.equal(code, 0, stderr);
    assert.equal(up, true);
  });

  test('a busybox without the applets: the hook falls through to nsenter and ip', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-hook-'));
    try {
      const fake = join(dir, 'busybox');
      writeFileSync(fake, '#!/bin/sh\necho "$1: applet not found" >&2\nexit 127\n');
      chmodSync(fake, 0o755);
      const hook = hookFor(`${dir}:${process.env.PATH ?? ''}`);
      assert.ok(hook.join(' ').includes(`${fake} nsenter`), hook.join(' '));
      const { up, code, stderr } = await runAgainstFreshNamespace(hook);
      assert.equal(code, 0, stderr);
      assert.equal(up, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('without busybox: nsenter and ip, as before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stasis-hook-'));
    try {
      for (const program of ['nsenter', 'ip']) symlinkSync(which(program)!, join(dir, program));
      const path = dir;
      const hook = hookFor(path);
      assert.doesNotMatch(hook.join(' '), /busybox/);
      const { up, code, stderr } = await runAgainstFreshNamespace(hook);
      assert.equal(code, 0, stderr);
      assert.equal(up, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
