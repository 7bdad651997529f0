// PagePins (src/mm/pins.ts) on its own, without a GPU: which handles pin which pages, through
// mremap (move), munmap (drop) and unpin (release), as AddressSpace uses them for mm.pin().
// Written while mutation testing (docs/testing.md) found them reached by no unit test.
import { describe, expect, it } from 'vitest';
import { PagePins } from '../../src/mm/pins.ts';

describe('PagePins', () => {
  it('pins pages per handle; a page pinned twice counts once and stays pinned until both let go', () => {
    const pins = new PagePins();
    const a = pins.pin([1, 2], false);
    const b = pins.pin([2, 3], true);
    expect(pins.pinnedPages).toBe(3);
    expect([a.longterm, b.longterm]).toEqual([false, true]);
    expect(pins.holders(2)).toEqual([a, b]);
    expect(pins.holders(4)).toEqual([]);
    a.unpin();
    expect([a.isReleased, b.isReleased]).toEqual([true, false]);
    expect([1, 2, 3].map((p) => pins.isPinned(p))).toEqual([false, true, true]);
    expect(pins.holders(2)).toEqual([b]);
    b.unpin();
    expect(pins.pinnedPages).toBe(0);
  });

  it('a handle keeps its own copy of the pages; holders() is a copy too', () => {
    const pins = new PagePins();
    const pages = [5, 6];
    const h = pins.pin(pages, false);
    pages.push(7);
    expect(h.pages).toEqual([5, 6]);
    pins.holders(5).pop();
    expect(pins.holders(5)).toEqual([h]);
  });

  it('unpin is idempotent: a second unpin does not release a later pin of the same pages', () => {
    const pins = new PagePins();
    const a = pins.pin([1], false);
    a.unpin();
    const b = pins.pin([1], false);
    a.unpin();
    expect(pins.holders(1)).toEqual([b]);
    expect(a.isReleased).toBe(true);
  });

  it('move: the pins go with the pages, the handles learn the new pages, unpinned pages are skipped', () => {
    const pins = new PagePins();
    const h = pins.pin([10, 11], false);
    pins.move([10, 11, 12], [20, 21, 22]);
    expect(h.pages).toEqual([20, 21]);
    expect([10, 11, 12, 20, 21, 22].map((p) => pins.isPinned(p))).toEqual([false, false, false, true, true, false]);
    h.unpin();
    expect(pins.pinnedPages).toBe(0);
  });

  it('a handle only moves pages it has: the first of its pages too', () => {
    const pins = new PagePins();
    const h = pins.pin([10, 11], false);
    h.moved(10, 30);
    h.moved(99, 31);
    expect(h.pages).toEqual([30, 11]);
  });

  it('drop(start, end) ends the pins of [start, end) only; unpin afterwards is harmless', () => {
    const pins = new PagePins();
    const h = pins.pin([9, 10, 19, 20], false);
    pins.drop(10, 20);
    expect([9, 10, 19, 20].map((p) => pins.isPinned(p))).toEqual([true, false, false, true]);
    expect(() => h.unpin()).not.toThrow();
    expect(pins.pinnedPages).toBe(0);
  });
});
