#!/usr/bin/env node
// man.mjs [SRC_DIR [OUT_DIR]] — man/*.md to roff man pages with go-md2man (Debian's
// go-md2man package, the converter runc uses; scripts/setup.sh installs it).
//
// Usage: node scripts/man.mjs                 (man/*.md -> dist/man/<name>)
//        node scripts/man.mjs /tmp/md /tmp/out
//
// A page's source is named <name>.<section>.md (stasis.1.md, stasis-run.1.md), starts
// with a pandoc-style title line (`% STASIS-RUN 1 "" "stasis" "User Commands"`, which
// go-md2man turns into .TH as it stands) and becomes OUT_DIR/<name>.<section>.
//
// One thing is rewritten before go-md2man sees it: the sources write a definition (an
// option, or a term) as a line at column 0 followed at once by its text indented by
// four spaces. Markdown reads those lines as one paragraph, so each such block is
// handed to go-md2man in its definition-list syntax instead (`TERM` then `: TEXT`),
// which it renders as a tagged paragraph (.TP). Indented blocks after a blank line
// stay literal blocks, as in any Markdown.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = resolve(process.argv[2] ?? join(root, 'man'));
const outDir = resolve(process.argv[3] ?? join(root, 'dist', 'man'));

const INDENTED = /^ {4}\s*\S/;
/** A line that can be a definition's term: text at column 0 that is not a heading, list item or title. */
const TERM = /^(?![#%>|]|[-*+] |\d+\. )\S/;

/** The definitions of a source in go-md2man's syntax; everything else as it was. */
function definitionLists(markdown) {
  const lines = markdown.split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    out.push(lines[i]);
    const startsBlock = i === 0 || lines[i - 1].trim() === '' || lines[i - 1].startsWith('#');
    if (!(startsBlock && TERM.test(lines[i]) && INDENTED.test(lines[i + 1] ?? ''))) continue;
    let first = true;
    while (INDENTED.test(lines[i + 1] ?? '')) {
      out.push(`${first ? ': ' : '  '}${lines[++i].trim()}`);
      first = false;
    }
  }
  return out.join('\n');
}

mkdirSync(outDir, { recursive: true });
let count = 0;
for (const file of readdirSync(srcDir).sort()) {
  const match = /^(.+)\.(\d)\.md$/.exec(file);
  if (!match) continue;
  const [, name, section] = match;
  const markdown = readFileSync(join(srcDir, file), 'utf8');
  if (!markdown.startsWith('% ')) throw new Error(`man.mjs: ${file} does not start with a title line (% NAME ${section} ...)`);
  const roff = execFileSync('go-md2man', [], { input: definitionLists(markdown), encoding: 'utf8' });
  writeFileSync(join(outDir, `${name}.${section}`), roff);
  count++;
}
console.error(`man.mjs: wrote ${count} page(s) with go-md2man to ${outDir}`);
