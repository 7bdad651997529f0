// The density prefetcher's decisions, without a GPU.
import { describe, expect, it } from 'vitest';
import { DEFAULT_PREFETCH, prefetchPages, type PrefetchView } from '../../src/policy/prefetch.ts';

/** Which fault round asks (a prefetch view's ids). */
const AT = { device: 0, space: 1, dispatch: 1, round: 1 };

const view = (resident: Set<number> = new Set(), allowed: (p: number) => boolean = () => true): PrefetchView => ({
  ...AT,
  resident: (p) => resident.has(p),
  allowed,
});

describe('prefetchPages', () => {
  it('disabled: exactly the faults, sorted and deduplicated', () => {
    expect(prefetchPages([9, 3, 3], view(), { ...DEFAULT_PREFETCH, enabled: false })).toEqual([3, 9]);
  });

  it('grows a fault to its aligned 64 KiB big page', () => {
    expect(prefetchPages([517], view(), DEFAULT_PREFETCH)).toEqual(Array.from({ length: 16 }, (_, i) => 512 + i));
  });

  it('takes a subregion whole once more than half of it is resident or selected', () => {
    // pages 0..15 resident, fault at 16: the 32-page subregion becomes full, then 64 is 32/64 (not > 51 %)
    const res = new Set(Array.from({ length: 16 }, (_, i) => i));
    const out = prefetchPages([16], view(res), DEFAULT_PREFETCH);
    expect(out).toEqual(Array.from({ length: 16 }, (_, i) => 16 + i));
    // with 0..47 resident, a fault at 48 fills 48..63, then 64 of 128 is not over 51 %: stop
    const res2 = new Set(Array.from({ length: 48 }, (_, i) => i));
    expect(prefetchPages([48], view(res2), DEFAULT_PREFETCH).length).toBe(16);
    // with 0..79 resident, a fault at 80 fills 80..95 and then the 128-page region (96/128 > 51 %)
    const res3 = new Set(Array.from({ length: 80 }, (_, i) => i));
    expect(prefetchPages([80], view(res3), DEFAULT_PREFETCH)).toEqual(Array.from({ length: 48 }, (_, i) => 80 + i));
  });

  it('a dense block is taken whole, but never beyond its 2 MiB block', () => {
    const res = new Set(Array.from({ length: 300 }, (_, i) => 512 + i));
    const out = prefetchPages([512 + 300], view(res), DEFAULT_PREFETCH);
    expect(out[0]).toBe(812);
    expect(out[out.length - 1]).toBe(1023);
    expect(out.length).toBe(1024 - 812);
  });

  it('never adds a page the view refuses (holes, shared, other VMAs), but keeps the faults', () => {
    const out = prefetchPages(
      [5],
      view(new Set(), (p) => p >= 4 && p < 8),
      DEFAULT_PREFETCH,
    );
    expect(out).toEqual([4, 5, 6, 7]);
    expect(
      prefetchPages(
        [5],
        view(new Set(), () => false),
        DEFAULT_PREFETCH,
      ),
    ).toEqual([5]);
  });

  it('threshold 100 only upgrades; threshold 0 fills the block around any fault', () => {
    expect(prefetchPages([0], view(), { ...DEFAULT_PREFETCH, threshold: 100 }).length).toBe(16);
    expect(prefetchPages([0], view(), { ...DEFAULT_PREFETCH, threshold: 0 }).length).toBe(512);
  });
});
