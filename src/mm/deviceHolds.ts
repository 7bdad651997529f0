// DeviceHolds: which pages of an address space a device's fault service holds for its next
// launch. A replayable kernel faults, the device services the batch and relaunches; between
// the two, nothing may take the serviced pages away, or the relaunch faults on them again and a
// kernel under contention never progresses. CPU accesses (main thread and CPU threads) wait for
// a hold to end; other devices do not take a held page either. One device's several fault
// services do not exclude each other: a page mapped for one is mapped for all of them.
//
// The rule that keeps this free of deadlock: nobody waits for a hold while holding one. A
// fault service that can make no progress without another device's held pages lets go of its
// own (DeviceHold.yieldTo), waits, and takes them again.

export class DeviceHold {
  /** The address space whose pages are held. */
  readonly space: number;
  private promise!: Promise<void>;
  private resolve!: () => void;
  private held = false;

  constructor(
    private readonly registry: DeviceHolds,
    readonly device: number,
    readonly pages: readonly number[],
    /** The age of the operation holding (HmmDevice tickets): its own device's evictions spare it for older operations only. */
    readonly ticket: number,
    /** Exclusive (makeExclusive): even the holding device's other operations keep off the pages. */
    readonly exclusive: boolean,
  ) {
    this.space = registry.space;
    this.acquire();
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
  hold(device: number, pages: readonly number[], ticket: number, exclusive = false): DeviceHold {
    return new DeviceHold(this, device, pages, ticket, exclusive);
  }

  add(h: DeviceHold): void {
    for (const p of h.pages) {
      let set = this.byPage.get(p);
      if (!set) this.byPage.set(p, (set = new Set()));
      set.add(h);
    }
  }

  remove(h: DeviceHold): void {
    for (const p of h.pages) {
      const set = this.byPage.get(p);
      if (!set) continue;
      set.delete(h);
      if (set.size === 0) this.byPage.delete(p);
    }
  }

  /** Is page p held by anyone but `device` (anyone at all when undefined)? */
  isHeld(p: number, device?: number): boolean {
    return this.some(p, (h) => device === undefined || h.device !== device);
  }

  /** Does a hold on page p satisfy `which`? */
  some(p: number, which: (h: DeviceHold) => boolean): boolean {
    const set = this.byPage.get(p);
    if (set) for (const h of set) if (which(h)) return true;
    return false;
  }

  /**
   * Is page p held by a fault service of `device` whose ticket is at most `ticket` (an operation
   * as old as the one asking)? Its evictions leave such a page alone; a younger one's page may go.
   */
  isHeldBy(p: number, device: number, ticket = Infinity): boolean {
    const set = this.byPage.get(p);
    if (set) for (const h of set) if (h.device === device && h.ticket <= ticket) return true;
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
