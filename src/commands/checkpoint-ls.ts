import { existsSync } from 'node:fs';
import { formatBytes } from '../host/units.ts';
import { isJson, isQuiet, printJson, printLine, printTable } from '../output/print.ts';
import { checkpointDirFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'checkpoint-ls [id]',
  describe: 'list the checkpoints kept under --checkpoint-dir: materialised or packed, their size, what only each holds (also: checkpoint ls [ID])',
  positionals: { id: { type: 'string', describe: "only this container's checkpoints" } },
  examples: [
    ['$0 checkpoint ls', 'every kept checkpoint, oldest first per container'],
    ['$0 checkpoint ls web --json', "web's checkpoints as a JSON array"],
  ],
  handler: async (argv) => {
    const id = argv.id === undefined ? null : idArg(argv.id);
    const { withStore } = await import('../checkpoint/store/store.ts');
    const { storeReport } = await import('../checkpoint/store/report.ts');
    const dir = checkpointDirFrom(argv);
    // No checkpoint directory yet: nothing kept, and nothing to make.
    const reports = existsSync(dir) ? await withStore(dir, (store) => storeReport(store, id)) : [];
    if (isJson()) return printJson(reports);
    if (isQuiet()) return reports.forEach((r) => printLine(r.path));
    await printTable(['CONTAINER', 'CHECKPOINT', 'CREATED', 'STATE', 'SIZE', 'ONLY IT', 'SHARED'], reports.map((r) => [
      r.container,
      r.name,
      r.created ?? '-',
      r.state,
      formatBytes(r.size),
      formatBytes(r.ownBytes),
      formatBytes(r.sharedBytes),
    ]));
  },
});
