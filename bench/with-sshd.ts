#!/usr/bin/env node
// Runs a command with a private sshd on 127.0.0.1 (test/sshd.ts: its own keys,
// pinned host key, root login by key only), for benches that move a container
// over ssh:
//
//   node bench/with-sshd.ts node bench/migrate.mjs 64 256 1024 --modes migrate,lazy,precopy
//
// The command gets STASIS_SSH (`ssh -F CONFIG`) and STASIS_MIGRATE_DEST
// (`ssh://root@127.0.0.1:PORT`), which bench/migrate.mjs reads. The sshd and its
// folder are removed afterwards, on failure and Ctrl-C too. Needs root and
// /usr/sbin/sshd; nothing leaves 127.0.0.1.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd } from '../test/sshd.ts';

const argv = process.argv.slice(2);
if (argv.length === 0) {
  process.stderr.write('usage: node bench/with-sshd.ts COMMAND [ARG...]\n');
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'stasis-bench-sshd-'));
const sshd = await startSshd({ dir });
let code = 1;
try {
  process.stderr.write(`with-sshd: ${sshd.destination} (ssh -F ${sshd.configFile})\n`);
  const child = spawn(argv[0], argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, STASIS_SSH: sshd.sshCommand, STASIS_MIGRATE_DEST: sshd.destination },
  });
  const stop = () => child.kill('SIGINT');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  code = await new Promise<number>((resolve) => child.on('close', (status, signal) => resolve(status ?? (signal ? 128 + 1 : 1))));
} finally {
  await sshd.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
