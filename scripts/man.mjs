#!/usr/bin/env node
// man.mjs [SRC_DIR [OUT_DIR]] — turn man/*.md into roff man pages.
//
// Usage: node scripts/man.mjs                 (man/*.md -> dist/man/<name>)
//        node scripts/man.mjs /tmp/md /tmp/out
//
// A page's source is named <name>.<section>.md (stasis.1.md, stasis-run.1.md)
// and becomes OUT_DIR/<name>.<section> (dist/man/stasis-run.1). Deliberately
// dependency-free: it runs during setup, before or without node_modules.
//
// Supported markdown subset (anything else is treated as paragraph text):
//   # HEADING            -> .SH HEADING       (## Sub -> .SS Sub)
//   blank-line separated text -> .PP paragraphs
//   - item / * item      -> .IP \(bu 2 bullet items (indented lines continue)
//   ``` fenced ``` or 4-space indented blocks -> .nf/.fi literal blocks
//   **--flag** *ARG*     -> .TP definition, when followed by indented lines
//       description        (its description; more indented paragraphs after
//                           a blank line continue the same definition)
//   **bold**, *italic*, _italic_, `code` (bold), [text](url), \* escapes
// Text is escaped for roff: backslash -> \e, every '-' -> \- (so options copy
// and paste as ASCII hyphens and NAME lines read as "name \- summary"), and
// lines starting with '.' or "'" get a \& so they are not taken as requests.
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = resolve(process.argv[2] ?? join(root, 'man'));
const outDir = resolve(process.argv[3] ?? join(root, 'dist', 'man'));

// ---------------------------------------------------------------- inline text

/** Escape plain text for roff (no markdown handling). */
function esc(s) {
  return s.replace(/\\/g, '\\e').replace(/-/g, '\\-');
}

/** Guard a roff output line so it cannot be read as a control line. */
function guard(line) {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/** Markdown inline formatting -> roff font escapes. */
function inline(text) {
  // Code spans first: their content is literal (escaped, never formatted).
  // Backslash escapes (\*, \_, \`) and code spans are swapped for private-use
  // placeholders so later regexes cannot touch them.
  const held = [];
  const hold = (s) => `\uE000${held.push(s) - 1}\uE001`;
  let s = text
    .replace(/\\([\\`*_{}\[\]()#+\-.!<>|~])/g, (_, c) => hold(esc(c)))
    .replace(/(`+)(.+?)\1/g, (_, _t, code) => hold(`\\fB${esc(code.trim())}\\fR`));
  s = esc(s);
  s = s
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (_, t, url) => (t === url ? `\\fI${t}\\fR` : `${t} (\\fI${url}\\fR)`))
    .replace(/\*\*(?=\S)(.+?)\*\*/g, '\\fB$1\\fR')
    .replace(/__(?=\S)(.+?)__/g, '\\fB$1\\fR')
    .replace(/\*(?=[^\s*])([^*]*?[^\s*]|[^\s*])\*/g, '\\fI$1\\fR')
    // _italic_ only at word boundaries, so snake_case_names stay as they are.
    .replace(/(^|[^\p{L}\p{N}_])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?![\p{L}\p{N}_])/gu, '$1\\fI$2\\fR');
  return s.replace(/\uE000(\d+)\uE001/g, (_, i) => held[Number(i)]);
}

/** Several source lines of running text -> guarded roff lines. */
function textLines(lines) {
  return lines.map((l) => guard(inline(l.trim()))).filter((l) => l !== '');
}

/** Literal block lines -> .nf/.fi block (escaped, not formatted). */
function literal(lines, out, nested = false) {
  // Drop leading/trailing blank lines; keep inner ones (as empty .nf lines).
  while (lines.length && lines[0].trim() === '') lines.shift();
  while (lines.length && lines.at(-1).trim() === '') lines.pop();
  // Inside a .TP description, a bare .RS first moves the margin to the
  // description's indent; the .RS 4 then indents the code relative to it.
  if (nested) out.push('.RS');
  out.push('.RS 4', '.nf');
  for (const l of lines) out.push(l.trim() === '' ? '' : guard(esc(l)));
  out.push('.fi', '.RE');
  if (nested) out.push('.RE');
}

// ---------------------------------------------------------------- blocks

const indentOf = (l) => (l.match(/^[ \t]*/)[0].replace(/\t/g, '    ').length);
const isBlank = (l) => l.trim() === '';
const isFence = (l) => /^\s*(```|~~~)/.test(l);
const isHeading = (l) => /^#{1,6}\s+\S/.test(l);
const isBullet = (l) => /^\s{0,3}[-*+]\s+\S/.test(l);
const isTerm = (l) => /^(\*\*|`)/.test(l) && indentOf(l) === 0;

function convert(md, name, section) {
  const lines = md.replace(/\r\n?/g, '\n').split('\n');
  const out = [
    `.TH "${esc(name.toUpperCase())}" "${section}" "" "stasis" "Stasis Manual"`,
    '.ad l', // left-justify: option lists look ragged when stretched
    '.nh', // no hyphenation: paths and option names must not be split
  ];
  let i = 0;
  let inDef = false; // inside a .TP description (indented paragraphs continue it)

  /** Read a fenced block starting at lines[i]; returns literal lines. */
  const readFence = () => {
    const fence = lines[i].trim().slice(0, 3);
    const base = indentOf(lines[i]);
    const body = [];
    for (i++; i < lines.length && !lines[i].trim().startsWith(fence); i++) {
      body.push(lines[i].slice(Math.min(base, indentOf(lines[i]))));
    }
    i++; // closing fence (or EOF)
    return body;
  };

  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) { i++; continue; }

    if (isHeading(line)) {
      const [, hashes, title] = line.match(/^(#+)\s+(.*?)\s*#*\s*$/);
      out.push(`${hashes.length === 1 ? '.SH' : '.SS'} "${inline(title).replace(/"/g, '\\(dq')}"`);
      inDef = false;
      i++;
      continue;
    }

    if (isFence(line)) {
      const body = readFence();
      const nested = inDef && indentOf(line) > 0;
      if (!nested) inDef = false;
      out.push('.PP');
      literal(body, out, nested);
      continue;
    }

    // Definition: a term line at column 0 directly followed by indented text.
    if (isTerm(line) && i + 1 < lines.length && !isBlank(lines[i + 1]) && indentOf(lines[i + 1]) >= 2) {
      out.push('.TP', ...textLines([line]));
      i++;
      const desc = [];
      while (i < lines.length && !isBlank(lines[i]) && indentOf(lines[i]) >= 2 && !isFence(lines[i])) desc.push(lines[i++]);
      out.push(...textLines(desc));
      inDef = true;
      continue;
    }

    // Indented text after a definition continues it (another paragraph)...
    if (inDef && indentOf(line) >= 2 && !isBullet(line)) {
      const para = [];
      while (i < lines.length && !isBlank(lines[i]) && indentOf(lines[i]) >= 2 && !isFence(lines[i])) para.push(lines[i++]);
      out.push('.IP', ...textLines(para));
      continue;
    }

    // ...elsewhere, 4-space indentation is a code block.
    if (indentOf(line) >= 4) {
      const body = [];
      while (i < lines.length && (isBlank(lines[i]) || indentOf(lines[i]) >= 4)) body.push(lines[i++].replace(/^( {4}|\t)/, ''));
      out.push('.PP');
      literal(body, out);
      inDef = false;
      continue;
    }

    if (isBullet(line)) {
      // One item: the bullet line plus its indented / lazy continuation lines.
      const item = [line.replace(/^\s*[-*+]\s+/, '')];
      for (i++; i < lines.length && !isBlank(lines[i]) && !isBullet(lines[i]) && !isHeading(lines[i]) && !isFence(lines[i]); i++) {
        item.push(lines[i]);
      }
      out.push('.IP \\(bu 2', ...textLines(item));
      inDef = false;
      continue;
    }

    // Plain paragraph: up to a blank line or the start of another block.
    const para = [];
    while (i < lines.length && !isBlank(lines[i]) && !isHeading(lines[i]) && !isFence(lines[i]) && !(para.length && isBullet(lines[i]))) {
      para.push(lines[i++]);
    }
    out.push('.PP', ...textLines(para));
    inDef = false;
  }
  // No .PP straight after a heading (it adds nothing, and some NAME-section
  // parsers prefer the summary line right after .SH NAME).
  return out.filter((l, k) => !(l === '.PP' && /^\.S[HS] /.test(out[k - 1] ?? ''))).join('\n') + '\n';
}

// ---------------------------------------------------------------- main

let entries;
try {
  entries = await readdir(srcDir);
} catch (err) {
  if (err.code === 'ENOENT') {
    console.error(`man.mjs: no ${srcDir}; nothing to do`);
    process.exit(0);
  }
  throw err;
}
await mkdir(outDir, { recursive: true });
let count = 0;
for (const file of entries.sort()) {
  const m = file.match(/^(.+)\.(\d[a-z]*)\.md$/);
  if (!m) {
    if (file.endsWith('.md')) console.error(`man.mjs: skipping ${file} (expected NAME.SECTION.md)`);
    continue;
  }
  const [, name, section] = m;
  const roff = convert(await readFile(join(srcDir, file), 'utf8'), name, section);
  await writeFile(join(outDir, `${name}.${section}`), roff);
  count++;
}
console.error(`man.mjs: wrote ${count} page(s) to ${outDir}`);
