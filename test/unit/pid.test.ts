import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { pidAlive, processRunning } from '../../src/host/procfs.ts';

describe('processRunning', () => {
  test('a running process is alive; a missing one and a zombie are not', async () => {
    assert.equal(processRunning(process.pid), true);
    assert.equal(processRunning(null), false);
    assert.equal(processRunning(0), false);
    // A short sleep runs in the background of a shell that then becomes a
    // long sleep, which never reaps it: once it has exited, it is a zombie.
    // (It outlives the exec, so the shell cannot reap it first.)
    const parent = spawn('sh', ['-c', 'sleep 0.5 & echo $!; exec sleep 10'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const [chunk] = (await once(parent.stdout!, 'data')) as [Buffer];
    const zombie = Number.parseInt(chunk.toString(), 10);
    try {
      for (let i = 0; i < 250 && !/\) Z /.test(await readStat(zombie)); i++) await sleep(20);
      assert.match(await readStat(zombie), /\) Z /, 'the test process is a zombie');
      assert.equal(pidAlive(zombie), true, 'kill(pid, 0) still answers for a zombie');
      assert.equal(processRunning(zombie), false);
    } finally {
      parent.kill('SIGKILL');
    }
    await once(parent, 'close');
    // Adopted by init now, reaped or not: either way not running.
    assert.equal(processRunning(zombie), false);
  });
});

async function readStat(pid: number): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(`/proc/${pid}/stat`, 'latin1').catch(() => '');
}
