import { notFound } from '../errors.ts';
import { containerLogs, followLog, type LogRecord } from '../runtime/logs.ts';
import { guardStreams } from '../host/stdio.ts';
import { runtimeFrom } from './context.ts';
import { ID_POSITIONAL, defineCommand } from './define.ts';
import { idArg, parsePositiveInt } from './flags.ts';

export const command = defineCommand({
  command: 'logs <id>',
  describe: "print a container's captured stdout and stderr",
  positionals: ID_POSITIONAL,
  options: {
    follow: { alias: 'f', type: 'boolean', describe: 'keep printing new output until the container exits' },
    tail: { type: 'string', requiresArg: true, describe: 'print only the last N lines' },
  },
  handler: async (argv) => {
    const id = idArg(argv.id);
    const tail = argv.tail === undefined ? undefined : argv.tail === '0' ? 0 : parsePositiveInt('tail', argv.tail);
    const runtime = runtimeFrom(argv);
    const logs = containerLogs(runtime.store, runtime.record(id), tail);
    guardStreams();
    const write = (stream: 'stdout' | 'stderr', text: string) => (stream === 'stdout' ? process.stdout : process.stderr).write(text);
    if (logs.kind === 'files') {
      for (const chunk of logs.chunks) write(chunk.stream, chunk.text);
      return;
    }
    const print = (r: LogRecord) => write(r.stream, r.text);
    logs.records.forEach(print);
    if (!argv.follow) return;
    for await (const record of followLog(logs.path, { fromOffset: logs.end, finished: () => runtime.hasExited(id) })) print(record);
    if (!runtime.store.exists(id)) throw notFound(id);
  },
});
