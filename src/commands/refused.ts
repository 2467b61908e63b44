import { usageError, type StasisError } from '../errors.ts';

// podman's spellings that have no meaning in stasis, each refused with the
// reason in one line (exit 2; run's usage errors are 125), instead of yargs'
// "Unknown argument". Read before yargs, up to `--` (the container's command).

interface Refusal {
  /** Long words (`--publish`, also as `--publish=V`) and short ones (`-p`, also as `-p8080:80`). */
  words: string[];
  message: string;
  hint?: string;
}

const NO_PORTS: Refusal = {
  words: ['-p', '--publish', '-P', '--publish-all'],
  message: 'stasis maps no ports: a container has its own network namespace with loopback only',
  hint: 'reach a service inside with `stasis exec ID -- CMD`, or use a --bundle whose config.json shares the host network namespace',
};
const NO_PODS: Refusal = { words: ['--pod'], message: 'stasis has no pods: each container stands on its own' };
const NO_NETWORKS: Refusal = {
  words: ['--network', '--net', '--ip', '--ip6', '--mac-address'],
  message: 'stasis has no networks to choose or addresses to give: a container has its own network namespace with loopback only',
  hint: 'use a --bundle whose config.json names the network namespace to join',
};
const NO_STATIC_ADDRESSES: Refusal = {
  words: ['--ignore-static-ip', '--ignore-static-mac'],
  message: 'a stasis container has no IP or MAC address of its own to keep or drop (its network is loopback only): nothing to ignore',
};

const REFUSALS: Record<string, Refusal[]> = {
  create: [NO_PORTS, NO_PODS, NO_NETWORKS],
  run: [NO_PORTS, NO_PODS, NO_NETWORKS],
  restore: [{ ...NO_PORTS, words: ['-p', '--publish'] }, NO_PODS, NO_STATIC_ADDRESSES],
  checkpoint: [
    { words: ['-P', '--pre-checkpoint'], message: "stasis's spelling is --pre-dump" },
    { words: ['--with-previous'], message: "stasis's spelling is --parent-path DIR (the pre-dump's folder)" },
  ],
};

function matches(arg: string, word: string): boolean {
  if (arg === word) return true;
  // `--publish=8080:80`, `-p8080:80`.
  return word.startsWith('--') ? arg.startsWith(`${word}=`) : arg.startsWith(word) && !arg.startsWith('--');
}

/** The usage error for the first of podman's meaningless spellings given to `verb`, if any. */
export function refusedSpelling(verb: string, args: string[], verbAt: number): StasisError | undefined {
  const refusals = REFUSALS[verb];
  if (refusals === undefined || verbAt < 0) return undefined;
  for (const arg of args.slice(verbAt + 1)) {
    if (arg === '--') return undefined;
    for (const refusal of refusals) {
      const word = refusal.words.find((w) => matches(arg, w));
      if (word === undefined) continue;
      const long = refusal.words.find((w) => w.startsWith('--') && w !== word && refusal.words.indexOf(w) === refusal.words.indexOf(word) + 1);
      const shown = !word.startsWith('--') && long !== undefined ? `${word}/${long}` : word;
      return usageError(`${verb} ${shown}: ${refusal.message}`, refusal.hint);
    }
  }
  return undefined;
}
