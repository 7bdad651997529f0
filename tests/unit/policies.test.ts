// The built-in policies through the policy interfaces (src/policy/types.ts), and the guard that
// stands between a policy and the mechanism (src/policy/guard.ts). No GPU: policies are pure.
import { describe, expect, it } from 'vitest';
import { HmmError } from '../../src/errors.ts';
import { capBatching } from '../../src/policy/batching.ts';
import { clockEviction } from '../../src/policy/eviction.ts';
import { askBatching, askEviction, askPlacement, askPrefetch, checkPolicy, MAX_NAP_MS } from '../../src/policy/guard.ts';
import { advicePlacement } from '../../src/policy/placement.ts';
import { DEFAULT_PREFETCH, densityPrefetch, prefetchPages } from '../../src/policy/prefetch.ts';
import type { EvictionCandidate, PlacementContext, PrefetchView } from '../../src/policy/types.ts';

/** Which fault round asks (a prefetch view's ids). */
const AT = { device: 0, space: 1, dispatch: 1, round: 1 };

const unit = (page: number, accessed: boolean, pages = 16): EvictionCandidate => ({
  page,
  pages,
  owner: 1,
  accessed,
  dirty: false,
  arrived: 0,
  lastAccess: 0,
  clock: page,
});
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
const everything: PrefetchView = { ...AT, resident: () => false, allowed: () => true };

function throwsHmm(f: () => unknown, ...parts: string[]): HmmError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(HmmError);
  const e = err as HmmError;
  expect(e.code).toBe('EINVAL');
  for (const part of parts) expect(e.message).toContain(part);
  return e;
}

describe('built-in policies', () => {
  it('clock: untouched units first, in clock order, then touched ones; no more than needed', () => {
    const c = [unit(0, true), unit(16, false), unit(32, true), unit(48, false)];
    const clock = clockEviction();
    expect(clock.victims(16, c)).toEqual([c[1]]);
    expect(clock.victims(32, c)).toEqual([c[1], c[3]]);
    expect(clock.victims(40, c)).toEqual([c[1], c[3], c[0]]);
    expect(clock.victims(1000, c)).toEqual([c[1], c[3], c[0], c[2]]);
    expect(clock.victims(0, c)).toEqual([]);
    expect(clock.victims(16, [])).toEqual([]);
  });

  it('advice placement: each advice and thrashing says copy, otherwise migrate', () => {
    const p = advicePlacement();
    expect(p.decide(ctx())).toBe('migrate');
    expect(p.decide(ctx({ write: true }))).toBe('migrate');
    expect(p.decide(ctx({ advice: { preferred: 'system' } }))).toBe('copy');
    expect(p.decide(ctx({ advice: { preferred: 1, accessedBy: [0] } }))).toBe('copy');
    expect(p.decide(ctx({ advice: { preferred: 1 } }))).toBe('migrate'); // not an accessor: it pulls the page
    expect(p.decide(ctx({ advice: { preferred: 0, accessedBy: [0] } }))).toBe('migrate'); // preferred here
    expect(p.decide(ctx({ advice: { readMostly: true } }))).toBe('copy');
    expect(p.decide(ctx({ advice: { readMostly: true }, write: true }))).toBe('migrate');
    expect(p.decide(ctx({ thrashing: true }))).toBe('copy');
  });

  it('cap batching: at most the batch cap and half the device, at least one; naps only for thrashing pages', () => {
    const b = capBatching();
    expect(b.plan({ faulted: 100, frames: 64, batchPages: 256, thrashing: false, thrashNapMs: 3 })).toEqual({ take: 32, napMs: 0 });
    expect(b.plan({ faulted: 100, frames: 4096, batchPages: 40, thrashing: true, thrashNapMs: 3 })).toEqual({ take: 40, napMs: 3 });
    expect(b.plan({ faulted: 7, frames: 4096, batchPages: 256, thrashing: false, thrashNapMs: 3 }).take).toBe(7);
    expect(b.plan({ faulted: 7, frames: 1, batchPages: 256, thrashing: false, thrashNapMs: 3 }).take).toBe(1);
  });

  it('density prefetch is the density rule, under a name that says its settings', () => {
    const view: PrefetchView = { ...AT, resident: (p) => p >= 8 && p < 12, allowed: (p) => p < 512 };
    expect(densityPrefetch().select([3], view)).toEqual(prefetchPages([3], view, DEFAULT_PREFETCH));
    expect(densityPrefetch().name).toBe('density 51% / 64 KiB');
    expect(densityPrefetch({ ...DEFAULT_PREFETCH, enabled: false }).select([3], view)).toEqual([3]);
  });
});

describe('the policy guard', () => {
  it('prefetch: keeps the faults, adds what may be populated and is not resident, drops the rest; sorted, once each', () => {
    const view: PrefetchView = { ...AT, resident: (p) => p === 4, allowed: (p) => p !== 6 };
    const p = { name: 'mine', select: () => [9, 4, 6, 5, 5, 2] };
    expect(askPrefetch(p, [3, 2], view, 'dispatch k round 1')).toEqual([2, 3, 5, 9]);
  });

  it('a policy that throws, or answers nonsense, fails with EINVAL naming the policy and where', () => {
    const where = "dispatch 'k' round 3";
    throwsHmm(
      () =>
        askPrefetch(
          {
            name: 'boom',
            select: () => {
              throw new Error('kaput');
            },
          },
          [1],
          everything,
          where,
        ),
      "prefetch policy 'boom' threw",
      where,
      'kaput',
    );
    throwsHmm(
      () => askPrefetch({ name: 'odd', select: () => 'pages' as unknown as number[] }, [1], everything, where),
      "'odd'",
      "'pages'",
      'an array of pages',
    );
    throwsHmm(() => askPrefetch({ name: 'frac', select: () => [1.5] }, [1], everything, where), 'a page number');
    throwsHmm(() => askEviction({ name: 'e', victims: () => null as unknown as EvictionCandidate[] }, 1, [], where), "eviction policy 'e'", 'null');
    throwsHmm(() => askPlacement({ name: 'p', decide: () => 'move' as 'migrate' }, ctx(), where), "placement policy 'p'", "'move'");
    throwsHmm(
      () => askBatching({ name: 'b', plan: () => ({ take: 0, napMs: 0 }) }, { faulted: 3, frames: 8, batchPages: 8, thrashing: false, thrashNapMs: 1 }, where),
      'take',
    );
    throwsHmm(
      () =>
        askBatching(
          { name: 'b', plan: () => ({ take: 1, napMs: MAX_NAP_MS + 1 }) },
          { faulted: 3, frames: 8, batchPages: 8, thrashing: false, thrashNapMs: 1 },
          where,
        ),
      'nap',
    );
    throwsHmm(
      () =>
        askBatching(
          { name: 'b', plan: () => undefined as unknown as { take: number; napMs: number } },
          { faulted: 3, frames: 8, batchPages: 8, thrashing: false, thrashNapMs: 1 },
          where,
        ),
      'a plan',
    );
  });

  it("eviction: only candidates count, each once, in the policy's order", () => {
    const c = [unit(0, false), unit(16, false), unit(32, false)];
    const stranger = unit(48, false);
    const p = { name: 'x', victims: () => [c[2]!, stranger, c[0]!, c[2]!] };
    expect(askEviction(p, 32, c, 'w')).toEqual([c[2], c[0]]);
  });

  it('batching: take is kept within [1, faulted]; a missing nap is none', () => {
    const b = { name: 'b', plan: () => ({ take: 99 }) as unknown as { take: number; napMs: number } };
    expect(askBatching(b, { faulted: 5, frames: 64, batchPages: 64, thrashing: false, thrashNapMs: 1 }, 'w')).toEqual({ take: 5, napMs: 0 });
  });

  it('checkPolicy: an object with a string name and its method', () => {
    checkPolicy('eviction', clockEviction(), 'createSystem devices[0].policy');
    throwsHmm(() => checkPolicy('eviction', { name: 'x', select: () => [] }, 'createSystem devices[0].policy'), 'devices[0].policy', 'victims()');
    throwsHmm(() => checkPolicy('placement', { decide: () => 'copy' }, 'w'), 'placement policy', 'string name');
    throwsHmm(() => checkPolicy('batching', 7, 'w'), 'batching policy 7');
  });
});
