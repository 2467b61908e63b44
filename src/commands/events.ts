import { usageError } from '../errors.ts';
import { isJson, printJsonLine, printLine } from '../output/print.ts';
import { TOPICS, type StasisEvent } from '../state/events.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { idArg, parseTimeBound, toArray } from './flags.ts';

export const command = defineCommand({
  command: 'events [ids..]',
  describe: 'stream lifecycle events of all (or the given) containers',
  positionals: { ids: { type: 'string', array: true, describe: 'only events of these containers' } },
  options: {
    since: { type: 'string', requiresArg: true, describe: 'replay recorded events from this time (RFC 3339 or a duration like 10m)' },
    until: { type: 'string', requiresArg: true, describe: 'stop at this time (RFC 3339 or a duration like 10m)' },
    follow: { type: 'boolean', default: true, describe: 'keep following new events (--no-follow prints the recorded ones and exits)' },
    topic: { type: 'string', requiresArg: true, coerce: toArray, describe: `only these topics (repeatable): ${TOPICS.join(', ')}` },
  },
  handler: async (argv) => {
    const ids = new Set((argv.ids ?? []).map((id) => idArg(id)));
    const topics = new Set(argv.topic ?? []);
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
});
