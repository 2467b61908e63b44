import type { Argv, CommandModule } from 'yargs';
import { EXIT_TOOL, EXIT_USAGE, StasisError, errorMessage } from './errors.ts';
import { setCliEntry, type GlobalArgs } from './commands/context.ts';
import { guardStreamsUnlessDirect, isTerminal, writeErr } from './output/stdio.ts';

declare const __STASIS_VERSION__: string;

// Only declares the commands: the module of the one being run is imported
// when it is known, so no command pays for loading another's code.

interface CommandEntry {
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
  { name: 'ps', aliases: ['ls'], describe: 'list containers', load: () => import('./commands/ps.ts') },
  { name: 'info', describe: 'show everything known about a container (JSON)', load: () => import('./commands/info.ts') },
  { name: 'kill', describe: 'send a signal to a container', load: () => import('./commands/kill.ts') },
  { name: 'wait', describe: 'wait for a container to exit and print its status', load: () => import('./commands/wait.ts') },
  { name: 'delete', aliases: ['rm'], describe: 'remove stopped containers', load: () => import('./commands/delete.ts') },
  { name: 'exec', describe: 'run a process inside a running container', load: () => import('./commands/exec.ts') },
  { name: 'pause', describe: 'freeze all processes of a container', load: () => import('./commands/pause.ts') },
  { name: 'resume', describe: 'thaw a paused container', load: () => import('./commands/resume.ts') },
  { name: 'logs', describe: "print a container's captured output", load: () => import('./commands/logs.ts') },
  { name: 'top', describe: 'list the processes inside a container', load: () => import('./commands/top.ts') },
  { name: 'checkpoint', describe: 'dump a container to disk with CRIU', load: () => import('./commands/checkpoint.ts') },
  { name: 'restore', describe: 'restore a container from a checkpoint', load: () => import('./commands/restore.ts') },
  { name: 'migrate', describe: 'move a running container to another host or state directory', load: () => import('./commands/migrate.ts') },
  { name: 'events', describe: 'stream container lifecycle events', load: () => import('./commands/events.ts') },
  { name: 'doctor', describe: 'check that runc, CRIU, conmon and the kernel are ready', load: () => import('./commands/doctor.ts') },
  { name: '__migrate', describe: "a move's other side (run by migrate)", hidden: true, load: () => import('./commands/migrate-peer.ts') },
  { name: '__exit', describe: 'record a container exit (run by the monitor)', hidden: true, load: () => import('./commands/exit-hook.ts') },
];

/** Commands whose own exit status is the process's: their failures are 125, not 1/2. */
const PROCESS_STATUS_COMMANDS = new Set(['run', 'exec', 'wait']);

/** The options every command takes, in one table: yargs declares them, and the command-word scan below skips their values. */
const GLOBAL_OPTIONS = {
  'state-dir': { type: 'string', requiresArg: true, describe: 'state directory [env: STASIS_STATE_DIR] (default: /run/stasis as root)', global: true },
  'checkpoint-dir': { type: 'string', requiresArg: true, describe: 'where checkpoints go without --image-path [env: STASIS_CHECKPOINT_DIR] (default: /var/lib/stasis/checkpoints)', global: true },
  runc: { type: 'string', requiresArg: true, describe: 'the OCI runtime binary [env: STASIS_RUNC]', global: true },
  criu: { type: 'string', requiresArg: true, describe: 'the CRIU binary runc uses [env: STASIS_CRIU]', global: true },
  json: { type: 'boolean', describe: 'machine-readable JSON output', global: true },
  quiet: { alias: 'q', type: 'boolean', describe: 'print only IDs or paths', global: true },
  color: { type: 'boolean', describe: 'colour output (--no-color to disable) [env: NO_COLOR, FORCE_COLOR]', global: true },
  debug: { type: 'boolean', describe: 'print each runc / criu / monitor command line [env: STASIS_DEBUG=1]', global: true },
} as const;

/** Global options that take a value: skipped when looking for the command word. */
const VALUE_OPTIONS = new Set(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'string').map(([name]) => `--${name}`));

function findVerb(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') return undefined;
    if (VALUE_OPTIONS.has(arg)) {
      i++;
      continue;
    }
    if (!arg.startsWith('-')) return arg;
  }
  return undefined;
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

/** The one place an error becomes output: `stasis: what: why` and a hint, or one JSON document. */
function reportError(err: unknown, json: boolean): void {
  const message = errorMessage(err);
  const hint = err instanceof StasisError ? err.hint ?? GLOBAL_HINTS[err.code ?? ''] : undefined;
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
  const verb = findVerb(completionWords(args) ?? args);
  const entry = COMMANDS.find((c) => c.name === verb || c.aliases?.includes(verb ?? ''));
  const json = args.includes('--json');
  const fail = (err: unknown) => {
    let exitCode = err instanceof StasisError ? err.exitCode : 1;
    if (entry && PROCESS_STATUS_COMMANDS.has(entry.name) && exitCode < 125) exitCode = EXIT_TOOL;
    reportError(err, json);
    process.exitCode = exitCode;
  };
  const loaded = entry ? (await entry.load()).command : undefined;
  const quick = entry && loaded ? quickParse(args, entry, loaded) : null;
  if (quick !== null) {
    try {
      await loaded!.handler(quick as never);
    } catch (err) {
      fail(err);
    }
    return;
  }
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
      parser = parser.command(loaded!);
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
  try {
    await parser.parseAsync();
  } catch (err) {
    fail(err);
  }
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The global options' words, as yargs reads them: `--state-dir X`; `--json`, `--no-json`, `-q`. */
const QUICK_VALUES = new Map(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'string').map(([name]) => [`--${name}`, camel(name)]));
const QUICK_FLAGS = new Map<string, [string, boolean]>(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'boolean').flatMap(([name, o]) => [
  [`--${name}`, [camel(name), true]] as [string, [string, boolean]],
  [`--no-${name}`, [camel(name), false]] as [string, [string, boolean]],
  ...('alias' in o ? [[`-${o.alias}`, [camel(name), true]] as [string, [string, boolean]]] : []),
]));

/**
 * The arguments of a command that takes no options of its own and only
 * required positionals (ps, info ID, start ID, conmon's `__exit ID INSTANCE`:
 * see define.ts), read without yargs, when they are nothing but that
 * command, its positionals and global options each given once in their
 * plain form. The result is what yargs would hand the handler. Anything
 * else (help, a `--x=y`, an unknown or repeated option, a missing or extra
 * word, `--`) returns null and goes to yargs, which also makes its errors.
 * Building yargs' parser and running it is most of such a command's own
 * time (about 10 ms of a compiled `ps`).
 */
function quickParse(args: string[], entry: CommandEntry, module: CommandModule<GlobalArgs, any>): Record<string, unknown> | null {
  const positionals = (module as { quickPositionals?: string[] }).quickPositionals;
  if (positionals === undefined) return null;
  const argv: Record<string, unknown> = {};
  const seen = new Set<string>();
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const valueKey = QUICK_VALUES.get(arg);
    const flag = QUICK_FLAGS.get(arg);
    if (valueKey !== undefined) {
      const value = args[i + 1];
      if (value === undefined || value === '' || value.startsWith('-') || seen.has(valueKey)) return null;
      seen.add(valueKey);
      argv[valueKey] = value;
      i++;
    } else if (flag !== undefined) {
      if (seen.has(flag[0])) return null;
      seen.add(flag[0]);
      argv[flag[0]] = flag[1];
    } else if (arg.startsWith('-') || arg === '' || arg === 'help') {
      return null;
    } else {
      words.push(arg);
    }
  }
  const [word, ...rest] = words;
  if (word !== entry.name && !entry.aliases?.includes(word)) return null;
  if (rest.length !== positionals.length) return null;
  positionals.forEach((name, i) => (argv[name] = rest[i]));
  return { ...argv, _: [word], $0: 'stasis' };
}
