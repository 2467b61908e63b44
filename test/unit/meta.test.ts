import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CheckpointMetaError, chooseRestoreBase, restoreArgsFor, validateCheckpointMeta, validateDescriptors } from '../../src/checkpoint/format/meta.ts';
import type { CheckpointMeta } from '../../src/checkpoint/format/layout.ts';
import { StasisError } from '../../src/errors.ts';

/** What checkpoint.ts writes for `checkpoint c1 --tcp-established`. */
function stasisJson(): Record<string, any> {
  return {
    format: 1,
    id: 'c1',
    checkpointedAt: '2026-12-01T09:45:40.163Z',
    runcVersion: '1.1.5+ds1',
    criuVersion: '4.1.1',
    rootfs: {
      kind: 'overlay',
      base: '/var/lib/stasis/rootfs/busybox',
      fingerprint: `sha256:${'ab'.repeat(32)}`,
      userBundle: null,
    },
    restoreArgs: ['--tcp-established'],
    criuOptions: ['tcp-established'],
    preDump: false,
    parentPath: null,
    command: ['sleep', '1000'],
    labels: { app: 'web' },
  };
}

function problemsOf(raw: unknown): Map<string, string> {
  try {
    validateCheckpointMeta(raw);
  } catch (err) {
    assert.ok(err instanceof CheckpointMetaError, String(err));
    return new Map(err.problems.map((p) => [p.field, p.problem]));
  }
  assert.fail('expected the metadata to be refused');
}

describe('validateCheckpointMeta', () => {
  test('a stasis.json stasis wrote comes back typed and equal', () => {
    assert.deepEqual(validateCheckpointMeta(stasisJson()), stasisJson());
  });

  test('restoreArgs are rebuilt from the CRIU options, never taken from the file', () => {
    const raw = stasisJson();
    raw.criuOptions = ['file-locks', 'shell-job', 'ext-unix-sk', 'tcp-established', 'tcp-close'];
    raw.restoreArgs = ['--file-locks'];
    assert.deepEqual(validateCheckpointMeta(raw).restoreArgs, ['--file-locks', '--shell-job', '--ext-unix-sk', '--tcp-established']);
    delete raw.restoreArgs;
    assert.deepEqual(validateCheckpointMeta(raw).restoreArgs, ['--file-locks', '--shell-job', '--ext-unix-sk', '--tcp-established']);
  });

  test('"--pid-file /x" in restoreArgs is refused, quoted', () => {
    const raw = stasisJson();
    raw.restoreArgs = ['--tcp-established', '--pid-file', '/etc/shadow'];
    const problem = problemsOf(raw).get('restoreArgs') ?? '';
    assert.match(problem, /"--pid-file" "\/etc\/shadow" are not what its CRIU options \(tcp-established\) give/);
    assert.match(problem, /never passes runc restore flags from a checkpoint/);
  });

  test('an unknown CRIU option is refused, naming the ones stasis knows', () => {
    const raw = stasisJson();
    raw.criuOptions = ['tcp-established', 'lazy-pages', 'action-script=/tmp/x'];
    assert.match(problemsOf(raw).get('criuOptions') ?? '', /"lazy-pages", "action-script=\/tmp\/x" are not CRIU options stasis restores with \(it knows tcp-established, ext-unix-sk, shell-job, file-locks, tcp-close\)/);
    assert.throws(() => restoreArgsFor(['manage-cgroups']), CheckpointMetaError);
  });

  test('rootfs.kind is only overlay or bundle; a bundle records its bundle', () => {
    const raw = stasisJson();
    raw.rootfs.kind = 'host';
    assert.match(problemsOf(raw).get('rootfs.kind') ?? '', /"host" is neither "overlay" nor "bundle"/);
    raw.rootfs.kind = 'bundle';
    assert.match(problemsOf(raw).get('rootfs.userBundle') ?? '', /is missing/);
    raw.rootfs.userBundle = '/srv/bundle';
    assert.equal(validateCheckpointMeta(raw).rootfs.kind, 'bundle');
  });

  test('paths are absolute, without "..", and an overlay layer has no "," or ":"', () => {
    for (const [base, problem] of [
      ['relative/base', /not an absolute path/],
      ['/var/lib/stasis/rootfs/../../../../', /climbs with "\.\."/],
      ['/srv/a,upperdir=/etc', /has "," or ":"/],
      ['', /is empty/],
      ['/srv/\u001b[31mred', /control characters/],
    ] as const) {
      const raw = stasisJson();
      raw.rootfs.base = base;
      assert.match(problemsOf(raw).get('rootfs.base') ?? '', problem, base);
    }
    const raw = stasisJson();
    raw.parentPath = 'parent';
    raw.rootfs.userBundle = '/srv/bundle';
    const problems = problemsOf(raw);
    assert.match(problems.get('parentPath') ?? '', /not an absolute path/);
    assert.match(problems.get('rootfs.userBundle') ?? '', /a --rootfs container has no bundle/);
  });

  test('every other field is checked, and every problem is listed at once', () => {
    const raw = stasisJson();
    Object.assign(raw, {
      format: 2,
      id: '../../etc',
      checkpointedAt: 'yesterday',
      runcVersion: 7,
      preDump: 'no',
      command: ['sh', 3],
      labels: { ok: 'yes', bad: { nested: true } },
    });
    raw.rootfs.fingerprint = 'md5:abc';
    const problems = problemsOf(raw);
    for (const field of ['format', 'id', 'checkpointedAt', 'runcVersion', 'preDump', 'command[1]', 'labels.bad', 'rootfs.fingerprint']) {
      assert.ok(problems.has(field), `${field} in ${[...problems.keys()].join(', ')}`);
    }
    assert.match(problems.get('id') ?? '', /invalid container ID/);
  });

  test('volumes: a :U volume keeps its chown through the file; a chown that is not true or false is refused', () => {
    const raw = stasisJson();
    raw.volumes = [
      { destination: '/var/lib/postgresql', source: '/srv/pg', readonly: false, chown: true, carried: true, archive: 'volumes/0.tar', mode: 0o755, uid: 101, gid: 104 },
      { destination: '/data', source: '/srv/data', readonly: true, carried: false, archive: null },
    ];
    assert.deepEqual(validateCheckpointMeta(raw).volumes, raw.volumes);
    raw.volumes[1].chown = 'yes';
    assert.match(problemsOf(raw).get('volumes[1].chown') ?? '', /not true or false/);
  });

  test('the error names the file and each field', () => {
    const err = (() => {
      try {
        validateCheckpointMeta({ ...stasisJson(), format: 9 });
      } catch (e) {
        return e as CheckpointMetaError;
      }
      return null;
    })();
    assert.ok(err instanceof StasisError);
    assert.match(err.message, /stasis\.json cannot be used:\n {2}format: 9 is not a format this stasis reads/);
    assert.throws(() => validateCheckpointMeta('not json'), CheckpointMetaError);
  });
});

describe('chooseRestoreBase', () => {
  const meta = (changes: Partial<CheckpointMeta['rootfs']> = {}): CheckpointMeta => {
    const m = validateCheckpointMeta(stasisJson());
    return { ...m, rootfs: { ...m.rootfs, ...changes } };
  };
  const untrusted = { trusted: false, imageRoots: ['/var/lib/stasis/rootfs'] };

  test('an overlay checkpoint\'s recorded base, from an image folder, is used read-only', () => {
    assert.deepEqual(chooseRestoreBase(meta(), {}, untrusted), { kind: 'overlay', base: '/var/lib/stasis/rootfs/busybox', from: 'checkpoint' });
  });

  test('a recorded base outside the image folders needs --rootfs when the checkpoint is not ours', () => {
    assert.throws(() => chooseRestoreBase(meta({ base: '/' }), {}, untrusted), /base rootfs \/ is not in \/var\/lib\/stasis\/rootfs/);
    assert.throws(() => chooseRestoreBase(meta({ base: '/var/lib/stasis/rootfs' }), {}, untrusted), /is not in/);
    // The error carries the path as data: the command's hint names it whole, spaces and all.
    assert.throws(() => chooseRestoreBase(meta({ base: '/srv/my images/web' }), {}, untrusted), (err: unknown) => err instanceof StasisError && err.code === 'base-outside-images' && err.data.base === '/srv/my images/web');
    assert.equal(chooseRestoreBase(meta({ base: '/srv/img' }), {}, { ...untrusted, trusted: true }).from, 'checkpoint');
    assert.deepEqual(chooseRestoreBase(meta({ base: '/' }), { rootfs: '/srv/copy' }, untrusted), { kind: 'overlay', base: '/srv/copy', from: 'flag' });
  });

  test('kind flipped to bundle: the shared base is never written; an untrusted bundle checkpoint needs --bundle', () => {
    const flipped = meta({ kind: 'bundle', userBundle: '/var/lib/stasis/rootfs/busybox/..' });
    assert.throws(() => chooseRestoreBase(flipped, {}, untrusted), (err: unknown) => err instanceof StasisError && err.exitCode === 1 && err.code === 'bundle-not-named' && /the bundle to restore onto must be named/.test(err.message));
    assert.throws(() => chooseRestoreBase(flipped, { rootfs: '/var/lib/stasis/rootfs/busybox' }, untrusted), (err: unknown) => err instanceof StasisError && err.code === 'base-kind-bundle');
    assert.deepEqual(chooseRestoreBase(flipped, { bundle: '/srv/b' }, untrusted), { kind: 'bundle', bundle: '/srv/b', from: 'flag' });
  });

  test('a trusted bundle checkpoint goes back onto its bundle; --bundle on an overlay checkpoint is refused', () => {
    assert.deepEqual(chooseRestoreBase(meta({ kind: 'bundle', userBundle: '/srv/b' }), {}, { ...untrusted, trusted: true }), { kind: 'bundle', bundle: '/srv/b', from: 'checkpoint' });
    assert.throws(() => chooseRestoreBase(meta(), { bundle: '/srv/b' }, untrusted), (err: unknown) => err instanceof StasisError && err.code === 'base-kind-overlay');
    assert.throws(() => chooseRestoreBase(meta(), { bundle: '/srv/b', rootfs: '/x' }, untrusted), (err: unknown) => err instanceof StasisError && err.code === 'base-both');
  });
});

describe('chooseRestoreBase: symbolic links', () => {
  test('a link in an image folder that leads out of it is not an image of that folder', () => {
    const m = validateCheckpointMeta({ ...stasisJson(), rootfs: { ...stasisJson().rootfs, base: '/var/lib/stasis/rootfs/escape' } });
    const realpath = (path: string) => (path === '/var/lib/stasis/rootfs/escape' ? '/' : path);
    assert.throws(() => chooseRestoreBase(m, {}, { trusted: false, imageRoots: ['/var/lib/stasis/rootfs'], realpath }), /is not in/);
  });
});

describe('validateDescriptors', () => {
  test('the three stdio entries runc wrote pass', () => {
    assert.deepEqual(validateDescriptors(['/dev/null', 'pipe:[43478]', 'pipe:[43479]']), ['/dev/null', 'pipe:[43478]', 'pipe:[43479]']);
  });

  test('more entries (CRIU\'s own fds handed to the container) or odd ones are refused', () => {
    assert.throws(() => validateDescriptors(['/dev/null', 'pipe:[1]', 'pipe:[2]', 'pipe:[3]']), /has 4 entries where a container's stdio has 3/);
    assert.throws(() => validateDescriptors(['/dev/null', 'pipe:[1]', 'x\u0000']), /is not a stdio descriptor/);
    assert.throws(() => validateDescriptors({}), CheckpointMetaError);
  });
});
