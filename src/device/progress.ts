// The progress rule of a replayable dispatch (design-notes §20). A replayed invocation starts
// over from scratch, so it needs every page it touches resident at once; when the device cannot
// hold what all the unfinished invocations need, the fault service can evict, round after
// round, the pages the dispatch itself faulted in a round or two before, and nothing ever
// finishes. The rule notices that and narrows the work until something does:
//
// - Progress is an invocation finishing: a launch reports how many of the invocations it ran
//   faulted, and fewer than the launch before (same window) means some finished.
// - A refault is a fault on a (page, access) this dispatch serviced since its last progress:
//   the page was brought in and lost before the invocation that needed it could finish.
// - A round without progress that refaults puts the rule in force: from then on the pages the
//   dispatch faults in are protected from its own evictions (until the next progress, or a
//   change of window), and the service brings no prefetched company (it would only be evicted).
// - When even that finds no room (the service is ENOMEM: everything resident is protected or
//   needed), the window of invocations that run shrinks by half, down to one; with one
//   invocation whose pages still do not fit, the dispatch fails with ENOMEM naming it.
// - A window whose invocations have all finished moves on to the next ones, twice as many.
//   Progress with the window covering every invocation ends the rule.
//
// Pure bookkeeping: the dispatcher (dispatch.ts) and the replay simulator (src/replay/sim) both
// drive it with what their launches report, so a replay follows the same decisions.

export type LaunchVerdict = 'done' | 'window-done' | 'faulted';

export class ProgressRule {
  /** The invocations the next launch runs: [start, end) of the linear ids. */
  window: [number, number];
  /** The rule is in force: the dispatch protects what it faults in and prefetches nothing. */
  active = false;
  /** Pages the dispatch's own evictions spare while the rule is in force. */
  readonly protectedPages = new Set<number>();
  /** Rounds run with the rule in force. */
  rounds = 0;
  /** Invocations that faulted in the last launch of this window (Infinity: none yet). */
  private lastFaulted = Infinity;
  /** (page, access) keys serviced since the last progress. */
  private readonly serviced = new Set<number>();
  private span: number;

  constructor(readonly invocations: number) {
    this.window = [0, invocations];
    this.span = invocations;
  }

  /** The window reaches the last invocation (every one before it has finished): the dispatch's normal state. */
  get whole(): boolean {
    return this.window[1] >= this.invocations;
  }

  /**
   * A launch came back with `misses` faulting accesses by `faulted` invocations. 'done': every
   * invocation has finished. 'window-done': the window's have; the next launch runs the next
   * window. 'faulted': a fault round (service it, then relaunch).
   */
  launched(misses: number, faulted: number): LaunchVerdict {
    if (this.active) this.rounds++;
    if (misses === 0) {
      if (this.window[1] >= this.invocations) return 'done';
      // every invocation of the window finished (and those before it did earlier): the next ones, twice as many
      this.span = Math.min(this.invocations, this.span * 2);
      const start = this.window[1];
      this.window = [start, Math.min(this.invocations, start + this.span)];
      this.reset();
      return 'window-done';
    }
    if (faulted < this.lastFaulted) {
      // some invocation of the window finished: what was protected for it is free again, and
      // with the window reaching the last invocation the rule is over
      this.serviced.clear();
      this.protectedPages.clear();
      if (this.whole) this.active = false;
    }
    this.lastFaulted = faulted;
    return 'faulted';
  }

  /** The round's fault keys (page*2 + write): a refault puts the rule in force. */
  faults(keys: readonly number[]): void {
    // Stryker disable next-line ConditionalExpression: the test as false; while in force every serviced page is protected already (servicedKeys), so a refault adds nothing
    if (this.active) return;
    for (const k of keys) {
      if (this.serviced.has(k)) {
        this.active = true;
        // the pages this dispatch faulted in since its last progress stay from now on
        for (const s of this.serviced) this.protectedPages.add(s >>> 1);
        return;
      }
    }
  }

  /** The service mapped these faulted keys. */
  servicedKeys(keys: readonly number[]): void {
    for (const k of keys) this.serviced.add(k);
    if (this.active) for (const k of keys) this.protectedPages.add(k >>> 1);
  }

  /**
   * The service found no room with the rule in force: shrink the window by half and let its
   * protection go (the smaller set protects what it needs again). False when the window is one
   * invocation already: its pages do not fit the device.
   */
  shrink(): boolean {
    const size = this.window[1] - this.window[0];
    if (size <= 1) return false;
    this.span = Math.ceil(size / 2);
    this.window = [this.window[0], this.window[0] + this.span];
    this.reset();
    this.active = true;
    return true;
  }

  private reset(): void {
    this.lastFaulted = Infinity;
    this.serviced.clear();
    this.protectedPages.clear();
  }
}
