import type { CommandModule } from 'yargs';
import { isJson, printJson, printLine } from '../output/print.ts';
import { colors } from '../output/colors.ts';
import { runDoctor } from '../runtime/doctor.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';

export const command: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'doctor',
  describe: 'check runc, CRIU, conmon, the kernel and the state directory; say what to install',
  builder: (y) => y,
  handler: async (argv) => {
    const report = await runDoctor(runtimeFrom(argv));
    if (isJson()) printJson(report);
    else {
      const paint = colors();
      for (const check of report.checks) {
        const mark = check.ok ? paint.green('ok  ') : check.required ? paint.red('FAIL') : paint.yellow('warn');
        printLine(`${mark} ${check.name.padEnd(22)} ${check.detail}`);
        if (!check.ok && check.hint) printLine(`     ${''.padEnd(22)} ${paint.dim(`-> ${check.hint}`)}`);
      }
    }
    if (!report.ok) process.exitCode = 1;
  },
};
