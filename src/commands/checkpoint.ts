import type { CommandModule } from 'yargs';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import { runtimeFrom, type GlobalArgs } from './context.ts';
import { idArg } from './flags.ts';

type Args = GlobalArgs & {
  id: string;
  imagePath?: string;
  leaveRunning?: boolean;
  export?: string;
  tcpEstablished?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  fileLocks?: boolean;
  preDump?: boolean;
  parentPath?: string;
};

export const command: CommandModule<GlobalArgs, Args> = {
  command: 'checkpoint <id>',
  describe: 'dump a running container, its spec and its rootfs changes to disk with CRIU; it stops unless --leave-running',
  builder: (y) =>
    y
      .positional('id', { type: 'string', describe: 'container ID' })
      .option('image-path', { type: 'string', describe: 'folder for the checkpoint (default: a new folder under --checkpoint-dir)' })
      .option('leave-running', { type: 'boolean', describe: 'keep the container running after the dump' })
      .option('export', { type: 'string', describe: 'also write the checkpoint as one archive FILE (.tar, .tar.gz, .tar.zst)' })
      .option('tcp-established', { type: 'boolean', describe: 'CRIU: checkpoint established TCP connections', group: 'CRIU options:' })
      .option('ext-unix-sk', { type: 'boolean', describe: 'CRIU: allow external unix sockets', group: 'CRIU options:' })
      .option('shell-job', { type: 'boolean', describe: 'CRIU: allow a shell job (a process attached to a session outside)', group: 'CRIU options:' })
      .option('file-locks', { type: 'boolean', describe: 'CRIU: checkpoint file locks', group: 'CRIU options:' })
      .option('pre-dump', { type: 'boolean', describe: 'CRIU: dump memory only, leave the container running (needs soft-dirty tracking)', group: 'CRIU options:' })
      .option('parent-path', { type: 'string', describe: 'CRIU: an earlier (pre-)dump to take only the changes since (a path relative to here, or absolute)', group: 'CRIU options:' })
      .example('$0 checkpoint web --export web.tar.zst', 'dump web, stop it, write a portable archive')
      .example('$0 checkpoint web --leave-running --image-path /srv/cp/web1', 'a snapshot; web keeps running') as never,
  handler: async (argv) => {
    const id = idArg(argv.id);
    const runtime = runtimeFrom(argv);
    const progress = await spinner(`checkpointing ${id}`);
    try {
      const result = await runtime.container(id).checkpoint(
        {
          imagePath: argv.imagePath,
          leaveRunning: argv.leaveRunning === true,
          exportPath: argv.export,
          tcpEstablished: argv.tcpEstablished === true,
          extUnixSk: argv.extUnixSk === true,
          shellJob: argv.shellJob === true,
          fileLocks: argv.fileLocks === true,
          preDump: argv.preDump === true,
          parentPath: argv.parentPath,
        },
        (step) => progress.step(`${id}: ${step}`),
      );
      progress.stop();
      if (isJson()) printJson(result);
      else printLine(result.exported ?? result.path);
    } finally {
      progress.stop();
    }
  },
};
