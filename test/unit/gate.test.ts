// RunOptions.gate (src/host/spawn.ts): a program stasis starts is named (PID, start time) to the
// caller before it can act, and never runs when stasis dies first; Runtime.waitForExit waits on
// that exact process. Real processes, no root needed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATE_SCRIPT, run, type StartedProcess } from '../../src/host/spawn.ts';
import { readProcStat, sameProcessRuns } from '../../src/host/procfs.ts';
import { FakeHost } from './fakes.ts';

describe('gated programs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-gate-'));
  test.after(() => rmSync(dir, { recursive: true, force: true }));

  test('the gate is told the PID and start time before the program runs; the program then runs as that process', async () => {
    const marker = join(dir, 'ran');
    let seen: StartedProcess | null = null;
    const result = await run('sh', ['-c', `echo $$ > ${marker}; echo done`], {
      gate: (started) => {
        assert.equal(existsSync(marker), false, 'the program has not run yet');
        assert.equal(readProcStat(started.pid)?.startTime, started.startTime);
        seen = started;
      },
    });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, 'done\n');
    assert.ok(seen !== null);
    assert.equal(Number((await import('node:fs')).readFileSync(marker, 'utf8')), (seen as StartedProcess).pid, 'exec: the same PID');
  });

  test('a gate that throws: the program never runs, and run rejects with its error', async () => {
    const marker = join(dir, 'never');
    let pid = 0;
    await assert.rejects(run('sh', ['-c', `touch ${marker}`], {
      gate: (started) => {
        pid = started.pid;
        throw new Error('the record could not be written');
      },
    }), /the record could not be written/);
    while (sameProcessRuns({ pid, startTime: readProcStat(pid)?.startTime ?? -1 })) await new Promise((r) => setImmediate(r));
    assert.equal(existsSync(marker), false);
  });

  test('a stasis that dies before its go (the pipe closes unread): the shell exits 1 and the program never runs', async () => {
    const marker = join(dir, 'orphan');
    const child = spawn('sh', ['-c', GATE_SCRIPT, 'sh', 'touch', marker], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    child.stdin.destroy();
    assert.equal(await exited, 1);
    assert.equal(existsSync(marker), false);
  });

  test('a program that cannot be found rejects as spawn would (ENOENT)', async () => {
    await assert.rejects(run(join(dir, 'no-such-program'), [], { gate: () => undefined }), { code: 'ENOENT' });
  });
});

describe('Runtime.waitForExit', () => {
  const host = new FakeHost('wait-exit');
  test.after(() => host.cleanup());

  test('waits while that exact process runs; a gone, reused or zombie PID is not waited for', async () => {
    const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
    const started = { pid: child.pid!, startTime: readProcStat(child.pid!)!.startTime };
    let over = false;
    const waiting = host.runtime.waitForExit(started).then(() => (over = true));
    // Another start time on the same PID: not the process that was noted.
    await host.runtime.waitForExit({ pid: started.pid, startTime: started.startTime - 1 });
    await host.runtime.waitForExit({ pid: 4_194_305, startTime: 1 });
    assert.equal(over, false, 'still waiting while it runs');
    child.kill('SIGKILL');
    await waiting;
    assert.equal(over, true);
  });
});
