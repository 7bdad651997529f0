// SystemRam (src/mm/systemRam.ts) under pressure, without a GPU: deferred frees reaped before an
// allocation fails, reclaimers asked in order for exactly the shortfall and no more than needed,
// unregistering one, and aligned runs (huge pages) zeroed whole or not taken at all. Written
// while mutation testing (docs/testing.md) found these unchecked.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/constants.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';
import { throwsSync } from './helpers.ts';

const full = (frames: number): { ram: SystemRam; fs: number[] } => {
  const ram = new SystemRam(frames * PAGE_SIZE);
  return { ram, fs: ram.allocMany(frames, 'setup') };
};

describe('deferred frees', () => {
  it('freeWhenUnpinned frees the frame once no CPU thread pins the page, and not before', () => {
    const { ram, fs } = full(2);
    const pins = new Int32Array(8);
    pins[5] = 1;
    ram.freeWhenUnpinned(fs[0]!, pins, 5);
    ram.reap();
    expect(ram.freeFrames).toBe(0);
    expect(ram.refCount(fs[0]!)).toBe(1);
    pins[5] = 0;
    ram.reap();
    expect(ram.freeFrames).toBe(1);
    expect(ram.refCount(fs[0]!)).toBe(0);
  });

  it('an allocation that would fail reaps what is done first: alloc and allocMany', () => {
    const { ram, fs } = full(2);
    ram.freeWhen(fs[1]!, () => true);
    expect(ram.alloc('after a reap')).toBe(fs[1]);
    ram.freeWhen(fs[0]!, () => true);
    expect(ram.allocMany(1, 'after a reap')).toEqual([fs[0]]);
    ram.freeWhen(fs[0]!, () => false); // still in use: nothing to reap
    throwsSync('ENOMEM', () => ram.alloc('x'));
  });
});

describe('reclaimers under pressure', () => {
  it('are asked in order, each for what is still missing, until enough is free', () => {
    const { ram, fs } = full(4);
    const asked: [string, number][] = [];
    ram.onPressure((want) => {
      asked.push(['first', want]);
      ram.free(fs[0]!);
      return 1;
    });
    ram.onPressure((want) => {
      asked.push(['second', want]);
      ram.free(fs[1]!);
      ram.free(fs[2]!);
      return 2;
    });
    expect(ram.allocMany(2, 'a batch')).toHaveLength(2);
    expect(asked).toEqual([
      ['first', 2],
      ['second', 1],
    ]);
    expect(ram.freeFrames).toBe(1);
  });

  it('are not asked once the first freed enough, nor when nothing is missing', () => {
    const { ram, fs } = full(3);
    const asked: string[] = [];
    ram.onPressure(() => {
      asked.push('first');
      ram.free(fs[0]!);
      return 1;
    });
    ram.onPressure(() => {
      asked.push('second');
      return 0;
    });
    expect(ram.alloc('one frame')).toBe(fs[0]);
    expect(asked).toEqual(['first']);
    ram.free(fs[1]!);
    ram.alloc('one frame, one free');
    expect(asked).toEqual(['first']);
  });

  it('a single alloc on exhausted RAM asks them too', () => {
    const { ram, fs } = full(1);
    ram.onPressure(() => {
      ram.free(fs[0]!);
      return 1;
    });
    expect(ram.alloc('x')).toBe(fs[0]);
  });

  it('one unregistered is not asked again', () => {
    const { ram, fs } = full(1);
    let asked = 0;
    const off = ram.onPressure(() => {
      asked++;
      return 0;
    });
    off();
    throwsSync('ENOMEM', () => ram.alloc('x'));
    expect(asked).toBe(0);
    expect(ram.refCount(fs[0]!)).toBe(1);
  });
});

describe('aligned runs', () => {
  it('a run is zeroed whole, every frame with one reference, and nothing beside it is touched', () => {
    const { ram, fs } = full(4);
    for (const f of fs) ram.frame(f).fill(0xff);
    for (const f of fs.slice(1)) ram.free(f); // frame 0 stays: the run of 2 at frame 2
    expect(ram.allocRun(2)).toBe(2);
    expect(ram.frame(2).every((b) => b === 0) && ram.frame(3).every((b) => b === 0)).toBe(true);
    expect([ram.refCount(2), ram.refCount(3)]).toEqual([1, 1]);
    expect(ram.frame(0).every((b) => b === 0xff)).toBe(true);
    expect(ram.frame(1).every((b) => b === 0xff)).toBe(true); // free, but not part of the run
  });

  it('no run free: null, and nothing changes', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    const f = ram.alloc('x');
    ram.frame(f).fill(0xaa);
    expect(ram.allocRun(4)).toBeNull();
    expect(ram.frame(f).every((b) => b === 0xaa)).toBe(true);
    expect([ram.refCount(0), ram.refCount(1), ram.freeFrames]).toEqual([1, 0, 3]);
  });
});
