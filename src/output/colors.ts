import { colorEnabled } from './terminal.ts';

// Colours, apart from terminal.ts so that only the commands that colour their
// output (ps, doctor) get here; chalk itself is loaded only when the stream
// takes colour (its terminal detection loads node:tty, which under Bun costs
// several milliseconds of a `ps`).

/** The few colours stasis uses. */
export interface Paint {
  green(text: string): string;
  yellow(text: string): string;
  red(text: string): string;
  cyan(text: string): string;
  dim(text: string): string;
}

const same = (text: string) => text;
const PLAIN: Paint = { green: same, yellow: same, red: same, cyan: same, dim: same };

const paints = new Map<1 | 2, Paint>();

/** The colours for stdout (1) or stderr (2). */
export async function colors(fd: 1 | 2 = 1): Promise<Paint> {
  if (!colorEnabled(fd)) return PLAIN;
  let paint = paints.get(fd);
  if (!paint) {
    const { Chalk } = await import('chalk');
    paint = new Chalk({ level: 1 });
    paints.set(fd, paint);
  }
  return paint;
}
