// Volumes (-v/--volume, --mount type=bind): host folders in a container, and
// what checkpoint, export, restore and migrate do with their contents. Real runc, CRIU, conmon.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTAINERS, ROOTFS, TestEnv, eventually, requires } from '../helpers.ts';

describe('volumes', { skip: requires(...CONTAINERS) }, () => {
  const env = new TestEnv('volumes');
  after(() => env.cleanup());

  test('-v and --mount bind host folders, ro refuses writes, the record and spec say so', async () => {
    const data = join(env.root, 'data');
    const conf = join(env.root, 'conf');
    mkdirSync(data);
    mkdirSync(conf);
    writeFileSync(join(conf, 'app.conf'), 'setting=1\n');
    const out = await env.ok(['run', '--rm', 'v1', '--rootfs', ROOTFS, '-v', `${data}:/data`, '--mount', `type=bind,src=${conf},dst=/etc/app,ro`, '--',
      'sh', '-c', 'echo written > /data/file; cat /etc/app/app.conf; echo x > /etc/app/new 2>/dev/null || echo ro-refused']);
    assert.match(out, /setting=1/);
    assert.match(out, /ro-refused/);
    assert.equal(readFileSync(join(data, 'file'), 'utf8'), 'written\n');
    assert.ok(!existsSync(join(conf, 'new')));

    await env.ok(['create', 'v2', '--rootfs', ROOTFS, '--volume', `${data}:/srv/d:rw`, '--', 'true']);
    const info = await env.json(['info', 'v2']);
    assert.deepEqual(info.volumes, [{ source: data, destination: '/srv/d', readonly: false }]);
    const spec = JSON.parse(readFileSync(join(env.stateDir, 'containers', 'v2', 'config.json'), 'utf8'));
    assert.ok(spec.mounts.some((m: any) => m.destination === '/srv/d' && m.source === data && m.type === 'bind'));
    await env.ok(['delete', '-f', 'v2']);
  });

  test('bad volumes are refused before anything is made', async () => {
    await env.fails(125, ['run', '--rm', 'bad', '--rootfs', ROOTFS, '-v', `${join(env.root, 'missing')}:/data`, '--', 'true'], /^stasis: volume .*missing: no such folder/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '-v', 'relative:/data'], /HOST must be an absolute path/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '-v', `${env.root}:data`], /CTR must be an absolute path/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '-v', `${env.root}:/data:z`], /unknown option "z"/);
    await env.fails(2, ['create', 'bad', '--rootfs', ROOTFS, '--mount', `type=tmpfs,destination=/data`], /only type=bind/);
    await env.fails(1, ['create', 'bad', '--rootfs', ROOTFS, '-v', `${env.root}:/data`, '-v', `${env.root}:/data/`], /two volumes on \/data/);
    assert.ok(!existsSync(join(env.stateDir, 'containers', 'bad')));
  });
});
