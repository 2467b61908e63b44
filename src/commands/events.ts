import type { CommandModule } from 'yargs';
import { usageError } from '../errors.ts';
import { isJson, printJsonLine, printLine } from '../output/print.ts';
import { TOPICS, type StasisEvent } from '../state/events.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg, toArray } from './flags.ts';

type Args = GlobalArgs & { ids?: string[]; since?: string; until?: string; follow?: boolean; topic?: string[] };

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An RFC 3339 time, or a duration back from now such as 10m or 2h. */
export function parseTimeBound(flag: string, value: string, now = Date.now()): number {
  const duration = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (duration) return now - Number(duration[1]) * UNIT_MS[duration[2]];
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const parsed = Date.parse(value);
    if (!Number.isNaN(parsed)) return parsed;
  }
  throw usageError(`--${flag} ${JSON.stringify(value)}: expected an RFC 3339 time (2026-01-02T15:04:05Z) or a duration like 10m, 2h`);
}

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'events [ids..]',
  describe: 'stream lifecycle events of all (or the given) containers',
  builder: (y) =>
    y
      .positional('ids', { type: 'string', array: true, describe: 'only events of these containers' })
      .option('since', { type: 'string', describe: 'replay recorded events from this time (RFC 3339 or a duration like 10m)' })
      .option('until', { type: 'string', describe: 'stop at this time (RFC 3339 or a duration like 10m)' })
      .option('follow', { type: 'boolean', default: true, describe: 'keep following new events (--no-follow prints the recorded ones and exits)' })
      .option('topic', { type: 'string', coerce: toArray, describe: `only these topics (repeatable): ${TOPICS.join(', ')}` }) as never,
  handler: async (argv) => {
    const ids = new Set((argv.ids ?? []).map((id) => idArg(id)));
    const topics = new Set(toArray(argv.topic));
    for (const topic of topics) {
      if (!(TOPICS as readonly string[]).includes(topic)) throw usageError(`unknown topic ${JSON.stringify(topic)}`, `topics: ${TOPICS.join(', ')}`);
    }
    const since = argv.since === undefined ? undefined : parseTimeBound('since', argv.since);
    const until = argv.until === undefined ? undefined : parseTimeBound('until', argv.until);
    const runtime = runtimeFrom(argv);
    runtime.store.ensure();
    const journal = runtime.events();
    const wanted = (e: StasisEvent) => {
      const t = Date.parse(e.timestamp);
      return (ids.size === 0 || ids.has(e.id)) && (topics.size === 0 || topics.has(e.topic)) && (since === undefined || t >= since) && (until === undefined || t <= until);
    };
    const print = (e: StasisEvent) => {
      if (isJson()) printJsonLine(e);
      else printLine(`${e.timestamp} ${e.topic} ${e.id} ${JSON.stringify(e.event)}`);
    };
    const offset = journal.size();
    if (!argv.follow || since !== undefined) {
      for (const event of journal.readAll(argv.follow ? offset : undefined)) if (wanted(event)) print(event);
    }
    if (!argv.follow) return;
    if (until !== undefined && until < Date.now()) return;
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const timer = until === undefined ? undefined : setTimeout(onSignal, until - Date.now() + 1);
    try {
      for await (const event of journal.follow(offset, stop.signal)) {
        if (until !== undefined && Date.parse(event.timestamp) > until) break;
        if (wanted(event)) print(event);
      }
    } finally {
      if (timer) clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
