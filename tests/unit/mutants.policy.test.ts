// The policies (src/policy/) at their edges, without a GPU: the guard's answers to a policy that
// errs (each error names the kind of policy, the policy, where it was asked and what it returned),
// the built-ins' names (they label traces, plots and sys.explain), the density prefetcher's
// boundaries, and the thrashing detector's window, pin and forget. Written while mutation
// testing (docs/testing.md) found these unchecked; each case is a behaviour a policy author or
// a reader of a trace relies on.
import { describe, expect, it } from 'vitest';
import { HmmError } from '../../src/errors.ts';
import { capBatching } from '../../src/policy/batching.ts';
import { clockEviction } from '../../src/policy/eviction.ts';
import { askBatching, askEviction, askPlacement, askPrefetch, checkPolicy, MAX_NAP_MS } from '../../src/policy/guard.ts';
import { advicePlacement } from '../../src/policy/placement.ts';
import { DEFAULT_PREFETCH, densityPrefetch, prefetchPages, type PrefetchConfig } from '../../src/policy/prefetch.ts';
import { DEFAULT_THRASH, ThrashDetector } from '../../src/policy/thrashing.ts';
import type { BatchContext, BatchPlan, EvictionCandidate, PlacementContext, PrefetchView } from '../../src/policy/types.ts';

const AT = { device: 0, space: 1, dispatch: 1, round: 1 };
const where = "dispatch 'k' round 2";
const everything: PrefetchView = { ...AT, resident: () => false, allowed: () => true };
const round: BatchContext = { faulted: 3, frames: 8, batchPages: 8, thrashing: false, thrashNapMs: 1 };
const ctx = (over: Partial<PlacementContext> = {}): PlacementContext => ({
  page: 5,
  device: 0,
  write: false,
  advice: {},
  thrashing: false,
  faults: 1,
  prefetch: false,
  ...over,
});
const unit = (page: number): EvictionCandidate => ({ page, pages: 16, owner: 1, accessed: false, dirty: false, arrived: 0, lastAccess: 0, clock: page });

/** f must throw an EINVAL HmmError whose message is exactly `message`. */
function einval(f: () => unknown, message: string): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(HmmError);
  expect((err as HmmError).code).toBe('EINVAL');
  expect((err as HmmError).message).toBe(`EINVAL: ${message}`);
}

describe('the guard names the kind of policy, the policy, the place and the answer', () => {
  it('a prefetch policy that answers something other than an array, or a page that is not one', () => {
    einval(
      () => askPrefetch({ name: 'odd', select: () => ({ pages: [1] }) as unknown as number[] }, [1], everything, where),
      `prefetch policy 'odd' returned an object in ${where}, not an array of pages`,
    );
    einval(() => askPrefetch({ name: 'neg', select: () => [-1] }, [1], everything, where), `prefetch policy 'neg' returned -1 in ${where}, not a page number`);
    einval(
      () => askPrefetch({ name: 'str', select: () => ['2'] as unknown as number[] }, [1], everything, where),
      `prefetch policy 'str' returned '2' in ${where}, not a page number`,
    );
  });

  it('page 0 is a page like any other', () => {
    expect(askPrefetch({ name: 'zero', select: () => [0] }, [5], everything, where)).toEqual([0, 5]);
  });

  it('an eviction policy that throws, or answers something other than an array', () => {
    einval(
      () =>
        askEviction(
          {
            name: 'boom',
            victims: () => {
              throw new Error('kaput');
            },
          },
          1,
          [],
          where,
        ),
      `eviction policy 'boom' threw in ${where}: kaput`,
    );
    einval(
      () =>
        askEviction(
          {
            name: 'boom',
            victims: () => {
              throw 'a string';
            },
          },
          1,
          [],
          where,
        ),
      `eviction policy 'boom' threw in ${where}: a string`,
    );
    einval(
      () => askEviction({ name: 'one', victims: () => unit(0) as unknown as EvictionCandidate[] }, 1, [unit(0)], where),
      `eviction policy 'one' returned an object in ${where}, not an array of candidates`,
    );
  });

  it('a placement policy: each of the three answers passes, anything else is named', () => {
    for (const answer of ['migrate', 'copy', 'pin'] as const) expect(askPlacement({ name: 'p', decide: () => answer }, ctx(), where)).toBe(answer);
    einval(
      () =>
        askPlacement(
          {
            name: 'p',
            decide: () => {
              throw new Error('no');
            },
          },
          ctx(),
          where,
        ),
      `placement policy 'p' threw in ${where}: no`,
    );
    einval(
      () => askPlacement({ name: 'p', decide: () => ['copy'] as unknown as 'copy' }, ctx(), where),
      `placement policy 'p' returned an array of 1 in ${where}, not 'migrate', 'copy' or 'pin'`,
    );
    einval(
      () => askPlacement({ name: 'p', decide: () => undefined as unknown as 'copy' }, ctx(), where),
      `placement policy 'p' returned undefined in ${where}, not 'migrate', 'copy' or 'pin'`,
    );
  });

  it('a batching plan that is not an object, or has no usable take', () => {
    const plan = (got: unknown) => ({ name: 'b', plan: () => got as BatchPlan });
    einval(() => askBatching(plan(null), round, where), `batching policy 'b' returned null in ${where}, not a plan { take, napMs }`);
    einval(() => askBatching(plan(7), round, where), `batching policy 'b' returned 7 in ${where}, not a plan { take, napMs }`);
    einval(() => askBatching(plan({ take: 0, napMs: 0 }), round, where), `batching policy 'b' returned 0 in ${where}, not a page count (take) of at least 1`);
  });

  it('a nap must be a number of milliseconds in [0, MAX_NAP_MS]: both ends pass, past them is named', () => {
    const nap = (napMs: unknown) => askBatching({ name: 'b', plan: () => ({ take: 1, napMs }) as BatchPlan }, round, where);
    expect(nap(0)).toEqual({ take: 1, napMs: 0 });
    expect(nap(MAX_NAP_MS)).toEqual({ take: 1, napMs: MAX_NAP_MS });
    einval(() => nap(-1), `batching policy 'b' returned -1 in ${where}, not a nap in [0, ${MAX_NAP_MS}] ms`);
    einval(() => nap(MAX_NAP_MS + 1), `batching policy 'b' returned ${MAX_NAP_MS + 1} in ${where}, not a nap in [0, ${MAX_NAP_MS}] ms`);
    einval(() => nap('5'), `batching policy 'b' returned '5' in ${where}, not a nap in [0, ${MAX_NAP_MS}] ms`);
    einval(() => nap(Number.NaN), `batching policy 'b' returned NaN in ${where}, not a nap in [0, ${MAX_NAP_MS}] ms`);
  });

  it('checkPolicy: each kind wants its own method, and says which', () => {
    checkPolicy('prefetch', { name: 'p', select: () => [] }, 'w');
    checkPolicy('placement', { name: 'p', decide: () => 'copy' }, 'w');
    checkPolicy('batching', { name: 'p', plan: () => ({ take: 1, napMs: 0 }) }, 'w');
    einval(
      () => checkPolicy('prefetch', { name: 'p', victims: () => [] }, 'w'),
      'w: prefetch policy an object is not an object with a string name and a select() method',
    );
    einval(
      () => checkPolicy('batching', { name: 'p', decide: () => 'copy' }, 'w'),
      'w: batching policy an object is not an object with a string name and a plan() method',
    );
    einval(
      () => checkPolicy('placement', { name: 'p', plan: () => ({}) }, 'w'),
      'w: placement policy an object is not an object with a string name and a decide() method',
    );
  });

  it('checkPolicy refuses null, arrays and strings, describing each', () => {
    einval(
      () => checkPolicy('eviction', null, 'createSystem devices[1].policy'),
      'createSystem devices[1].policy: eviction policy null is not an object with a string name and a victims() method',
    );
    einval(() => checkPolicy('eviction', [], 'w'), 'w: eviction policy an array of 0 is not an object with a string name and a victims() method');
    einval(() => checkPolicy('eviction', 'clock', 'w'), "w: eviction policy 'clock' is not an object with a string name and a victims() method");
    einval(
      () => checkPolicy('eviction', { name: 7, victims: () => [] }, 'w'),
      'w: eviction policy an object is not an object with a string name and a victims() method',
    );
    // a function is not a policy object, even one carrying the method (clockEviction passed where clockEviction() belongs)
    const factory = Object.assign(() => clockEviction(), { victims: () => [] });
    expect(() => checkPolicy('eviction', factory, 'w')).toThrow(/EINVAL: w: eviction policy .* is not an object with a string name and a victims\(\) method/);
  });
});

describe("the built-ins' names", () => {
  it('say which built-in and, for prefetch, its settings', () => {
    expect(capBatching().name).toBe('cap');
    expect(clockEviction().name).toBe('clock');
    expect(advicePlacement().name).toBe('advice');
    expect(densityPrefetch({ enabled: true, threshold: 30, upgradePages: 1 }).name).toBe('density 30% / 4 KiB');
    expect(densityPrefetch({ ...DEFAULT_PREFETCH, enabled: false }).name).toBe('none');
  });
});

describe('advice placement', () => {
  it('accessedBy alone does not keep the page in RAM: without a preferred location it migrates', () => {
    expect(advicePlacement().decide(ctx({ advice: { accessedBy: [0] } }))).toBe('migrate');
    expect(advicePlacement().decide(ctx({ advice: { preferred: 1, accessedBy: [0] } }))).toBe('copy');
  });
});

describe('density prefetch at its edges', () => {
  const view = (resident: (p: number) => boolean, allowed: (p: number) => boolean = () => true): PrefetchView => ({ ...AT, resident, allowed });
  const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
  const none = (): boolean => false;
  const one = (threshold: number): PrefetchConfig => ({ enabled: true, threshold, upgradePages: 1 });

  it('every fault of a block is upgraded, not only the last one', () => {
    const out = prefetchPages([3, 40], view(none), { ...DEFAULT_PREFETCH, threshold: 100 });
    expect(out).toEqual([...range(0, 16), ...range(32, 48)]);
  });

  it('a region exactly as dense as the threshold is not taken', () => {
    // upgrade size 1: page 0 faulted, page 1 not: 1 of 2 is 50 %, not more than 50 %
    expect(prefetchPages([0], view(none), one(50))).toEqual([0]);
    // one more page than the threshold tips it: 1 of 2 is more than 49 %, and so on up the block
    expect(prefetchPages([0], view(none), one(49))).toEqual(range(0, 512));
  });

  it("density counts the region's own pages, not the first page of the next one", () => {
    // page 2 resident is outside [0, 2): that region stays 50 %; [0, 4) is 2 of 4, 50 % again
    expect(
      prefetchPages(
        [0],
        view((p) => p === 2),
        one(50),
      ),
    ).toEqual([0]);
  });

  it('a dense region with no fault in it is left alone', () => {
    // [480, 512) is mostly resident, but nothing there faulted: its three other pages stay where they are
    const out = prefetchPages(
      [0],
      view((p) => p >= 480 && p < 509),
      DEFAULT_PREFETCH,
    );
    expect(out).toEqual(range(0, 16));
  });

  it('holes do not count against density, resident pages count for it', () => {
    // 0..15 upgraded; only 0..23 may be populated: [0, 32) is 16 of 24, more than 51 %
    expect(
      prefetchPages(
        [0],
        view(none, (p) => p < 24),
        DEFAULT_PREFETCH,
      ),
    ).toEqual(range(0, 24));
    // 16..31 resident (and so not to be brought): [0, 64) is 32 of 64, not more than 51 %
    const resident = (p: number): boolean => p >= 16 && p < 32;
    expect(
      prefetchPages(
        [0],
        view(resident, (p) => !resident(p)),
        DEFAULT_PREFETCH,
      ),
    ).toEqual(range(0, 16));
  });
});

describe('the thrashing detector', () => {
  it('by default: three bounces within 50 ms pin a page for a second', () => {
    const d = new ThrashDetector();
    expect(d.config).toEqual(DEFAULT_THRASH);
    expect(DEFAULT_THRASH).toEqual({ enabled: true, windowMs: 50, threshold: 3, pinMs: 1000, napMs: 1 });
    expect(d.record(1, 'toDevice', 0)).toBe(false);
    expect(d.record(1, 'toSystem', 50)).toBe(false);
    expect(d.record(1, 'toDevice', 100)).toBe(false);
    expect(d.record(1, 'toSystem', 150)).toBe(true);
    expect(d.isPinned(1, 1149)).toBe(true);
    expect(d.isPinned(1, 1150)).toBe(false);
  });

  it("each detector has its own settings: changing one's config leaves the defaults alone", () => {
    const d = new ThrashDetector();
    d.config.windowMs = 1;
    expect(new ThrashDetector().config.windowMs).toBe(50);
    expect(DEFAULT_THRASH.windowMs).toBe(50);
  });

  it('a move exactly windowMs after the last is still a bounce; one later is not', () => {
    const d = new ThrashDetector();
    d.config = { enabled: true, windowMs: 10, threshold: 1, pinMs: 100, napMs: 0 };
    d.record(1, 'toDevice', 0);
    expect(d.record(1, 'toSystem', 10)).toBe(true);
    d.record(2, 'toDevice', 0);
    expect(d.record(2, 'toSystem', 11)).toBe(false);
  });

  it('pin(page, now) pins it for pinMs: pinned until the last millisecond, free from then', () => {
    const d = new ThrashDetector();
    d.config = { ...d.config, pinMs: 100 };
    d.pin(9, 1000);
    expect(d.isPinned(9, 1000)).toBe(true);
    expect(d.isPinned(9, 1099)).toBe(true);
    expect(d.isPinned(9, 1100)).toBe(false);
    expect(d.isPinned(9, 1050)).toBe(false); // the epoch ended: it is not pinned again by asking earlier
  });

  it('forget(start, end) forgets [start, end), not the pages beside it', () => {
    const d = new ThrashDetector();
    d.config = { enabled: true, windowMs: 10, threshold: 2, pinMs: 100, napMs: 0 };
    for (const p of [9, 10, 19, 20]) d.pin(p, 0);
    // pages 9 and 20 have also bounced once: forgetting the range must not reset them
    for (const p of [9, 10, 20]) {
      d.record(p, 'toDevice', 0);
      d.record(p, 'toSystem', 1);
    }
    d.forget(10, 20);
    expect([9, 10, 19, 20].map((p) => d.isPinned(p, 50))).toEqual([true, false, false, true]);
    expect(d.record(9, 'toDevice', 2)).toBe(true);
    expect(d.record(20, 'toDevice', 2)).toBe(true);
    expect(d.record(10, 'toDevice', 2)).toBe(false); // a fresh history: its first move
  });
});
