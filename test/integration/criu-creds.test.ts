import { DEFAULT_CAPABILITIES } from '../../src/runtime/identity.ts';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { wordsFromMask } from '../../src/checkpoint/criu/capabilities.ts';
import { capabilityExcess, readCriuProcesses } from '../../src/checkpoint/criu/creds.ts';
import { readImageEntries } from '../../src/checkpoint/criu/images.ts';
import { applyRestorePolicy } from '../../src/checkpoint/policy/spec.ts';
import { checkCriuImages } from '../../src/checkpoint/policy/processes.ts';
import { defaultSpec } from '../../src/runtime/spec.ts';
import { ROOTFS, TestEnv } from '../helpers.ts';
import { imageFile, patch, replaceRepeated } from '../unit/criu-encode.ts';

// A real checkpoint of a stasis container, decoded: its processes hold exactly
// stasis's default capabilities. Then one of its core images re-encoded with
// CAP_SYS_ADMIN added, which the checks must report.

function whyNot(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (runc and CRIU)';
  for (const tool of ['runc', 'criu', 'conmon']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  if (!existsSync(ROOTFS)) return `the default rootfs ${ROOTFS} is missing`;
  return null;
}

const skip = whyNot();
// stasis's default set (podman's, and AUDIT_WRITE): what every thread of a default container holds.
const DEFAULT_CAPS = [...DEFAULT_CAPABILITIES].sort();
const CAP_SYS_ADMIN = 21;

describe('CRIU credentials of a real stasis checkpoint', { skip: skip ?? false }, () => {
  let env: TestEnv;
  let imagePath: string;

  before(async () => {
    env = new TestEnv('criu-creds');
    await env.ok(['run', '-d', 'c1', '--', 'sleep', '1000']);
    imagePath = join(env.root, 'image');
    await env.ok(['checkpoint', 'c1', '--image-path', imagePath]);
  });
  after(async () => {
    await env?.cleanup();
  });

  test('every thread holds stasis\'s default capabilities, and nothing outside them', () => {
    const { threads, tasks, rootNamespaces } = readCriuProcesses(join(imagePath, 'checkpoint'));
    assert.deepEqual(tasks.map((t) => [t.pid, t.comm]), [[1, 'sleep']]);
    for (const thread of threads) {
      const creds = thread.creds;
      assert.ok(creds, `thread ${thread.tid} has credentials`);
      for (const set of [creds.capBnd, creds.capEff, creds.capPrm]) assert.deepEqual([...set].sort(), DEFAULT_CAPS);
      assert.deepEqual(creds.capInh, []);
      assert.equal(creds.uid, 0);
      assert.equal(creds.noNewPrivs, true);
    }
    assert.deepEqual(capabilityExcess(threads, DEFAULT_CAPS), []);
    for (const kind of ['pid', 'network', 'ipc', 'uts', 'mount'] as const) assert.equal(rootNamespaces[kind], true, `a ${kind} namespace of its own`);
  });

  test('the whole checkpoint passes the restore policy', () => {
    const spec = JSON.parse(readFileSync(join(imagePath, 'spec.dump'), 'utf8'));
    const result = applyRestorePolicy(spec, { policySpec: defaultSpec('c2', []), kind: 'overlay' });
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(result.warnings, []);
    assert.deepEqual(checkCriuImages(join(imagePath, 'checkpoint'), result.spec), { refused: [], warnings: [] });
  });

  test('a core image re-encoded with CAP_SYS_ADMIN in the bounding and effective sets is reported', () => {
    const crafted = join(env.root, 'crafted');
    cpSync(imagePath, crafted, { recursive: true });
    const images = join(crafted, 'checkpoint');
    const cores = readdirSync(images).filter((name) => /^core-\d+\.img$/.test(name));
    assert.ok(cores.length > 0);
    const target = join(images, cores[0]);
    const [entry] = readImageEntries(target, 'core');
    const mask = (1n << 5n) | (1n << 10n) | (1n << 29n) | (1n << BigInt(CAP_SYS_ADMIN));
    // core_entry.thread_core (5) → creds (10) → cap_eff (11), cap_bnd (12).
    const edited = patch(entry, [5, 10], (fields) => replaceRepeated(replaceRepeated(fields, 11, wordsFromMask(mask)), 12, wordsFromMask(mask)));
    writeFileSync(target, imageFile('core', [edited]));

    const { threads } = readCriuProcesses(images);
    const pid = Number(/core-(\d+)/.exec(cores[0])![1]);
    assert.deepEqual(capabilityExcess(threads, DEFAULT_CAPS), [
      { pid, tid: pid, comm: 'sleep', set: 'bounding', capabilities: ['CAP_SYS_ADMIN'] },
      { pid, tid: pid, comm: 'sleep', set: 'effective', capabilities: ['CAP_SYS_ADMIN'] },
    ]);
    const spec = JSON.parse(readFileSync(join(crafted, 'spec.dump'), 'utf8'));
    const result = applyRestorePolicy(spec, { policySpec: defaultSpec('c2', []), kind: 'overlay' });
    assert.ok(result.ok);
    const refused = checkCriuImages(images, result.spec).refused;
    assert.deepEqual(refused.map((r) => [r.area, r.what, r.asked]), [
      ['capabilities', 'capability CAP_SYS_ADMIN', `CRIU would restore task ${pid} (sleep) in its bounding, effective sets`],
    ]);
  });
});
