import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { treeBytes, walkTree, WalkError } from '../../src/host/walk.ts';
import { REPO } from '../helpers.ts';

// The one tree walk (src/host/walk.ts), under Node and under Bun: Bun's
// readdir({ recursive: true }) descends through links to folders, so the walk
// must be seen not to, in both runtimes.

const BUN = path.join(REPO, 'node_modules', '@oven', 'bun-linux-x64', 'bin', 'bun');
let root = '';
let tree = '';

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'stasis-walk-test-'));
  tree = path.join(root, 'tree');
  mkdirSync(path.join(tree, 'a', 'b'), { recursive: true });
  mkdirSync(path.join(tree, 'dev'));
  mkdirSync(path.join(tree, 'srv'));
  writeFileSync(path.join(tree, 'a', 'b', 'file'), 'hello');
  writeFileSync(path.join(tree, 'a', 'z'), '12');
  symlinkSync('/', path.join(tree, 'srv', 'root'));
  symlinkSync('/proc/self/fd', path.join(tree, 'dev', 'fd'));
  symlinkSync('/dev', path.join(tree, 'hostdev'));
  symlinkSync('.', path.join(tree, 'loop'));
  symlinkSync('a', path.join(tree, 'to-a'));
  execFileSync('mkfifo', [path.join(tree, 'pipe')]);
});
after(() => rmSync(root, { recursive: true, force: true }));

const EXPECTED = [
  'a dir', 'a/b dir', 'a/b/file file', 'a/z file', 'dev dir', 'dev/fd symlink', 'hostdev symlink', 'loop symlink', 'pipe fifo',
  'srv dir', 'srv/root symlink', 'to-a symlink',
];

describe('walkTree', () => {
  test('lists links as links and never enters them, a folder before what it holds, names sorted', () => {
    assert.deepEqual([...walkTree(tree)].map((e) => `${e.path} ${e.kind}`), EXPECTED);
  });

  test('the same under Bun (the runtime of the shipped binary)', { skip: existsSync(BUN) ? false : `no Bun at ${BUN}` }, () => {
    const script = path.join(root, 'walk-under-bun.ts');
    writeFileSync(script, [
      `import { walkTree, treeBytes } from ${JSON.stringify(path.join(REPO, 'src', 'host', 'walk.ts'))};`,
      'console.log(JSON.stringify({ entries: [...walkTree(process.argv[2])].map((e) => `${e.path} ${e.kind}`), bytes: treeBytes(process.argv[2]) }));',
    ].join('\n'));
    const out = JSON.parse(execFileSync(BUN, [script, tree], { encoding: 'utf8', env: { ...process.env, BUN_INSTALL_CACHE_DIR: path.join(root, 'bun-cache') } }));
    assert.deepEqual(out, { entries: EXPECTED, bytes: 7 });
  });

  test('treeBytes counts regular files only, never a link target', () => {
    assert.equal(treeBytes(tree), 7);
  });

  test('maxDepth lists and enters no deeper; enter() decides which folders are read', () => {
    assert.deepEqual([...walkTree(tree, { maxDepth: 1 })].map((e) => e.path), ['a', 'dev', 'hostdev', 'loop', 'pipe', 'srv', 'to-a']);
    assert.deepEqual([...walkTree(tree, { enter: (e) => e.path !== 'a' })].map((e) => e.path).filter((p) => p.startsWith('a')), ['a']);
  });

  test('maxEntries: a tree with more entries is refused', () => {
    assert.throws(() => [...walkTree(tree, { maxEntries: 5 })], (err: Error) => err instanceof WalkError && /more than 5 entries/.test(err.message));
  });

  test('a root given as a link to a folder is read (it is the caller\'s to resolve); entries below are not followed', () => {
    const link = path.join(root, 'tree-link');
    symlinkSync(tree, link);
    assert.deepEqual([...walkTree(link)].map((e) => `${e.path} ${e.kind}`), EXPECTED);
  });

  test('a missing root throws', () => {
    assert.throws(() => [...walkTree(path.join(root, 'missing'))], /ENOENT/);
  });
});
