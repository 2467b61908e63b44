import { writeOut } from '../host/stdio.ts';
import { colorEnabled, outputMode } from './terminal.ts';

export function printLine(text: string): void {
  writeOut(`${text}\n`);
}

export function printJson(value: unknown): void {
  writeOut(`${JSON.stringify(value, null, 2)}\n`);
}

export function printJsonLine(value: unknown): void {
  writeOut(`${JSON.stringify(value)}\n`);
}

/** What a cell takes on screen: colour codes (SGR, all that stasis writes) take none. */
function width(cell: string): number {
  return cell.includes('\x1b[') ? cell.replace(/\x1b\[[0-9;]*m/g, '').length : cell.length;
}

/**
 * A table on stdout: aligned columns, the last one unpadded, so it reads well
 * on a terminal and greps and cuts well in a pipe (like runc's tabwriter).
 * The header is coloured only where stdout takes colour.
 */
export async function printTable(head: string[], rows: string[][]): Promise<void> {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i] - width(c)))).join('   ').trimEnd();
  let header = line(head);
  if (colorEnabled(1)) {
    const { colors } = await import('./colors.ts');
    header = (await colors()).cyan(header);
  }
  writeOut([header, ...rows.map(line)].map((l) => `${l}\n`).join(''));
}

export function isJson(): boolean {
  return outputMode().json;
}

export function isQuiet(): boolean {
  return outputMode().quiet;
}
