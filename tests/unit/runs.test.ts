// runs() (hmm/migrate.ts) and frameRuns() (device/deviceMemory.ts): grouping pages and frames
// into contiguous runs so that work is batched, never done one page at a time.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { runs } from '../../src/hmm/migrate.ts';
import { frameRuns } from '../../src/device/deviceMemory.ts';

describe('runs', () => {
  it('is empty for no pages', () => {
    expect(runs([])).toEqual([]);
  });

  it('groups consecutive pages into [start, end) runs', () => {
    expect(runs([5])).toEqual([[5, 6]]);
    expect(runs([1, 2, 3, 7, 8, 10])).toEqual([
      [1, 4],
      [7, 9],
      [10, 11],
    ]);
  });

  it('sorts its input numerically (not as strings) and leaves it untouched', () => {
    const pages = [10, 9, 2, 100, 1, 3];
    expect(runs(pages)).toEqual([
      [1, 4],
      [9, 11],
      [100, 101],
    ]);
    expect(pages).toEqual([10, 9, 2, 100, 1, 3]);
  });

  it('covers exactly the input pages with sorted, disjoint, non-adjacent runs (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 60 }), (pages) => {
        const out = runs(pages);
        const covered: number[] = [];
        for (const [s, e] of out) for (let p = s; p < e; p++) covered.push(p);
        expect(covered).toEqual([...pages].sort((a, b) => a - b));
        for (let i = 1; i < out.length; i++) expect(out[i]![0]).toBeGreaterThan(out[i - 1]![1]);
      }),
      { numRuns: 200 },
    );
  });

  // BUG (reported, minor): a page listed twice yields overlapping runs ([1,2] and [1,3]), so
  // callers that loop over runs() invalidate or fault the same page twice.
  it('treats a repeated page as one page', () => {
    expect(runs([1, 1, 2])).toEqual([[1, 3]]);
  });
});

describe('frameRuns', () => {
  it('is empty for no frames', () => {
    expect(frameRuns([], 4)).toEqual([]);
  });

  it('groups ascending consecutive frames, recording where each run starts in the input', () => {
    expect(frameRuns([3, 4, 5, 9, 10, 0], 10)).toEqual([
      { first: 3, count: 3, index: 0 },
      { first: 9, count: 2, index: 3 },
      { first: 0, count: 1, index: 5 },
    ]);
  });

  it('keeps the given order: descending frames are separate runs', () => {
    expect(frameRuns([5, 4, 3], 10).map((r) => r.count)).toEqual([1, 1, 1]);
  });

  it('never lets a run cross a buffer boundary (1 << shift frames per buffer)', () => {
    // shift 2: buffers hold frames 0-3, 4-7, 8-11.
    expect(frameRuns([2, 3, 4, 5, 6, 7, 8], 2)).toEqual([
      { first: 2, count: 2, index: 0 },
      { first: 4, count: 4, index: 2 },
      { first: 8, count: 1, index: 6 },
    ]);
    // shift 0: one frame per buffer, so every run is a single frame.
    expect(frameRuns([0, 1, 2], 0).map((r) => r.count)).toEqual([1, 1, 1]);
  });

  it('runs rebuild the input in order and stay inside one buffer (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 40 }), fc.integer({ min: 0, max: 6 }), (frames, shift) => {
        const out = frameRuns(frames, shift);
        const rebuilt: number[] = [];
        for (const r of out) {
          expect(r.index).toBe(rebuilt.length);
          expect(r.first >>> shift).toBe((r.first + r.count - 1) >>> shift);
          for (let k = 0; k < r.count; k++) rebuilt.push(r.first + k);
        }
        expect(rebuilt).toEqual(frames);
      }),
      { numRuns: 200 },
    );
  });
});
