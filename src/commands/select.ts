import { StasisError, errorMessage, usageError, type FailureDetail } from '../errors.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { ContainerInfo } from '../runtime/types.ts';
import { idArg } from './flags.ts';

// podman's -a/--all and -l/--latest, for the commands that take them
// (checkpoint, restore): which containers they name, and one report for all.

export interface Selection {
  id?: string;
  all?: boolean;
  latest?: boolean;
}

/** The usage errors of ID / --all / --latest, before any work. */
export function checkSelection(verb: string, sel: Selection, need: string): void {
  if (sel.all && sel.latest) throw usageError(`${verb}: --all and --latest cannot be used together`);
  const many = sel.all ? '--all' : sel.latest ? '--latest' : undefined;
  if (many !== undefined && sel.id !== undefined) throw usageError(`${verb}: give a container ID or ${many}, not both`);
  if (many === undefined && sel.id === undefined) throw usageError(`${verb} needs ${need}`);
}

/** The most recently created container (podman's --latest), of any status. */
export async function latestContainer(runtime: Runtime): Promise<string> {
  const containers = await runtime.containers();
  if (containers.length === 0) throw new StasisError('--latest: there are no containers', { hint: 'list containers with `stasis ps`' });
  const newest = containers.reduce((a, b) => (Date.parse(b.createdAt) > Date.parse(a.createdAt) ? b : a));
  return idArg(newest.id);
}

/** The containers --all acts on, oldest first. */
export async function allContainers(runtime: Runtime, which: (c: ContainerInfo) => boolean): Promise<string[]> {
  return (await runtime.containers())
    .filter(which)
    .sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt))
    .map((c) => c.id);
}

/**
 * Runs `one` on each container in turn, as podman does for --all: every one
 * is tried; the failures come back as one error (exit 1) to throw once the
 * successes are reported.
 */
export async function eachContainer<T>(verb: string, ids: string[], one: (id: string) => Promise<T>): Promise<{ results: T[]; failed?: StasisError }> {
  const results: T[] = [];
  const failures: FailureDetail[] = [];
  for (const id of ids) {
    try {
      results.push(await one(id));
    } catch (err) {
      failures.push({ id, error: `${verb} ${id}: ${errorMessage(err)}`, hint: err instanceof StasisError ? err.hint : undefined });
    }
  }
  if (failures.length === 0) return { results };
  const failed = new StasisError(`${verb} --all: ${failures.length} of ${ids.length} container${ids.length === 1 ? '' : 's'} failed`, { details: failures });
  return { results, failed };
}
