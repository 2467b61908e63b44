import { statSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../errors.ts';
import { debugLog } from '../log.ts';
import { baseEntriesNotSent, baseFilesInUse, fingerprintOf, hashBaseFiles, rootfsManifest } from '../checkpoint/rootfs-diff.ts';
import { formatBytes } from '../host/units.ts';
import { lazyPageServerProblem } from '../runtime/criu.ts';
import { specUserns } from '../runtime/userns.ts';
import type { CheckpointHost } from '../runtime/types.ts';
import type { ContainerRecord } from '../state/store.ts';
import type { Control } from './control.ts';
import type { Peer } from './peer.ts';
import type { CheckReply } from './receive.ts';
import { sendFolder, startReceiver } from './transfer.ts';

/**
 * A move's first step, while the container runs: the destination says whether the ID is free
 * and the base is there and the same (sent first with --with-rootfs), and whether it can take
 * the memory on demand (else the move is a full one, with a warning).
 */
export async function checkDestination(
  host: CheckpointHost,
  first: ContainerRecord,
  base: string,
  peer: Peer,
  control: Control,
  opts: { name?: string; rootfs?: string; lazy: boolean; precopy?: boolean; withRootfs: boolean; compress?: boolean },
  warnings: string[],
  progress: (phase: string) => void,
): Promise<{ check: CheckReply; rootfsMs: number | null; lazy: boolean; onDemand: boolean }> {
  const id = first.id;
  const shown = peer.destination.shown;
  const name = opts.name ?? id;
  const destBase = opts.rootfs ?? base;
  const manifest = rootfsManifest(base);
  const inUse = baseFilesInUse(host.containerPids(id), join(first.bundle, 'rootfs'), join(first.bundle, 'upper'));
  const checkRequest = { op: 'check', id: name, base: { path: destBase, fingerprint: fingerprintOf(manifest), manifest, files: hashBaseFiles(base, inUse) }, lazy: opts.lazy, precopy: opts.precopy === true };
  let check = await control.request(checkRequest) as unknown as CheckReply | { ok: false; error: string };
  if (!check.ok) throw new StasisError(`${shown}: ${check.error}`);
  if (!check.idFree) {
    throw new StasisError(`${shown} has a container ${name} already`, { hint: `move it under another ID with --name NEW, or remove that one there`, code: 'name-taken' });
  }
  let rootfsMs: number | null = null;
  if (!check.base.exists && opts.withRootfs) {
    progress(`sending the base ${base} to ${shown}`);
    const rootfsStarted = Date.now();
    const rootMode = (statSync(base).mode & 0o1777).toString(8);
    const notSent = baseEntriesNotSent(base);
    if (notSent.length > 0) debugLog(`the base is sent without its ${notSent.length} device node(s) and socket(s): ${notSent.slice(0, 8).join(', ')}${notSent.length > 8 ? ', ...' : ''}`);
    await sendFolder(peer, startReceiver(peer, ['__migrate', 'rootfs', destBase, '--mode', rootMode]), base, `the base ${base}`, (sent) => progress(`sending the base: ${formatBytes(sent, { si: true })}`), [], notSent, opts.compress === true);
    rootfsMs = Date.now() - rootfsStarted;
    check = await control.request(checkRequest) as unknown as CheckReply;
    if (!check.ok) throw new StasisError(`${shown}: ${(check as unknown as { error: string }).error}`);
  }
  if (!check.base.exists) {
    throw new StasisError(`the base rootfs ${destBase} is not on ${shown}`, {
      hint: `copy ${base} there, name the copy there with --rootfs PATH, or send it with --with-rootfs`,
      code: 'base-missing',
    });
  }
  if (!check.base.matches) {
    throw new StasisError(`the base rootfs ${destBase} on ${shown} is not the one ${id} runs on (${base}): ${check.base.differences.join(', ')}`, {
      hint: `make ${destBase} there an exact copy of ${base}, or name one with --rootfs PATH`,
      code: 'base-differs',
    });
  }
  let lazy = opts.lazy;
  // A pre-copy's tasks take their memory on demand from the images there when they can (else it is restored whole, as before).
  const userns = specUserns(join(first.bundle, 'config.json')) !== null;
  const onDemand = opts.precopy === true && check.uffd && !(check.uffdUnprivileged === false && userns);
  const pageServer = lazy ? lazyPageServerProblem() : null;
  if (lazy && !check.uffd) {
    warnings.push(`${shown} cannot pull memory on demand (no userfaultfd there): moving all of it first`);
    lazy = false;
  } else if (lazy && check.uffdUnprivileged === false && userns) {
    // CRIU opens a userfaultfd in each restored task, which there is in the container's user namespace.
    warnings.push(`${shown} has vm.unprivileged_userfaultfd = 0: the tasks of ${id}'s user namespace cannot take their memory on demand there (sysctl -w vm.unprivileged_userfaultfd=1 there allows it): moving all of it first`);
    lazy = false;
  } else if (pageServer !== null) {
    warnings.push(`this host cannot serve the memory on demand (${pageServer}): moving all of it first`);
    lazy = false;
  }
  return { check, rootfsMs, lazy, onDemand };
}
