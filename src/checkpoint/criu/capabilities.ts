// Capability masks: CRIU records each capability set as 32-bit words, bit N of
// the set being capability N (the names are in host/capabilities.ts).

import { CAPABILITY_NAMES } from '../../host/capabilities.ts';

export { CAPABILITY_NAMES, capabilityNumber } from '../../host/capabilities.ts';

/** Names of the bits set in a capability mask; a bit Linux does not name yet is `CAP_<n>`. */
export function capabilityNames(mask: bigint): string[] {
  const names: string[] = [];
  for (let bit = 0; mask >> BigInt(bit) !== 0n; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(CAPABILITY_NAMES[bit] ?? `CAP_${bit}`);
  }
  return names;
}

/** A mask from CRIU's 32-bit words (word 0 holds capabilities 0-31). */
export function maskFromWords(words: readonly number[]): bigint {
  let mask = 0n;
  words.forEach((word, index) => {
    mask |= BigInt(word >>> 0) << BigInt(32 * index);
  });
  return mask;
}

/** CRIU's 32-bit words for a mask (at least two, as CRIU writes them). */
export function wordsFromMask(mask: bigint): number[] {
  const words: number[] = [];
  for (let rest = mask; rest !== 0n || words.length < 2; rest >>= 32n) words.push(Number(rest & 0xffff_ffffn));
  return words;
}
