// stasis restore from what is not an archive: refused at once, nothing left (the real binary, no container).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, TestEnv, eventually } from '../helpers.ts';

/** PIDs of the processes whose command line is exactly `args`. */
function processesRunning(args: string[]): number[] {
  const wanted = `${args.join('\0')}\0`;
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === wanted;
    } catch {
      return false;
    }
  }).map(Number);
}

describe('restore --checkpoint of a device', () => {
  const env = new TestEnv('cli-restore');
  after(() => env.cleanup());

  for (const device of ['/dev/zero', '/dev/urandom']) {
    test(`${device}: "not an archive", and nothing is left in the state directory`, async () => {
      // They never end: before the fix the restore read them for ever (the time limit here is only a backstop).
      const result = await env.run(['restore', 'r1', '--checkpoint', device], { timeoutMs: 60_000 });
      assert.equal(result.signal, null, `ended by the test's time limit\nstderr: ${result.stderr}`);
      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`^stasis: cannot extract ${device}: not an archive: ${device} is a character device\\n`));
      const left = existsSync(env.stateDir) ? readdirSync(env.stateDir).filter((name) => name.startsWith('.restore-')) : [];
      assert.deepEqual(left, []);
    });
  }
});

describe('restore --checkpoint of a FIFO', () => {
  const env = new TestEnv('cli-restore-fifo');
  after(() => env.cleanup());
  const restoreDirs = () => (existsSync(env.stateDir) ? readdirSync(env.stateDir).filter((name) => name.startsWith('.restore-')) : []);

  test('with no writer, SIGTERM ends the wait: its own error, exit 143, nothing left', async () => {
    const fifo = join(env.root, 'no-writer.fifo');
    spawn('mkfifo', [fifo]).once('exit', () => undefined);
    await eventually(() => existsSync(fifo), 'the FIFO is made');
    const child = spawn(CLI[0], env.args(['restore', 'r1', '--checkpoint', fifo]), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    // The wait has begun once the reader of the FIFO runs.
    await eventually(() => processesRunning(['cat', '--', fifo]).length > 0, 'stasis waits on the FIFO', 60_000);
    child.kill('SIGTERM');
    assert.equal(await exited, 143, stderr);
    assert.match(stderr, new RegExp(`^stasis: stopped waiting for a writer on the FIFO ${fifo} \\(SIGTERM\\)\n`));
    assert.deepEqual(restoreDirs(), []);
    await eventually(() => processesRunning(['cat', '--', fifo]).length === 0, 'the reader ended');
  });

  test('with a writer, what it writes is read: not a tar archive', async () => {
    const fifo = join(env.root, 'writer.fifo');
    spawn('mkfifo', [fifo]);
    await eventually(() => existsSync(fifo), 'the FIFO is made');
    const restoring = env.run(['restore', 'r2', '--checkpoint', fifo], { timeoutMs: 60_000 });
    spawn('sh', ['-c', `i=0; while [ $i -lt 100 ]; do echo "hello world"; i=$((i+1)); done > ${fifo}`], { stdio: 'ignore' });
    const result = await restoring;
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`^stasis: cannot restore from ${fifo}: not a tar archive`));
    assert.deepEqual(restoreDirs(), []);
  });
});
