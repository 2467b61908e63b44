import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StasisError, errorMessage, usageError } from '../errors.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { checkpointDirFrom } from './context.ts';
import { defineCommand } from './define.ts';

export const command = defineCommand({
  command: 'checkpoint-rm <paths..>',
  describe: 'remove kept checkpoints (a folder under --checkpoint-dir, or ID/NAME); the others stay restorable (also: checkpoint rm PATH...)',
  positionals: { paths: { type: 'string', array: true, demandOption: true, describe: 'a checkpoint folder under --checkpoint-dir, or ID/NAME as `stasis checkpoint ls` shows them' } },
  examples: [
    ['$0 checkpoint rm web/20260102T150405Z', 'remove one of web\'s checkpoints'],
    ['$0 checkpoint rm /var/lib/stasis/checkpoints/web/20260102T150405Z', 'the same, by its path'],
  ],
  handler: async (argv) => {
    const paths = argv.paths.map(String);
    if (paths.some((p) => p === '')) throw usageError('an empty checkpoint name');
    const checkpointDir = checkpointDirFrom(argv);
    const { withStore, keptPath } = await import('../checkpoint/store/store.ts');
    const { removeKept } = await import('../checkpoint/store/remove.ts');
    const removed: unknown[] = [];
    const failures: { id: string; error: unknown }[] = [];
    await withStore(checkpointDir, (store) => {
      for (const given of paths) {
        try {
          // A path that exists is taken as one (relative to here); else ID/NAME under the checkpoint directory.
          const path = existsSync(resolve(given)) || given.startsWith('/') || given.startsWith('.') ? resolve(given) : join(store.checkpointDir, given);
          if (!existsSync(path)) throw new StasisError(`checkpoint ${given} does not exist`, { hint: 'see `stasis checkpoint ls`' });
          const kept = keptPath(store.checkpointDir, path);
          if (kept === null) {
            throw new StasisError(`${resolve(given)} is not a checkpoint kept in the checkpoint directory ${store.checkpointDir}`, { hint: 'checkpoint rm removes only checkpoints under --checkpoint-dir (ID/NAME as `stasis checkpoint ls` shows them); remove other folders yourself' });
          }
          const result = removeKept(store, kept);
          removed.push(result);
          if (!isJson()) printLine(result.path);
        } catch (err) {
          if (paths.length === 1) throw err;
          failures.push({ id: given, error: err });
        }
      }
    });
    if (isJson()) printJson(removed);
    if (failures.length > 0) {
      throw new StasisError(`${failures.length} of ${paths.length} checkpoints could not be removed`, {
        details: failures.map(({ id, error }) => ({ id, error: errorMessage(error), ...(error instanceof StasisError && error.hint ? { hint: error.hint } : {}) })),
      });
    }
  },
});
