// VmaList: the kernel's split and merge rules on [start, end) page ranges.
import { describe, expect, it } from 'vitest';
import { VmaList, canRead, canWrite, type Prot, type Vma } from '../../src/mm/vmaList.ts';
import { hx, throwsSync } from './helpers.ts';

const vma = (start: number, end: number, prot: Prot = 'rw', extra: Partial<Vma> = {}): Vma => ({
  start,
  end,
  prot,
  shared: false,
  huge: false,
  ...extra,
});

/** The list as compact tuples, for readable expectations. */
const shape = (l: VmaList): [number, number, Prot][] => l.all().map((v) => [v.start, v.end, v.prot]);

describe('canRead / canWrite', () => {
  it('follow none < r < rw', () => {
    expect([canRead('none'), canRead('r'), canRead('rw')]).toEqual([false, true, true]);
    expect([canWrite('none'), canWrite('r'), canWrite('rw')]).toEqual([false, false, true]);
  });
});

describe('VmaList.insert', () => {
  it('keeps VMAs sorted whatever the insertion order', () => {
    const l = new VmaList();
    l.insert(vma(50, 60, 'r'));
    l.insert(vma(10, 20, 'rw'));
    l.insert(vma(30, 40, 'none'));
    expect(shape(l)).toEqual([
      [10, 20, 'rw'],
      [30, 40, 'none'],
      [50, 60, 'r'],
    ]);
  });

  it('merges with an equal neighbour on the left, the right, and both sides', () => {
    const l = new VmaList();
    l.insert(vma(10, 20));
    l.insert(vma(20, 30)); // right of the first
    expect(shape(l)).toEqual([[10, 30, 'rw']]);
    l.insert(vma(5, 10)); // left of it
    expect(shape(l)).toEqual([[5, 30, 'rw']]);
    l.insert(vma(40, 50));
    l.insert(vma(30, 40)); // fills the gap: three become one
    expect(shape(l)).toEqual([[5, 50, 'rw']]);
  });

  it('does not merge neighbours whose prot, shared or huge differ', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'rw'));
    l.insert(vma(20, 30, 'r'));
    l.insert(vma(30, 40, 'r', { shared: true }));
    l.insert(vma(40, 50, 'r', { shared: true, huge: true }));
    expect(l.all().length).toBe(4);
  });

  it('does not merge equal VMAs separated by a hole', () => {
    const l = new VmaList();
    l.insert(vma(10, 20));
    l.insert(vma(21, 30));
    expect(shape(l)).toEqual([
      [10, 20, 'rw'],
      [21, 30, 'rw'],
    ]);
  });

  it('refuses an overlapping insert and stores a copy of its argument', () => {
    const l = new VmaList();
    const v = vma(10, 20);
    l.insert(v);
    v.end = 99; // mutating the caller's object must not change the list
    expect(shape(l)).toEqual([[10, 20, 'rw']]);
    expect(() => l.insert(vma(19, 25))).toThrow(/overlaps/);
    expect(() => l.insert(vma(0, 11))).toThrow(/overlaps/);
    expect(shape(l)).toEqual([[10, 20, 'rw']]);
  });
});

describe('VmaList.remove', () => {
  it('splits a VMA when removing its middle', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'r'));
    l.remove(13, 15);
    expect(shape(l)).toEqual([
      [10, 13, 'r'],
      [15, 20, 'r'],
    ]);
  });

  it('trims at the edges and drops fully covered VMAs', () => {
    const l = new VmaList();
    l.insert(vma(10, 20));
    l.insert(vma(30, 40, 'r'));
    l.insert(vma(50, 60, 'none'));
    l.remove(10, 12); // left edge
    l.remove(58, 60); // right edge
    l.remove(25, 45); // a whole VMA plus holes around it
    expect(shape(l)).toEqual([
      [12, 20, 'rw'],
      [50, 58, 'none'],
    ]);
  });

  it('across several VMAs trims the first and the last', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'rw'));
    l.insert(vma(20, 30, 'r'));
    l.insert(vma(30, 40, 'rw'));
    l.remove(15, 35);
    expect(shape(l)).toEqual([
      [10, 15, 'rw'],
      [35, 40, 'rw'],
    ]);
  });

  it('of a hole changes nothing', () => {
    const l = new VmaList();
    l.insert(vma(10, 20));
    l.remove(20, 30);
    l.remove(0, 10);
    expect(shape(l)).toEqual([[10, 20, 'rw']]);
  });
});

describe('VmaList.protect', () => {
  it('splits into three over a sub-range and merges back when protected back', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'rw'));
    l.protect(13, 15, 'r');
    expect(shape(l)).toEqual([
      [10, 13, 'rw'],
      [13, 15, 'r'],
      [15, 20, 'rw'],
    ]);
    l.protect(13, 15, 'rw');
    expect(shape(l)).toEqual([[10, 20, 'rw']]);
  });

  it('over adjacent VMAs of different prot makes one VMA', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'rw'));
    l.insert(vma(20, 30, 'none'));
    l.protect(10, 30, 'r');
    expect(shape(l)).toEqual([[10, 30, 'r']]);
  });

  it('keeps shared and huge of every piece', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'rw', { shared: true }));
    l.insert(vma(20, 30, 'rw', { huge: true }));
    l.protect(15, 25, 'r');
    expect(l.all().map((v) => [v.start, v.end, v.prot, v.shared, v.huge])).toEqual([
      [10, 15, 'rw', true, false],
      [15, 20, 'r', true, false],
      [20, 25, 'r', false, true],
      [25, 30, 'rw', false, true],
    ]);
  });

  it('over a hole is ENOMEM naming the first unmapped address, and changes nothing', () => {
    const l = new VmaList();
    l.insert(vma(10, 20, 'rw'));
    l.insert(vma(25, 30, 'rw'));
    const e = throwsSync('ENOMEM', () => l.protect(15, 28, 'r'));
    expect(e.address).toBe(20 * 4096);
    expect(e.message).toContain(hx(20 * 4096));
    expect(shape(l)).toEqual([
      [10, 20, 'rw'],
      [25, 30, 'rw'],
    ]);
    // A hole at the very start of the range too.
    expect(throwsSync('ENOMEM', () => l.protect(5, 12, 'r')).address).toBe(5 * 4096);
  });
});

describe('VmaList.find', () => {
  const l = new VmaList();
  // Seven VMAs so the binary search takes both branches at several depths.
  for (let i = 0; i < 7; i++) l.insert(vma(10 + i * 10, 15 + i * 10, i % 2 ? 'r' : 'rw'));

  it('finds the VMA at its first and last page, and nothing at its end or in holes', () => {
    for (let i = 0; i < 7; i++) {
      const s = 10 + i * 10;
      expect(l.find(s)?.start).toBe(s);
      expect(l.find(s + 4)?.start).toBe(s);
      expect(l.find(s + 5)).toBeUndefined(); // end is exclusive
      expect(l.find(s - 1)).toBeUndefined();
    }
    expect(l.find(0)).toBeUndefined();
    expect(l.find(1_000_000)).toBeUndefined();
  });

  it('on an empty list finds nothing', () => {
    expect(new VmaList().find(0)).toBeUndefined();
  });
});

describe('VmaList.overlapping / firstHole', () => {
  const l = new VmaList();
  l.insert(vma(10, 20, 'rw'));
  l.insert(vma(20, 30, 'r'));
  l.insert(vma(40, 50, 'rw'));

  it('overlapping clips to the range', () => {
    expect(l.overlapping(15, 45).map((v) => [v.start, v.end, v.prot])).toEqual([
      [15, 20, 'rw'],
      [20, 30, 'r'],
      [40, 45, 'rw'],
    ]);
    expect(l.overlapping(30, 40)).toEqual([]);
  });

  it('firstHole gives the first unmapped page or -1', () => {
    expect(l.firstHole(10, 30)).toBe(-1); // two adjacent VMAs, no hole
    expect(l.firstHole(12, 45)).toBe(30);
    expect(l.firstHole(5, 15)).toBe(5);
    expect(l.firstHole(25, 31)).toBe(30); // hole right at the end
    expect(l.firstHole(40, 50)).toBe(-1);
    expect(l.firstHole(60, 61)).toBe(60);
  });
});

describe('VmaList.findFree', () => {
  it('returns the lowest gap at or above min that fits n pages', () => {
    const l = new VmaList();
    l.insert(vma(16, 20));
    l.insert(vma(22, 30));
    expect(l.findFree(2, 16, 1000, 1)).toBe(20); // exactly fits the gap
    expect(l.findFree(3, 16, 1000, 1)).toBe(30); // does not fit: after the last VMA
    expect(l.findFree(1, 0, 1000, 1)).toBe(0);
    expect(l.findFree(16, 0, 1000, 1)).toBe(0); // [0, 16) ends where the first VMA starts
    expect(l.findFree(17, 0, 1000, 1)).toBe(30);
  });

  it('aligns the start to `align` pages', () => {
    const l = new VmaList();
    l.insert(vma(16, 20));
    expect(l.findFree(4, 16, 10_000, 512)).toBe(512);
    l.insert(vma(512, 513));
    expect(l.findFree(4, 16, 10_000, 512)).toBe(1024);
    expect(l.findFree(4, 16, 10_000, 8)).toBe(24); // 20 rounded up to 8
    expect(l.findFree(1, 3, 10_000, 4)).toBe(4); // min itself is rounded up
  });

  it('is -1 when nothing fits below the limit', () => {
    const l = new VmaList();
    l.insert(vma(16, 100));
    expect(l.findFree(10, 16, 105, 1)).toBe(-1);
    expect(l.findFree(5, 16, 105, 1)).toBe(100);
    expect(l.findFree(1, 16, 100, 1)).toBe(-1);
  });
});
