// Batching policy: how much of a replayable fault round the fault service takes on, and whether
// it naps first. The built-in serves at most the dispatch's fault batch cap (UVM's fault batch
// count) and at most half the device, so a batch always fits beside what stays resident (the
// faults left out fault again next round), and throttles a batch that touches thrashing pages:
// it waits the configured nap first, giving the CPU side its turn (UVM's thrashing throttle).

import type { BatchingPolicy } from './types.ts';

/** Batch cap and thrashing throttle (the built-in). */
export function capBatching(): BatchingPolicy {
  return {
    name: 'cap',
    plan(ctx) {
      const take = Math.max(1, Math.min(ctx.faulted, ctx.batchPages, Math.floor(ctx.frames / 2)));
      return { take, napMs: ctx.thrashing ? ctx.thrashNapMs : 0 };
    },
  };
}
