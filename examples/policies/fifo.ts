// FIFO eviction: when the device is full, the units that arrived first go first.
//
// What it decides: which units of device memory to evict to free `need` pages
// (EvictionPolicy.victims). Why: it is the simplest rule there is, and the baseline the others
// are measured against. It ignores use entirely: a unit a kernel touches in every round goes
// as soon as it is the oldest, so under a hot working set it loses to LRU and to the clock.
// `arrived` is the device's launch count when the unit came; ties go by clock order.
//
// Use it:
//   createSystem({ systemRamBytes, devices: [{ memoryBytes, policy: fifo }] })
//   m.dispatch(kernel, { mode: 'replayable', workgroups, policy: { eviction: fifoEviction() } })
//   npm run bench -- --policy examples/policies/fifo.ts
import type { EvictionCandidate, EvictionPolicy, PolicySet } from 'webgpu-hmm';

export function fifoEviction(): EvictionPolicy {
  return {
    name: 'fifo',
    victims(need, candidates) {
      const out: EvictionCandidate[] = [];
      let freed = 0;
      for (const c of [...candidates].sort((a, b) => a.arrived - b.arrived || a.clock - b.clock)) {
        if (freed >= need) break;
        out.push(c);
        freed += c.pages;
      }
      return out;
    },
  };
}

const fifo: PolicySet = { name: 'fifo', eviction: fifoEviction() };
export default fifo;
