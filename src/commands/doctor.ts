import { isJson, printJson, printLine } from '../output/print.ts';
import { colors } from '../output/colors.ts';
import { runDoctor } from '../runtime/doctor.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';

export const command = defineCommand({
  command: 'doctor',
  describe: 'check runc, CRIU, conmon, the kernel and the state directory; say what to install',
  handler: async (argv) => {
    const report = await runDoctor(runtimeFrom(argv));
    if (isJson()) printJson(report);
    else {
      const paint = await colors();
      for (const check of report.checks) {
        const mark = check.ok ? paint.green('ok  ') : check.required ? paint.red('FAIL') : paint.yellow('warn');
        printLine(`${mark} ${check.name.padEnd(22)} ${check.detail}`);
        if (!check.ok && check.hint) printLine(`     ${''.padEnd(22)} ${paint.dim(`-> ${check.hint}`)}`);
      }
    }
    if (!report.ok) process.exitCode = 1;
  },
});
