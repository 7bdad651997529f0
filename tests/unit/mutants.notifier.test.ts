// IntervalNotifier (src/mm/notifier.ts) at its edges, without a GPU: range-aware readRetry (one
// subscription covers an address space; a fault-in elsewhere in it must not start over, one in
// its range must), the bounded log behind it, and invalidateMany's owner rule and half-open
// ranges. Written while mutation testing (docs/testing.md) found these unchecked.
import { describe, expect, it } from 'vitest';
import { IntervalNotifier, type InvalidateRange, type NotifierEvent } from '../../src/mm/notifier.ts';

function subscribe(n: IntervalNotifier, start: number, end: number, self?: unknown) {
  const seen: InvalidateRange[] = [];
  const sub = n.insert(start, end, (r) => seen.push({ ...r }), self);
  return { sub, seen };
}
const unmap = (n: IntervalNotifier, start: number, end: number): void => n.invalidate({ start, end, event: 'unmap', owner: null });

describe('range-aware readRetry', () => {
  it('counts only invalidations overlapping the range asked about, half-open at both ends', () => {
    const n = new IntervalNotifier();
    const { sub } = subscribe(n, 0, 1000);
    const seq = sub.readBegin();
    unmap(n, 10, 20);
    expect(sub.readRetry(seq)).toBe(true); // without a range: anything since
    expect(sub.readRetry(seq, [0, 10])).toBe(false); // ends where the invalidation starts
    expect(sub.readRetry(seq, [20, 30])).toBe(false); // starts where it ends
    expect(sub.readRetry(seq, [9, 11])).toBe(true);
    expect(sub.readRetry(seq, [19, 20])).toBe(true);
    expect(sub.readRetry(seq, [12, 13])).toBe(true); // inside it
    expect(sub.readRetry(seq, [0, 1000])).toBe(true); // around it
  });

  it('an invalidation from before readBegin does not count, one after it does', () => {
    const n = new IntervalNotifier();
    const { sub } = subscribe(n, 0, 1000);
    unmap(n, 0, 10);
    const seq = sub.readBegin();
    expect(sub.readRetry(seq, [0, 10])).toBe(false);
    unmap(n, 50, 60);
    expect(sub.readRetry(seq, [0, 10])).toBe(false); // changed since, but elsewhere
    expect(sub.readRetry(seq, [55, 56])).toBe(true);
    unmap(n, 5, 6);
    expect(sub.readRetry(seq, [0, 10])).toBe(true);
  });

  it('remembers the last 256 invalidations exactly; past that, an older reader must start over', () => {
    const n = new IntervalNotifier();
    const { sub } = subscribe(n, 0, 1000);
    const before = sub.readBegin();
    unmap(n, 500, 501);
    const afterFirst = sub.readBegin();
    for (let i = 1; i < 256; i++) unmap(n, 500, 501);
    // 256 invalidations, all remembered: a reader from before any of them can still tell
    expect(sub.readRetry(before, [0, 10])).toBe(false);
    expect(sub.readRetry(afterFirst, [0, 10])).toBe(false);
    unmap(n, 500, 501);
    // the 257th pushes out the first: a reader from before it cannot tell any more
    expect(sub.readRetry(before, [0, 10])).toBe(true);
    // a reader that began right after the forgotten one still can: nothing it missed was forgotten
    expect(sub.readRetry(afterFirst, [0, 10])).toBe(false);
    expect(sub.readRetry(afterFirst, [500, 501])).toBe(true);
  });
});

describe('invalidateMany', () => {
  it("skips a subscriber's own 'migrate' and 'exclusive' only, and only when it has a self", () => {
    const n = new IntervalNotifier();
    const dev = { name: 'dev' };
    const own = subscribe(n, 0, 100, dev);
    const anon = subscribe(n, 0, 100);
    const events: [NotifierEvent, unknown][] = [
      ['migrate', dev],
      ['exclusive', dev],
      ['unmap', dev],
      ['protection', dev],
      ['migrate', {}],
      ['exclusive', undefined],
    ];
    for (const [event, owner] of events) n.invalidateMany([[1, 2]], event, owner);
    expect(own.seen.map((r) => r.event)).toEqual(['unmap', 'protection', 'migrate', 'exclusive']);
    expect(anon.seen.map((r) => r.event)).toEqual(events.map(([e]) => e));
  });

  it("ranges are half-open: one that only touches a subscription's edge does not invalidate it", () => {
    const n = new IntervalNotifier();
    const a = subscribe(n, 10, 20);
    const seq = a.sub.readBegin();
    n.invalidateMany(
      [
        [0, 10],
        [20, 30],
      ],
      'unmap',
      null,
    );
    expect(a.seen).toEqual([]);
    expect(a.sub.readRetry(seq)).toBe(false);
    n.invalidateMany(
      [
        [0, 11],
        [19, 30],
      ],
      'unmap',
      null,
    );
    expect(a.seen.map((r) => [r.start, r.end])).toEqual([
      [0, 11],
      [19, 30],
    ]);
  });

  it('a batch of empty ranges invalidates nobody', () => {
    const n = new IntervalNotifier();
    const a = subscribe(n, 0, 100);
    const seq = a.sub.readBegin();
    n.invalidateMany(
      [
        [5, 5],
        [9, 3],
      ],
      'unmap',
      null,
    );
    expect(a.seen).toEqual([]);
    expect(a.sub.readRetry(seq)).toBe(false);
    expect(n.invalidations).toBe(0);
  });
});
