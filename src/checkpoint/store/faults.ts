// The store's steps, named: a test stops a store command at one of them, by
// a hook in process or by STASIS_STORE_KILL_AT=STEP (the process kills itself
// with SIGKILL there), to see that the next command finishes or undoes it.

export type StoreStep =
  | 'pack-chunk-written'
  | 'pack-chunks-written'
  | 'pack-recorded'
  | 'pack-file-removed'
  | 'rm-chunks-written'
  | 'rm-moved'
  | 'rematerialise-file'
  | 'rematerialise-files'
  | 'gc-chunk-removed';

export const storeHooks: { onStep: ((step: StoreStep) => void) | null } = { onStep: null };

export function storeStep(step: StoreStep): void {
  storeHooks.onStep?.(step);
  if (process.env.STASIS_STORE_KILL_AT === step) process.kill(process.pid, 'SIGKILL');
}
