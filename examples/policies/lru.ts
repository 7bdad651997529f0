// LRU eviction: when the device is full, the units used longest ago go first.
//
// What it decides: which units of device memory to evict to free `need` pages
// (EvictionPolicy.victims). Why: the built-in clock only knows "touched since the last sweep or
// not" and otherwise goes round in frame order; LRU keeps what kernels used recently and drops
// what they stopped using, which suits working sets that shift slowly.
//
// How recent a unit is: the GPU sets accessed bits, and each eviction sweep reads them.
// `accessed` says a kernel touched the unit since the last sweep (the most recent there is);
// `lastAccess` is the last sweep that found it touched (0: none did, e.g. it arrived since).
// So recency is known to within one sweep; ties go by `arrived` (the oldest first, as FIFO),
// then by clock order. Units that arrived and were never seen touched (prefetched and unused)
// count as least recent of all.
//
// Use it:
//   createSystem({ systemRamBytes, devices: [{ memoryBytes, policy: lru }] })
//   m.dispatch(kernel, { mode: 'replayable', workgroups, policy: { eviction: lruEviction() } })
//   npm run bench -- --policy examples/policies/lru.ts
import type { EvictionCandidate, EvictionPolicy, PolicySet } from 'webgpu-hmm';

/** When a unit was last used: the current sweep if it is accessed now, else the last sweep that saw it accessed. */
const lastUsed = (c: EvictionCandidate): number => (c.accessed ? Number.MAX_SAFE_INTEGER : c.lastAccess);

export function lruEviction(): EvictionPolicy {
  return {
    name: 'lru',
    victims(need, candidates) {
      const oldestFirst = [...candidates].sort((a, b) => lastUsed(a) - lastUsed(b) || a.arrived - b.arrived || a.clock - b.clock);
      const out: EvictionCandidate[] = [];
      let freed = 0;
      for (const c of oldestFirst) {
        if (freed >= need) break;
        out.push(c); // return the candidates themselves: anything else is ignored
        freed += c.pages;
      }
      return out;
    },
  };
}

const lru: PolicySet = { name: 'lru', eviction: lruEviction() };
export default lru;
