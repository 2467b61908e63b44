import { CriuImageError, decodeMessage, readImageEntries } from './images.ts';

// CRIU's statistics (stats-dump, stats-restore: readCriuStats) as the
// lines `--print-stats` shows: times in microseconds, as CRIU counts them.

const LABELS: Record<string, string> = {
  freezingTimeUs: 'freezing time',
  frozenTimeUs: 'frozen time',
  memdumpTimeUs: 'memory dump time',
  memwriteTimeUs: 'memory write time',
  irmapResolveUs: 'irmap resolve time',
  pagesScanned: 'pages scanned',
  pagesSkippedParent: 'pages skipped (in the parent)',
  pagesWritten: 'pages written',
  pagesLazy: 'pages left for lazy restore',
  pagePipes: 'page pipes',
  pagePipeBufs: 'page pipe buffers',
  forkingTimeUs: 'forking time',
  restoreTimeUs: 'restore time',
  pagesRestored: 'pages restored',
  pagesCompared: 'pages compared',
  pagesSkippedCow: 'pages skipped (copy on write)',
};

/** "CRIU dump statistics:" and one aligned line per counter; a note when CRIU left none. */
export function criuStatsLines(what: 'dump' | 'restore', stats: Record<string, number> | null, totalMs: number): string[] {
  const lines = [`CRIU ${what} statistics:`];
  const rows = Object.entries(stats ?? {}).map(([key, value]): [string, string] => [LABELS[key] ?? key, key.endsWith('Us') ? `${value} us` : String(value)]);
  if (rows.length === 0) lines.push('  (CRIU wrote no statistics)');
  rows.push([`stasis ${what === 'dump' ? 'checkpoint' : 'restore'} in total`, `${totalMs} ms`]);
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) lines.push(`  ${label.padEnd(width)}  ${value}`);
  return lines;
}

// StatsEntry { dump = 1: DumpStatsEntry, restore = 2: RestoreStatsEntry } (images/stats.proto):
// the counters by field number.
const DUMP_FIELDS = ['freezingTimeUs', 'frozenTimeUs', 'memdumpTimeUs', 'memwriteTimeUs', 'pagesScanned', 'pagesSkippedParent', 'pagesWritten', 'irmapResolveUs', 'pagesLazy', 'pagePipes', 'pagePipeBufs'];
const RESTORE_FIELDS = ['pagesCompared', 'pagesSkippedCow', 'forkingTimeUs', 'restoreTimeUs', 'pagesRestored'];

/** Reads CRIU's stats-dump / stats-restore image; null when it is missing or damaged (only the statistics are lost). */
export function readCriuStats(path: string): Record<string, number> | null {
  try {
    const [entry] = readImageEntries(path, null);
    if (!entry) return null;
    const stats = decodeMessage(entry, path, 'stats_entry');
    const dump = stats.message(1, 'dump');
    const body = dump ?? stats.message(2, 'restore');
    if (!body) return null;
    const counters: Record<string, number> = {};
    (dump ? DUMP_FIELDS : RESTORE_FIELDS).forEach((name, index) => {
      const value = body.uint64(index + 1);
      if (value !== undefined) counters[name] = Number(value);
    });
    return counters;
  } catch (err) {
    if (err instanceof CriuImageError || (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
