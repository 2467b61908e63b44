import { colorEnabled, outputMode } from './terminal.ts';

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** A table on stdout; cli-table3 is loaded only here, and uncoloured unless stdout takes colour. */
export async function printTable(head: string[], rows: string[][]): Promise<void> {
  if (!process.stdout.isTTY) {
    // Plain aligned columns: easy to read, grep and cut in a pipe.
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('   ').trimEnd();
    process.stdout.write([line(head), ...rows.map(line)].map((l) => `${l}\n`).join(''));
    return;
  }
  const { default: Table } = await import('cli-table3');
  const colored = colorEnabled(process.stdout);
  const table = new Table({
    head,
    style: colored ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] },
    chars: { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ' },
  });
  table.push(...rows);
  process.stdout.write(`${table.toString()}\n`);
}

export function isJson(): boolean {
  return outputMode().json;
}

export function isQuiet(): boolean {
  return outputMode().quiet;
}
