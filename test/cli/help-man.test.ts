// Every option `--help` shows is documented in the command's man page, and
// every option a man page documents exists (as podman's
// hack/xref-helpmsgs-manpages does). Needs a built CLI: `npm run build`.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, REPO } from '../helpers.ts';

const MAN_DIR = join(REPO, 'man');

/** yargs adds these to every command; they need no man page entry. */
const IGNORED = new Set(['help', 'version']);

function helpText(args: string[]): string {
  assert.ok(existsSync(join(REPO, 'dist', 'cli.cjs')), 'dist/cli.cjs is missing: run `npm run build` first');
  return execFileSync(CLI[0], [...CLI.slice(1), ...args, '--help'], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
}

/**
 * The long options of a --help text: lines such as "  -q, --quiet  ..." or
 * "      --state-dir  ...". Only a few leading spaces are allowed, so that a
 * wrapped description line that happens to start with "--" is not taken for
 * an option (yargs indents those to the description column).
 */
function helpOptions(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const match = /^ {0,8}(?:-[A-Za-z0-9], )?--([A-Za-z][A-Za-z0-9-]*)/.exec(line);
    if (match && !IGNORED.has(match[1])) names.add(match[1]);
  }
  return names;
}

/** The commands (and their aliases) listed under "Commands:" by `stasis --help`. */
function helpCommands(text: string): { name: string; aliases: string[] }[] {
  const section = text.split(/^Commands:$/m)[1]?.split(/\n\s*\n/)[0] ?? '';
  const commands = [];
  for (const line of section.split('\n')) {
    const match = /^\s+stasis ([a-z][a-z0-9-]*)/.exec(line);
    if (!match) continue;
    const aliases = /\[aliases: ([^\]]+)\]/.exec(line)?.[1].split(/,\s*/) ?? [];
    commands.push({ name: match[1], aliases });
  }
  return commands;
}

/** Level-1 sections of a man page source whose heading names options (OPTIONS, GLOBAL OPTIONS). */
function optionSections(markdown: string): string {
  return markdown
    .split(/^(?=# )/m)
    .filter((section) => /^# [^\n]*OPTIONS/.test(section))
    .join('\n');
}

/** The options a man page defines: `**--name**` on definition lines (column 0) of its OPTIONS sections. */
function documentedOptions(markdown: string): Set<string> {
  const names = new Set<string>();
  for (const line of optionSections(markdown).split('\n')) {
    if (!line.startsWith('**-')) continue;
    for (const match of line.matchAll(/\*\*--([A-Za-z][A-Za-z0-9-]*)\*\*/g)) {
      if (!IGNORED.has(match[1])) names.add(match[1]);
    }
  }
  return names;
}

function mentions(text: string, option: string): boolean {
  return new RegExp(`(?<![A-Za-z0-9-])--${option}(?![A-Za-z0-9-])`).test(text);
}

/** yargs accepts --no-X for every boolean --X without listing it. */
function existsInHelp(option: string, help: Set<string>): boolean {
  return help.has(option) || (option.startsWith('no-') && help.has(option.slice(3)));
}

function readPage(name: string): string {
  const path = join(MAN_DIR, `${name}.1.md`);
  assert.ok(existsSync(path), `man/${name}.1.md is missing`);
  return readFileSync(path, 'utf8');
}

function checkPage(page: string, helpArgs: string[]): void {
  const help = helpOptions(helpText(helpArgs));
  assert.ok(help.size > 0, `no options found in \`stasis ${helpArgs.join(' ')} --help\``);
  const markdown = readPage(page);
  const options = optionSections(markdown);
  assert.ok(options !== '', `man/${page}.1.md has no OPTIONS section`);

  const undocumented = [...help].filter((option) => !mentions(options, option)).map((o) => `--${o}`);
  assert.deepEqual(undocumented, [], `options of \`stasis ${helpArgs.join(' ')} --help\` missing from the OPTIONS of man/${page}.1.md`);

  const unknown = [...documentedOptions(markdown)].filter((option) => !existsInHelp(option, help)).map((o) => `--${o}`);
  assert.deepEqual(unknown, [], `man/${page}.1.md documents options that \`stasis ${helpArgs.join(' ')} --help\` does not show`);
}

describe('--help and the man pages agree', () => {
  const topHelp = helpText([]);
  const commands = helpCommands(topHelp);

  test('stasis --help lists exactly the commands that have a man page', () => {
    // Both ways: a command without a page, and a page of a command that is gone.
    const pages = readdirSync(MAN_DIR).map((name) => /^stasis-([a-z][a-z0-9-]*)\.1\.md$/.exec(name)?.[1]).filter((name) => name !== undefined).sort();
    assert.deepEqual(commands.map((c) => c.name).sort(), pages, 'commands in `stasis --help` vs man/stasis-<command>.1.md');
  });

  test('every stasis-<command>(1) a man page refers to is a command', () => {
    const known = new Set(commands.map((c) => c.name));
    const dangling: string[] = [];
    for (const page of readdirSync(MAN_DIR).filter((name) => name.endsWith('.1.md'))) {
      for (const match of readFileSync(join(MAN_DIR, page), 'utf8').matchAll(/\bstasis-([a-z][a-z0-9-]*)\**\(1\)/g)) {
        if (!known.has(match[1])) dangling.push(`${page}: stasis-${match[1]}(1)`);
      }
    }
    assert.deepEqual(dangling, [], 'references to commands `stasis --help` does not list');
  });

  test('stasis.1: the global options', () => {
    checkPage('stasis', []);
  });

  test('every command listed by stasis --help has a man page, listed in stasis.1', () => {
    const overview = readPage('stasis');
    const missing = commands.filter((c) => !existsSync(join(MAN_DIR, `stasis-${c.name}.1.md`))).map((c) => c.name);
    assert.deepEqual(missing, [], 'commands without man/stasis-<command>.1.md');
    const unlisted = commands.filter((c) => !overview.includes(`stasis-${c.name}`)).map((c) => c.name);
    assert.deepEqual(unlisted, [], 'commands not referenced in man/stasis.1.md');
  });

  for (const { name, aliases } of commands) {
    test(`stasis-${name}.1: options match \`stasis ${name} --help\``, () => {
      checkPage(`stasis-${name}`, [name]);
    });
    if (aliases.length > 0) {
      test(`stasis-${name}.1 mentions the aliases ${aliases.join(', ')}`, () => {
        const markdown = readPage(`stasis-${name}`);
        for (const alias of aliases) assert.match(markdown, new RegExp(`\\bstasis ${alias}\\b|\\*\\*${alias}\\*\\*`), `alias ${alias}`);
      });
    }
  }
});
