// The example policies (examples/policies/) on hand-built inputs, no GPU: what each decides,
// and that the guard between a policy and the mechanism (src/policy/guard.ts) takes their
// answers as they are. Each module default-exports a PolicySet holding its policy.
import { describe, expect, it } from 'vitest';
import accessCount, { accessCountPlacement } from '../../examples/policies/accessCount.ts';
import fifo, { fifoEviction } from '../../examples/policies/fifo.ts';
import lru, { lruEviction } from '../../examples/policies/lru.ts';
import stride, { stridePrefetch } from '../../examples/policies/stride.ts';
import { askEviction, askPlacement, askPrefetch, checkPolicy } from '../../src/policy/guard.ts';
import type { EvictionCandidate, PlacementContext, PolicySet, PrefetchView } from '../../src/policy/types.ts';

/** Which fault round asks (a prefetch view's ids). */
const AT = { device: 0, space: 1, dispatch: 1, round: 1 };

const WHERE = "dispatch 'k' round 1";
const everything: PrefetchView = { ...AT, resident: () => false, allowed: () => true };
const unit = (page: number, over: Partial<EvictionCandidate> = {}): EvictionCandidate => ({
  page,
  pages: 1,
  owner: 1,
  accessed: false,
  dirty: false,
  arrived: 0,
  lastAccess: 0,
  clock: page,
  ...over,
});
const ctx = (over: Partial<PlacementContext> = {}): PlacementContext => ({
  page: 7,
  device: 0,
  write: false,
  advice: {},
  thrashing: false,
  faults: 1,
  prefetch: false,
  ...over,
});
const range = (from: number, n: number, step = 1): number[] => Array.from({ length: n }, (_, i) => from + i * step);

describe('example policy modules', () => {
  it('each default-exports a named PolicySet whose policies pass checkPolicy', () => {
    const sets: [PolicySet, string][] = [
      [stride, 'prefetch'],
      [lru, 'eviction'],
      [fifo, 'eviction'],
      [accessCount, 'placement'],
    ];
    for (const [set, kind] of sets) {
      expect(typeof set.name).toBe('string');
      const kinds = Object.keys(set).filter((k) => k !== 'name');
      expect(kinds).toEqual([kind]);
      checkPolicy(kind as 'prefetch', (set as unknown as Record<string, unknown>)[kind], 'examples');
    }
    expect([stride.name, lru.name, fifo.name, accessCount.name]).toEqual(['stride', 'lru', 'fifo', 'accessCount']);
  });
});

describe('stride prefetch', () => {
  const p = stridePrefetch({ ahead: 4 });

  it('a constant stride in the batch: takes `ahead` pages past its end along it', () => {
    expect(p.select([10, 13, 16], everything)).toEqual([19, 22, 25, 28]);
    expect(p.select([0, 2, 4, 6], everything)).toEqual([8, 10, 12, 14]);
  });

  it('a sequential run is the stride-1 case', () => {
    expect(p.select([100, 101, 102, 103], everything)).toEqual([104, 105, 106, 107]);
  });

  it('several streams in one batch: each run is extended; the jump between them is not a stride', () => {
    expect(p.select([0, 4, 8, 100, 101, 102], everything)).toEqual([12, 16, 20, 24, 103, 104, 105, 106]);
  });

  it('no run, no prefetch: a lone fault, two faults, irregular distances, steps past maxStride', () => {
    expect(p.select([], everything)).toEqual([]);
    expect(p.select([5], everything)).toEqual([]);
    expect(p.select([5, 9], everything)).toEqual([]); // one step is not a stride (minRun 3)
    expect(p.select([1, 2, 4, 7, 11], everything)).toEqual([]);
    expect(p.select([0, 100, 200, 300], everything)).toEqual([]); // farther apart than maxStride 64
    expect(stridePrefetch({ maxStride: 100, ahead: 1 }).select([0, 100, 200, 300], everything)).toEqual([400]);
  });

  it('minRun and ahead are tunable; the defaults take 16 pages', () => {
    expect(stridePrefetch({ minRun: 2, ahead: 2 }).select([5, 9], everything)).toEqual([13, 17]);
    expect(stridePrefetch().select([0, 1, 2], everything)).toEqual(range(3, 16));
    expect(stridePrefetch().name).toBe('stride(16)');
  });

  it('through the guard: the faults plus what may be populated and is not resident, sorted', () => {
    // a mapping of pages [0, 20); pages 12 and 13 are resident already
    const view: PrefetchView = { ...AT, resident: (q) => q === 12 || q === 13, allowed: (q) => q < 20 };
    expect(askPrefetch(p, [0, 2, 4], view, WHERE)).toEqual([0, 2, 4, 6, 8, 10]); // 12 resident
    expect(askPrefetch(stridePrefetch({ ahead: 10 }), [9, 10, 11], view, WHERE)).toEqual([9, 10, 11, 14, 15, 16, 17, 18, 19]); // 20.. outside
    expect(askPrefetch(stride.prefetch!, [3], view, WHERE)).toEqual([3]);
  });
});

describe('LRU eviction', () => {
  const policy = lruEviction();

  it('least recently accessed first: never-seen-used, then by last sweep seen, accessed-now last', () => {
    const now = unit(0, { accessed: true, lastAccess: 5 });
    const old = unit(1, { lastAccess: 2 });
    const older = unit(2, { lastAccess: 1 });
    const unused = unit(3, { lastAccess: 0, arrived: 9 });
    const c = [now, old, older, unused];
    expect(policy.victims(4, c)).toEqual([unused, older, old, now]);
    expect(policy.victims(2, c)).toEqual([unused, older]);
  });

  it('ties go by arrival (oldest first), then clock order', () => {
    const a = unit(0, { lastAccess: 3, arrived: 7, clock: 0 });
    const b = unit(1, { lastAccess: 3, arrived: 2, clock: 1 });
    const c = unit(2, { lastAccess: 3, arrived: 2, clock: 2 });
    const d = unit(3, { accessed: true, lastAccess: 4, arrived: 1, clock: 3 });
    const e = unit(4, { accessed: true, lastAccess: 4, arrived: 0, clock: 4 });
    expect(policy.victims(5, [a, b, c, d, e])).toEqual([b, c, a, e, d]);
  });

  it('frees at least `need` pages and no unit more than it takes; nothing for nothing', () => {
    const c = [unit(0, { pages: 16, lastAccess: 1 }), unit(16, { pages: 16, lastAccess: 2 }), unit(32, { pages: 8, lastAccess: 3 })];
    expect(policy.victims(1, c)).toEqual([c[0]]);
    expect(policy.victims(17, c)).toEqual([c[0], c[1]]);
    expect(policy.victims(1000, c)).toEqual(c);
    expect(policy.victims(0, c)).toEqual([]);
    expect(policy.victims(4, [])).toEqual([]);
  });

  it('through the guard: its victims are the candidates offered, in its order; it does not reorder the input', () => {
    const c = [unit(0, { accessed: true, lastAccess: 2 }), unit(1, { lastAccess: 1 }), unit(2, { lastAccess: 0 })];
    const before = [...c];
    expect(askEviction(policy, 2, c, WHERE)).toEqual([c[2], c[1]]);
    expect(askEviction(lru.eviction!, 3, c, WHERE)).toEqual([c[2], c[1], c[0]]);
    expect(c).toEqual(before);
  });
});

describe('FIFO eviction', () => {
  it('oldest arrival first whatever the use; ties by clock order; through the guard', () => {
    const hot = unit(0, { accessed: true, lastAccess: 9, arrived: 1 });
    const cold = unit(1, { arrived: 5 });
    const twin = unit(2, { arrived: 5, clock: 0 });
    expect(fifoEviction().victims(1, [cold, hot, twin])).toEqual([hot]);
    expect(askEviction(fifo.eviction!, 3, [cold, hot, twin], WHERE)).toEqual([hot, twin, cold]);
  });
});

describe('access-count placement', () => {
  const p = accessCountPlacement({ migrateAfter: 3 });

  it('copies until the page has faulted `migrateAfter` times on this device, then migrates', () => {
    expect(p.decide(ctx({ faults: 0 }))).toBe('copy'); // a prefetch candidate never faulted on
    expect(p.decide(ctx({ faults: 1 }))).toBe('copy');
    expect(p.decide(ctx({ faults: 2, write: true }))).toBe('copy');
    expect(p.decide(ctx({ faults: 3 }))).toBe('migrate');
    expect(p.decide(ctx({ faults: 10, write: true }))).toBe('migrate');
    expect(p.name).toBe('accessCount(3)');
    expect(accessCountPlacement().decide(ctx({ faults: 2 }))).toBe('migrate'); // default: the second fault
  });

  it('advice and thrashing first: system stays a copy, read-mostly reads copy, a page preferred here migrates at once', () => {
    expect(p.decide(ctx({ faults: 99, advice: { preferred: 'system' } }))).toBe('copy');
    expect(p.decide(ctx({ faults: 99, thrashing: true }))).toBe('copy');
    expect(p.decide(ctx({ faults: 99, advice: { readMostly: true } }))).toBe('copy');
    expect(p.decide(ctx({ faults: 99, advice: { readMostly: true }, write: true }))).toBe('migrate');
    expect(p.decide(ctx({ faults: 1, advice: { preferred: 0 } }))).toBe('migrate');
    expect(p.decide(ctx({ faults: 1, device: 1, advice: { preferred: 0 } }))).toBe('copy'); // preferred elsewhere: counts as usual
  });

  it('through the guard: every answer is one the mechanism accepts', () => {
    for (const faults of [0, 1, 2, 3, 4])
      for (const write of [false, true])
        for (const advice of [{}, { preferred: 'system' as const }, { readMostly: true }, { preferred: 0 }])
          expect(['migrate', 'copy']).toContain(askPlacement(accessCount.placement!, ctx({ faults, write, advice }), WHERE));
  });
});
