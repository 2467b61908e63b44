import { dirname, resolve } from 'node:path';
import { Runtime } from '../runtime/runtime.ts';
import { setDebug } from '../log.ts';
import { selfCommand } from '../host/self.ts';
import { which } from '../host/which.ts';
import { setOutputMode } from '../output/terminal.ts';

/** The global options, present on every command. */
export interface GlobalArgs {
  stateDir?: string;
  checkpointDir?: string;
  imageDir?: string;
  runc?: string;
  criu?: string;
  json?: boolean;
  quiet?: boolean;
  color?: boolean;
  debug?: boolean;
}

export function defaultStateDir(): string {
  if (process.env.STASIS_STATE_DIR) return process.env.STASIS_STATE_DIR;
  if (process.getuid?.() === 0) return '/run/stasis';
  return `${process.env.XDG_RUNTIME_DIR ?? `/tmp/stasis-${process.getuid?.() ?? 'user'}`}/stasis`;
}

/** The image store: --image-dir, else (in image/store.ts) STASIS_IMAGE_DIR, else /var/lib/stasis/images. Loaded only by the commands that use it. */
export async function imageStoreFrom(argv: GlobalArgs): Promise<import('../image/store.ts').ImageStore> {
  applyGlobals(argv);
  const { ImageStore } = await import('../image/store.ts');
  return new ImageStore(argv.imageDir === undefined ? undefined : resolve(argv.imageDir));
}

export function defaultCheckpointDir(): string {
  return process.env.STASIS_CHECKPOINT_DIR || '/var/lib/stasis/checkpoints';
}

let cliEntry = '';

/** Set by main(): the script that conmon's exit command runs (under Node; a compiled stasis runs itself). */
export function setCliEntry(path: string): void {
  cliEntry = path;
}

/** The command line that runs this stasis again (a local migrate's other side). */
export function selfCli(): string[] {
  return selfCommand(cliEntry);
}

/** Applies the output and debug options; called once per command. */
export function applyGlobals(argv: GlobalArgs): void {
  setDebug(argv.debug === true || process.env.STASIS_DEBUG === '1');
  setOutputMode({ json: argv.json === true, quiet: argv.quiet === true, colorFlag: argv.color });
}

/** The checkpoint directory (--checkpoint-dir), absolute; the output options applied. */
export function checkpointDirFrom(argv: GlobalArgs): string {
  applyGlobals(argv);
  return resolve(argv.checkpointDir ?? defaultCheckpointDir());
}

/**
 * The composition root: the runtime over runc and conmon, with the recovery of
 * killed checkpoints (a layer above it) handed in. Only the command layer knows both.
 */
export function runtimeFrom(argv: GlobalArgs): Runtime {
  applyGlobals(argv);
  const runcName = argv.runc ?? process.env.STASIS_RUNC ?? 'runc';
  const criuName = argv.criu ?? process.env.STASIS_CRIU ?? 'criu';
  const criu = which(criuName) ?? criuName;
  // Newer runc ignores --criu and looks criu up on PATH: put ours first.
  if (criu.includes('/')) process.env.PATH = `${dirname(criu)}:${process.env.PATH ?? ''}`;
  const runc = which(runcName) ?? runcName;
  return new Runtime({
    stateDir: resolve(argv.stateDir ?? defaultStateDir()),
    checkpointDir: resolve(argv.checkpointDir ?? defaultCheckpointDir()),
    runc,
    criu,
    conmon: which(process.env.STASIS_CONMON ?? 'conmon') ?? 'conmon',
    cliCommand: selfCommand(cliEntry),
    flock: which('flock'),
  }, {
    checkpoint: {
      recover: async (host, record) => (await import('../checkpoint/recover.ts')).recoverCheckpoint(host, record),
    },
  });
}
