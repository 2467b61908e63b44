import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { debugLog } from '../log.ts';
import { netInterfaces, sharingNetns } from '../host/procfs.ts';

// CRIU options runc has no flag for reach CRIU through a configuration file,
// which runc names to CRIU when the container's annotations carry
// org.criu.config. That file replaces /etc/criu/runc.conf, so the admin's
// settings there are copied into it first.

/** The annotation runc reads, at create (restore) from the spec and at checkpoint from its own state. */
export const CRIU_CONFIG_ANNOTATION = 'org.criu.config';
/** What runc hands CRIU when nothing names a configuration file. */
const RUNC_CRIU_CONFIG = '/etc/criu/runc.conf';
/** The file a dump's options go in, in the dump's work folder. */
export const DUMP_CONFIG_FILE = 'stasis-criu-dump.conf';

/**
 * CRIU locks a dumped network namespace against traffic while it works. In a namespace with
 * nothing but lo and no process but the container's, every peer is a process of the container,
 * frozen; only an established TCP connection (--tcp-established, in the dump's flags or in the
 * admin's runc.conf) has the kernel itself send on it, so then the lock stays.
 */
export function networkLockGuardsNothing(initPid: number | null, containerPids: number[], criuFlags: string[]): boolean {
  if (criuFlags.includes('--tcp-established') || adminCriuConfigHas('tcp-established') || initPid === null) return false;
  const interfaces = netInterfaces(initPid);
  if (interfaces === null || interfaces.length !== 1 || interfaces[0] !== 'lo') return false;
  const sharing = sharingNetns(initPid);
  const own = new Set(containerPids);
  return sharing !== null && sharing.every((pid) => own.has(pid));
}

/** Whether the admin's runc.conf (what CRIU reads for runc's dumps) sets `option` (a line of its own, as CRIU writes options there). */
export function adminCriuConfigHas(option: string, adminFile = RUNC_CRIU_CONFIG): boolean {
  try {
    return readFileSync(adminFile, 'utf8').split('\n').some((line) => line.trim().replace(/^--/, '').split(/\s/)[0] === option);
  } catch {
    return false;
  }
}

/** The admin's runc.conf (if any), then `lines`: what a configuration file of stasis's holds. */
export function criuConfigText(lines: string[], adminFile = RUNC_CRIU_CONFIG): string {
  let admin = '';
  try {
    admin = readFileSync(adminFile, 'utf8');
  } catch {
    // none
  }
  return `${admin}${admin === '' || admin.endsWith('\n') ? '' : '\n'}${lines.map((line) => `${line}\n`).join('')}`;
}

/**
 * Names `file` (written with `lines`) to runc as the CRIU configuration of
 * the container's next checkpoint: runc reads the annotation from the labels
 * in its state.json at each checkpoint. The label goes in by an edit of
 * that file's text (a parse and a rewrite could change runc's 64-bit
 * numbers), written to a temporary file and renamed. Returns the undo (the
 * label taken out again, the file removed), or null when nothing was changed: no state, a
 * layout not recognised, or a configuration file the spec names itself
 * (the user's, which stays in charge). A label left by a stasis killed
 * before its undo names a file in a dump folder that is gone with it, which
 * CRIU ignores; the next dump replaces it.
 */
export function nameDumpConfig(runcRoot: string, id: string, file: string, lines: string[]): (() => void) | null {
  const statePath = join(runcRoot, id, 'state.json');
  const state = stateLabels(statePath);
  if (state === null || state.labels.some((label) => label.startsWith(`${CRIU_CONFIG_ANNOTATION}=`) && !ownLabel(label))) return null;
  const text = state.text;
  const marker = '"labels":[';
  if (text.indexOf(marker) < 0 || text.indexOf(marker) !== text.lastIndexOf(marker)) return null;
  const label = `${CRIU_CONFIG_ANNOTATION}=${file}`;
  writeFileSync(file, criuConfigText(lines), { mode: 0o600 });
  const empty = text.includes(`${marker}]`);
  replaceState(statePath, text.replace(marker, `${marker}${JSON.stringify(label)}${empty ? '' : ','}`));
  debugLog(`runc's state of ${id} names ${file} to CRIU (${lines.join(', ')})`);
  return () => {
    // Not a file of the checkpoint: the folder stays as CRIU and runc left it.
    rmSync(file, { force: true });
    try {
      replaceState(statePath, removeLabel(readFileSync(statePath, 'utf8'), label));
    } catch {
      // runc removed its state (a dump that ended the container)
    }
  };
}

/** Takes out a label a killed stasis left (see nameDumpConfig), for a dump that names no file: runc.conf applies again. */
export function forgetDumpConfig(runcRoot: string, id: string): void {
  const statePath = join(runcRoot, id, 'state.json');
  const state = stateLabels(statePath);
  if (state === null || state.stale.length === 0) return;
  try {
    replaceState(statePath, state.text);
  } catch {
    // runc's folder went meanwhile: nothing to take out
  }
}

/**
 * runc's state.json as text without the labels stasis's dumps put in (taken
 * out by their exact JSON text), with its labels and those stale ones; null
 * without a readable state.
 */
function stateLabels(statePath: string): { text: string; labels: string[]; stale: string[] } | null {
  try {
    const text = readFileSync(statePath, 'utf8');
    const labels = (JSON.parse(text) as { config?: { labels?: string[] | null } }).config?.labels ?? [];
    const stale = labels.filter(ownLabel);
    return { text: stale.reduce(removeLabel, text), labels, stale };
  } catch {
    return null;
  }
}

function ownLabel(label: string): boolean {
  return label.startsWith(`${CRIU_CONFIG_ANNOTATION}=`) && label.endsWith(`/${DUMP_CONFIG_FILE}`);
}

function removeLabel(text: string, label: string): string {
  const quoted = JSON.stringify(label);
  return text.replace(`${quoted},`, '').replace(`,${quoted}`, '').replace(quoted, '');
}

function replaceState(path: string, text: string): void {
  const temp = `${path}.stasis-${process.pid}`;
  writeFileSync(temp, text, { mode: 0o600 });
  renameSync(temp, path);
}
