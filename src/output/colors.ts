import { Chalk, type ChalkInstance } from 'chalk';
import { colorEnabled } from './terminal.ts';

// chalk, apart from terminal.ts so that only the commands that colour their
// output (ps, doctor) load it: every command imports terminal.ts.

const chalks = new Map<NodeJS.WriteStream, ChalkInstance>();

export function colors(stream: NodeJS.WriteStream = process.stdout): ChalkInstance {
  let instance = chalks.get(stream);
  if (!instance) {
    instance = new Chalk({ level: colorEnabled(stream) ? 1 : 0 });
    chalks.set(stream, instance);
  }
  return instance;
}
