// IntervalNotifier: invalidate callbacks and the readBegin/readRetry sequence rule.
import { describe, expect, it } from 'vitest';
import { IntervalNotifier, type InvalidateRange } from '../../src/mm/notifier.ts';

function subscribe(n: IntervalNotifier, start: number, end: number, self?: unknown) {
  const seen: InvalidateRange[] = [];
  const sub = n.insert(start, end, (r) => seen.push({ ...r }), self);
  return { sub, seen };
}

describe('IntervalNotifier', () => {
  it('exposes the subscribed range', () => {
    const { sub } = subscribe(new IntervalNotifier(), 10, 20);
    expect([sub.start, sub.end]).toEqual([10, 20]);
  });

  it('readRetry is false when nothing happened', () => {
    const n = new IntervalNotifier();
    const { sub } = subscribe(n, 10, 20);
    const seq = sub.readBegin();
    expect(sub.readRetry(seq)).toBe(false);
  });

  it('readRetry is true after an overlapping invalidate, and the callback gets event and range', () => {
    const n = new IntervalNotifier();
    const { sub, seen } = subscribe(n, 10, 20);
    const seq = sub.readBegin();
    n.invalidate({ start: 19, end: 25, event: 'unmap', owner: null });
    expect(sub.readRetry(seq)).toBe(true);
    expect(seen).toEqual([{ start: 19, end: 25, event: 'unmap', owner: null }]);
    // A fresh readBegin after the invalidation is stable again.
    const seq2 = sub.readBegin();
    expect(sub.readRetry(seq2)).toBe(false);
    n.invalidate({ start: 0, end: 11, event: 'protection', owner: null });
    expect(sub.readRetry(seq2)).toBe(true);
    expect(seen.map((r) => r.event)).toEqual(['unmap', 'protection']);
  });

  it('readRetry stays false after a non-overlapping invalidate (ranges are half-open)', () => {
    const n = new IntervalNotifier();
    const { sub, seen } = subscribe(n, 10, 20);
    const seq = sub.readBegin();
    n.invalidate({ start: 20, end: 30, event: 'unmap', owner: null }); // touches the end
    n.invalidate({ start: 0, end: 10, event: 'unmap', owner: null }); // touches the start
    expect(sub.readRetry(seq)).toBe(false);
    expect(seen).toEqual([]);
    expect(n.invalidations).toBe(2);
  });

  it('an empty range invalidates nobody and is not counted', () => {
    const n = new IntervalNotifier();
    const { sub, seen } = subscribe(n, 10, 20);
    const seq = sub.readBegin();
    n.invalidate({ start: 15, end: 15, event: 'unmap', owner: null });
    expect(sub.readRetry(seq)).toBe(false);
    expect(seen).toEqual([]);
    expect(n.invalidations).toBe(0);
  });

  it("skips 'migrate' events caused by the subscription's own self, without bumping its sequence", () => {
    const n = new IntervalNotifier();
    const devA = { name: 'A' };
    const devB = { name: 'B' };
    const a = subscribe(n, 0, 100, devA);
    const b = subscribe(n, 0, 100, devB);
    const seqA = a.sub.readBegin();
    const seqB = b.sub.readBegin();
    n.invalidate({ start: 5, end: 6, event: 'migrate', owner: devA });
    expect(a.seen).toEqual([]);
    expect(a.sub.readRetry(seqA)).toBe(false);
    expect(b.seen.map((r) => [r.event, r.owner])).toEqual([['migrate', devA]]);
    expect(b.sub.readRetry(seqB)).toBe(true);
  });

  it("skips only its own 'migrate' and 'exclusive': other events from the same owner still invalidate", () => {
    const n = new IntervalNotifier();
    const dev = {};
    const a = subscribe(n, 0, 100, dev);
    const seq = a.sub.readBegin();
    n.invalidate({ start: 5, end: 6, event: 'exclusive', owner: dev });
    expect(a.sub.readRetry(seq)).toBe(false); // own exclusive grab: filtered, as the kernel's drivers must
    n.invalidate({ start: 5, end: 6, event: 'exclusive', owner: {} });
    expect(a.sub.readRetry(seq)).toBe(true); // someone else's
    const seq2 = a.sub.readBegin();
    n.invalidate({ start: 5, end: 6, event: 'protection', owner: dev });
    expect(a.sub.readRetry(seq2)).toBe(true);
    expect(a.seen.map((r) => r.event)).toEqual(['exclusive', 'protection']);
  });

  it('a subscription without self gets every migrate, even one with an undefined owner', () => {
    const n = new IntervalNotifier();
    const a = subscribe(n, 0, 100);
    const seq = a.sub.readBegin();
    n.invalidate({ start: 5, end: 6, event: 'migrate', owner: undefined });
    expect(a.sub.readRetry(seq)).toBe(true);
    expect(a.seen.length).toBe(1);
  });

  it('the sequence moves on every invalidation, so an old seq never matches again', () => {
    const n = new IntervalNotifier();
    const { sub } = subscribe(n, 0, 10);
    const seqs = new Set<number>([sub.readBegin()]);
    for (let i = 0; i < 5; i++) {
      n.invalidate({ start: 0, end: 1, event: 'clear', owner: null });
      seqs.add(sub.readBegin());
    }
    expect(seqs.size).toBe(6);
  });

  it('the sequence is already bumped when the callback runs', () => {
    const n = new IntervalNotifier();
    let retryInCallback: boolean | undefined;
    const seq0 = 0;
    const sub = n.insert(0, 10, () => {
      retryInCallback = sub.readRetry(seq0);
    });
    expect(sub.readBegin()).toBe(seq0);
    n.invalidate({ start: 0, end: 1, event: 'unmap', owner: null });
    expect(retryInCallback).toBe(true);
  });

  it('remove() stops callbacks for that subscription only', () => {
    const n = new IntervalNotifier();
    const a = subscribe(n, 0, 10);
    const b = subscribe(n, 0, 10);
    a.sub.remove();
    const seq = a.sub.readBegin();
    n.invalidate({ start: 0, end: 10, event: 'release', owner: null });
    expect(a.seen).toEqual([]);
    expect(a.sub.readRetry(seq)).toBe(false);
    expect(b.seen.length).toBe(1);
  });

  // BUG (reported): invalidate() has no try/finally, so a callback that throws leaves the
  // global sequence odd; the next invalidation then reuses the same odd value, a reader that
  // called readBegin() in between sees readRetry() === false and keeps a stale mapping.
  it('a throwing callback does not break the retry rule for later invalidations', () => {
    const n = new IntervalNotifier();
    let fail = true;
    const sub = n.insert(0, 10, () => {
      if (fail) throw new Error('callback failed');
    });
    expect(() => n.invalidate({ start: 0, end: 1, event: 'unmap', owner: null })).toThrow('callback failed');
    fail = false;
    const seq = sub.readBegin();
    n.invalidate({ start: 0, end: 1, event: 'unmap', owner: null });
    expect(sub.readRetry(seq)).toBe(true);
  });

  it('invalidateMany calls back once per overlapping range, skips the owner, and counts every range', () => {
    const n = new IntervalNotifier();
    const dev = {};
    const other = subscribe(n, 10, 20, {});
    const own = subscribe(n, 0, 100, dev);
    const seqOther = other.sub.readBegin();
    const seqOwn = own.sub.readBegin();
    n.invalidateMany(
      [
        [5, 6],
        [12, 13],
        [15, 15],
        [19, 22],
        [40, 41],
      ],
      'migrate',
      dev,
    );
    expect(other.seen).toEqual([
      { start: 12, end: 13, event: 'migrate', owner: dev },
      { start: 19, end: 22, event: 'migrate', owner: dev },
    ]);
    expect(other.sub.readRetry(seqOther)).toBe(true);
    expect(own.seen).toEqual([]);
    expect(own.sub.readRetry(seqOwn)).toBe(false);
    expect(n.invalidations).toBe(4); // the empty range is not one
    // the sequence is even again: a later invalidation is seen by a fresh reader
    const seq = other.sub.readBegin();
    n.invalidate({ start: 10, end: 11, event: 'unmap', owner: null });
    expect(other.sub.readRetry(seq)).toBe(true);
  });
});
