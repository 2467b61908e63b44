import type { Argv, CommandModule } from 'yargs';
import { EXIT_TOOL, EXIT_USAGE, StasisError, errorMessage } from './errors.ts';
import { setCliEntry, type GlobalArgs } from './commands/context.ts';
import type { StasisCommand } from './commands/define.ts';
import { guardStreamsUnlessDirect, isTerminal, writeErr } from './host/stdio.ts';
import { refusedSpelling } from './commands/refused.ts';

declare const __STASIS_VERSION__: string;

// Only declares the commands: the module of the one being run is imported
// when it is known, so no command pays for loading another's code.

export interface CommandEntry {
  name: string;
  aliases?: string[];
  describe: string;
  hidden?: boolean;
  load: () => Promise<{ command: CommandModule<GlobalArgs, any> }>;
}

const COMMANDS: CommandEntry[] = [
  { name: 'create', describe: 'create a container from a rootfs, a bundle or a checkpoint', load: () => import('./commands/create.ts') },
  { name: 'start', describe: 'start a created container', load: () => import('./commands/start.ts') },
  { name: 'run', describe: 'create and start a container; attached, exit with its status', load: () => import('./commands/run.ts') },
  { name: 'ps', aliases: ['ls', 'list'], describe: 'list containers', load: () => import('./commands/ps.ts') },
  { name: 'info', aliases: ['inspect'], describe: 'show everything known about a container (JSON)', load: () => import('./commands/info.ts') },
  { name: 'kill', describe: 'send a signal to a container', load: () => import('./commands/kill.ts') },
  { name: 'wait', describe: 'wait for a container to exit and print its status', load: () => import('./commands/wait.ts') },
  { name: 'delete', aliases: ['rm'], describe: 'remove stopped containers', load: () => import('./commands/delete.ts') },
  { name: 'exec', describe: 'run a process inside a running container', load: () => import('./commands/exec.ts') },
  { name: 'pause', describe: 'freeze all processes of a container', load: () => import('./commands/pause.ts') },
  { name: 'resume', aliases: ['unpause'], describe: 'thaw a paused container', load: () => import('./commands/resume.ts') },
  { name: 'logs', describe: "print a container's captured output", load: () => import('./commands/logs.ts') },
  { name: 'top', describe: 'list the processes inside a container', load: () => import('./commands/top.ts') },
  { name: 'images', describe: 'list the images in the image store', load: () => import('./commands/images.ts') },
  { name: 'rmi', describe: 'remove images from the image store', load: () => import('./commands/rmi.ts') },
  { name: 'checkpoint', describe: 'dump a container to disk with CRIU', load: () => import('./commands/checkpoint.ts') },
  { name: 'checkpoint-ls', describe: 'list the kept checkpoints: materialised or packed, sizes, what only each holds', load: () => import('./commands/checkpoint-ls.ts') },
  { name: 'checkpoint-rm', describe: 'remove kept checkpoints; the others stay restorable', load: () => import('./commands/checkpoint-rm.ts') },
  { name: 'checkpoint-inspect', describe: 'show what a checkpoint holds and would ask for, without restoring it', load: () => import('./commands/checkpoint-inspect.ts') },
  { name: 'restore', describe: 'restore a container from a checkpoint', load: () => import('./commands/restore.ts') },
  { name: 'migrate', describe: 'move a running container to another host or state directory', load: () => import('./commands/migrate.ts') },
  { name: 'events', describe: 'stream container lifecycle events', load: () => import('./commands/events.ts') },
  { name: 'doctor', describe: 'check that runc, CRIU, conmon and the kernel are ready', load: () => import('./commands/doctor.ts') },
  { name: '__migrate', describe: "a move's other side (run by migrate)", hidden: true, load: () => import('./commands/migrate-peer.ts') },
  { name: '__exit', describe: 'record a container exit (run by the monitor)', hidden: true, load: () => import('./commands/exit-hook.ts') },
];

/** Commands whose own exit status is the process's: their failures are 125, not 1/2. */
const PROCESS_STATUS_COMMANDS = new Set(['run', 'exec', 'wait']);

/**
 * A global path option's value: one path, given once. yargs makes a repeated
 * option an array (which would reach path.resolve) and takes '' as a value.
 */
function onePath(name: string): (value: unknown) => string {
  return (value) => {
    if (Array.isArray(value)) throw new StasisError(`--${name} given more than once`, { exitCode: EXIT_USAGE, hint: `give --${name} once` });
    if (typeof value !== 'string' || value === '') throw new StasisError(`--${name}: an empty value`, { exitCode: EXIT_USAGE, hint: `give --${name} a path` });
    return value;
  };
}

/** The options every command takes, in one table: yargs declares them, and the command-word scan below skips their values. */
const GLOBAL_OPTIONS = {
  'state-dir': { type: 'string', requiresArg: true, coerce: onePath('state-dir'), describe: 'state directory [env: STASIS_STATE_DIR] (default: /run/stasis as root)', global: true },
  'checkpoint-dir': { type: 'string', requiresArg: true, coerce: onePath('checkpoint-dir'), describe: 'where checkpoints go without --image-path [env: STASIS_CHECKPOINT_DIR] (default: /var/lib/stasis/checkpoints)', global: true },
  'image-dir': { type: 'string', requiresArg: true, coerce: onePath('image-dir'), describe: 'the image store, where --image unpacks images [env: STASIS_IMAGE_DIR] (default: /var/lib/stasis/images)', global: true },
  runc: { type: 'string', requiresArg: true, coerce: onePath('runc'), describe: 'the OCI runtime binary [env: STASIS_RUNC]', global: true },
  criu: { type: 'string', requiresArg: true, coerce: onePath('criu'), describe: 'the CRIU binary runc uses [env: STASIS_CRIU]', global: true },
  json: { type: 'boolean', describe: 'machine-readable JSON output', global: true },
  quiet: { alias: 'q', type: 'boolean', describe: 'print only IDs or paths', global: true },
  color: { type: 'boolean', describe: 'colour output (--no-color to disable) [env: NO_COLOR, FORCE_COLOR]', global: true },
  debug: { type: 'boolean', describe: 'print each runc / criu / monitor command line [env: STASIS_DEBUG=1]', global: true },
} as const;

/** Global options that take a value: skipped when looking for the command word. */
const VALUE_OPTIONS = new Set(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'string').map(([name]) => `--${name}`));

/** Where the command word is among `args` (global options and their values skipped), or -1. */
function verbIndex(args: string[], from = 0): number {
  for (let i = from; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') return -1;
    if (VALUE_OPTIONS.has(arg)) {
      i++;
      continue;
    }
    if (!arg.startsWith('-')) return i;
  }
  return -1;
}

function findVerb(args: string[]): string | undefined {
  const at = verbIndex(args);
  return at < 0 ? undefined : args[at];
}

/**
 * podman's noun form, `stasis container VERB ...` (`container checkpoint ID`,
 * `container ls`): the same as `stasis VERB ...`, so the word is dropped.
 */
export function withoutNoun(args: string[]): string[] {
  const at = verbIndex(args);
  if (at < 0 || args[at] !== 'container') return args;
  return [...args.slice(0, at), ...args.slice(at + 1)];
}

/** `checkpoint ls|list [ID]` and `checkpoint rm|remove PATH...`: the checkpoint store's verbs, as checkpoint-ls and checkpoint-rm. */
const CHECKPOINT_VERBS: Record<string, string> = { ls: 'checkpoint-ls', list: 'checkpoint-ls', rm: 'checkpoint-rm', remove: 'checkpoint-rm' };

export function checkpointVerb(args: string[]): string[] {
  const at = verbIndex(args);
  if (at < 0 || args[at] !== 'checkpoint') return args;
  const next = verbIndex(args, at + 1);
  const verb = next < 0 ? undefined : own(CHECKPOINT_VERBS, args[next]);
  if (verb === undefined) return args;
  return [...args.slice(0, at), verb, ...args.slice(at + 1, next), ...args.slice(next + 1)];
}

/**
 * For a command whose container command follows the ID without `--` (exec,
 * as runc's and podman's): `--` is put before the first word after the ID,
 * so `stasis exec c1 ls -l` runs `ls -l` and `-l` is not read as stasis's.
 */
export function commandAfterId(args: string[], module: StasisCommand): string[] {
  const valueWords = module.valueWords;
  const at = verbIndex(args);
  if (valueWords === undefined || at < 0) return args;
  let positionals = 0;
  for (let i = at + 1; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') return args;
    if (VALUE_OPTIONS.has(arg) || valueWords.has(arg)) {
      i++;
      continue;
    }
    if (arg.startsWith('-') && arg !== '-') continue;
    if (++positionals === 2) return [...args.slice(0, i), '--', ...args.slice(i)];
  }
  return args;
}

/**
 * Shell completion is yargs' own: the scripts `stasis completion [bash|zsh]` prints run
 * `stasis --get-yargs-completions stasis WORD...` at each TAB. Returns the words after the
 * program name when that is what was asked, so the command among them can be found and declared
 * in full (its options are what gets completed). yargs takes the shell from $SHELL, both for the
 * script and for the answer's format (zsh's carry descriptions), so $SHELL is set from what was
 * asked: the shell named, or zsh when the zsh script's COMP_LINE is in the environment.
 */
function completionWords(args: string[]): string[] | undefined {
  const key = args.indexOf('--get-yargs-completions');
  if (key >= 0) {
    process.env.SHELL = process.env.COMP_LINE === undefined ? 'bash' : 'zsh';
    delete process.env.ZSH_NAME;
    return args.slice(key + 2);
  }
  if (findVerb(args) === 'completion') {
    const shell = args[args.indexOf('completion') + 1];
    if (shell === 'bash' || shell === 'zsh') process.env.SHELL = shell;
  }
  return undefined;
}

/** Whether yargs may print help: asked for, or no command to run. */
function helpAsked(args: string[]): boolean {
  return args.includes('--help') || args.includes('-h') || args.includes('help') || findVerb(args) === undefined;
}

function globalOptions(parser: Argv): Argv<GlobalArgs> {
  return parser.options(GLOBAL_OPTIONS) as unknown as Argv<GlobalArgs>;
}

/** Hints that name global options, for errors any command can meet (the library tags them with a code). */
const GLOBAL_HINTS: Record<string, string> = {
  'runc-missing': 'install runc (see `stasis doctor`) or point --runc / STASIS_RUNC at it',
};

/** A write that found its filesystem full, in Node's words or tar's. */
const FULL_DISK = /\bENOSPC\b|No space left on device/;
const FULL_DISK_HINT = 'a filesystem is full (the state directory\'s, the checkpoint directory\'s or the target\'s): free some space (df -h) and run it again';

/** The one place an error becomes output: `stasis: what: why` and a hint, or one JSON document. */
function reportError(err: unknown, json: boolean): void {
  const message = errorMessage(err);
  const hint = (err instanceof StasisError ? err.hint ?? GLOBAL_HINTS[err.code ?? ''] : undefined) ?? (FULL_DISK.test(message) ? FULL_DISK_HINT : undefined);
  const details = err instanceof StasisError ? err.details : undefined;
  if (json) {
    writeErr(`${JSON.stringify({ error: message, ...(hint ? { hint } : {}), ...(details ? { errors: details } : {}) })}\n`);
    return;
  }
  for (const detail of details ?? []) {
    writeErr(`stasis: ${detail.error}\n`);
    if (detail.hint) writeErr(`hint: ${detail.hint}\n`);
  }
  writeErr(`stasis: ${message}\n`);
  if (hint) writeErr(`hint: ${hint}\n`);
}

export async function main(args: string[]): Promise<void> {
  if (process.argv[1]) setCliEntry(process.argv[1]);
  // `stasis ps | head -1`: a closed pipe ends the output quietly (output/stdio.ts).
  guardStreamsUnlessDirect();
  args = checkpointVerb(withoutNoun(args));
  const verb = findVerb(checkpointVerb(withoutNoun(completionWords(args) ?? args)));
  const entry = commandEntry(verb);
  const json = args.includes('--json');
  const fail = (err: unknown) => {
    let exitCode = err instanceof StasisError ? err.exitCode : 1;
    if (entry && PROCESS_STATUS_COMMANDS.has(entry.name) && exitCode < 125) exitCode = EXIT_TOOL;
    reportError(err, json);
    process.exitCode = exitCode;
  };
  const loaded = entry ? (await entry.load()).command : undefined;
  if (entry && loaded) {
    args = commandAfterId(args, loaded as StasisCommand);
    const refusal = helpAsked(args) ? undefined : refusedSpelling(entry.name, args, verbIndex(args));
    if (refusal) return fail(refusal);
  }
  const quick = entry && loaded ? quickParse(args, entry, loaded as StasisCommand) : null;
  if (quick !== null) {
    try {
      await loaded!.handler(quick as never);
    } catch (err) {
      fail(err);
    }
    return;
  }
  try {
    await (await yargsParser(args, entry, loaded)).parseAsync();
  } catch (err) {
    fail(err);
  }
}

/** The command a word names (its name or an alias). */
export function commandEntry(verb: string | undefined): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === verb || c.aliases?.includes(verb ?? ''));
}

/**
 * yargs set up for `args`: the global options, and the command being run
 * declared in full (`loaded`). `handler`, for tests, takes the command's place.
 */
export async function yargsParser(args: string[], entry: CommandEntry | undefined, loaded: CommandModule<GlobalArgs, any> | undefined, handler?: (argv: unknown) => void): Promise<Argv<GlobalArgs>> {
  const { default: yargs } = await import('yargs');
  let parser = globalOptions(
    yargs(args)
      .scriptName('stasis')
      .usage('$0 <command> [options]\n\nDaemonless containers with checkpoint/restore, over runc, CRIU and conmon.')
      .parserConfiguration({ 'parse-numbers': false, 'parse-positional-numbers': false, 'populate--': true, 'strip-aliased': true })
      .strict()
      .showHelpOnFail(false)
      .version(__STASIS_VERSION__)
      .help()
      .alias('help', 'h')
      .completion('completion', false)
      // In a pipe, no wrapping at all: cut words help nobody, and grep wants whole lines.
      // Only help is wrapped; the terminal's width is asked only then (see output/stdio.ts).
      .wrap(helpAsked(args) && isTerminal(1) ? Math.min(120, process.stdout.columns) : null)
      .epilogue('Run `stasis <command> --help` for the options of a command; `man stasis` for the details.')
      .fail((msg, err) => {
        // yargs' own parse errors (a missing option value...) are usage errors too.
        if (err && !(err instanceof StasisError) && err.name !== 'YError') throw err;
        throw new StasisError(msg ?? err?.message ?? 'usage error', { exitCode: EXIT_USAGE });
      }),
  );
  // With the command known, only it is declared: the others would only be
  // listed by a --help of the whole program, which has no command word.
  for (const command of entry ? [entry] : COMMANDS) {
    if (command === entry) {
      parser = parser.command(handler ? { ...loaded!, handler } : loaded!);
    } else {
      parser = parser.command({
        command: command.name,
        aliases: command.aliases,
        describe: command.hidden ? false : command.describe,
        handler: () => undefined,
      });
    }
  }
  if (entry === undefined) parser = parser.demandCommand(1, 'no command given: see `stasis --help`');
  return parser;
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The global options' words, as yargs reads them: `--state-dir X`; `--json`, `--no-json`, `-q`. */
const QUICK_VALUES: Record<string, string> = Object.fromEntries(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'string').map(([name]) => [`--${name}`, name]));
const QUICK_FLAGS: Record<string, [string, boolean]> = Object.fromEntries(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'boolean').flatMap(([name, o]) => [
  [`--${name}`, [name, true]],
  [`--no-${name}`, [name, false]],
  ...('alias' in o ? [[`-${o.alias}`, [name, true]]] : []),
]));

const own = <T>(table: Record<string, T>, key: string): T | undefined => (Object.hasOwn(table, key) ? table[key] : undefined);

/**
 * A command's arguments read without yargs, when they are nothing but the
 * command word, its positionals (see QuickSpec in define.ts), global options
 * and its simplest options, each given once in its plain form, and the words
 * after `--` for a command that takes them (run's command). The result is
 * what yargs would hand the handler (test/unit/quick-parse.test.ts compares
 * the two). Anything else (help, a `--x=y`, `-dq`, an unknown or repeated
 * option, an option of another kind, a missing or extra word) returns null
 * and goes to yargs, which also makes its errors. Building yargs' parser and
 * running it is most of a short command's own time (about 10 ms of a
 * compiled `ps` or `delete -f`).
 */
export function quickParse(args: string[], entry: CommandEntry, module: StasisCommand): Record<string, unknown> | null {
  const quick = module.quick;
  if (quick === undefined) return null;
  const argv: Record<string, unknown> = {};
  const set = (key: string, value: unknown): boolean => {
    if (Object.hasOwn(argv, key)) return false;
    argv[key] = value;
    argv[camel(key)] = value;
    return true;
  };
  const words: string[] = [];
  let afterDashes: string[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      afterDashes = args.slice(i + 1);
      break;
    }
    const valueKey = own(QUICK_VALUES, arg) ?? own(quick.values, arg);
    const flag = own(QUICK_FLAGS, arg) ?? own(quick.flags, arg);
    if (valueKey !== undefined) {
      const value = args[i + 1];
      if (value === undefined || value === '' || value.startsWith('-') || !set(valueKey, value)) return null;
      i++;
    } else if (flag !== undefined) {
      // yargs reads a "true" or "false" after a boolean option as its value.
      if (args[i + 1] === 'true' || args[i + 1] === 'false' || !set(flag[0], flag[1])) return null;
    } else if (arg.startsWith('-') || arg === '' || arg === 'help') {
      return null;
    } else {
      words.push(arg);
    }
  }
  const [word, ...rest] = words;
  if (word !== entry.name && !entry.aliases?.includes(word)) return null;
  for (const p of quick.positionals) {
    if (p.rest) {
      if (p.required && rest.length === 0) return null;
      argv[p.name] = rest.splice(0);
    } else {
      const value = rest.shift();
      if (value === undefined && p.required) return null;
      if (value !== undefined) argv[p.name] = value;
    }
  }
  if (rest.length > 0) return null;
  if (afterDashes !== undefined) {
    if (!quick.positionals.some((p) => p.rest)) return null;
    // yargs leaves out an empty list.
    if (afterDashes.length > 0) argv['--'] = afterDashes;
  }
  for (const [key, value] of Object.entries(quick.defaults)) if (!Object.hasOwn(argv, key)) set(key, value);
  return { ...argv, _: [word], $0: 'stasis' };
}
