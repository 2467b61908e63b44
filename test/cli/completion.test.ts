// Shell completion: `stasis --get-yargs-completions` (what the scripts call at each TAB)
// completes command names and each command's own options, and the bash script that
// `stasis completion bash` prints does so inside bash. Needs a built CLI: `npm run build`.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CLI, REPO, STASIS_PROGRAM } from '../helpers.ts';

/** What stasis answers for the words of a command line, the last one being completed. */
function completions(words: string[], env: NodeJS.ProcessEnv = {}): string[] {
  assert.ok(existsSync(join(REPO, 'dist', 'cli.cjs')), 'dist/cli.cjs is missing: run `npm run build` first');
  // COMP_LINE in the environment means zsh is asking (see src/cli.ts).
  const environment = { ...process.env, ...env };
  if (!('COMP_LINE' in env)) delete environment.COMP_LINE;
  const out = execFileSync(CLI[0], [...CLI.slice(1), '--get-yargs-completions', 'stasis', ...words], {
    encoding: 'utf8',
    env: environment,
    timeout: 30_000,
  });
  return out.split('\n').filter((line) => line !== '');
}

/** The candidates a shell would offer: those that start with the word being completed. */
function offered(words: string[]): string[] {
  const current = words[words.length - 1];
  return completions(words).filter((c) => c.startsWith(current));
}

describe('stasis --get-yargs-completions', () => {
  test('completes command names', () => {
    assert.deepEqual(offered(['ru']), ['run']);
    assert.deepEqual(offered(['che']), ['checkpoint', 'checkpoint-ls', 'checkpoint-rm', 'checkpoint-inspect']);
    const all = completions(['']);
    for (const name of ['create', 'run', 'ps', 'checkpoint', 'restore', 'doctor']) assert.ok(all.includes(name), `${name} in ${all.join(' ')}`);
    assert.ok(!all.includes('__exit'), 'the hidden __exit command is not offered');
  });

  test("completes a command's own options, and the global ones", () => {
    assert.deepEqual(offered(['checkpoint', '--le']), ['--leave-running']);
    assert.deepEqual(offered(['checkpoint', 'web', '--tcp']), ['--tcp-established']);
    assert.deepEqual(offered(['run', '--pids']), ['--pids-limit']);
    assert.deepEqual(offered(['kill', '--st']), ['--state-dir']);
    // A global option with a value before the command does not hide the command.
    assert.deepEqual(offered(['--state-dir', '/tmp/x', 'checkpoint', '--leave']), ['--leave-running']);
    // Options of other commands are not offered.
    assert.deepEqual(offered(['kill', '--leave']), []);
  });

  test('answers zsh (COMP_LINE set by the zsh script) with descriptions', () => {
    const zsh = completions(['ru'], { COMP_LINE: 'stasis ru' });
    assert.ok(zsh.some((line) => line.startsWith('run:create and start')), zsh.join('\n'));
    const bash = completions(['ru'], { SHELL: '/bin/zsh' });
    assert.ok(bash.includes('run'), 'without COMP_LINE the answer is plain words, whatever $SHELL says');
  });
});

describe('stasis completion', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-test-completion-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // The scripts call `stasis` by name: put this checkout's first on PATH, with this node.
  symlinkSync(STASIS_PROGRAM, join(dir, 'stasis'));
  const env = { ...process.env, PATH: `${dir}:${dirname(process.execPath)}:${process.env.PATH ?? ''}` };

  test('bash: the script completes command names and options inside bash', () => {
    const script = execFileSync(CLI[0], [...CLI.slice(1), 'completion', 'bash'], { encoding: 'utf8', env });
    assert.match(script, /^complete .*-F _stasis_yargs_completions stasis$/m);
    const scriptFile = join(dir, 'stasis.bash');
    writeFileSync(scriptFile, script);
    const complete = (line: string): string[] => {
      const words = line.split(' ');
      const out = execFileSync(
        'bash',
        ['-c', 'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _stasis_yargs_completions; printf "%s\\n" "${COMPREPLY[@]}"', scriptFile, ...words],
        { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 },
      );
      return out.split('\n').filter((w) => w !== '');
    };
    assert.deepEqual(complete('stasis ru'), ['run']);
    assert.deepEqual(complete('stasis checkpoint --le'), ['--leave-running']);
  });

  test('zsh: the script defines the completion function for stasis', () => {
    const script = execFileSync(CLI[0], [...CLI.slice(1), 'completion', 'zsh'], { encoding: 'utf8', env });
    assert.match(script, /^#compdef stasis$/m);
    assert.match(script, /--get-yargs-completions/);
    assert.match(script, /_describe/);
  });
});
