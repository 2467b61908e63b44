import { isJson, isQuiet, printJson, printLine, printTable } from '../output/print.ts';
import { colors, type Paint } from '../output/colors.ts';
import type { ContainerInfo } from '../runtime/types.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';

export const command = defineCommand({
  command: 'ps',
  aliases: ['ls', 'list'],
  describe: 'list containers, stopped ones included',
  options: {
    all: { alias: 'a', type: 'boolean', describe: "accepted for podman's sake: ps always lists every container, stopped ones included" },
  },
  handler: async (argv) => {
    const containers = await runtimeFrom(argv).containers();
    if (isJson()) return printJson(containers);
    if (isQuiet()) return containers.forEach((c) => printLine(c.id));
    const paint = await colors();
    await printTable(['ID', 'STATUS', 'PID', 'CREATED', 'COMMAND'], containers.map((c) => row(c, paint)));
  },
});

function row(c: ContainerInfo, paint: Paint): string[] {
  let status: string = c.status;
  if (c.status === 'stopped' && c.exit) status = `stopped (${c.exit.status ?? 'unknown'})`;
  if (c.status === 'stopped' && c.checkpointed) status = 'stopped (checkpointed)';
  if (c.note) status = `${status} - ${c.note}`;
  const painted = c.status === 'running' ? paint.green(status) : c.status === 'paused' ? paint.yellow(status) : status;
  return [c.id, painted, c.pid === null ? '-' : String(c.pid), ago(c.createdAt), c.command.map(shellWord).join(' ')];
}

/** A word as a shell would need it written: an empty one or one with spaces or quotes in single quotes. */
export function shellWord(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function ago(iso: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (Date.parse(iso) <= 0) return '-';
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}
