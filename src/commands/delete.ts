import { StasisError, errorMessage } from '../errors.ts';
import { isJson, isQuiet, printJson, printLine } from '../output/print.ts';
import type { DeleteResult } from '../runtime/types.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'delete <ids..>',
  aliases: ['rm'],
  describe: 'remove stopped containers; print each exit status and time',
  positionals: { ids: { type: 'string', array: true, demandOption: true, describe: 'container IDs' } },
  options: { force: { alias: 'f', type: 'boolean', describe: 'kill running containers first' } },
  handler: async (argv) => {
    const ids = argv.ids.map((id) => idArg(id));
    const runtime = runtimeFrom(argv);
    const results: DeleteResult[] = [];
    const failures: { id: string; error: unknown }[] = [];
    // Every container is tried, and every failure is reported once, at the end (like podman rm).
    for (const id of ids) {
      try {
        const result = await runtime.delete(runtime.container(id), { force: argv.force === true });
        results.push(result);
        if (!isJson()) printLine(isQuiet() ? id : describe(result));
      } catch (err) {
        if (ids.length === 1) throw err;
        failures.push({ id, error: err });
      }
    }
    if (isJson()) printJson(results);
    if (failures.length > 0) {
      throw new StasisError(`${failures.length} of ${ids.length} containers could not be deleted`, {
        details: failures.map(({ id, error }) => ({
          id,
          error: errorMessage(error),
          ...(error instanceof StasisError && error.hint ? { hint: error.hint } : {}),
        })),
      });
    }
  },
});

function describe(result: DeleteResult): string {
  if (result.checkpoint !== undefined) return `${result.id} was stopped by a checkpoint at ${result.exitedAt} (${result.checkpoint})`;
  if (result.status === null) return `${result.id} exited with an unknown status at ${result.exitedAt}`;
  return `${result.id} exited with status ${result.status} at ${result.exitedAt}`;
}
