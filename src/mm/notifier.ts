// IntervalNotifier: the mmu_interval_notifier contract. A subscriber (a device mirror)
// registers a VA range and an invalidate callback; every change to the CPU side of that range
// (unmap, protection change, migration, exclusive, release) calls it first, with an event
// type, and bumps the subscriber's sequence count. Device-side mapping code brackets its work
// with readBegin()/readRetry() and starts over when the range was invalidated in between.
//
// Callbacks run synchronously: JavaScript is single-threaded, so a callback that clears the
// device page table before returning cannot race another mapping on this thread.

export type NotifierEvent = 'unmap' | 'clear' | 'protection' | 'migrate' | 'exclusive' | 'release';

export interface InvalidateRange {
  start: number; // first page
  end: number; // one past the last page
  event: NotifierEvent;
  /** Who caused it (a device for migrate/exclusive), so the owner can skip its own work. */
  owner: unknown;
}

/** A subscription from `mm.notifier.insert(start, end, callback)` (an mmu_interval_notifier). */
export interface NotifierSubscription {
  readonly start: number;
  readonly end: number;
  /** mmu_interval_read_begin: the sequence now (rangeFault's `seq`). */
  readBegin(): number;
  /**
   * Was the subscription invalidated since `readBegin` returned `seq`? With `range` ([start,
   * end) pages), only invalidations overlapping that range count: one subscription covers a
   * whole address space, and work elsewhere in it must not make every fault-in start over.
   */
  readRetry(seq: number, range?: readonly [number, number]): boolean;
  /** Unsubscribe. */
  remove(): void;
}

/** Invalidations a subscription remembers for range-aware readRetry; older ones make it answer true. */
const LOG_SIZE = 256;

export type InvalidateCallback = (range: InvalidateRange) => void;

class Subscription implements NotifierSubscription {
  seq = 0;
  /** Recent invalidations (sequence, range), oldest first, and the newest sequence forgotten. */
  // Stryker disable next-line ArrayDeclaration: a first element that is no invalidation never matches and is the first one pushed out
  private readonly log: { seq: number; start: number; end: number }[] = [];
  private forgotten = 0;
  constructor(
    readonly owner: IntervalNotifier,
    readonly start: number,
    readonly end: number,
    readonly invalidate: InvalidateCallback,
    /** Skip 'migrate' and 'exclusive' events this owner caused: it updates its own table. */
    readonly self: unknown,
  ) {}
  readBegin(): number {
    return this.seq;
  }
  readRetry(seq: number, range?: readonly [number, number]): boolean {
    if (this.seq === seq) return false;
    if (!range || seq < this.forgotten) return true;
    for (const e of this.log) if (e.seq > seq && e.start < range[1] && e.end > range[0]) return true;
    return false;
  }
  /** An invalidation of [start, end) at sequence `seq` (mmu_interval_set_seq). */
  hit(seq: number, start: number, end: number): void {
    this.seq = seq;
    this.log.push({ seq, start, end });
    if (this.log.length > LOG_SIZE) this.forgotten = this.log.shift()!.seq;
  }
  remove(): void {
    this.owner.remove(this);
  }
}

/** An address space's interval notifier (`mm.notifier`): subscribe with `insert`. */
export class IntervalNotifier {
  private subs: Subscription[] = [];
  /** Global sequence: even when idle, odd during an invalidation (as the kernel's). */
  private seq = 2;
  /** Invalidations so far (one per range). */
  invalidations = 0;

  /**
   * Subscribe to invalidations of pages [start, end): `invalidate` runs synchronously before the
   * CPU side of an overlapping range changes. `remove()` the subscription when done.
   */
  insert(start: number, end: number, invalidate: InvalidateCallback, self: unknown = undefined): NotifierSubscription {
    const s = new Subscription(this, start, end, invalidate, self);
    this.subs.push(s);
    return s;
  }

  /** @internal */
  remove(sub: Subscription): void {
    this.subs = this.subs.filter((s) => s !== sub);
  }

  /**
   * Call every overlapping subscriber; returns after all of them stopped using the range.
   * @internal
   */
  invalidate(range: InvalidateRange): void {
    if (range.end <= range.start) return;
    this.seq |= 1;
    const cur = this.seq;
    this.invalidations++;
    try {
      for (const s of [...this.subs]) {
        if (s.end <= range.start || s.start >= range.end) continue;
        // A device's own migrations and exclusive grabs: it updates its own table (no livelock).
        if ((range.event === 'migrate' || range.event === 'exclusive') && s.self !== undefined && range.owner === s.self) continue;
        s.hit(cur, range.start, range.end); // mmu_interval_set_seq, unconditionally, before the callback
        s.invalidate(range);
      }
    } finally {
      this.seq++; // even if a callback threw: an odd sequence would hide the next invalidation
    }
  }

  /**
   * invalidate() for several ranges of one event (a migration batch of scattered pages): every
   * subscriber still gets one callback per range it overlaps, but the batch takes one sequence
   * bump and one pass over the subscribers instead of one per range. Counted per range.
   * @internal
   */
  invalidateMany(ranges: readonly (readonly [number, number])[], event: NotifierEvent, owner: unknown): void {
    const live = ranges.filter(([start, end]) => end > start);
    // Stryker disable next-line ConditionalExpression: the test as false; with no live range no subscriber is hit, only the private sequence moves
    if (live.length === 0) return;
    this.seq |= 1;
    const cur = this.seq;
    this.invalidations += live.length;
    try {
      for (const s of [...this.subs]) {
        if ((event === 'migrate' || event === 'exclusive') && s.self !== undefined && owner === s.self) continue;
        for (const [start, end] of live) {
          if (s.end <= start || s.start >= end) continue;
          s.hit(cur, start, end);
          s.invalidate({ start, end, event, owner });
        }
      }
    } finally {
      this.seq++;
    }
  }
}
