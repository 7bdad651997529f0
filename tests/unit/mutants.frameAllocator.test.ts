// FrameAllocator (src/mm/frameAllocator.ts) at its edges, without a GPU: an aligned run next to
// a frame in use, give() refusing frames out of range or not in use (naming the owner and the
// frame), and the lowest-first order of frames that come back from an aligned run. Written
// while mutation testing (docs/testing.md) found these unchecked.
import { describe, expect, it } from 'vitest';
import { FrameAllocator } from '../../src/mm/frameAllocator.ts';

describe('FrameAllocator edges', () => {
  it('an aligned run is free when its own frames are, whatever the frame after it', () => {
    const a = new FrameAllocator(64, 'test');
    const taken = a.take(17); // frames 0..16
    for (const f of taken.slice(0, 16)) a.give(f); // 16 stays in use
    expect(a.takeAligned(16)).toBe(0);
    expect(a.free).toBe(64 - 17);
  });

  it.each([-1, 64, 1.5, Number.NaN])('give(%s) is refused as out of range, naming the owner', (f) => {
    const a = new FrameAllocator(64, 'device 3 memory');
    expect(() => a.give(f)).toThrow(`device 3 memory: frame ${f} out of range`);
    expect(a.free).toBe(64);
  });

  it('give() of the first and the last frame is fine', () => {
    const a = new FrameAllocator(4, 'test');
    a.take(4);
    a.give(0);
    a.give(3);
    expect(a.free).toBe(2);
  });

  it('a double free is refused, naming the owner and the frame, and changes nothing', () => {
    const a = new FrameAllocator(8, 'SystemRam');
    const [f] = a.take(1);
    a.give(f!);
    expect(() => a.give(f!)).toThrow(`SystemRam: double free of frame ${f}`);
    expect(() => a.give(5)).toThrow('SystemRam: double free of frame 5'); // never taken
    expect(a.free).toBe(8);
    expect(a.take(8)).toHaveLength(8);
  });

  it('order() lists the free frames as take() will hand them out, without the stale ones', () => {
    const a = new FrameAllocator(8, 'test');
    expect(a.order()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(a.takeAligned(4)).toBe(0); // 0..3 still on the stack, stale
    a.give(2);
    expect(a.order()).toEqual([2, 4, 5, 6, 7]);
    expect(a.take(5)).toEqual([2, 4, 5, 6, 7]);
    expect(a.order()).toEqual([]);
  });

  it('frames of an aligned run given back in any order come out lowest first, once each', () => {
    const a = new FrameAllocator(32, 'test');
    expect(a.takeAligned(16)).toBe(0);
    a.give(3);
    a.give(5);
    expect(a.take(2)).toEqual([3, 5]);
    a.give(5);
    a.give(3);
    expect(a.take(3)).toEqual([3, 5, 16]);
  });

  it('order() lists the free frames as take() would hand them out, without the frames an aligned run took', () => {
    const a = new FrameAllocator(8, 'test');
    expect(a.order()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(a.takeAligned(4)).toBe(0); // 0..3 leave stale entries on the free list
    a.take(1); // 4
    a.give(4);
    expect(a.order()).toEqual([4, 5, 6, 7]);
    const order = a.order();
    expect(a.take(4)).toEqual(order);
    expect(a.order()).toEqual([]);
    a.give(2);
    expect(a.order()).toEqual([2]);
  });
});
