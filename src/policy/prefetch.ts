// Prefetch policy: which pages to bring in along with the ones that faulted. A density
// prefetcher in the manner of NVIDIA UVM's (perf-anchors §1): faulted pages are first grown to
// their aligned "big page" (upgrade), then, at every level of a binary tree over the 2 MiB
// block, a subregion whose share of resident-or-selected pages exceeds `threshold` percent is
// taken whole. It only decides: the caller faults the pages in. Prefetch never leaves the
// 2 MiB block of a fault, nor the range the caller says may be populated.

import { PAGES_PER_HUGE } from '../constants.ts';
import type { PrefetchPolicy, PrefetchView } from './types.ts';

export interface PrefetchConfig {
  /** Off: only the faulted pages move. */
  enabled: boolean;
  /** Percent: a subregion more than this dense is taken whole (UVM's default is 51). */
  threshold: number;
  /** Faulted pages grow to this aligned size first, in pages (UVM: 64 KiB = 16 pages). */
  upgradePages: number;
}

export const DEFAULT_PREFETCH: PrefetchConfig = { enabled: true, threshold: 51, upgradePages: 16 };

export type { PrefetchView } from './types.ts';

/**
 * The pages to fault in for a batch of faulted pages: the faults themselves plus what the
 * density rule adds. Sorted, without duplicates; never a page `allowed` refuses, except the
 * faults themselves (the caller reports their errors).
 */
export function prefetchPages(faults: readonly number[], view: PrefetchView, cfg: PrefetchConfig): number[] {
  const selected = new Set(faults);
  // Equivalent mutant (not disabled: that would hide this line's killed ones): `faults.length === 0` as false; no faults, no block below
  if (!cfg.enabled || faults.length === 0) return [...selected].sort((a, b) => a - b);
  const blocks = new Map<number, number[]>();
  for (const p of faults) {
    const b = Math.floor(p / PAGES_PER_HUGE);
    const list = blocks.get(b);
    if (list) list.push(p);
    else blocks.set(b, [p]);
  }
  const take = (p: number): void => {
    if (!selected.has(p) && !view.resident(p) && view.allowed(p)) selected.add(p);
  };
  for (const [b, pages] of blocks) {
    const base = b * PAGES_PER_HUGE;
    // upgrade each fault to its aligned big page
    const up = Math.max(1, Math.min(cfg.upgradePages, PAGES_PER_HUGE));
    for (const p of pages) {
      const start = Math.floor(p / up) * up;
      for (let q = start; q < start + up; q++) take(q);
    }
    // density, bottom-up: subregions of 2x the upgrade size up to the whole block
    // Stryker disable next-line ArithmeticOperator: a region smaller than the upgrade size lies inside an upgraded big page, all taken already
    for (let size = up * 2; size <= PAGES_PER_HUGE; size *= 2) {
      // Stryker disable next-line EqualityOperator: `<=` adds a region of the next block, which its own pass decides alike
      for (let start = base; start < base + PAGES_PER_HUGE; start += size) {
        let touched = false;
        let dense = 0;
        let eligible = 0;
        for (let q = start; q < start + size; q++) {
          if (selected.has(q)) touched = true;
          if (selected.has(q) || view.resident(q)) dense++;
          if (selected.has(q) || view.resident(q) || view.allowed(q)) eligible++;
        }
        // density over the pages that could be populated at all (holes do not count against it)
        // Equivalent mutants (not disabled: that would hide this line's killed ones): `eligible > 0` as true or `>= 0`; touched means eligible >= 1
        if (touched && eligible > 0 && dense * 100 > eligible * cfg.threshold) {
          for (let q = start; q < start + size; q++) take(q);
        }
      }
    }
  }
  return [...selected].sort((a, b) => a - b);
}

/** The built-in prefetch policy: the density rule above with `cfg` (UVM's by default). */
export function densityPrefetch(cfg: PrefetchConfig = DEFAULT_PREFETCH): PrefetchPolicy {
  return {
    name: cfg.enabled ? `density ${cfg.threshold}% / ${cfg.upgradePages * 4} KiB` : 'none',
    select: (faults, view) => prefetchPages(faults, view, cfg),
  };
}
