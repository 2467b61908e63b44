// Every man page rendered as a reader sees it (scripts/man.mjs's go-md2man, then man -l):
// no markdown left over in the text (literal **bold**, `code`, *emphasis*, a link's ⟨url⟩
// where go-md2man took "[OPTIONAL] (text)" for a link, a # heading).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from '../helpers.ts';

const has = (program: string) => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
const MISSING = !has('go-md2man') ? 'go-md2man is not installed (scripts/setup.sh installs it)' : !has('man') ? 'man is not installed' : false;

/** What markdown left in rendered text looks like; each with what it is, for the message. */
const LEFTOVERS: [RegExp, string][] = [
  [/\*\*/, 'literal **'],
  [/(^|[\s[(])\*[A-Za-z]/, 'literal *emphasis'],
  [/[A-Za-z]\*($|[\s\]).,;:])/, 'literal emphasis*'],
  [/`/, 'a backtick'],
  [/[⟨⟩]/, 'a link (⟨url⟩): brackets before "(" read as a link'],
  [/\]\(/, 'a link'],
  [/^\s*#{1,6} /, 'a heading'],
  [/\\(?!$)/, 'a backslash escape'],
];

export function leftovers(text: string): string[] {
  const found: string[] = [];
  for (const [at, line] of text.split('\n').entries()) {
    for (const [pattern, what] of LEFTOVERS) if (pattern.test(line)) found.push(`${at + 1}: ${what}: ${line.trim()}`);
  }
  return found;
}

describe('the rendered man pages', { skip: MISSING }, () => {
  test('no leftover markdown in any page, as man shows it', async () => {
    const out = mkdtempSync(join(tmpdir(), 'stasis-man-'));
    try {
      execFileSync(process.execPath, [join(REPO, 'scripts', 'man.mjs'), join(REPO, 'man'), out], { stdio: 'ignore' });
      const pages = readdirSync(out).filter((name) => /\.\d$/.test(name)).sort();
      assert.ok(pages.length >= 20, `${pages.length} pages rendered`);
      const env = { ...process.env, MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' };
      // In parallel: man takes about a second a page on a loaded machine.
      const texts = await Promise.all(pages.map(async (page) => (await promisify(execFile)('man', ['-l', join(out, page)], { encoding: 'utf8', env })).stdout));
      const problems: string[] = [];
      for (const [at, page] of pages.entries()) {
        assert.ok(texts[at].length > 200, `${page} rendered to almost nothing`);
        problems.push(...leftovers(texts[at]).map((problem) => `${page}:${problem}`));
      }
      assert.deepEqual(problems, []);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test('the check finds what it looks for', () => {
    assert.equal(leftovers('as **podman  save  --format oci-archive** writes').length, 1);
    assert.equal(leftovers('oci-archive:FILE:NAME  ⟨a tar of one⟩').length, 1);
    assert.equal(leftovers('ssh://[*user*@]host').length, 1);
    assert.deepEqual(leftovers('core-*.img, checkpoint-*.tar, $ stasis create db \\'), []);
  });
});
