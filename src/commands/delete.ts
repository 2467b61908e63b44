import type { CommandModule } from 'yargs';
import { errorMessage, StasisError } from '../errors.ts';
import { isJson, isQuiet, printJson, printLine } from '../output/print.ts';
import type { DeleteResult } from '../runtime/runtime.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { ids: string[]; force?: boolean };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'delete <ids..>',
  aliases: ['rm'],
  describe: 'remove stopped containers; print each exit status and time',
  builder: (y) =>
    y
      .positional('ids', { type: 'string', array: true, describe: 'container IDs' })
      .option('force', { alias: 'f', type: 'boolean', describe: 'kill running containers first' }) as never,
  handler: async (argv) => {
    const ids = argv.ids.map((id) => idArg(id));
    const runtime = runtimeFrom(argv);
    const results: DeleteResult[] = [];
    const failures: string[] = [];
    // Every container is tried; every failure is reported (like podman rm).
    for (const id of ids) {
      try {
        const result = await runtime.delete(runtime.container(id), { force: argv.force === true });
        results.push(result);
        if (!isJson()) printLine(isQuiet() ? id : describe(result));
      } catch (err) {
        if (ids.length === 1) throw err;
        failures.push(`${errorMessage(err)}`);
        process.stderr.write(`stasis: ${errorMessage(err)}\n`);
      }
    }
    if (isJson()) printJson(results);
    if (failures.length > 0) throw new StasisError(`${failures.length} of ${ids.length} containers could not be deleted`);
  },
};

function describe(result: DeleteResult): string {
  if (result.status === null) return `${result.id} was stopped by a checkpoint at ${result.exitedAt} (${result.checkpoint})`;
  return `${result.id} exited with status ${result.status} at ${result.exitedAt}`;
}
