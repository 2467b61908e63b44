import { lstatSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { run } from '../host/spawn.ts';
import { which } from '../host/which.ts';
import { debugLog } from '../log.ts';

// CRIU probes the kernel at every dump and restore (ptrace, breakpoints,
// iptables -L, netlink, a tmpfs mount...), unless it finds the answers in
// its cache, /run/criu.kdat: measured here, 80-100 ms of every runc checkpoint
// and runc restore. That path is fixed when CRIU is built; root's CRIU has no
// other. CRIU reads the file wherever /run is, but writes it only when /run
// is a tmpfs, so that a reboot drops it. Where /run is on disk (this kind of
// VM, minimal hosts without systemd) it never keeps it, and every run probes.
//
// There stasis has CRIU itself write the cache, into a small tmpfs made for
// it (a mount namespace of its own sees that tmpfs as /run), then mounts the
// file on /run/criu.kdat. The tmpfs is reachable only through that mount,
// and like /run on tmpfs it is gone at the next boot: what stays on disk is
// an empty file, which CRIU takes as stale and removes. A CRIU of another
// build finds the magic of its build missing and probes, as without a cache.

/** Where root's CRIU looks for its kernel cache (KDAT_RUNDIR, as Debian and upstream build it). */
export const CRIU_KDAT = '/run/criu.kdat';
const TMPFS_MAGIC = 0x01021994;

/** What there is to do about CRIU's kernel cache on this host. */
export function criuCacheState(kdat = CRIU_KDAT): 'kept' | 'criu-keeps-it' | 'missing' {
  const file = lstatSync(kdat, { throwIfNoEntry: false });
  if (file?.isFile() && file.size > 0) return 'kept';
  try {
    if (statfsSync(kdat.slice(0, kdat.lastIndexOf('/')) || '/').type === TMPFS_MAGIC) return 'criu-keeps-it';
  } catch {
    return 'criu-keeps-it';
  }
  return 'missing';
}

// $1 the CRIU to run, $2 the cache's path. CRIU's `check` fills its kernel
// facts (the --feature asked does not matter) and saves them on the tmpfs it
// sees as /run. Every path comes in as an argument, never in the script.
// A try killed half way (stasis's process group killed) can leave its folder,
// with the tmpfs mounted on it: one over a minute old is undone first.
const PRIME_SCRIPT = `set -e
criu=$1 kdat=$2
for old in "\${kdat%/*}"/.stasis-kdat.??????; do
  [ -d "$old" ] && [ -n "$(find "$old" -maxdepth 0 -mmin +1)" ] || continue
  umount "$old" 2>/dev/null || :
  rmdir "$old" 2>/dev/null || :
done
dir=$(mktemp -d "\${kdat%/*}/.stasis-kdat.XXXXXX")
trap 'umount "$dir" 2>/dev/null || :; rmdir "$dir" 2>/dev/null || :' EXIT
mount -t tmpfs -o size=64k,mode=0700 stasis-criu-kdat "$dir"
unshare --mount --propagation private sh -c 'mount --bind "$1" /run && exec "$2" check --feature mem_dirty_track' sh "$dir" "$criu" >/dev/null 2>&1 || :
test -s "$dir/criu.kdat"
test ! -s "$kdat" || exit 0
test ! -L "$kdat"
test -e "$kdat" || (umask 077 && : > "$kdat")
mount --bind "$dir/criu.kdat" "$kdat"
`;

/**
 * Sees that the CRIU stasis runs finds its kernel cache: nothing to do where
 * it is there or where CRIU keeps it itself (/run on tmpfs); else, as root,
 * has CRIU make it (once a boot: 100-200 ms) and mounts it in place. Never
 * fails: without the cache CRIU works as before, only slower.
 */
export async function keepCriuCache(criu: string, kdat = CRIU_KDAT): Promise<void> {
  if (criuCacheState(kdat) !== 'missing' || process.getuid?.() !== 0) return;
  if (which('unshare') === null || which('mount') === null) return;
  // Tried and failed since this boot (a CRIU built to keep its cache elsewhere, say): not every command again.
  if (criuCacheFailedThisBoot(kdat)) return;
  const started = Date.now();
  const result = await run('sh', ['-c', PRIME_SCRIPT, 'sh', criu, kdat], { timeout: 20_000 }).catch((err: Error) => ({ exitCode: -1, stderr: err.message }));
  if (result.exitCode === 0) {
    debugLog(`CRIU's kernel cache mounted on ${kdat} (${Date.now() - started} ms)`);
    return;
  }
  debugLog(`CRIU's kernel cache not kept (exit ${result.exitCode}): ${result.stderr.trim().slice(0, 200)}`);
  try {
    const boot = bootId();
    if (boot !== null) writeFileSync(failMark(kdat), boot, { mode: 0o600 });
  } catch {
    // tried again next time
  }
}

/** Where a failed try leaves this boot's ID. */
function failMark(kdat: string): string {
  return `${kdat.slice(0, kdat.lastIndexOf('/'))}/.stasis-kdat.failed`;
}

/** Whether stasis tried to make the cache since this boot, and failed. */
export function criuCacheFailedThisBoot(kdat = CRIU_KDAT): boolean {
  const boot = bootId();
  return boot !== null && readText(failMark(kdat)) === boot;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** This boot's ID (random at each boot), or null. */
function bootId(): string | null {
  return readText('/proc/sys/kernel/random/boot_id');
}
