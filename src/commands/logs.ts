import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { StasisError, notFound } from '../errors.ts';
import { followLog, readLog, tailRecords, type LogRecord } from '../runtime/logs.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg, parsePositiveInt } from './flags.ts';

type Args = GlobalArgs & { id: string; follow?: boolean; tail?: string };

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'logs <id>',
  describe: "print a container's captured stdout and stderr",
  builder: (y) =>
    y
      .positional('id', { type: 'string', describe: 'container ID' })
      .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing new output until the container exits' })
      .option('tail', { type: 'string', describe: 'print only the last N lines' }) as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const tail = argv.tail === undefined ? undefined : argv.tail === '0' ? 0 : parsePositiveInt('tail', argv.tail);
    const runtime = runtimeFrom(argv);
    const record = runtime.record(id);
    const dir = runtime.store.containerDir(id);
    if (record.stdio.mode === 'passthrough') {
      // Streams that went to the caller's files were never captured; the others are plain files.
      for (const [stream, file] of [['stdout', record.stdio.stdout], ['stderr', record.stdio.stderr]] as const) {
        const own = join(dir, `${stream}.log`);
        if (file !== null || !existsSync(own)) continue;
        let text = readFileSync(own, 'utf8');
        if (tail !== undefined) text = lastLines(text, tail);
        (stream === 'stdout' ? process.stdout : process.stderr).write(text);
      }
      if (record.stdio.stdout !== null && record.stdio.stderr !== null) {
        throw new StasisError(`container ${id} writes to ${record.stdio.stdout} and ${record.stdio.stderr}; nothing was captured`);
      }
      if (!existsSync(join(dir, 'stdout.log')) && record.stdio.stdout === null) {
        throw new StasisError(`container ${id} was attached to the caller's terminal or stdio; nothing was captured`);
      }
      return;
    }
    const logPath = join(dir, 'ctr.log');
    const print = (r: LogRecord) => (r.stream === 'stdout' ? process.stdout : process.stderr).write(r.text);
    const { records, size } = readLog(logPath);
    (tail === undefined ? records : tailRecords(records, tail)).forEach(print);
    if (!argv.follow) return;
    const exited = () => runtime.hasExited(id);
    for await (const record of followLog(logPath, { fromOffset: size, finished: exited })) print(record);
    if (!runtime.store.exists(id)) throw notFound(id);
  },
};

function lastLines(text: string, count: number): string {
  if (count === 0) return '';
  const lines = text.split('\n');
  const trailing = lines[lines.length - 1] === '' ? lines.pop() : undefined;
  return lines.slice(-count).join('\n') + (trailing === '' ? '\n' : '');
}
