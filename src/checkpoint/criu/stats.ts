// CRIU's statistics (stats-dump, stats-restore: image.ts readCriuStats) as the
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
