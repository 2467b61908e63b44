// A restore of another engine's checkpoint sums the policy's routine replacements up in one
// line: the warnings applyRestorePolicy gives for podman's real spec.dump, classified.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { applyRestorePolicy } from '../../src/checkpoint/policy/spec.ts';
import { policyReplacement } from '../../src/commands/restore.ts';
import { defaultSpec } from '../../src/runtime/spec.ts';
import { REPO } from '../helpers.ts';

describe("a foreign checkpoint's policy warnings", () => {
  test("podman's spec.dump: noNewPrivileges, seccomp, maskedPaths, readonlyPaths are one kind (one line), nothing else is", () => {
    const podmanSpec = JSON.parse(readFileSync(join(REPO, 'test/fixtures/engines/podman/spec.dump'), 'utf8'));
    // podman's own exports carry its seccomp profile (this fixture's container ran without one).
    podmanSpec.linux.seccomp = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] };
    const result = applyRestorePolicy(podmanSpec, { policySpec: defaultSpec('c2', []), kind: 'overlay', trust: ['capabilities', 'mounts'], hostLimits: new Map() });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.refused));
    const replaced = result.warnings.map(policyReplacement).filter((field) => field !== null);
    for (const field of ['noNewPrivileges', 'seccomp', 'maskedPaths', 'readonlyPaths']) assert.ok(replaced.includes(field), `${field} in ${result.warnings.join('\n')}`);
    assert.equal(policyReplacement("the checkpoint's hooks are not run: prestart /bin/x"), null);
    assert.equal(policyReplacement('the checkpoint joined the network namespace /run/netns/x; it is restored in a new one with loopback only'), null);
    assert.equal(policyReplacement(`the checkpoint's process.apparmorProfile "x" is not used; the policy's is (null)`), 'apparmorProfile');
  });
});
