// The progress rule of a replayable dispatch (src/device/progress.ts, design-notes §20) as the
// dispatcher and the replay simulator drive it: launch, fault keys, serviced keys, shrink. Each
// test follows one story a dispatch can live through and checks what the dispatcher reads back
// (the verdict, the window, whether the rule is in force, the pages it keeps, the rounds).
// Keys are page*2 + write, as the fault service reports them.
import { describe, expect, it } from 'vitest';
import { ProgressRule } from '../../src/device/progress.ts';

const key = (page: number, write = false): number => page * 2 + (write ? 1 : 0);
const sorted = (s: ReadonlySet<number>): number[] => [...s].sort((a, b) => a - b);

/** A rule that has serviced `pages` in one round and then sees them fault again: in force. */
function inForce(invocations: number, pages: number[]): ProgressRule {
  const rule = new ProgressRule(invocations);
  expect(rule.launched(5, 4)).toBe('faulted');
  rule.faults(pages.map((p) => key(p)));
  rule.servicedKeys(pages.map((p) => key(p)));
  expect(rule.launched(5, 4)).toBe('faulted'); // no invocation finished
  rule.faults([key(pages[0]!)]);
  expect(rule.active).toBe(true);
  return rule;
}

describe('a dispatch the device can hold: the rule never comes into force', () => {
  it('starts with the whole dispatch as the window, nothing protected', () => {
    const rule = new ProgressRule(64);
    expect(rule.window).toEqual([0, 64]);
    expect(rule.whole).toBe(true);
    expect(rule.active).toBe(false);
    expect(rule.rounds).toBe(0);
    expect(rule.protectedPages.size).toBe(0);
  });

  it('a launch without misses is done; one with misses is a fault round', () => {
    const rule = new ProgressRule(8);
    expect(rule.launched(3, 2)).toBe('faulted');
    expect(rule.launched(0, 0)).toBe('done');
    expect(rule.rounds).toBe(0);
  });

  it('fresh faults after servicing other pages are no refault', () => {
    const rule = new ProgressRule(8);
    rule.launched(4, 4);
    rule.servicedKeys([key(1), key(2)]);
    rule.launched(4, 4);
    rule.faults([key(3), key(4)]);
    expect(rule.active).toBe(false);
    expect(rule.protectedPages.size).toBe(0);
  });

  it('a read fault on a page serviced for writing is another (page, access): no refault', () => {
    const rule = new ProgressRule(8);
    rule.launched(1, 1);
    rule.servicedKeys([key(7, true)]);
    rule.launched(1, 1);
    rule.faults([key(7)]);
    expect(rule.active).toBe(false);
  });

  it('pages serviced while the rule is not in force are not protected', () => {
    const rule = new ProgressRule(8);
    rule.launched(2, 2);
    rule.servicedKeys([key(1), key(2)]);
    expect(rule.protectedPages.size).toBe(0);
  });
});

describe('refaults without progress put the rule in force', () => {
  it('protects every page serviced since the last progress, reads and writes alike', () => {
    const rule = new ProgressRule(16);
    rule.launched(6, 3);
    rule.servicedKeys([key(10), key(11, true), key(12)]);
    rule.launched(6, 3);
    rule.faults([key(20), key(11, true)]);
    expect(rule.active).toBe(true);
    expect(sorted(rule.protectedPages)).toEqual([10, 11, 12]);
  });

  it('an equal number of faulted invocations is no progress', () => {
    const rule = new ProgressRule(16);
    rule.launched(6, 3);
    rule.servicedKeys([key(10)]);
    rule.launched(9, 3);
    rule.faults([key(10)]);
    expect(rule.active).toBe(true);
  });

  it('fewer faulted invocations is progress: what was serviced before is no refault', () => {
    const rule = new ProgressRule(16);
    rule.launched(6, 3);
    rule.servicedKeys([key(10)]);
    rule.launched(6, 2);
    rule.faults([key(10)]);
    expect(rule.active).toBe(false);
  });

  it('once in force, pages the service maps are protected too, by page', () => {
    const rule = inForce(16, [1, 2]);
    rule.servicedKeys([key(30, true), key(31)]);
    expect(sorted(rule.protectedPages)).toEqual([1, 2, 30, 31]);
  });

  it('counts the launches made while it is in force', () => {
    const rule = inForce(16, [1]);
    expect(rule.rounds).toBe(0);
    rule.launched(5, 4);
    rule.launched(5, 4);
    expect(rule.rounds).toBe(2);
  });

  it('progress with the window covering every invocation ends it and lets the pages go', () => {
    const rule = inForce(16, [1, 2]);
    expect(rule.launched(5, 3)).toBe('faulted');
    expect(rule.active).toBe(false);
    expect(rule.protectedPages.size).toBe(0);
    // and what was serviced before the progress is no refault
    rule.faults([key(1)]);
    expect(rule.active).toBe(false);
  });
});

describe('no room even so: the window narrows, then moves on', () => {
  it('halves the window (rounding up) down to one invocation, then refuses', () => {
    const rule = new ProgressRule(10);
    const windows: [number, number][] = [];
    while (rule.shrink()) windows.push([...rule.window]);
    expect(windows).toEqual([
      [0, 5],
      [0, 3],
      [0, 2],
      [0, 1],
    ]);
    expect(rule.window).toEqual([0, 1]);
    expect(rule.whole).toBe(false);
  });

  it('a window of two invocations can still shrink; a dispatch of one cannot', () => {
    const two = new ProgressRule(2);
    expect(two.shrink()).toBe(true);
    expect(two.window).toEqual([0, 1]);
    const one = new ProgressRule(1);
    expect(one.shrink()).toBe(false);
    expect(one.window).toEqual([0, 1]);
    expect(one.active).toBe(false);
  });

  it('shrinking puts the rule in force and drops the old protection and refault history', () => {
    const rule = inForce(16, [1, 2]);
    expect(rule.shrink()).toBe(true);
    expect(rule.active).toBe(true);
    expect(rule.protectedPages.size).toBe(0);
    rule.servicedKeys([key(5)]);
    expect(sorted(rule.protectedPages)).toEqual([5]);
    // the first launch of the narrowed window is a fresh start: any count of faulted invocations is progress
    expect(rule.launched(3, 100)).toBe('faulted');
    expect(rule.protectedPages.size).toBe(0);
    expect(rule.active).toBe(true); // progress, but the window is not the whole dispatch
  });

  it('from an inactive rule too (the service ran out of room at once)', () => {
    const rule = new ProgressRule(4);
    expect(rule.shrink()).toBe(true);
    expect(rule.active).toBe(true);
    expect(rule.window).toEqual([0, 2]);
  });

  it('a finished window moves on to the next invocations, twice as many, up to the end', () => {
    const rule = new ProgressRule(10);
    rule.shrink(); // [0, 5)
    rule.shrink(); // [0, 3)
    expect(rule.launched(0, 0)).toBe('window-done');
    expect(rule.window).toEqual([3, 9]);
    expect(rule.whole).toBe(false);
    expect(rule.launched(0, 0)).toBe('window-done');
    expect(rule.window).toEqual([9, 10]); // twice as many, cut at the last invocation
    expect(rule.whole).toBe(true);
    expect(rule.launched(0, 0)).toBe('done');
  });

  it('a window that does not start at the first invocation halves its own size', () => {
    const rule = new ProgressRule(10);
    rule.shrink(); // [0, 5)
    rule.shrink(); // [0, 3)
    rule.launched(0, 0); // [3, 9)
    expect(rule.shrink()).toBe(true);
    expect(rule.window).toEqual([3, 6]);
    expect(rule.shrink()).toBe(true);
    expect(rule.window).toEqual([3, 5]);
  });

  it('the next window never runs past the dispatch, even when doubling would', () => {
    const rule = new ProgressRule(3);
    rule.shrink(); // [0, 2)
    expect(rule.launched(0, 0)).toBe('window-done');
    expect(rule.window).toEqual([2, 3]);
    expect(rule.launched(0, 0)).toBe('done');
  });

  it('a finished window lets its protection go but keeps the rule in force until progress on the whole', () => {
    const rule = new ProgressRule(4);
    rule.shrink(); // [0, 2), in force
    rule.launched(2, 1);
    rule.servicedKeys([key(8)]);
    expect(sorted(rule.protectedPages)).toEqual([8]);
    expect(rule.launched(0, 0)).toBe('window-done');
    expect(rule.window).toEqual([2, 4]);
    expect(rule.protectedPages.size).toBe(0);
    expect(rule.active).toBe(true);
    // the last window is the whole rest of the dispatch: its first progress ends the rule
    expect(rule.launched(2, 1)).toBe('faulted');
    expect(rule.active).toBe(false);
    expect(rule.launched(0, 0)).toBe('done');
  });

  it('a window moved on after narrowing counts its launches as rounds of the rule', () => {
    const rule = new ProgressRule(4);
    rule.shrink();
    rule.launched(1, 1);
    rule.launched(0, 0);
    expect(rule.rounds).toBe(2);
  });
});
