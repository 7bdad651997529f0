// Stride prefetch: bring the pages a strided or sequential stream will touch next.
//
// What it decides: which pages come to the device along with a batch of GPU faults
// (PrefetchPolicy.select). Why: a kernel that walks memory with a constant step (a column of a
// row-major matrix, one record every few pages, several walkers side by side) faults on pages
// too far apart to make any region dense, so the built-in density prefetcher brings nothing, and
// every step costs a fault round. In a fault batch such a stream shows as faulted pages at one
// constant distance. This policy finds each run of them in the batch (sorted, as the mechanism
// gives it) and takes `ahead` more pages along it. A run of consecutive pages is the stride-1
// case. A lone fault, or faults at irregular distances, bring nothing: it cannot tell a stride.
// Pages past the mapping, or already resident, are the mechanism's to drop.
//
// Use it:
//   createSystem({ systemRamBytes, devices: [{ memoryBytes, policy: { prefetch: stridePrefetch({ ahead: 32 }) } }] })
//   m.dispatch(kernel, { mode: 'replayable', workgroups, policy: { prefetch: stridePrefetch() } })
//   npm run bench -- --policy examples/policies/stride.ts
import type { PolicySet, PrefetchPolicy } from 'webgpu-hmm';

export interface StrideOptions {
  /** Pages to take past the end of each run, along its stride (default 16). */
  ahead?: number;
  /** Faulted pages at one distance that make a run (default 3: two equal steps). */
  minRun?: number;
  /** Farther apart than this many pages is not a stream (default 64). */
  maxStride?: number;
}

export function stridePrefetch({ ahead = 16, minRun = 3, maxStride = 64 }: StrideOptions = {}): PrefetchPolicy {
  return {
    name: `stride(${ahead})`,
    select(faults) {
      const out: number[] = [];
      // The current run is faults[start..i-1]: every step in it equals its first step.
      let start = 0;
      for (let i = 2; i <= faults.length; i++) {
        const step = faults[start + 1]! - faults[start]!;
        if (i < faults.length && faults[i]! - faults[i - 1]! === step) continue; // the run goes on
        if (i - start >= minRun && step <= maxStride) {
          const last = faults[i - 1]!;
          for (let k = 1; k <= ahead; k++) out.push(last + k * step);
        }
        start = i - 1; // the next run starts at the page this one ended on
      }
      return out;
    },
  };
}

const stride: PolicySet = { name: 'stride', prefetch: stridePrefetch() };
export default stride;
