import { StasisError, notFound } from '../errors.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'wait <id>',
  describe: 'block until a container exits; print its status and exit with it',
  positionals: ID_POSITIONAL,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    if (!runtime.store.exists(id)) throw notFound(id);
    const exit = await runtime.waitExit(id);
    if (exit === 'removed') throw new StasisError(`container ${id} was deleted while waiting`);
    if (exit === 'checkpointed') throw new StasisError(`container ${id} was checkpointed, not exited`, { hint: `restore it with \`stasis restore ${id}\`` });
    if (exit === null) throw new StasisError(`container ${id}: its monitor is gone and no exit status was recorded`);
    if (exit.status === null) throw new StasisError(`container ${id} exited at ${exit.exitedAt}, but its exit status is unknown`);
    if (isJson()) printJson({ id, status: exit.status, exitedAt: exit.exitedAt });
    else printLine(String(exit.status));
    process.exitCode = exit.status;
  },
});
