import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { usageError } from '../errors.ts';
import { writeFileAtomic } from '../state/atomic.ts';
import { formatBytes } from '../host/units.ts';
import { isJson, isQuiet, printJson, printLine, printTable } from '../output/print.ts';
import { checkpointDirFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'checkpoint-ls [id]',
  describe: 'list the checkpoints kept under --checkpoint-dir: materialised or packed, their size, what only each holds; --chunks: the have-list of the store (also: checkpoint ls [ID])',
  positionals: { id: { type: 'string', describe: "only this container's checkpoints" } },
  options: {
    chunks: { type: 'boolean', describe: 'print instead the have-list: the hash of every chunk the store holds, for `stasis checkpoint ID --export FILE --have LIST` on the sending host' },
    output: { alias: 'o', type: 'string', requiresArg: true, describe: 'with --chunks: write the have-list into this file (replaced whole) instead of stdout' },
  },
  examples: [
    ['$0 checkpoint ls', 'every kept checkpoint, oldest first per container'],
    ['$0 checkpoint ls web --json', "web's checkpoints as a JSON array"],
    ['$0 checkpoint ls --chunks -o have.txt', "what this host's store holds, for an export to it with --have have.txt"],
  ],
  handler: async (argv) => {
    const dir = checkpointDirFrom(argv);
    if (argv.output !== undefined && argv.chunks !== true) throw usageError('-o/--output is for --chunks');
    if (argv.chunks === true) {
      if (argv.id !== undefined) throw usageError('--chunks lists the whole store, not one container\'s checkpoints', 'drop the container ID');
      const { storeHaveList } = await import('../checkpoint/store/have.ts');
      const list = await storeHaveList(dir);
      if (argv.output === undefined) return void process.stdout.write(list);
      return writeFileAtomic(resolve(argv.output), list, 0o644);
    }
    const id = argv.id === undefined ? null : idArg(argv.id);
    const { withStore } = await import('../checkpoint/store/store.ts');
    const { storeReport } = await import('../checkpoint/store/report.ts');
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
