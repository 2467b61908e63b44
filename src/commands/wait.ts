import type { CommandModule } from 'yargs';
import { StasisError } from '../errors.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';
import { notFound } from '../errors.ts';

type Args = GlobalArgs & { id: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'wait <id>',
  describe: 'block until a container exits; print its status and exit with it',
  builder: (y) => y.positional('id', { type: 'string', describe: 'container ID' }) as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    if (!runtime.store.exists(id)) throw notFound(id);
    const exit = await runtime.waitExit(id);
    if (exit === 'removed') throw new StasisError(`container ${id} was deleted while waiting`);
    if (exit === 'checkpointed') throw new StasisError(`container ${id} was checkpointed, not exited`, { hint: `restore it with \`stasis restore ${id}\`` });
    if (exit === null) throw new StasisError(`container ${id}: its monitor is gone and no exit status was recorded`);
    if (isJson()) printJson({ id, status: exit.status, exitedAt: exit.exitedAt });
    else printLine(String(exit.status));
    process.exitCode = exit.status;
  },
};
