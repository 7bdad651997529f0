// The replay simulator's fault-in, eviction and events between dispatches (src/replay/sim/
// faultIn.ts, evict.ts, events.ts) on their own, no GPU: what a device fault does to a page in
// each state it can be in (in RAM, on another device, held by one, copied read-only), the
// errors a fault gives (with the address and the words a user reads), room made by the eviction
// policy and what it is told about each unit, and CPU accesses and explicit moves replayed
// against the simulated residency.
import { describe, expect, it } from 'vitest';
import { HmmError } from '../../src/errors.ts';
import type { EvictionCandidate, EvictionPolicy, PlacementContext, PlacementPolicy } from '../../src/policy/types.ts';
import type { TraceVma } from '../../src/replay/format.ts';
import { toRuns } from '../../src/replay/pageRuns.ts';
import { evict } from '../../src/replay/sim/evict.ts';
import { replayCpu, replayMove } from '../../src/replay/sim/events.ts';
import { faultInPages, mapCopies, migratable } from '../../src/replay/sim/faultIn.ts';
import { Machine } from '../../src/replay/sim/machine.ts';
import { migrateToDevice } from '../../src/replay/sim/moves.ts';
import { ACCESSED, DIRTY } from '../../src/replay/sim/table.ts';
import { held, machine, mapped, priv, rmap } from './replayMachine.ts';

const vma = (start: number, end: number, over: Partial<TraceVma> = {}): TraceVma => ({ start, end, prot: 'rw', shared: false, huge: false, ...over });
const P = 4096;

function hmmError(f: () => unknown): HmmError {
  try {
    f();
  } catch (e) {
    if (e instanceof HmmError) return e;
    throw e;
  }
  throw new Error('no HmmError thrown');
}

/** An eviction policy that records what it was offered and answers as the clock would. */
function recording(answer: (need: number, c: readonly EvictionCandidate[]) => readonly EvictionCandidate[] = (need, c) => c.slice(0, need)) {
  const offers: EvictionCandidate[][] = [];
  const policy: EvictionPolicy = {
    name: 'recording',
    victims(need, c) {
      offers.push([...c]);
      return answer(need, c);
    },
  };
  return { policy, offers };
}

describe('a device fault, by the state of the page', () => {
  it('a page in RAM migrates: mapped writable where the mapping is, read-only where it is not', () => {
    const { m, space, d0, ctx } = machine({ vmas: [vma(100, 110), vma(110, 112, { prot: 'r' })] });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    faultInPages(m, d0, space, [110], false, ctx());
    expect(priv(space)).toEqual([
      [100, 0, 0],
      [101, 0, 1],
      [110, 0, 2],
    ]);
    expect(mapped(d0)).toEqual([
      [100, 0, true],
      [101, 1, true],
      [110, 2, false],
    ]);
    expect(m.metrics.pagesToDevice).toBe(3);
    faultInPages(m, d0, space, [], true, ctx()); // nothing to do
    faultInPages(m, d0, space, [100, 101], true, ctx()); // mapped writable already
    expect(m.metrics.pagesToDevice).toBe(3);
  });

  it('an unmapped address or one with prot none is EFAULT, a write to a read-only one EPERM, each naming the address', () => {
    const { m, space, d0, ctx } = machine({ vmas: [vma(100, 110), vma(110, 112, { prot: 'none' }), vma(112, 114, { prot: 'r' })] });
    const hole = hmmError(() => faultInPages(m, d0, space, [100, 120], false, ctx()));
    expect([hole.code, hole.message, hole.address]).toEqual(['EFAULT', 'EFAULT: gpu0: address 0x00078000 is not mapped', 120 * P]);
    const none = hmmError(() => faultInPages(m, d0, space, [111], false, ctx()));
    expect([none.code, none.message, none.address]).toEqual(['EFAULT', "EFAULT: gpu0: address 0x0006f000 is mapped with prot 'none'", 111 * P]);
    const ro = hmmError(() => faultInPages(m, d0, space, [112], true, ctx()));
    expect([ro.code, ro.message, ro.address]).toEqual(['EPERM', 'EPERM: gpu0: write to read-only address 0x00070000', 112 * P]);
    faultInPages(m, d0, space, [112], false, ctx()); // reading it is fine
    expect(mapped(d0).map((e) => e[0])).toEqual([112]); // a fault that failed moved nothing, 100 included
  });

  it('a page that may not move gets a copy: read-only for a read, held for a write', () => {
    const { m, space, d0, ctx } = machine({ vmas: [vma(100, 104, { shared: true }), vma(104, 108, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100], false, ctx());
    faultInPages(m, d0, space, [104], true, ctx());
    expect(priv(space)).toEqual([]);
    expect(held(space)).toEqual([[104, 0]]);
    expect(mapped(d0)).toEqual([
      [100, 0, false],
      [104, 1, true],
    ]);
    expect([rmap(d0, 0), rmap(d0, 1)]).toEqual([
      [1, 100, 1],
      [1, 104, 1],
    ]);
    expect(m.metrics.deviceCopies).toBe(2);
    expect(m.metrics.pagesToDevice).toBe(0);
  });

  it("a write to a page copied read-only makes the copy writable in place, held, and drops the other devices' copies", () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [8, 8], vmas: [vma(100, 104, { preferred: 'system' })] });
    faultInPages(m, d0, space, [101], false, ctx());
    faultInPages(m, d1, space, [101], false, ctx());
    expect(mapped(d0)).toEqual([[101, 0, false]]);
    faultInPages(m, d0, space, [101], true, ctx());
    expect(held(space)).toEqual([[101, 0]]);
    expect(mapped(d0)).toEqual([[101, 0, true]]); // the same frame: no copy made
    expect(d0.freeFrames).toBe(7);
    expect(m.metrics.deviceCopies).toBe(2);
    expect(mapped(d1)).toEqual([]);
    expect(d1.freeFrames).toBe(8);
  });

  it('a write to several pages: those with a read-only copy here are upgraded, the others get frames', () => {
    const { m, space, d0, ctx } = machine({ frames: [8], vmas: [vma(100, 104, { preferred: 'system' })] });
    faultInPages(m, d0, space, [101], false, ctx());
    faultInPages(m, d0, space, [100, 101, 102], true, ctx());
    expect(mapped(d0)).toEqual([
      [100, 1, true],
      [101, 0, true],
      [102, 2, true],
    ]);
    expect(held(space)).toEqual([
      [100, 0],
      [101, 0],
      [102, 0],
    ]);
    expect(m.metrics.deviceCopies).toBe(3);
  });

  it('a read of a page the thrashing detector keeps in RAM maps a held copy, so the store after it needs no second round', () => {
    const vmas = [vma(100, 104), vma(104, 106, { shared: true }), vma(106, 108, { readMostly: true }), vma(108, 110, { prot: 'r' })];
    const { m, space, d0, d1, ctx } = machine({ frames: [8, 8], vmas });
    m.now = 5;
    for (const p of [100, 101, 102, 104, 106, 108]) space.thrash.pin(p, m.now);
    faultInPages(m, d1, space, [102], false, ctx()); // gpu1 copies 102 first: a read-only copy elsewhere
    expect(held(space)).toEqual([[102, 1]]);
    faultInPages(m, d0, space, [100, 101, 103, 104, 106, 108], false, ctx());
    // held for a read: 100 and 101 (thrashing, private, writable, no copies elsewhere);
    // 103 is not thrashing (it migrates); shared, read-mostly and read-only mappings get read-only copies
    expect(held(space)).toEqual([
      [100, 0],
      [101, 0],
      [102, 1],
    ]);
    expect(priv(space).map((e) => e[0])).toEqual([103]);
    expect(mapped(d0).map(([p, , w]) => [p, w])).toEqual([
      [100, true],
      [101, true],
      [103, true],
      [104, false],
      [106, false],
      [108, false],
    ]);
  });

  it('a thrashing page with a read-only copy on another device gets a read-only copy here too', () => {
    const { m, space, d0, d1, ctx, policies } = machine({ frames: [8, 8] });
    m.now = 5;
    space.thrash.pin(100, m.now);
    mapCopies(m, d1, space, [100], false, new Set(), { ...ctx(), policies });
    faultInPages(m, d0, space, [100], false, ctx());
    expect(held(space)).toEqual([]);
    expect(mapped(d0)).toEqual([[100, 0, false]]);
  });

  it('a page on another device comes home first, then migrates here', () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4] });
    faultInPages(m, d1, space, [102], true, ctx());
    faultInPages(m, d0, space, [102], false, ctx());
    expect(priv(space)).toEqual([[102, 0, 0]]);
    expect(mapped(d1)).toEqual([]);
    expect(d1.freeFrames).toBe(4);
    expect([m.metrics.pagesToDevice, m.metrics.pagesToSystem]).toEqual([2, 1]);
  });

  it('a page on another device that may not come here: home, then a copy', () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4], vmas: [vma(100, 104, { readMostly: true })] });
    faultInPages(m, d1, space, [102], true, ctx()); // a write migrates it to gpu1
    faultInPages(m, d0, space, [102], false, ctx()); // a read of a read-mostly page copies
    expect(priv(space)).toEqual([]);
    expect(mapped(d1)).toEqual([]);
    expect(mapped(d0)).toEqual([[102, 0, false]]);
    expect(m.metrics.pagesToSystem).toBe(1);
  });

  it("a page another device holds is written back before this device's fault is served", () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4], vmas: [vma(100, 104, { preferred: 'system' })] });
    faultInPages(m, d1, space, [101], true, ctx());
    expect(held(space)).toEqual([[101, 1]]);
    faultInPages(m, d0, space, [101], false, ctx());
    expect(held(space)).toEqual([]);
    expect(m.metrics.writeBacks).toBe(1);
    expect(mapped(d1)).toEqual([]);
    expect(mapped(d0)).toEqual([[101, 0, false]]);
  });

  it("a write drops every device's read-only copies of a page that stays in RAM, then holds it", () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4], vmas: [vma(100, 104, { preferred: 'system' })] });
    faultInPages(m, d1, space, [103], false, ctx());
    faultInPages(m, d0, space, [102, 103], true, ctx());
    expect(mapped(d1)).toEqual([]);
    expect(d1.freeFrames).toBe(4);
    expect(held(space)).toEqual([
      [102, 0],
      [103, 0],
    ]);
    expect(mapped(d0).map(([p, , w]) => [p, w])).toEqual([
      [102, true],
      [103, true],
    ]);
  });

  it("this device's own page in a read-only mapping is mapped again read-only", () => {
    const { m, space, d0, ctx } = machine({ frames: [4], vmas: [vma(100, 104, { prot: 'r' })] });
    faultInPages(m, d0, space, [100], false, ctx());
    d0.table(1).unmap(100);
    faultInPages(m, d0, space, [100], false, ctx());
    expect(mapped(d0)).toEqual([[100, 0, false]]);
  });

  it('serving a run leaves the page after it alone, even on another device', () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4] });
    faultInPages(m, d1, space, [103], false, ctx());
    faultInPages(m, d0, space, [102], false, ctx());
    expect(priv(space)).toEqual([
      [102, 0, 0],
      [103, 1, 0],
    ]);
  });

  it("this device's own page that lost its mapping is mapped again in its frame, not moved", () => {
    const { m, space, d0, ctx } = machine({ frames: [4] });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    d0.table(1).unmap(101);
    faultInPages(m, d0, space, [101], true, ctx());
    expect(mapped(d0)).toEqual([
      [100, 0, true],
      [101, 1, true],
    ]);
    expect(m.metrics.pagesToDevice).toBe(2);
  });
});

describe('placement: what the policy is asked, and pin', () => {
  function asking(answer: (c: PlacementContext) => 'migrate' | 'copy' | 'pin') {
    const seen: PlacementContext[] = [];
    const placement: PlacementPolicy = {
      name: 'asking',
      decide(c) {
        seen.push(c);
        return answer(c);
      },
    };
    return { placement, seen };
  }

  it('tells the policy the page, device, access, advice, thrashing verdict, faults so far and why it asks', () => {
    const { m, space, d0, policies } = machine({ vmas: [vma(100, 104, { preferred: 1, readMostly: true, accessedBy: [0] })] });
    const { placement, seen } = asking(() => 'copy');
    const ctx = { policies: { ...policies, placement }, where: 'test' };
    space.countFaults(0, [101, 101]);
    expect(migratable(m, d0, space, 101, true, ctx, 'fault')).toBe(false);
    expect(migratable(m, d0, space, 102, false, ctx, 'prefetch')).toBe(false);
    expect(seen).toEqual([
      { page: 101, device: 0, write: true, advice: { preferred: 1, readMostly: true, accessedBy: [0] }, thrashing: false, faults: 2, prefetch: false },
      { page: 102, device: 0, write: false, advice: { preferred: 1, readMostly: true, accessedBy: [0] }, thrashing: false, faults: 0, prefetch: true },
    ]);
  });

  it("'pin' on a fault keeps the page in RAM for pinMs; on a prefetch question it pins nothing", () => {
    const { m, space, d0, policies } = machine();
    const { placement, seen } = asking(() => 'pin');
    const ctx = { policies: { ...policies, placement }, where: 'test' };
    m.now = 10;
    expect(migratable(m, d0, space, 103, false, ctx, 'prefetch')).toBe(false);
    expect(space.thrash.isPinned(103, 10)).toBe(false);
    expect(migratable(m, d0, space, 103, false, ctx, 'fault')).toBe(false);
    expect(space.thrash.isPinned(103, 10)).toBe(true);
    expect(migratable(m, d0, space, 104, false, { ...ctx, policies: { ...policies, placement: asking(() => 'migrate').placement } }, 'fault')).toBe(true);
    expect(seen.map((c) => c.thrashing)).toEqual([false, false]);
    expect(migratable(m, d0, space, 103, false, ctx, 'fault')).toBe(false);
    expect(seen[2]!.thrashing).toBe(true);
  });

  it('is never asked about a page that cannot move: a hole, prot none, shared, on a device, or held', () => {
    const { m, space, d0, policies } = machine({ vmas: [vma(100, 104), vma(104, 106, { prot: 'none' }), vma(106, 108, { shared: true })] });
    const { placement, seen } = asking(() => 'migrate');
    const ctx = { policies: { ...policies, placement }, where: 'test' };
    migrateToDevice(m, d0, space, [100]);
    space.held.set(101, 0);
    for (const p of [99, 100, 101, 104, 106]) expect(migratable(m, d0, space, p, false, ctx, 'fault'), String(p)).toBe(false);
    expect(seen).toEqual([]);
    expect(migratable(m, d0, space, 102, false, ctx, 'fault')).toBe(true);
  });
});

describe('no room on the device', () => {
  it('evicts to make room, sparing the pages being faulted in', () => {
    const { m, space, d0, ctx } = machine({ frames: [2] });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    faultInPages(m, d0, space, [102], false, ctx());
    expect(priv(space)).toEqual([
      [101, 0, 1],
      [102, 0, 0],
    ]);
    expect([m.metrics.evictions, m.metrics.pagesToSystem, m.metrics.pagesToDevice]).toEqual([1, 1, 3]);
  });

  it("spares what the operation holds too, and only in its own address space's numbering", () => {
    const { m, space, d0, ctx } = machine({ frames: [2] });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    faultInPages(m, d0, space, [102], false, ctx({ held: new Set([100]) }));
    expect(priv(space).map((e) => e[0])).toEqual([100, 102]);
  });

  it('is ENOMEM when nothing may go and nothing moved, naming the device, its frames and the first page', () => {
    const { m, space, d0, ctx } = machine({ frames: [1] });
    faultInPages(m, d0, space, [100], false, ctx());
    const e = hmmError(() => faultInPages(m, d0, space, [101], false, ctx({ held: new Set([100]) })));
    expect([e.code, e.message, e.address]).toEqual(['ENOMEM', 'ENOMEM: gpu0: device memory exhausted (1 frames) faulting in 0x00065000', 101 * P]);
    expect(priv(space).map((e) => e[0])).toEqual([100]);
  });

  it('moves what fits when only some of the pages do, then gives up on the rest with ENOMEM', () => {
    const { m, space, d0, ctx } = machine({ frames: [1] });
    const e = hmmError(() => faultInPages(m, d0, space, [100, 101], false, ctx()));
    expect(e.code).toBe('ENOMEM');
    expect(e.address).toBe(101 * P);
    expect(priv(space).map((e) => e[0])).toEqual([100]);
  });

  it('a fault service returns once one of its faulted pages is mapped, leaving the rest to fault again', () => {
    const { m, space, d0, ctx } = machine({ frames: [1] });
    faultInPages(m, d0, space, [100, 101], false, ctx({ progress: new Set([100]) }));
    expect(priv(space).map((e) => e[0])).toEqual([100]);
    // none of the faulted pages mapped yet: it goes on, and fails
    expect(hmmError(() => faultInPages(m, d0, space, [101, 102], false, ctx({ progress: new Set([102]), held: new Set([100]) }))).code).toBe('ENOMEM');
    // with no faulted page among them (prefetched company only), any progress will do
    const { m: m2, space: s2, d0: g, ctx: c2 } = machine({ frames: [1] });
    faultInPages(m2, g, s2, [100, 101], false, c2({ progress: new Set([150]) }));
    expect(priv(s2).map((e) => e[0])).toEqual([100]);
  });

  it('a fault service maps the rest when the faulted page was resident before it began', () => {
    const { m, space, d0, ctx } = machine({ frames: [4] });
    faultInPages(m, d0, space, [100], false, ctx());
    faultInPages(m, d0, space, [100, 101], false, ctx({ progress: new Set([100]) }));
    expect(priv(space).map((e) => e[0])).toEqual([100, 101]);
  });

  it('a fault service goes on after a round that only brought a page home', () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4] });
    faultInPages(m, d1, space, [102], false, ctx());
    faultInPages(m, d0, space, [102], false, ctx({ progress: new Set([999]) }));
    expect(priv(space)).toEqual([[102, 0, 0]]);
  });

  it('a fault service returns once any of its faulted pages is mapped, not only once all are', () => {
    const { m, space, d0, ctx } = machine({ frames: [1] });
    faultInPages(m, d0, space, [100, 101], false, ctx({ progress: new Set([100, 101]) }));
    expect(priv(space).map((e) => e[0])).toEqual([100]);
  });

  it('copies evict only as many frames as they still need', () => {
    const { m, space, d0, ctx } = machine({ frames: [3], vmas: [vma(100, 104), vma(104, 110, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    faultInPages(m, d0, space, [104, 105], false, ctx());
    expect(m.metrics.evictions).toBe(1);
    expect(priv(space).map((e) => e[0])).toEqual([101]);
    expect(mapped(d0).map((e) => e[0])).toEqual([101, 104, 105]);
  });

  it('a copy that takes the last free frame gives nothing a second chance', () => {
    const { m, space, d0, ctx } = machine({ frames: [2], vmas: [vma(100, 104), vma(104, 110, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100], false, ctx());
    d0.table(1).touch(100, false);
    faultInPages(m, d0, space, [104], false, ctx());
    d0.table(1).flush();
    expect(d0.table(1).bitsOf(100)).toBe(ACCESSED);
  });

  it('copies evict for their frames too; ENOMEM when nothing may go, with the frames given back', () => {
    const { m, space, d0, ctx } = machine({ frames: [2], vmas: [vma(100, 110, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    faultInPages(m, d0, space, [102], false, ctx());
    expect(mapped(d0).map((e) => e[0])).toEqual([101, 102]);
    expect(m.metrics.evictions).toBe(1);
    const e = hmmError(() => mapCopies(m, d0, space, [103, 104, 105], false, new Set([101, 102]), ctx()));
    expect([e.code, e.message, e.address]).toEqual(['ENOMEM', 'ENOMEM: gpu0: no device memory for 3 page copies at 0x00067000', 103 * P]);
    expect(d0.freeFrames).toBe(0);
    expect(mapped(d0).map((e) => e[0])).toEqual([101, 102]);
    // one frame free and one to evict: both copies made
    const { m: m2, space: s2, d0: g, ctx: c2 } = machine({ frames: [2], vmas: [vma(100, 110, { preferred: 'system' })] });
    faultInPages(m2, g, s2, [100], false, c2());
    mapCopies(m2, g, s2, [103, 104], false, new Set([103, 104]), c2());
    expect(mapped(g).map((e) => e[0])).toEqual([103, 104]);
  });
});

describe('two address spaces on one device', () => {
  /** gpu0 of 2 frames holding pages 100 and 101 of address space 2; space 1 maps the same page numbers. */
  function shared() {
    const env = machine({ frames: [2] });
    env.trace.spaces.push({ ...env.trace.spaces[0]!, id: 2 });
    const m = new Machine(env.trace);
    for (const id of [1, 2]) m.space(id).setMappings(env.trace.mappings[0]!);
    faultInPages(m, m.devices[0]!, m.space(2), [100, 101], false, env.ctx());
    return { ...env, m, d0: m.devices[0]!, s1: m.space(1), s2: m.space(2) };
  }

  it("a fault spares the pages it faults in, not another address space's pages of the same numbers", () => {
    const { m, d0, s1, s2, ctx } = shared();
    faultInPages(m, d0, s1, [100], false, ctx());
    expect(priv(s1).map((e) => e[0])).toEqual([100]);
    expect(priv(s2).map((e) => e[0])).toEqual([101]);
  });

  it('so does an explicit migration', () => {
    const { m, s1, s2, policies } = shared();
    replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'to-device', pages: toRuns([100]), cause: 'm.migrate' }, policies);
    expect(priv(s1).map((e) => e[0])).toEqual([100]);
    expect(priv(s2).map((e) => e[0])).toEqual([101]);
  });
});

describe('eviction', () => {
  it('offers one candidate per unit from the clock hand, with what the policy decides on', () => {
    const { m, space, d0, ctx } = machine({ frames: [8], unit: 2 });
    d0.launches = 3;
    faultInPages(m, d0, space, [100, 102], false, ctx());
    d0.launches = 4;
    faultInPages(m, d0, space, [101], false, ctx());
    d0.launches = 5;
    faultInPages(m, d0, space, [104, 105], false, ctx());
    d0.clockHand = 3;
    const t = d0.table(1);
    t.touch(101, false);
    t.touch(104, true);
    d0.launches = 9;
    const { policy, offers } = recording(() => []);
    expect(evict(m, d0, 2, () => false, policy, 'test')).toEqual({ freed: 0, offered: 3 });
    expect(offers[0]).toEqual([
      { page: 104, pages: 2, owner: 1, accessed: true, dirty: true, arrived: 5, lastAccess: 9, clock: 0 },
      { page: 100, pages: 2, owner: 1, accessed: true, dirty: false, arrived: 3, lastAccess: 9, clock: 1 },
      { page: 102, pages: 1, owner: 1, accessed: false, dirty: false, arrived: 3, lastAccess: 0, clock: 2 },
    ]);
    // the accessed units it kept get their second chance: accessed cleared at the next upload, dirty kept
    expect([t.bitsOf(101), t.bitsOf(104)]).toEqual([0, DIRTY]);
    expect(m.metrics.evictions).toBe(0);
  });

  it('skips free frames and what the caller keeps; nothing to offer is nothing freed', () => {
    const { m, space, d0, ctx } = machine({ frames: [4] });
    const { policy, offers } = recording();
    expect(evict(m, d0, 1, () => false, policy, 'test')).toEqual({ freed: 0, offered: 0 });
    faultInPages(m, d0, space, [100, 101], false, ctx());
    expect(evict(m, d0, 1, (s, p) => s === 1 && p === 100, policy, 'test')).toEqual({ freed: 1, offered: 1 });
    expect(offers.map((o) => o.map((c) => c.page))).toEqual([[101]]);
    expect(priv(space).map((e) => e[0])).toEqual([100]);
  });

  it('moves the hand past the last victim in clock order, and the victims off by kind', () => {
    const { m, space, d0, ctx } = machine({ frames: [6], vmas: [vma(100, 104), vma(104, 110, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100, 101], false, ctx()); // frames 0, 1: device pages
    faultInPages(m, d0, space, [104], true, ctx()); // frame 2: a held copy
    faultInPages(m, d0, space, [105], false, ctx()); // frame 3: a read-only copy
    d0.clockHand = 1;
    const { policy } = recording((_need, c) => [c[0]!, c[2]!, c[1]!]); // 101, 105, 104: the last on the clock is 105 (frame 3)
    expect(evict(m, d0, 3, () => false, policy, 'test')).toEqual({ freed: 3, offered: 4 });
    expect(d0.clockHand).toBe(4); // past frame 3, the victim latest on the clock
    expect(priv(space).map((e) => e[0])).toEqual([100]);
    expect(held(space)).toEqual([]);
    expect(mapped(d0).map((e) => e[0])).toEqual([100]);
    expect([m.metrics.evictions, m.metrics.writeBacks, m.metrics.pagesToSystem]).toEqual([3, 1, 1]);
    expect(d0.freeFrames).toBe(5);
  });

  it('the hand wraps around the last frame', () => {
    const { m, space, d0, ctx } = machine({ frames: [3] });
    faultInPages(m, d0, space, [100, 101, 102], false, ctx());
    d0.clockHand = 2;
    const { policy } = recording((_n, c) => [c[0]!]);
    evict(m, d0, 1, () => false, policy, 'test');
    expect(d0.clockHand).toBe(0);
    expect(priv(space).map((e) => e[0])).toEqual([100, 101]);
  });

  it("another device's held copy of a page in a unit is not this device's to write back", () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4], vmas: [vma(100, 110, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100], false, ctx()); // a read-only copy on gpu0
    faultInPages(m, d1, space, [101], true, ctx()); // held by gpu1
    const { policy } = recording();
    evict(m, d0, 1, () => false, policy, 'test');
    expect(mapped(d0)).toEqual([]);
    expect(held(space)).toEqual([[101, 1]]);
    expect(m.metrics.evictions).toBe(1);
  });
});

describe('events between dispatches', () => {
  it('a CPU access brings home the pages devices own, writes back held copies, and a write drops read-only copies', () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4], vmas: [vma(100, 104), vma(104, 110, { preferred: 'system' })] });
    faultInPages(m, d0, space, [100], false, ctx());
    faultInPages(m, d1, space, [101], false, ctx());
    faultInPages(m, d1, space, [104], true, ctx());
    faultInPages(m, d0, space, [105], false, ctx());
    faultInPages(m, d0, space, [106], false, ctx());
    m.now = 50;
    replayCpu(m, { kind: 'cpu', t: 40, space: 1, write: false, thread: 'main', pages: toRuns([100, 101, 104, 105]) });
    expect(m.now).toBe(50);
    expect(priv(space)).toEqual([]);
    expect(held(space)).toEqual([]);
    expect(mapped(d0).map((e) => e[0])).toEqual([105, 106]); // a read leaves the copies
    expect([m.metrics.pagesToSystem, m.metrics.writeBacks]).toEqual([2, 1]);
    replayCpu(m, { kind: 'cpu', t: 60, space: 1, write: true, thread: 'worker', pages: toRuns([105]) });
    expect(m.now).toBe(60);
    expect(mapped(d0).map((e) => e[0])).toEqual([106]);
  });

  it('an explicit migration to a device makes its own room, sparing the pages it moves, and counts a prefetch as prefetched', () => {
    const { m, space, d0, policies } = machine({ frames: [2] });
    const move = (pages: number[], cause: string, t = 1) =>
      replayMove(m, { kind: 'move', t, space: 1, device: 0, move: 'to-device', pages: toRuns(pages), cause }, policies);
    move([100, 101], 'm.migrate');
    expect(priv(space).map((e) => e[0])).toEqual([100, 101]);
    move([101, 102], "m.prefetch('device')", 5);
    expect(m.now).toBe(5);
    expect(priv(space).map((e) => e[0])).toEqual([101, 102]);
    expect([m.metrics.pagesToDevice, m.metrics.prefetchedPages, m.metrics.evictions]).toEqual([3, 1, 1]);
    // more pages than the device holds: what fits moves, the rest stays in RAM
    move([103, 104, 105], 'm.migrate');
    expect(priv(space).map((e) => e[0])).toEqual([103, 104]);
    expect(d0.freeFrames).toBe(0);
  });

  it('an explicit migration that fills the device exactly gives no second chance to what stays', () => {
    const { m, d0, policies } = machine({ frames: [2] });
    const move = (pages: number[]) =>
      replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'to-device', pages: toRuns(pages), cause: 'm.migrate' }, policies);
    move([100]);
    d0.table(1).touch(100, false);
    move([101]);
    d0.table(1).flush();
    expect(d0.table(1).bitsOf(100)).toBe(ACCESSED);
  });

  it('a dropped mapping of a page living on the device leaves it mapped there', () => {
    const { m, d0, policies } = machine({ frames: [2] });
    replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'to-device', pages: toRuns([100]), cause: 'm.migrate' }, policies);
    replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'dropped', pages: toRuns([100]), cause: 'test' }, policies);
    expect(mapped(d0)).toEqual([[100, 0, true]]);
  });

  it('explicit copies, moves home, write-backs and dropped mappings, as they happened', () => {
    const { m, space, d0, policies, ctx } = machine({ frames: [3], vmas: [vma(100, 110, { preferred: 'system' })] });
    const move = (kind: 'copy' | 'to-system' | 'write-back' | 'dropped', pages: number[]) =>
      replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: kind, pages: toRuns(pages), cause: 'test' }, policies);
    move('copy', [100, 101]);
    expect(mapped(d0)).toEqual([
      [100, 0, false],
      [101, 1, false],
    ]);
    move('copy', [101, 102]); // only what is missing
    expect(m.metrics.deviceCopies).toBe(3);
    move('dropped', [100, 101]);
    expect(mapped(d0).map((e) => e[0])).toEqual([102]);
    faultInPages(m, d0, space, [105], true, ctx());
    move('dropped', [105]); // a held copy is not dropped, it is written back
    expect(held(space)).toEqual([[105, 0]]);
    expect(mapped(d0).map((e) => e[0])).toEqual([102, 105]);
    move('write-back', [105]);
    expect(held(space)).toEqual([]);
    move('copy', [103, 104]); // room made by evicting what the copies do not need
    expect(mapped(d0).map((e) => e[0])).toEqual([102, 103, 104]);
    move('copy', [106, 107, 108, 109]); // more than the device holds: not made, and no error
    expect(held(space)).toEqual([]);
    expect(
      mapped(d0)
        .map((e) => e[0])
        .filter((p) => p >= 106),
    ).toEqual([]);
    expect(m.metrics.writeBacks).toBe(1);
  });

  it('an explicit move home', () => {
    const { m, space, policies } = machine({ frames: [3] });
    replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'to-device', pages: toRuns([100, 101]), cause: 'm.migrate' }, policies);
    replayMove(m, { kind: 'move', t: 2, space: 1, device: 0, move: 'to-system', pages: toRuns([101]), cause: 'm.migrate' }, policies);
    expect(priv(space).map((e) => e[0])).toEqual([100]);
    expect(m.metrics.pagesToSystem).toBe(1);
  });

  it('a copy that fails for anything but room is an error', () => {
    const { m, policies } = machine({ frames: [3], vmas: [vma(100, 110, { preferred: 'system' })] });
    const placement: PlacementPolicy = {
      name: 'broken',
      decide: () => {
        throw new Error('boom');
      },
    };
    // a copy asks no placement, eviction does; an eviction policy that throws is the guard's EINVAL
    const eviction: EvictionPolicy = {
      name: 'broken',
      victims: () => {
        throw new Error('boom');
      },
    };
    replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'copy', pages: toRuns([100, 101, 102]), cause: 'test' }, { ...policies, placement });
    const e = hmmError(() =>
      replayMove(m, { kind: 'move', t: 1, space: 1, device: 0, move: 'copy', pages: toRuns([103]), cause: 'test' }, { ...policies, eviction }),
    );
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('the replay of: test');
  });
});
