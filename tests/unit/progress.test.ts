// ProgressRule (src/device/progress.ts, design-notes §20): the bookkeeping that keeps a
// replayable dispatch from livelocking when its working set exceeds the device. Pure logic:
// launches are described by (misses, faulted invocations), fault rounds by their keys.
import { describe, expect, it } from 'vitest';
import { ProgressRule } from '../../src/device/progress.ts';

const key = (page: number, write = false): number => page * 2 + (write ? 1 : 0);

describe('ProgressRule', () => {
  it('starts with every invocation in the window and the rule not in force', () => {
    const r = new ProgressRule(100);
    expect(r.window).toEqual([0, 100]);
    expect(r.whole).toBe(true);
    expect(r.active).toBe(false);
    expect(r.launched(0, 0)).toBe('done');
  });

  it('a fault on a key serviced since the last progress puts it in force and protects what was serviced', () => {
    const r = new ProgressRule(64);
    expect(r.launched(10, 8)).toBe('faulted');
    r.faults([key(1), key(2)]);
    r.servicedKeys([key(1), key(2, true)]);
    expect(r.active).toBe(false);
    expect(r.launched(10, 8)).toBe('faulted'); // no invocation finished
    r.faults([key(3), key(1)]); // page 1 again: it was lost before anyone could use it
    expect(r.active).toBe(true);
    expect([...r.protectedPages].sort()).toEqual([1, 2]);
    // from now on what is serviced is protected at once
    r.servicedKeys([key(3)]);
    expect(r.protectedPages.has(3)).toBe(true);
    expect(r.launched(5, 8)).toBe('faulted');
    expect(r.rounds).toBe(1);
  });

  it('a new fault (not a refault) leaves it off', () => {
    const r = new ProgressRule(8);
    r.launched(4, 4);
    r.servicedKeys([key(1)]);
    r.launched(4, 4);
    r.faults([key(1, true)]); // the write of a page read before is another key
    expect(r.active).toBe(false);
  });

  it('progress (fewer faulting invocations) forgets what was serviced and, with the whole window, ends the rule', () => {
    const r = new ProgressRule(16);
    r.launched(8, 8);
    r.servicedKeys([key(5)]);
    r.launched(8, 8);
    r.faults([key(5)]);
    expect(r.active).toBe(true);
    expect(r.launched(4, 4)).toBe('faulted'); // some finished
    expect(r.active).toBe(false);
    expect(r.protectedPages.size).toBe(0);
    r.faults([key(5)]); // no refault now: serviced was cleared
    expect(r.active).toBe(false);
  });

  it('no room under the rule halves the window down to one invocation, then refuses', () => {
    const r = new ProgressRule(10);
    expect(r.shrink()).toBe(true);
    expect(r.window).toEqual([0, 5]);
    expect(r.active).toBe(true);
    expect(r.whole).toBe(false);
    expect(r.shrink()).toBe(true);
    expect(r.window).toEqual([0, 3]);
    expect(r.shrink()).toBe(true);
    expect(r.window).toEqual([0, 2]);
    expect(r.shrink()).toBe(true);
    expect(r.window).toEqual([0, 1]);
    expect(r.shrink()).toBe(false);
  });

  it('a finished window moves on to the next invocations, twice as many, until the last', () => {
    const r = new ProgressRule(10);
    r.shrink();
    r.shrink(); // [0, 3)
    expect(r.launched(0, 0)).toBe('window-done');
    expect(r.window).toEqual([3, 9]);
    expect(r.launched(0, 0)).toBe('window-done');
    expect(r.window).toEqual([9, 10]);
    expect(r.whole).toBe(true);
    expect(r.launched(0, 0)).toBe('done');
  });

  it('progress inside a narrowed window keeps the rule (the window is not the whole dispatch)', () => {
    const r = new ProgressRule(10);
    r.shrink(); // [0, 5)
    r.launched(3, 3);
    expect(r.launched(2, 2)).toBe('faulted');
    expect(r.active).toBe(true);
  });
});
