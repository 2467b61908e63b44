import { rmSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { StasisError, errorMessage } from '../errors.ts';
import type { ChunkedSummary } from '../checkpoint/store/transfer.ts';
import { formatInspectReport, inspectCheckpoint, type CheckpointReport } from '../checkpoint/inspect.ts';
import { openFolder, unpackArchive } from '../checkpoint/source.ts';
import { isJson, printJson } from '../output/print.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';

export const command = defineCommand({
  command: 'checkpoint-inspect <path>',
  describe: 'show what a checkpoint folder or archive holds and would ask for, without restoring it (also: checkpoint inspect PATH)',
  positionals: { path: { type: 'string', demandOption: true, describe: 'a checkpoint folder or archive, of stasis, podman, CRI-O or containerd' } },
  examples: [['$0 checkpoint-inspect web.tar.zst', 'what a checkpoint holds and would ask for, before restoring it']],
  handler: async (argv) => inspectFromPath(runtimeFrom(argv), argv.path),
});

/**
 * `stasis checkpoint-inspect PATH` (or `checkpoint inspect PATH`): what a checkpoint folder or archive holds
 * and what restoring it would ask for, judged by the policy an untrusted
 * checkpoint gets; nothing is restored, and an archive is unpacked (checked,
 * as a restore would) into a folder removed afterwards.
 */
export async function inspectFromPath(runtime: Runtime, path: string): Promise<void> {
  const source = resolve(path);
  let isFile: boolean;
  try {
    isFile = statSync(source).isFile();
  } catch {
    throw new StasisError(`checkpoint ${source} does not exist`);
  }
  // A folder is checked in place as an archive is once unpacked: nothing it links to is read; a packed one is materialised.
  const folder = isFile ? null : await openFolder(runtime, source, source, 'inspect');
  const dir = folder === null ? await unpackArchive(runtime, source) : folder.dir;
  const temp = folder === null ? dir : folder.temp;
  try {
    // The report names what the user gave, not the folder it was unpacked into.
    const report = { ...inspectCheckpoint(dir), path: source, chunked: folder === null ? chunkedOf(await readChunked(dir, source)) : null };
    if (isJson()) printJson(report);
    else process.stdout.write(formatInspectReport(report).replace(/\n?$/, '\n'));
  } finally {
    if (temp !== null) rmSync(temp, { recursive: true, force: true });
  }
}

/** An archive exported with --have: its marker, checked (store/transfer.ts). */
async function readChunked(dir: string, source: string): Promise<ChunkedSummary | null> {
  const { readChunkedSummary } = await import('../checkpoint/store/transfer.ts');
  try {
    return readChunkedSummary(dir);
  } catch (err) {
    throw new StasisError(`cannot inspect ${source}: ${errorMessage(err)}`);
  }
}

function chunkedOf(summary: ChunkedSummary | null): CheckpointReport['chunked'] {
  if (summary === null) return null;
  return { files: summary.files.map((f) => f.path), fromStoreBytes: summary.files.reduce((sum, f) => sum + f.fromStore, 0), chunksFromStore: summary.files.reduce((sum, f) => sum + f.chunksFromStore, 0) };
}
