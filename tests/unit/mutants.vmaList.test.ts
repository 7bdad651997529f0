// VmaList (src/mm/vmaList.ts) at its edges, without a GPU: advice keeps what it does not
// change and never merges differently advised neighbours, findFree never goes below `min`,
// a hole at page 0 is still a hole, and errors name the address. Written while mutation
// testing (docs/testing.md) found these unchecked.
import { describe, expect, it } from 'vitest';
import { VmaList, type Prot, type Vma } from '../../src/mm/vmaList.ts';
import { hx, throwsSync } from './helpers.ts';

const vma = (start: number, end: number, prot: Prot = 'rw', extra: Partial<Vma> = {}): Vma => ({ start, end, prot, shared: false, huge: false, ...extra });
const bounds = (l: VmaList): [number, number][] => l.all().map((v) => [v.start, v.end]);

describe('neighbours merge only when their advice is the same too', () => {
  it.each([
    ['preferred', { preferred: 'system' as const }],
    ['preferred device', { preferred: 1 }],
    ['readMostly', { readMostly: true }],
    ['accessedBy', { accessedBy: [0] }],
  ])('a neighbour differing only in %s stays apart', (_what, extra) => {
    const l = new VmaList();
    l.insert(vma(0, 10));
    l.insert(vma(10, 20, 'rw', extra));
    expect(bounds(l)).toEqual([
      [0, 10],
      [10, 20],
    ]);
  });

  it('advice over part of a mapping splits it, and the same advice over the rest merges it back', () => {
    const l = new VmaList();
    l.insert(vma(0, 30));
    l.advise(10, 20, { readMostly: true });
    expect(bounds(l)).toEqual([
      [0, 10],
      [10, 20],
      [20, 30],
    ]);
    l.advise(0, 30, { readMostly: true });
    expect(bounds(l)).toEqual([[0, 30]]);
  });
});

describe('advise', () => {
  it('changes only the advice it is given', () => {
    const l = new VmaList();
    l.insert(vma(0, 10));
    l.advise(0, 10, { preferred: 'system' });
    l.advise(0, 10, { readMostly: true });
    l.advise(0, 10, { accessedBy: [1] });
    expect(l.find(0)).toMatchObject({ preferred: 'system', readMostly: true, accessedBy: [1] });
    l.advise(0, 10, {});
    expect(l.find(0)).toMatchObject({ preferred: 'system', readMostly: true, accessedBy: [1] });
    l.advise(0, 10, { preferred: null, readMostly: false, accessedBy: [] });
    expect(l.find(0)).toEqual({ start: 0, end: 10, prot: 'rw', shared: false, huge: false, readMostly: false, accessedBy: [] });
  });

  it('keeps accessedBy sorted, as a copy of what it was given', () => {
    const l = new VmaList();
    l.insert(vma(0, 10));
    const devices = [2, 0, 10, 1];
    l.advise(0, 10, { accessedBy: devices });
    expect(l.find(0)!.accessedBy).toEqual([0, 1, 2, 10]);
    expect(devices).toEqual([2, 0, 10, 1]);
    devices.push(3);
    expect(l.find(0)!.accessedBy).toEqual([0, 1, 2, 10]);
  });

  it('the same devices in another order are the same advice: neighbours merge', () => {
    const l = new VmaList();
    l.insert(vma(0, 10));
    l.insert(vma(10, 20, 'r'));
    l.advise(0, 10, { accessedBy: [1, 0] });
    l.advise(10, 20, { accessedBy: [0, 1] });
    l.protect(10, 20, 'rw');
    expect(bounds(l)).toEqual([[0, 20]]);
  });
});

describe('holes at page 0 and errors that name the address', () => {
  it('mprotect and advise over a hole at page 0 are ENOMEM naming address 0, and change nothing', () => {
    const l = new VmaList();
    l.insert(vma(1, 4));
    expect(throwsSync('ENOMEM', () => l.protect(0, 4, 'r')).message).toContain(`page at ${hx(0)} is not mapped`);
    expect(throwsSync('ENOMEM', () => l.advise(0, 4, { readMostly: true })).message).toContain(`page at ${hx(0)} is not mapped`);
    expect(l.all()).toEqual([vma(1, 4)]);
  });

  it('an overlapping insert names the address it was asked to map', () => {
    const l = new VmaList();
    l.insert(vma(16, 32));
    expect(() => l.insert(vma(20, 40))).toThrow(`VmaList.insert: ${hx(20 * 4096)} overlaps an existing mapping`);
  });
});

describe('findFree', () => {
  it('never answers below min, whatever lies below it', () => {
    const l = new VmaList();
    l.insert(vma(0, 4));
    l.insert(vma(6, 8));
    expect(l.findFree(2, 10, 100, 1)).toBe(10);
    expect(l.findFree(2, 10, 100, 4)).toBe(12);
  });
});
