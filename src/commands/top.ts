import { isJson, printJson, printTable } from '../output/print.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg } from './flags.ts';

export const command = defineCommand({
  command: 'top <id>',
  describe: 'list the processes running inside a container',
  positionals: ID_POSITIONAL,
  handler: async (argv) => {
    const rows = await runtimeFrom(argv).processes(idArg(argv.id));
    if (isJson()) return printJson(rows);
    await printTable(['PID', 'PPID', 'STATE', 'COMMAND'], rows.map((r) => [String(r.pid), String(r.ppid), r.state, r.command]));
  },
});
