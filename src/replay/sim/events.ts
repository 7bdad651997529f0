// The simulator's events between dispatches. A CPU access that faulted is replayed against the
// simulated residency (the CPU fault path, AddressSpace.collectPending): pages living on a
// device come home, held copies are written back, a write drops read-only copies; so under
// other policies, the CPU brings home what those policies put on the device. A page move that
// no dispatch or CPU access caused (an explicit migrate, prefetch, release or copy) is applied
// as it happened, the device making its own room under the policies replayed.

import { HmmError } from '../../errors.ts';
import type { Policies } from '../../policy/types.ts';
import type { CpuEvent, MoveEvent } from '../format.ts';
import { fromRuns } from '../pageRuns.ts';
import { mapCopies, type FaultCtx } from './faultIn.ts';
import type { Machine } from './machine.ts';
import { dropCopies, dropRuns, migrateToDevice, migrateToSystem, pageRuns, revoke } from './moves.ts';
import { evict } from './evict.ts';

/** Retries of an explicit migration that ran out of frames (the mechanism's fault-in rounds). */
const MAX_ROUNDS = 32;

export function replayCpu(m: Machine, ev: CpuEvent): void {
  m.now = Math.max(m.now, ev.t);
  const space = m.space(ev.space);
  const home = new Map<number, number[]>();
  const held = new Map<number, number[]>();
  const push = (map: Map<number, number[]>, d: number, p: number): void => {
    const list = map.get(d);
    if (list) list.push(p);
    else map.set(d, [p]);
  };
  for (const p of fromRuns(ev.pages)) {
    const priv = space.priv.get(p);
    const by = space.held.get(p);
    if (priv) push(home, priv.dev, p);
    else if (by !== undefined) push(held, by, p);
    else if (ev.write) dropCopies(m, space, p);
  }
  for (const [d, pages] of home) migrateToSystem(m, m.devices[d]!, space, pages);
  for (const [d, pages] of held) revoke(m, m.devices[d]!, space, pages);
}

export function replayMove(m: Machine, ev: MoveEvent, policies: Required<Policies>): void {
  m.now = Math.max(m.now, ev.t);
  const dev = m.devices[ev.device]!;
  const space = m.space(ev.space);
  const pages = fromRuns(ev.pages);
  const t = dev.table(space.id);
  const ctx: FaultCtx = { policies, where: `the replay of: ${ev.cause}` };
  switch (ev.move) {
    case 'to-device': {
      const want = new Set(pages);
      const before = m.metrics.pagesToDevice;
      for (let round = 0; round < MAX_ROUNDS; round++) {
        // Stryker disable next-line MethodExpression: migrateToDevice itself skips pages already on a device (the test as true is equivalent too)
        const res = migrateToDevice(
          m,
          dev,
          space,
          pages.filter((p) => space.priv.get(p)?.dev !== dev.id),
        );
        if (res.nomem === 0) break;
        const keep = (s: number, p: number): boolean => s === space.id && want.has(p);
        // Equivalent mutant (not disabled: that would hide this line's killed ones): `dev.freeFrames === 0` as true; pages left nomem mean no frame was left
        if (dev.freeFrames === 0 && evict(m, dev, res.nomem, keep, policies.eviction, ctx.where).freed === 0) break;
      }
      // an explicit prefetch (Mirror.prefetch, cudaMemPrefetchAsync's kind) counts its pages as prefetched, as the real counter does
      if (ev.cause.includes("m.prefetch('device')")) m.metrics.prefetchedPages += m.metrics.pagesToDevice - before;
      return;
    }
    case 'copy': {
      const missing = pages.filter((p) => !t.lookup(p) && !space.priv.has(p));
      try {
        // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true or `>=`; mapCopies of no pages makes nothing
        if (missing.length > 0) mapCopies(m, dev, space, missing, false, new Set(pages), ctx);
      } catch (e) {
        if (!(e instanceof HmmError && e.code === 'ENOMEM')) throw e; // the copies that did not fit are simply not made
      }
      return;
    }
    case 'to-system':
      migrateToSystem(m, dev, space, pages);
      return;
    case 'write-back':
      revoke(m, dev, space, pages);
      return;
    case 'dropped':
      dropRuns(dev, space, pageRuns(pages.filter((p) => t.lookup(p) && !space.priv.has(p) && space.held.get(p) !== dev.id)));
      return;
  }
}
