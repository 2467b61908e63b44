import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { rootDirMode } from '../../src/checkpoint/criu/inventory.ts';
import { MEDIA, blobPath, parseImageRef, sha256 } from '../../src/checkpoint/oci/layout.ts';
import { readCheckpointImage, writeCheckpointImage } from '../../src/checkpoint/oci/image.ts';
import { writeCriuImages } from '../fixtures/engines/build.ts';

let root: string;
let count = 0;
const fresh = (label: string) => join(root, `${label}-${count++}`);
const facts = { containerName: 'web', rootfsImageName: '/var/lib/stasis/rootfs/busybox', criuVersion: '4.2.1', runtimeVersion: '1.1.5' };

/** A checkpoint folder as stasis writes one (CRIU images made here). */
function checkpointFolder(): string {
  const dir = fresh('ckpt');
  writeCriuImages(join(dir, 'checkpoint'), { rootMode: 0o755 });
  writeFileSync(join(dir, 'spec.dump'), JSON.stringify({ process: { args: ['sh'] }, annotations: { 'io.container.manager': 'stasis' } }));
  writeFileSync(join(dir, 'config.dump'), JSON.stringify({ id: 'web', name: 'web', rootfsImageName: facts.rootfsImageName }));
  writeFileSync(join(dir, 'stasis.json'), JSON.stringify({ format: 1, id: 'web', rootfs: { base: facts.rootfsImageName } }));
  writeFileSync(join(dir, 'deleted.files'), '[]');
  return dir;
}

function files(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const name = join(prefix, entry.name);
    return entry.isDirectory() ? [`${name}/`, ...files(dir, name)] : [`${name}:${readFileSync(join(dir, name)).toString('base64')}`];
  }).sort();
}

const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

before(() => {
  root = mkdtempSync(join(tmpdir(), 'stasis-oci-image-test-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

test('image references, split as containers/image does', () => {
  assert.deepEqual(parseImageRef('oci:/srv/images'), { transport: 'oci', path: '/srv/images', reference: null });
  assert.deepEqual(parseImageRef('oci-archive:ckpt.tar:localhost/web:v1'), { transport: 'oci-archive', path: 'ckpt.tar', reference: 'localhost/web:v1' });
  assert.deepEqual(parseImageRef('oci:dir:'), { transport: 'oci', path: 'dir', reference: null });
  assert.equal(parseImageRef('/srv/ckpt.tar'), null);
  assert.equal(parseImageRef('docker-archive:x.tar'), null);
});

describe('write, then read back', () => {
  for (const [transport, compression] of [['oci', 'gzip'], ['oci-archive', 'gzip'], ['oci', 'none'], ['oci-archive', 'none']] as const) {
    test(`${transport}, ${compression} layer`, async () => {
      const source = checkpointFolder();
      const target = `${transport}:${fresh('image')}${transport === 'oci-archive' ? '.tar' : ''}`;
      const written = await writeCheckpointImage(source, target, { facts, compression });
      assert.equal(written.reference, 'localhost/checkpoint-web:latest');
      assert.equal(written.layer.mediaType, compression === 'gzip' ? MEDIA.layerGzip : MEDIA.layer);
      const dest = fresh('read');
      const read = await readCheckpointImage(target, dest);
      assert.deepEqual(files(dest), files(source));
      assert.equal(read.refName, 'localhost/checkpoint-web:latest');
      assert.equal(read.manifestDigest, written.manifestDigest);
      for (const name of ['io.podman.annotations.checkpoint.name', 'io.kubernetes.cri-o.annotations.checkpoint.name', 'org.criu.checkpoint.container.name']) {
        assert.equal(read.annotations[name], 'web', name);
      }
      assert.equal(read.annotations['io.podman.annotations.checkpoint.criu.version'], '40201');
      assert.equal(read.annotations['io.podman.annotations.checkpoint.runtime.name'], 'runc');
      assert.equal(read.annotations['org.criu.checkpoint.engine.name'], 'stasis');
    });
  }

  test('the layout: index.json → manifest (annotations) → config and one layer; org.criu on the index', async () => {
    const layout = fresh('layout');
    await writeCheckpointImage(checkpointFolder(), `oci:${layout}:localhost/web:v1`, { facts });
    assert.deepEqual(json(join(layout, 'oci-layout')), { imageLayoutVersion: '1.0.0' });
    const index = json(join(layout, 'index.json'));
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'localhost/web:v1');
    assert.equal(index.annotations['org.criu.checkpoint.container.name'], 'web');
    const manifest = json(blobPath(layout, index.manifests[0].digest));
    assert.equal(manifest.mediaType, MEDIA.manifest);
    assert.equal(manifest.config.mediaType, MEDIA.config);
    assert.equal(manifest.layers.length, 1);
    assert.equal(manifest.annotations['io.kubernetes.cri-o.annotations.checkpoint.name'], 'web');
    const config = json(blobPath(layout, manifest.config.digest));
    assert.equal(config.os, 'linux');
    assert.equal(config.rootfs.diff_ids.length, 1);
    // The layer holds the checkpoint files at its root.
    const names = execFileSync('tar', ['-tzf', blobPath(layout, manifest.layers[0].digest)], { encoding: 'utf8' }).split('\n');
    assert.ok(names.includes('checkpoint/inventory.img') && names.includes('spec.dump') && names.includes('stasis.json'), names.join(' '));
  });

  test('a second image joins the layout; the same name replaces the first', async () => {
    const layout = fresh('layout');
    await writeCheckpointImage(checkpointFolder(), `oci:${layout}:a`, { facts });
    await writeCheckpointImage(checkpointFolder(), `oci:${layout}:b`, { facts });
    await writeCheckpointImage(checkpointFolder(), `oci:${layout}:a`, { facts: { ...facts, containerName: 'web2' } });
    const refs = json(join(layout, 'index.json')).manifests.map((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name']);
    assert.deepEqual(refs, ['b', 'a']);
    await assert.rejects(readCheckpointImage(`oci:${layout}`, fresh('read')), /holds 2 images \(b, a\): name one, as oci:/);
    const read = await readCheckpointImage(`oci:${layout}:a`, fresh('read'));
    assert.equal(read.annotations['org.criu.checkpoint.container.name'], 'web2');
    await assert.rejects(readCheckpointImage(`oci:${layout}:c`, fresh('read')), /no image named c in it \(it has b, a\)/);
  });

  test('for podman: config.dump names podman\'s image and files.img says "/" is 0555; the folder is untouched', async () => {
    const source = checkpointFolder();
    const target = `oci-archive:${fresh('image')}.tar`;
    await writeCheckpointImage(source, target, { facts, podman: { imageName: 'localhost/busybox:stasis', imageId: '27c5858767c6' } });
    const dest = fresh('read');
    await readCheckpointImage(target, dest);
    assert.equal(rootDirMode(join(dest, 'checkpoint')), 0o40555);
    assert.equal(rootDirMode(join(source, 'checkpoint')), 0o40755);
    const config = json(join(dest, 'config.dump'));
    assert.equal(config.rootfsImageName, 'localhost/busybox:stasis');
    assert.equal(config.rootfsImageID, '27c5858767c6');
    assert.equal(json(join(source, 'config.dump')).rootfsImageID, undefined);
  });

  test('a folder that is neither empty nor a layout is not written into', async () => {
    const dir = fresh('busy');
    mkdirSync(dir);
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    await assert.rejects(writeCheckpointImage(checkpointFolder(), `oci:${dir}`, { facts }), /neither empty nor an OCI image layout/);
  });
});

describe('what is refused when reading', () => {
  async function layout(): Promise<{ dir: string; manifest: { digest: string }; index: { manifests: { digest: string }[] } }> {
    const dir = fresh('layout');
    await writeCheckpointImage(checkpointFolder(), `oci:${dir}`, { facts, compression: 'none' });
    const index = json(join(dir, 'index.json'));
    return { dir, manifest: index.manifests[0], index };
  }

  test('a blob that does not match its digest', async () => {
    const { dir, manifest } = await layout();
    const layerDigest = json(blobPath(dir, manifest.digest)).layers[0].digest;
    const bytes = readFileSync(blobPath(dir, layerDigest));
    bytes[600] ^= 0xff;
    writeFileSync(blobPath(dir, layerDigest), bytes);
    const dest = fresh('read');
    await assert.rejects(readCheckpointImage(`oci:${dir}`, dest), /the layer blob does not match its digest: expected sha256:/);
    assert.ok(!existsSync(dest) || readdirSync(dest).length === 0, 'nothing extracted');
  });

  test('a manifest changed under its descriptor (size, then digest)', async () => {
    const { dir, manifest } = await layout();
    const path = blobPath(dir, manifest.digest);
    writeFileSync(path, `${readFileSync(path, 'utf8')} `);
    await assert.rejects(readCheckpointImage(`oci:${dir}`, fresh('read')), /the manifest blob sha256:\w+ has \d+ bytes, its descriptor says/);
    const text = readFileSync(path, 'utf8').trimEnd().replace('"schemaVersion":2', '"schemaVersion":3');
    writeFileSync(path, text);
    await assert.rejects(readCheckpointImage(`oci:${dir}`, fresh('read')), /the manifest blob does not match its digest/);
  });

  test('a layer whose diff_id is wrong', async () => {
    const { dir, manifest, index } = await layout();
    const body = json(blobPath(dir, manifest.digest));
    const config = json(blobPath(dir, body.config.digest));
    config.rootfs.diff_ids = [`sha256:${'0'.repeat(64)}`];
    const configBytes = Buffer.from(JSON.stringify(config));
    writeFileSync(blobPath(dir, sha256(configBytes)), configBytes);
    body.config = { ...body.config, digest: sha256(configBytes), size: configBytes.length };
    const manifestBytes = Buffer.from(JSON.stringify(body));
    writeFileSync(blobPath(dir, sha256(manifestBytes)), manifestBytes);
    index.manifests[0] = { ...index.manifests[0], digest: sha256(manifestBytes), size: manifestBytes.length } as never;
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    await assert.rejects(readCheckpointImage(`oci:${dir}`, fresh('read')), /the layer does not match the config's diff_id/);
  });

  test('a malformed digest never becomes a path', async () => {
    const { dir, index } = await layout();
    index.manifests[0].digest = 'sha256:../../../etc/passwd';
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    await assert.rejects(readCheckpointImage(`oci:${dir}`, fresh('read')), /malformed digest "sha256:\.\.\/\.\.\/\.\.\/etc\/passwd"/);
  });

  test('an unsafe layer is refused by the archive checks', async () => {
    const { dir, manifest, index } = await layout();
    const work = fresh('evil');
    mkdirSync(work);
    symlinkSync('/etc', join(work, 'evil'));
    const layer = join(root, `evil-${count++}.tar`);
    execFileSync('tar', ['-cf', layer, '-C', work, 'evil']);
    const layerBytes = readFileSync(layer);
    writeFileSync(blobPath(dir, sha256(layerBytes)), layerBytes);
    const body = json(blobPath(dir, manifest.digest));
    const config = json(blobPath(dir, body.config.digest));
    config.rootfs.diff_ids = [sha256(layerBytes)];
    const configBytes = Buffer.from(JSON.stringify(config));
    writeFileSync(blobPath(dir, sha256(configBytes)), configBytes);
    body.config = { ...body.config, digest: sha256(configBytes), size: configBytes.length };
    body.layers = [{ mediaType: MEDIA.layer, digest: sha256(layerBytes), size: layerBytes.length }];
    const manifestBytes = Buffer.from(JSON.stringify(body));
    writeFileSync(blobPath(dir, sha256(manifestBytes)), manifestBytes);
    index.manifests[0] = { ...index.manifests[0], digest: sha256(manifestBytes), size: manifestBytes.length } as never;
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    await assert.rejects(readCheckpointImage(`oci:${dir}`, fresh('read')), /unsafe archive entry "evil": a symlink to "\/etc"/);
  });

  test("containerd's own checkpoint index (ctr checkpoint) is named, not misread", async () => {
    const dir = fresh('ctr');
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    const nested = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [
      { mediaType: 'application/vnd.containerd.container.criu.checkpoint.criu.tar', digest: `sha256:${'1'.repeat(64)}`, size: 1 },
      { mediaType: 'application/vnd.containerd.container.checkpoint.config.v1+proto', digest: `sha256:${'2'.repeat(64)}`, size: 1 },
    ] }));
    writeFileSync(blobPath(dir, sha256(nested)), nested);
    writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MEDIA.index, digest: sha256(nested), size: nested.length }] }));
    await assert.rejects(readCheckpointImage(`oci:${dir}`, fresh('read')), /containerd's own checkpoint \(ctr checkpoint/);
  });

  test('not an OCI image: a docker-archive, a folder without index.json, a missing file', async () => {
    const docker = fresh('docker');
    mkdirSync(docker);
    writeFileSync(join(docker, 'manifest.json'), '[]');
    const archive = `${docker}.tar`;
    execFileSync('tar', ['-cf', archive, '-C', docker, 'manifest.json']);
    await assert.rejects(readCheckpointImage(`oci-archive:${archive}`, fresh('read')), /oci-archive:.*: this is a docker-archive, not an OCI image: save it with --format oci-archive/);
    const empty = fresh('empty');
    mkdirSync(empty);
    await assert.rejects(readCheckpointImage(`oci:${empty}`, fresh('read')), /no index\.json: not an OCI image layout/);
    await assert.rejects(readCheckpointImage(`oci-archive:${fresh('missing')}.tar`, fresh('read')), /is not a file/);
    await assert.rejects(readCheckpointImage('/srv/ckpt.tar', fresh('read')), /not an image reference: use oci:DIR or oci-archive:FILE/);
  });
});
