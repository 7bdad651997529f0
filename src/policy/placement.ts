// Placement policy: when a device faults on a page that could move, does it migrate to the
// device or stay in RAM with the device using a copy? The built-in reads the advice on the
// page's mapping (cudaMemAdvise's three) and the thrashing detector's verdict:
//   preferred 'system'                      -> copy (the page stays in RAM)
//   preferred elsewhere, this device only accessedBy -> copy (it reads without pulling it here)
//   readMostly, for a read                  -> copy (read duplication; a write migrates)
//   thrashing                               -> copy (pinned in RAM for a while)
//   otherwise                               -> migrate
// What may not move at all (shared mappings, pinned pages, pages another operation holds) is
// the mechanism's to know: it never asks about those.

import type { PlacementPolicy } from './types.ts';

/** Advice and thrashing (the built-in). */
export function advicePlacement(): PlacementPolicy {
  return {
    name: 'advice',
    decide(ctx) {
      const { preferred, readMostly, accessedBy } = ctx.advice;
      if (preferred === 'system') return 'copy';
      if (typeof preferred === 'number' && preferred !== ctx.device && accessedBy?.includes(ctx.device)) return 'copy';
      if (readMostly && !ctx.write) return 'copy';
      if (ctx.thrashing) return 'copy';
      return 'migrate';
    },
  };
}
