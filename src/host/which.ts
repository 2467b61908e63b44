import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/** Resolves a program name the way execvp would; null when it is nowhere on PATH. */
export function which(program: string, pathEnv = process.env.PATH ?? ''): string | null {
  if (program.includes('/')) return isExecutable(program) ? (isAbsolute(program) ? program : resolve(program)) : null;
  for (const dir of pathEnv.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
