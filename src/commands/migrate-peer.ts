import { usageError } from '../errors.ts';
import { printLine } from '../output/print.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';

// The destination's side of `stasis migrate`, which starts it there (over
// ssh, or as a child for a state directory on the same machine).
export const command = defineCommand({
  command: '__migrate <step> [arg]',
  describe: false,
  positionals: {
    step: { type: 'string', demandOption: true, choices: ['serve', 'receive', 'rootfs'] },
    arg: { type: 'string' },
  },
  options: {
    mode: { type: 'string', requiresArg: true, describe: "rootfs: the base's root folder mode at the source (octal)" },
    base: { type: 'string', requiresArg: true, describe: 'receive: a delta against the transfer of this token (migrate --precopy)' },
    pages: { type: 'boolean', describe: 'receive: the changed pages first, written into the --base pre-copy as they come, then the tar (migrate --precopy)' },
    'update-base': { type: 'boolean', describe: 'receive: changed pages only, written into the --base pre-copy, which stays the base (a catch-up round of migrate --precopy)' },
    ready: { type: 'boolean', describe: 'receive: print {"ready":true} once started, before reading its input' },
    stage: { type: 'boolean', describe: 'receive: a pre-copy, hashed and flushed as it arrives for the delta at the freeze (migrate --precopy)' },
  },
  handler: async (argv) => {
    const runtime = runtimeFrom(argv);
    const receive = await import('../migrate/receive.ts');
    if (argv.step === 'serve') {
      process.exitCode = await receive.serve(runtime, process.stdin);
      return;
    }
    if (argv.arg === undefined) throw usageError(`__migrate ${argv.step} needs its argument`);
    if (argv.mode !== undefined && !/^[0-7]{3,4}$/.test(argv.mode)) throw usageError(`__migrate rootfs --mode ${JSON.stringify(argv.mode)}: not an octal mode`);
    const mode = argv.mode === undefined ? undefined : Number.parseInt(argv.mode, 8);
    // Up, before reading: the source freezes its container only once this process has started (its start would slow the dump).
    if (argv.ready === true) printLine(JSON.stringify({ ready: true }));
    const bytes = argv.step === 'receive' ? await receive.receiveCheckpoint(runtime, argv.arg, process.stdin, argv.base, argv.stage === true, argv.pages === true, argv['update-base'] === true) : await receive.receiveRootfs(argv.arg, process.stdin, mode);
    // What arrived, for the sender's report.
    printLine(JSON.stringify({ bytes }));
  },
});
