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
  handler: (argv: CommandArgs<P, F>) => Promise<void>;
}

/**
 * The positionals' names when the command takes no options of its own and
 * only required plain-string positionals, named in order in its command
 * string (`info <id>`): cli.ts can then read its arguments without yargs.
 */
function quickPositionals(spec: CommandSpec<Positionals, Flags>): string[] | undefined {
  if (spec.options && Object.keys(spec.options).length > 0) return undefined;
  const [, ...words] = spec.command.split(' ');
  const names: string[] = [];
  for (const word of words) {
    const name = /^<([a-z]+)>$/.exec(word)?.[1];
    const p = name === undefined ? undefined : spec.positionals?.[name];
    if (p === undefined || p.type !== 'string' || p.demandOption !== true || p.array || p.coerce || p.choices) return undefined;
    names.push(name!);
  }
  if (names.length !== Object.keys(spec.positionals ?? {}).length) return undefined;
  return names;
}

/** A yargs command module, and what cli.ts needs to read its arguments itself (see quickPositionals). */
export type StasisCommand = CommandModule<GlobalArgs, any> & { quickPositionals?: string[] };

export function defineCommand<P extends Positionals = {}, F extends Flags = {}>(spec: CommandSpec<P, F>): StasisCommand {
  return {
    quickPositionals: quickPositionals(spec as CommandSpec<Positionals, Flags>),
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
