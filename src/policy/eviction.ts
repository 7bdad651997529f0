// Eviction policy: which units of device memory go when the device is full. The built-in is
// a clock with second chance, over units of the device's eviction size (4 KiB, 64 KiB or
// 2 MiB): candidates come in clock order from the hand; units no kernel touched since the last
// sweep go first, and touched ones only if that is not enough. The mechanism (HmmDevice.evict)
// clears the accessed bits of the candidates it keeps, which is the second chance, moves the
// hand past the last victim, and never offers a unit the current fault batch needs.

import type { EvictionCandidate, EvictionPolicy } from './types.ts';

/** Clock with second chance (the built-in). */
export function clockEviction(): EvictionPolicy {
  return {
    name: 'clock',
    victims(need, candidates) {
      const out: EvictionCandidate[] = [];
      let freed = 0;
      for (const pass of [false, true]) {
        for (const c of candidates) {
          if (freed >= need) return out;
          if (c.accessed !== pass) continue;
          out.push(c);
          freed += c.pages;
        }
      }
      return out;
    },
  };
}
