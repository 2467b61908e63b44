// One error type for everything stasis reports; src/cli.ts turns it into the
// message on stderr and the process exit code.

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
// run / exec / wait: stasis itself failed, the command cannot be invoked, or was not found.
export const EXIT_TOOL = 125;
export const EXIT_CANNOT_INVOKE = 126;
export const EXIT_NOT_FOUND = 127;

/**
 * What went wrong, as the command layer words it (commands/flags.ts reword):
 * a closed set, so a reworded code that nothing throws is a type error.
 */
export type ErrorCode =
  | 'ambiguous-image'
  | 'bad-destination'
  | 'bad-image'
  | 'bad-image-target'
  | 'bad-pages'
  | 'bad-parent'
  | 'bad-reference'
  | 'base-both'
  | 'base-differs'
  | 'base-image-missing'
  | 'base-kind-bundle'
  | 'base-kind-overlay'
  | 'base-missing'
  | 'base-missing-bundle'
  | 'base-missing-overlay'
  | 'base-outside-images'
  | 'bundle-not-named'
  | 'checkpoint-missing'
  | 'criu-rlimit-denied'
  | 'damaged'
  | 'duplicate'
  | 'export-compression-conflict'
  | 'export-folder-missing'
  | 'export-format'
  | 'foreign-bundle'
  | 'foreign-needs-rootfs'
  | 'foreign-volumes'
  | 'image-no-command'
  | 'image-path-not-empty'
  | 'image-unknown'
  | 'interrupted'
  | 'mounts-need-bundle'
  | 'name-taken'
  | 'no-checkpoint'
  | 'no-default-rootfs'
  | 'no-id'
  | 'no-skopeo'
  | 'no-soft-dirty'
  | 'no-stasis-meta'
  | 'not-a-checkpoint'
  | 'not-restorable'
  | 'pages-lost'
  | 'peer-lost'
  | 'peer-unreachable'
  | 'pull-failed'
  | 'push-failed'
  | 'restore-failed'
  | 'runc-missing'
  | 'send-failed'
  | 'bad-delta'
  | 'bad-have-list'
  | 'stdio-passthrough'
  | 'switch-unknown'
  | 'tty'
  | 'unsafe-checkpoint'
  | 'volume-archive'
  | 'volume-missing'
  | 'volume-not-empty'
  | 'volume-not-folder'
  | 'volume-relative'
  | 'volume-root'
  | 'volume-twice'
  | 'wrong-engine';

export class StasisError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;
  /**
   * What went wrong, for the command layer: the library says what is wrong
   * in its own terms, and the command that knows its flags adds the hint.
   */
  readonly code: ErrorCode | undefined;
  /** For a command on several containers: the failure of each, reported together. */
  readonly details: FailureDetail[] | undefined;
  /** What the message names (a path, an ID), for the command layer to use rather than parse the message. */
  readonly data: Readonly<Record<string, string>>;
  constructor(message: string, opts: { exitCode?: number; hint?: string; cause?: unknown; code?: ErrorCode; details?: FailureDetail[]; data?: Record<string, string> } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'StasisError';
    this.exitCode = opts.exitCode ?? EXIT_FAILURE;
    this.hint = opts.hint;
    this.code = opts.code;
    this.details = opts.details;
    this.data = opts.data ?? {};
  }
}

export interface FailureDetail {
  id: string;
  error: string;
  hint?: string;
}

export function usageError(message: string, hint?: string): StasisError {
  return new StasisError(message, { exitCode: EXIT_USAGE, hint });
}

export function notFound(id: string): StasisError {
  return new StasisError(`no such container: ${id}`, { hint: 'list containers with `stasis ps`' });
}

/** Exit code for a process that died of signal `signal` (shell convention). */
export function signalExitCode(signal: number): number {
  return 128 + signal;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
