// Thrashing policy: notice pages that bounce between system RAM and a device, migration after
// migration in opposite directions within a short window (NVIDIA UVM: 3 events within 500 µs;
// perf-anchors §1), and pin them in system RAM for a while. A pinned page no longer migrates
// on device faults: devices use copies of it (read-only duplicates for reads, a held copy for
// writes), and fault service naps briefly before serving it (throttling). It only decides;
// the mirror acts on it.

export interface ThrashConfig {
  enabled: boolean;
  /** Two migrations of a page in opposite directions closer than this are a bounce. */
  windowMs: number;
  /** Consecutive bounces that make a page thrashing. */
  threshold: number;
  /** How long a thrashing page stays pinned in system RAM. */
  pinMs: number;
  /** Throttle: fault service waits this long before serving a pinned page. */
  napMs: number;
}

// Longer than UVM's 500 µs: a host-serviced fault round here takes milliseconds, not microseconds.
export const DEFAULT_THRASH: ThrashConfig = { enabled: true, windowMs: 50, threshold: 3, pinMs: 1000, napMs: 1 };

export type Direction = 'toDevice' | 'toSystem';

interface PageHistory {
  at: number;
  dir: Direction;
  bounces: number;
}

/** Per address space (`mm.thrash`): notices pages that bounce and pins them in RAM for a while. */
export class ThrashDetector {
  /** The settings (createSystem's `thrashing`); replace it to change them for this address space. */
  config: ThrashConfig = { ...DEFAULT_THRASH };
  private readonly history = new Map<number, PageHistory>();
  private readonly pinnedUntil = new Map<number, number>();

  /**
   * A page migrated; true when this migration made it thrashing (it is now pinned).
   * @internal
   */
  record(page: number, dir: Direction, now: number): boolean {
    if (!this.config.enabled) return false;
    const h = this.history.get(page);
    if (!h) {
      this.history.set(page, { at: now, dir, bounces: 0 });
      return false;
    }
    const bounce = h.dir !== dir && now - h.at <= this.config.windowMs;
    h.bounces = bounce ? h.bounces + 1 : 0;
    h.at = now;
    h.dir = dir;
    if (h.bounces >= this.config.threshold) {
      h.bounces = 0;
      this.pinnedUntil.set(page, now + this.config.pinMs);
      return true;
    }
    return false;
  }

  /**
   * Pin a page in system RAM for `pinMs` from now (a placement policy said 'pin').
   * @internal
   */
  pin(page: number, now: number): void {
    this.pinnedUntil.set(page, now + this.config.pinMs);
  }

  /**
   * Is the page pinned in RAM at time `now` (performance.now())?
   * @internal
   */
  isPinned(page: number, now: number): boolean {
    const until = this.pinnedUntil.get(page);
    // Stryker disable next-line ConditionalExpression: the test as false; undefined > now is false too
    if (until === undefined) return false;
    if (until > now) return true;
    this.pinnedUntil.delete(page); // the epoch is over
    return false;
  }

  /**
   * Forget a range (munmap).
   * @internal
   */
  forget(start: number, end: number): void {
    for (const m of [this.history, this.pinnedUntil]) for (const p of [...m.keys()]) if (p >= start && p < end) m.delete(p);
  }
}
