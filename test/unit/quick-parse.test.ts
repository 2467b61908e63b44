import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { commandEntry, quickParse, yargsParser } from '../../src/cli.ts';
import type { StasisCommand } from '../../src/commands/define.ts';

// cli.ts reads the plainest command lines itself (quickParse) and leaves the
// rest to yargs. What it hands a handler must be what yargs would: each line
// below goes both ways and the two results are compared key by key.

// The bundle defines it at build time; yargs' --version prints it.
(globalThis as { __STASIS_VERSION__?: string }).__STASIS_VERSION__ = 'test';

const split = (line: string) => line.split(' ').filter((w) => w !== '');

async function command(args: string[]) {
  const verb = args.find((a, i) => !a.startsWith('-') && !['--state-dir', '--checkpoint-dir', '--runc', '--criu'].includes(args[i - 1]));
  const entry = commandEntry(verb);
  assert.ok(entry, `no command in ${args.join(' ')}`);
  return { entry, loaded: (await entry.load()).command as StasisCommand };
}

async function quickOnly(line: string): Promise<Record<string, unknown> | null> {
  const args = split(line);
  const { entry, loaded } = await command(args);
  return quickParse(args, entry, loaded);
}

async function both(line: string): Promise<{ quick: Record<string, unknown> | null; yargs: Record<string, unknown> | null }> {
  const args = split(line);
  const { entry, loaded } = await command(args);
  const quick = quickParse(args, entry, loaded);
  let yargs: Record<string, unknown> | null = null;
  try {
    // exitProcess(false): a yargs that gives up must not end the test process.
    await (await yargsParser(args, entry, loaded, (argv) => (yargs = argv as Record<string, unknown>))).exitProcess(false).parseAsync();
  } catch {
    yargs = null;
  }
  return { quick, yargs };
}

/** The keys a handler can see: yargs' own, less those it leaves undefined. */
function visible(argv: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(argv).filter(([key, value]) => value !== undefined && key !== '$0'));
}

const QUICK = [
  'ps',
  'ls --json',
  '--state-dir /tmp/s ps -q',
  'ps --no-color --debug',
  'info web',
  'start web',
  '__exit web mx4-1-abc',
  'delete -f a',
  'delete --force a b c',
  'rm --no-force a',
  'delete a --json',
  'run -d web --rootfs /srv/web -- httpd -f',
  'run --rm t1 --bundle ./b',
  'run -d x -- sleep 1000',
  'run x',
  'run x sleep 100',
  'run -d x --memory 1g --cwd /tmp --pids-limit 10 -- sh -c true',
  'run --state-dir /s -d x -- a -- b',
  'run -d x --',
  'run -i x -t --stdout /tmp/o -- cat',
  'create x --rootfs /r -- sh',
  'checkpoint web --export web.tar.zst',
  'checkpoint web --leave-running',
  'restore web --checkpoint /tmp/c',
  'restore web',
  'restore --import /tmp/c.tar.zst -n web2 --tcp-close',
  'restore',
  'kill web',
  'kill -s KILL web',
  'kill --all --signal 9 web',
  'wait web',
  'logs web',
  'exec web -- ls -l',
];

// Lines the quick reader must leave to yargs (which reads them its own way or refuses them).
const YARGS = [
  'delete',
  'delete -f',
  'run -d',
  'run -dq x',
  'run --env A=1 x',
  'run -e A=1 x',
  'delete -f true x',
  'run --rootfs=/x y',
  'ps extra',
  'delete -f -f x',
  'run --rootfs -x y',
  'info a --help',
  'run x --label a=b',
  'ps --state-dir',
  'info',
  'start a b',
];

describe('the quick argument reader', () => {
  for (const line of QUICK) {
    test(`stasis ${line}: read without yargs, as yargs reads it`, async () => {
      const { quick, yargs } = await both(line);
      assert.notEqual(quick, null, 'the quick reader took it');
      assert.notEqual(yargs, null, 'yargs took it');
      assert.deepEqual(visible(quick!), visible(yargs!));
    });
  }
  for (const line of YARGS) {
    test(`stasis ${line}: left to yargs`, async () => {
      assert.equal(await quickOnly(line), null);
    });
  }
});
