import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { StasisError } from '../errors.ts';
import { isJson, printJson, printTable } from '../output/print.ts';
import { viewOf } from '../runtime/view.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & { id: string };

interface ProcessRow {
  pid: number;
  ppid: number;
  state: string;
  command: string;
}

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'top <id>',
  describe: 'list the processes running inside a container',
  builder: (y) => y.positional('id', { type: 'string', describe: 'container ID' }) as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    const info = viewOf(runtime.store, runtime.record(id));
    if (info.status === 'stopped') throw new StasisError(`container ${id} is not running`);
    const result = await runtime.runc.call(`top ${id}`, ['ps', '--format', 'json', id]);
    const pids = (JSON.parse(result.stdout) as number[] | null) ?? [];
    const rows = pids.map(describe).filter((row): row is ProcessRow => row !== null);
    if (isJson()) return printJson(rows);
    await printTable(['PID', 'PPID', 'STATE', 'COMMAND'], rows.map((r) => [String(r.pid), String(r.ppid), r.state, r.command]));
  },
};

/** Reads one host process from /proc; null when it exited meanwhile. */
function describe(pid: number): ProcessRow | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may itself contain spaces or ")".
    const afterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return { pid, ppid: Number(afterName[1]), state: afterName[0], command: cmdline || `[${name}]` };
  } catch {
    return null;
  }
}
