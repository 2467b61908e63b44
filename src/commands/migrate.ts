import { EXIT_USAGE, StasisError, usageError } from '../errors.ts';
import type { MigrateOptions } from '../migrate/migrate.ts';
import { LocalPeer, SshPeer, parseDestination, type Peer } from '../migrate/peer.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { spinner } from '../output/terminal.ts';
import { runtimeFrom, selfCli } from './context.ts';
import { defineCommand } from './define.ts';
import { criuFlags, criuOptionsFrom, idArg, reword, toArray } from './flags.ts';
import { parseBindMountFlag, parseTrust } from './restore.ts';

const CRIU_GROUP = 'CRIU options (for the dump here and the restore there):';

export const command = defineCommand({
  command: 'migrate <id> <destination>',
  describe: 'move a running container to another host (ssh://[user@]host[:port]) or state directory: it stops here and goes on there; if anything fails before the switch, it goes on here',
  positionals: {
    id: { type: 'string', demandOption: true, describe: 'the running container' },
    destination: { type: 'string', demandOption: true, describe: 'ssh://[user@]host[:port] (OpenSSH; the ssh command is STASIS_SSH, default ssh) or a state directory on this machine' },
  },
  options: {
    lazy: { type: 'boolean', describe: 'post-copy: switch as soon as all but the memory is there; pages follow on demand (needs userfaultfd there; else a full move, said so)' },
    compress: { type: 'boolean', describe: 'compress what is sent (zstd, fastest level): for slow links and memory that compresses' },
    precopy: { type: 'boolean', describe: 'pre-copy: send a checkpoint while it runs, then at the freeze only what changed since (no soft-dirty needed)' },
    name: { alias: 'n', type: 'string', requiresArg: true, describe: 'the ID there (default: the same)' },
    'with-rootfs': { type: 'boolean', describe: 'send the base rootfs too when the destination does not have it' },
    rootfs: { type: 'string', requiresArg: true, describe: "the base's path there (default: the same path as here)" },
    keep: { type: 'boolean', describe: 'keep the checkpoint folder here after the move' },
    'remote-stasis': { type: 'string', requiresArg: true, describe: 'the stasis command there (default: stasis on its PATH; for a state directory, this stasis)' },
    mount: { type: 'string', requiresArg: true, coerce: toArray, describe: 'grant the container a bind mount there (as restore --mount; repeatable)' },
    'ignore-volumes': { type: 'boolean', describe: "send no volume contents: each volume's folder must be there already (default: sent with the checkpoint, into folders that are new or empty there)" },
    'trust-checkpoint': { type: 'string', requiresArg: true, coerce: toArray, describe: 'grant what the container has beyond the policy there, by area (as restore --trust-checkpoint)' },
    ...criuFlags(CRIU_GROUP),
    'tcp-close': { type: 'boolean', describe: 'CRIU: restore established TCP connections closed there', group: CRIU_GROUP },
  },
  examples: [
    ['$0 migrate web ssh://root@hostb', 'move web to hostb over ssh'],
    ['$0 migrate web ssh://hostb:2222 --lazy --rootfs /srv/web', 'post-copy, onto the base at /srv/web there'],
    ['$0 migrate web /run/stasis-b --name web2', 'into another state directory on this machine'],
    ['$0 migrate db ssh://hostb --precopy', 'pre-copy: the memory goes while db runs, then only what changed'],
  ],
  handler: async (argv) => {
    const id = idArg(argv.id);
    if (argv.name !== undefined) idArg(argv.name);
    let peer: Peer;
    const destination = (() => {
      try {
        return parseDestination(argv.destination);
      } catch (err) {
        throw usageError((err as Error).message, 'DEST is ssh://[user@]host[:port] or a state directory');
      }
    })();
    const remote = argv.remoteStasis?.split(/\s+/).filter(Boolean);
    if (remote !== undefined && remote.length === 0) throw usageError('--remote-stasis is empty');
    if (argv.rootfs !== undefined && !argv.rootfs.startsWith('/')) throw usageError('--rootfs: the path there must be absolute');
    if (argv.lazy === true && argv.precopy === true) throw usageError('--lazy and --precopy cannot be used together', '--lazy sends the memory after the switch, --precopy before the freeze');
    const opts: MigrateOptions = {
      name: argv.name,
      lazy: argv.lazy === true,
      precopy: argv.precopy === true,
      compress: argv.compress === true,
      withRootfs: argv.withRootfs === true,
      keep: argv.keep === true,
      rootfs: argv.rootfs,
      userMounts: toArray(argv.mount).map(parseBindMountFlag),
      ignoreVolumes: argv.ignoreVolumes === true,
      trust: parseTrust(toArray(argv.trustCheckpoint)),
      ...criuOptionsFrom(argv),
      tcpClose: argv.tcpClose === true,
    };
    const runtime = runtimeFrom(argv);
    if (destination.kind === 'local') {
      if (destination.stateDir === runtime.stateRoot) throw usageError(`${destination.stateDir} is this state directory`, 'to rename a container, checkpoint and restore it under the new ID');
      peer = new LocalPeer(destination, remote ?? selfCli());
    } else peer = new SshPeer(destination, process.env.STASIS_SSH ?? 'ssh', remote ?? ['stasis']);
    const { migrateContainer } = await import('../migrate/migrate.ts');
    const progress = await spinner(`moving ${id} to ${destination.shown}`);
    try {
      const result = await migrateContainer(runtime, id, peer, opts, (phase) => progress.step(`${id}: ${phase}`)).catch(reword({
        'name-taken': () => ({ exitCode: EXIT_USAGE }),
      }));
      progress.stop();
      for (const warning of result.warnings) process.stderr.write(`stasis: warning: ${warning}\n`);
      if (isJson()) printJson(result);
      else printLine(`${result.destination} ${result.name}`);
    } catch (err) {
      if (err instanceof StasisError) throw err;
      throw new StasisError(`migrate ${id}: ${(err as Error).message}`);
    } finally {
      progress.stop();
    }
  },
});
