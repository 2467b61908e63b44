import { EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, StasisError } from '../errors.ts';

/**
 * runc reports a command it cannot find or run as an ordinary error; the
 * contract turns those into 127 and 126, like a shell.
 */
export function classifyExecFailure(err: unknown): unknown {
  if (!(err instanceof StasisError)) return err;
  const message = err.message;
  if (/executable file not found|no such file or directory/i.test(message) && /exec/i.test(message)) {
    return new StasisError(message, { exitCode: EXIT_NOT_FOUND, hint: 'check the command name and the PATH inside the container' });
  }
  if (/permission denied|is a directory/i.test(message) && /exec/i.test(message)) {
    return new StasisError(message, { exitCode: EXIT_CANNOT_INVOKE, hint: 'the command exists but is not executable' });
  }
  return err;
}
