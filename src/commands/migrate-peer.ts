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
  handler: async (argv) => {
    const runtime = runtimeFrom(argv);
    const receive = await import('../migrate/receive.ts');
    if (argv.step === 'serve') {
      process.exitCode = await receive.serve(runtime, process.stdin);
      return;
    }
    if (argv.arg === undefined) throw usageError(`__migrate ${argv.step} needs its argument`);
    const bytes = argv.step === 'receive' ? await receive.receiveCheckpoint(runtime, argv.arg, process.stdin) : await receive.receiveRootfs(argv.arg, process.stdin);
    // What arrived, for the sender's report.
    printLine(JSON.stringify({ bytes }));
  },
});
