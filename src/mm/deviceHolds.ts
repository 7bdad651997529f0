// DeviceHolds: which pages of an address space an operation holds for its next launch. A
// replayable kernel faults, the device services the batch and relaunches; between the two,
// nothing may take the serviced pages away, or the relaunch faults on them again and a kernel
// under contention never progresses. CPU accesses (main thread and CPU threads) wait for a
// hold to end; other devices' younger operations do not take a held page either. Beside its
// holds, a replayable dispatch keeps an interest in every page it has faulted on until it
// ends: younger device operations wait for it (between its rounds it holds nothing, and a
// younger one taking its pages each time would make both fault forever); CPU accesses do not.
//
// What keeps this free of deadlock and livelock: age (nextTicket). An operation waits only for
// the holds of older ones, and takes what younger ones hold (they fault again and wait for it
// then), so nobody waits in a cycle and the oldest always goes on. (Two operations that each
// let go and waited for the other, as equals, could do so forever.) An operation that waits
// also lets go of its own pages meanwhile (DeviceHold.yieldTo).

let tickets = 1;

/**
 * The next operation's age, one clock for the whole program: lower is older. Fork and CPU
 * accesses hold with age 0, older than any device operation: devices always wait for them.
 */
export function nextTicket(): number {
  return tickets++;
}

export interface HoldOptions {
  /** makeExclusive: even the holding device's other operations keep off. */
  exclusive?: boolean;
  /** An interest, not a hold: CPU accesses do not wait for it (see the header). */
  interest?: boolean;
}

export class DeviceHold {
  /** The address space whose pages are held. */
  readonly space: number;
  private promise!: Promise<void>;
  private resolve!: () => void;
  // Stryker disable next-line BooleanLiteral: the constructor's acquire() sets it before anything reads it
  private held = false;

  /** Exclusive (makeExclusive): even the holding device's other operations keep off the pages. */
  readonly exclusive: boolean;
  /** CPU accesses wait for it (a hold); an interest only keeps younger device operations off. */
  readonly cpuWaits: boolean;
  private pageList: number[];

  constructor(
    private readonly registry: DeviceHolds,
    readonly device: number,
    pages: readonly number[],
    /** The age of the operation holding (nextTicket): younger operations give way to it. */
    readonly ticket: number,
    opts: HoldOptions = {},
  ) {
    this.space = registry.space;
    this.pageList = [...pages];
    this.exclusive = opts.exclusive === true;
    this.cpuWaits = opts.interest !== true;
    this.acquire();
  }

  get pages(): readonly number[] {
    return this.pageList;
  }

  /** Hold more pages (an interest growing with each fault round). */
  extend(pages: readonly number[]): void {
    const add = pages.filter((p) => !this.registry.has(p, this));
    this.pageList.push(...add);
    if (this.held) this.registry.add(this, add);
  }

  /** Resolves when this hold ends (or lets go to wait for another). */
  get ended(): Promise<void> {
    return this.promise;
  }

  private acquire(): void {
    this.promise = new Promise<void>((r) => (this.resolve = r));
    this.held = true;
    this.registry.add(this);
  }

  /** The launch the pages were held for has run (or failed): everyone may have them. */
  release(): void {
    // Stryker disable next-line ConditionalExpression: the test as false; a second release removes nothing and resolves a settled promise
    if (!this.held) return;
    this.held = false;
    this.registry.remove(this);
    this.resolve();
  }

  /** Let go while waiting for `other` (never wait while holding), then hold the pages again. */
  async yieldTo(other: Promise<unknown>): Promise<void> {
    this.release();
    try {
      await other;
    } finally {
      this.acquire();
    }
  }
}

export class DeviceHolds {
  private readonly byPage = new Map<number, Set<DeviceHold>>();

  /** `space`: the id of the address space whose pages these are. */
  constructor(readonly space: number) {}

  /** Hold `pages` for `device`'s next launch; release() the result after it. */
  hold(device: number, pages: readonly number[], ticket: number, opts: HoldOptions = {}): DeviceHold {
    return new DeviceHold(this, device, pages, ticket, opts);
  }

  add(h: DeviceHold, pages: readonly number[] = h.pages): void {
    for (const p of pages) {
      let set = this.byPage.get(p);
      if (!set) this.byPage.set(p, (set = new Set()));
      set.add(h);
    }
  }

  remove(h: DeviceHold): void {
    for (const p of h.pages) {
      const set = this.byPage.get(p);
      // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as false; every page of a held hold has its set (add() and extend() put it there)
      if (!set) continue;
      set.delete(h);
      // Stryker disable next-line ConditionalExpression: the test as false; an empty set answers every query as a missing one does
      if (set.size === 0) this.byPage.delete(p);
    }
  }

  /** Does h hold page p here? */
  has(p: number, h: DeviceHold): boolean {
    return this.byPage.get(p)?.has(h) ?? false;
  }

  /** Is page p held by anyone but `device` (anyone at all when undefined)? */
  isHeld(p: number, device?: number): boolean {
    // Equivalent mutant (not disabled: that would hide this line's killed ones): `device === undefined` as false; then h.device !== undefined holds for every hold
    return this.some(p, (h) => device === undefined || h.device !== device);
  }

  /** Does a hold on page p satisfy `which`? */
  some(p: number, which: (h: DeviceHold) => boolean): boolean {
    const set = this.byPage.get(p);
    if (set) for (const h of set) if (which(h)) return true;
    return false;
  }

  /**
   * Is page p held by an operation of `device` as old as the one asking (`ticket`) or older?
   * Its evictions leave such a page alone; a younger one's page may go.
   */
  isHeldBy(p: number, device: number, ticket = Infinity): boolean {
    const set = this.byPage.get(p);
    // (an operation's own interest does not protect a page from its own evictions: a stream
    // larger than the device must evict what it faulted in earlier)
    if (set) for (const h of set) if (h.device === device && (h.ticket < ticket || (h.ticket === ticket && h.cpuWaits))) return true;
    return false;
  }

  /** The holds of `device` older than `ticket`, but `except`: what an operation out of device memory may wait for. */
  olderHolds(device: number, ticket: number, except?: DeviceHold): DeviceHold[] {
    const out = new Set<DeviceHold>();
    for (const set of this.byPage.values()) for (const h of set) if (h.device === device && h.ticket < ticket && h !== except) out.add(h);
    return [...out];
  }

  /**
   * A promise that resolves when every hold on `pages` that `which` selects has ended; null
   * when there is none, so a caller with nothing to wait for goes on in the same turn.
   */
  ended(pages: readonly number[], which: (h: DeviceHold) => boolean): Promise<void> | null {
    const waits = new Set<Promise<void>>();
    for (const p of pages) {
      const set = this.byPage.get(p);
      if (set) for (const h of set) if (which(h)) waits.add(h.ended);
    }
    if (waits.size === 0) return null;
    return Promise.all(waits).then(() => undefined);
  }
}
