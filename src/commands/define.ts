import type { ArgumentsCamelCase, Argv, CommandModule, InferredOptionTypes, Options, PositionalOptions } from 'yargs';
import type { GlobalArgs } from './context.ts';

// A command is declared once, as data: its positionals and options are
// objects, and the handler's argument type is inferred from them (as
// wrangler's createCommand does), so the two cannot drift apart unseen.

type Positionals = Record<string, PositionalOptions>;
type Flags = Record<string, Options>;

/** What a handler receives: the global options, the command's own, and the words after `--`. */
export type CommandArgs<P extends Positionals, F extends Flags> = ArgumentsCamelCase<GlobalArgs & InferredOptionTypes<P & F>> & { '--'?: string[] };

export interface CommandSpec<P extends Positionals, F extends Flags> {
  command: string;
  describe: string | false;
  aliases?: string[];
  positionals?: P;
  options?: F;
  examples?: [command: string, meaning: string][];
  /**
   * The container command follows the ID without `--` (as runc's and podman's exec):
   * the first word after the ID starts it, and options after it are the command's.
   */
  commandAfterId?: boolean;
  handler: (argv: CommandArgs<P, F>) => Promise<void>;
}

/**
 * How cli.ts can read a command's plainest arguments without yargs (whose
 * parser is most of a short command's own time): its positionals in order
 * (the last may take the rest of the words), and the words of its simplest
 * boolean and string options (their defaults filled in as yargs does). An
 * option with a coercion, choices, an array, or rules between options is not
 * among them: a command line that uses one goes to yargs, as does anything
 * else unusual.
 */
export interface QuickSpec {
  positionals: { name: string; rest: boolean; required: boolean }[];
  /** A boolean option's words (`--force`, `--no-force`, `-f`): the key and the value they set. */
  flags: Record<string, [key: string, value: boolean]>;
  /** A string option's words, each followed by its value: the key. */
  values: Record<string, string>;
  /** What yargs sets for an option that is not given. */
  defaults: Record<string, unknown>;
}

function plainOption(o: Options): boolean {
  return !o.coerce && !o.choices && !o.array && !o.count && !o.conflicts && !o.implies && !o.nargs;
}

function quickSpec(spec: CommandSpec<Positionals, Flags>): QuickSpec | undefined {
  const [, ...words] = spec.command.split(' ');
  const positionals: QuickSpec['positionals'] = [];
  for (const [at, word] of words.entries()) {
    const m = /^(<|\[)([a-z]+)(\.\.)?(>|\])$/.exec(word);
    const p = m === null ? undefined : spec.positionals?.[m[2]];
    if (m === null || p === undefined || p.type !== 'string' || p.coerce || p.choices || p.default !== undefined) return undefined;
    const rest = m[3] !== undefined;
    const required = m[1] === '<';
    // A rest positional is the last one and an array; an optional one comes after every required one.
    if (rest !== (p.array === true) || (rest && at !== words.length - 1)) return undefined;
    if (required && positionals.some((q) => !q.required)) return undefined;
    positionals.push({ name: m[2], rest, required });
  }
  if (positionals.length !== Object.keys(spec.positionals ?? {}).length) return undefined;
  // A required option is checked by yargs even when absent.
  if (Object.values(spec.options ?? {}).some((o) => o.demandOption)) return undefined;
  const flags: QuickSpec['flags'] = {};
  const values: QuickSpec['values'] = {};
  const defaults: QuickSpec['defaults'] = {};
  for (const [name, o] of Object.entries(spec.options ?? {})) {
    // An option of another kind with a default: yargs would fill it in its own way.
    if (o.default !== undefined && !(plainOption(o) && (o.type === 'boolean' || o.type === 'string'))) return undefined;
    if (o.default !== undefined) defaults[name] = o.default;
    if (!plainOption(o)) continue;
    const aliases = (Array.isArray(o.alias) ? o.alias : o.alias === undefined ? [] : [o.alias]).map((a) => (a.length === 1 ? `-${a}` : `--${a}`));
    if (o.type === 'boolean') {
      for (const word of [`--${name}`, ...aliases]) flags[word] = [name, true];
      flags[`--no-${name}`] = [name, false];
    } else if (o.type === 'string' && o.requiresArg) {
      for (const word of [`--${name}`, ...aliases]) values[word] = name;
    }
  }
  return { positionals, flags, values, defaults };
}

/** A yargs command module, and what cli.ts needs to read its arguments itself (see QuickSpec). */
export type StasisCommand = CommandModule<GlobalArgs, any> & {
  quick?: QuickSpec;
  /** With commandAfterId: the command's option words that take the next word as their value. */
  valueWords?: Set<string>;
};

/** The words of the options that take a value (`--env`, `-e`): their next word is not a positional. */
function valueWords(options: Flags): Set<string> {
  const words = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type === 'boolean' || o.count) continue;
    const aliases = Array.isArray(o.alias) ? o.alias : o.alias === undefined ? [] : [o.alias];
    for (const word of [name, ...aliases]) words.add(word.length === 1 ? `-${word}` : `--${word}`);
  }
  return words;
}

export function defineCommand<P extends Positionals = {}, F extends Flags = {}>(spec: CommandSpec<P, F>): StasisCommand {
  return {
    quick: quickSpec(spec as CommandSpec<Positionals, Flags>),
    valueWords: spec.commandAfterId ? valueWords(spec.options ?? {}) : undefined,
    command: spec.command,
    describe: spec.describe,
    aliases: spec.aliases,
    builder: (yargs: Argv<GlobalArgs>) => {
      let parser: Argv<any> = yargs;
      for (const [name, positional] of Object.entries(spec.positionals ?? {})) parser = parser.positional(name, positional);
      if (spec.options) parser = parser.options(spec.options);
      for (const [command, meaning] of spec.examples ?? []) parser = parser.example(command, meaning);
      return parser;
    },
    // yargs' own handler type is the untyped view of the same arguments.
    handler: spec.handler as (argv: unknown) => Promise<void>,
  };
}

/** The positional of every command that acts on one container. */
export const ID_POSITIONAL = { id: { type: 'string', describe: 'container ID', demandOption: true } } as const;

/** The container command after the ID (and after `--`). */
export const CMD_POSITIONAL = { cmd: { type: 'string', array: true, describe: 'command and arguments (put them after --)' } } as const;
