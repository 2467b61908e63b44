import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IMAGES_DIR } from '../../src/checkpoint/format/layout.ts';
import { servePages, type PageSink } from '../../src/migrate/pageserver.ts';
import { ROOTFS, TestEnv } from '../helpers.ts';

// migrate --precopy's page server (src/migrate/pageserver.ts) against real
// CRIU: a frozen container dumped twice by runc, once into files as CRIU
// writes them and once through stasis's page server, must give the same
// pagemap images byte for byte and the same pages. That pins the protocol
// (its header, which CRIU 4.2 widened) and the pagemap images stasis writes
// itself. That such a dump restores is migrate.test.ts's (--precopy).

function whyNot(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (runc and CRIU)';
  for (const tool of ['runc', 'criu', 'conmon', 'setpriv']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  if (!existsSync(ROOTFS)) return `the default rootfs ${ROOTFS} is missing`;
  return null;
}

/** Runs a command without blocking the event loop (the page server answers CRIU from this process). */
function run(argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A sink that writes each page image as CRIU would have. */
function filesSink(folder: string): PageSink & { ended: Map<string, number> } {
  const fds = new Map<string, number>();
  const ended = new Map<string, number>();
  const fdOf = (path: string) => {
    let fd = fds.get(path);
    if (fd === undefined) fds.set(path, (fd = openSync(join(folder, path), 'wx')));
    return fd;
  };
  return {
    ended,
    async pages(path, bytes, at) {
      writeSync(fdOf(path), bytes, 0, bytes.length, at);
    },
    async end(path, size) {
      closeSync(fdOf(path));
      fds.delete(path);
      ended.set(path, size);
    },
    restart: () => false,
  };
}

const skip = whyNot();

describe('the page server of migrate --precopy, with real CRIU', { skip: skip ?? false }, () => {
  let env: TestEnv;
  let runc: string[];

  before(async () => {
    env = new TestEnv('pageserver');
    // Two processes (two pagemaps), with some memory of their own, each blocked in a call that
    // writes nothing into its memory when CRIU interrupts it (sleep's would: the time left).
    await env.ok(['run', '-d', 'c1', '--', 'sh', '-c', 'x=$(seq 1 20000); mkfifo /tmp/f; cat /tmp/f & wait']);
    runc = ['runc', '--root', join(env.stateDir, 'runc')];
    assert.equal(spawnSync(runc[0], [...runc.slice(1), 'pause', 'c1']).status, 0);
  });
  after(async () => {
    spawnSync(runc[0], [...runc.slice(1), 'resume', 'c1']);
    await env?.cleanup();
  });

  test('a dump through it gives the pagemap images CRIU writes itself, byte for byte, and the same pages', async () => {
    const local = join(env.root, 'local');
    const served = join(env.root, 'served');
    mkdirSync(join(served, IMAGES_DIR), { recursive: true });
    const dumped = await run([...runc, 'checkpoint', '--image-path', join(local, IMAGES_DIR), '--work-path', local, '--leave-running', 'c1']);
    assert.equal(dumped.code, 0, dumped.stderr);
    const sink = filesSink(served);
    const server = await servePages(() => join(served, IMAGES_DIR), sink);
    try {
      const through = await run([...runc, 'checkpoint', '--image-path', join(served, IMAGES_DIR), '--work-path', served, '--leave-running', '--page-server', `127.0.0.1:${server.port}`, 'c1']);
      assert.equal(through.code, 0, through.stderr);
      await server.done;
    } finally {
      server.close();
    }
    const images = (dir: string) => readdirSync(join(dir, IMAGES_DIR)).filter((n) => /^(pagemap|pages)-/.test(n)).sort();
    assert.ok(images(local).length >= 4, `two processes' pagemaps and pages: ${images(local).join(', ')}`);
    assert.deepEqual(images(served), images(local));
    for (const name of images(local)) {
      const ours = readFileSync(join(served, IMAGES_DIR, name));
      const criu = readFileSync(join(local, IMAGES_DIR, name));
      if (name.startsWith('pagemap-')) {
        assert.ok(ours.equals(criu), `${name} is the same`);
        continue;
      }
      // The pages: the same but for the odd word CRIU's own stop of a task leaves on its stack
      // between two dumps (seen: 2 bytes of one page). Every page that moved would differ.
      assert.equal(ours.length, criu.length, `${name}'s size`);
      let differ = 0;
      for (let at = 0; at < criu.length; at += 4096) if (!ours.subarray(at, at + 4096).equals(criu.subarray(at, at + 4096))) differ++;
      assert.ok(differ <= 2, `${name}: ${differ} of ${criu.length / 4096} pages differ`);
    }
    for (const [path, size] of sink.ended) assert.equal(size, readFileSync(join(local, path)).length, `${path}'s size`);
  });

  test('a connection that is not root\'s is refused, and nothing is written', async () => {
    const folder = join(env.root, 'refused');
    mkdirSync(folder);
    const server = await servePages(() => join(folder, IMAGES_DIR), filesSink(folder));
    try {
      // nobody connects and sends a 32-byte open; the server must not answer it.
      const client = await run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', `
        const s = require('node:net').connect(${server.port}, '127.0.0.1', () => { const b = Buffer.alloc(32); b.writeUInt32LE(4, 0); b.writeBigUInt64LE(0x101n, 24); s.write(b); });
        let got = 0; s.on('data', (d) => { got += d.length; s.destroy(); }); s.on('error', () => {}); s.on('close', () => { process.stdout.write(String(got)); });
      `]);
      assert.equal(client.stdout, '0', client.stderr);
      await assert.rejects(server.done, /is not root's: refused/);
    } finally {
      server.close();
    }
    assert.deepEqual(readdirSync(folder), []);
  });

  test('root\'s own connection is served (the same client as root)', async () => {
    const folder = join(env.root, 'root-client');
    mkdirSync(join(folder, IMAGES_DIR), { recursive: true });
    const server = await servePages(() => join(folder, IMAGES_DIR), filesSink(folder));
    try {
      await new Promise<void>((resolve, reject) => {
        const s = connect(server.port, '127.0.0.1', () => {
          const open = Buffer.alloc(32);
          open.writeUInt32LE(4, 0);
          open.writeBigUInt64LE(0x101n, 24);
          const close = Buffer.alloc(32);
          close.writeUInt32LE(0x1023, 0);
          s.write(Buffer.concat([open, close]));
        });
        let got = 0;
        s.on('data', (d: Buffer) => (got += d.length));
        s.on('error', reject);
        s.on('close', () => (got === 5 ? resolve() : reject(new Error(`got ${got} bytes back`))));
      });
      await server.done;
    } finally {
      server.close();
    }
    // An image with no pages: its pagemap holds the head alone, and its page image is empty.
    assert.deepEqual(readdirSync(join(folder, IMAGES_DIR)).sort(), ['pagemap-1.img', 'pages-1.img']);
    assert.equal(readFileSync(join(folder, IMAGES_DIR, 'pages-1.img')).length, 0);
  });
});
