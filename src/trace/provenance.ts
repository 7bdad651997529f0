// Provenance: why each page moved. Every migration, device copy, write-back, eviction and
// prefetch is recorded against the pages it touched with its cause (a GPU fault of which kernel,
// dispatch and round; a prefetch of which policy for which round; an eviction by which policy
// and for what; a CPU fault of the main thread or a worker; an explicit call) and, for a page a
// device faulted on, the placement policy's decision. `sys.explain(mm, va)` reads one page's
// history back. Bounded: the last HISTORY events of each page, for at most MAX_PAGES pages.

export type Cause =
  /** A replayable kernel faulted on the page (round 1 is the first launch); `flow` links the round's trace span to the moves it caused. */
  | { kind: 'gpu-fault'; device: number; kernel: string; dispatch: number; round: number; flow?: number }
  /** Brought with a fault batch by the prefetch policy. */
  | { kind: 'prefetch'; device: number; kernel: string; dispatch: number; round: number; policy: string; flow?: number }
  /** A validated kernel declared it (faulted in before the launch). */
  | { kind: 'declared'; device: number; kernel: string; dispatch: number }
  /** The device needed room: the eviction policy chose it. */
  | { kind: 'eviction'; device: number; policy: string; for: string }
  /** The CPU touched it: the main thread, or a CPU thread through the fault mailbox. */
  | { kind: 'cpu-fault'; thread: 'main' | 'worker' }
  /** A call that moves pages by itself: m.migrateToDevice, dev.release(), mm.fork(), ... */
  | { kind: 'call'; call: string };

/** What happened to a page. */
export type PageMove =
  | 'to-device' // migrated to a device (device-private)
  | 'to-system' // migrated back to RAM
  | 'copy' // a device took a copy of it (read-only or held)
  | 'write-back' // a held copy was written back to RAM
  | 'dropped'; // a device's read-only copy went

export interface PageEvent {
  ts: number;
  move: PageMove;
  device: number;
  cause: Cause;
  /** For a page a device faulted on: the placement policy and its decision. */
  placement?: string;
}

/** Events kept per page, and pages kept (oldest forgotten first). */
const HISTORY = 32;
const MAX_PAGES = 1 << 16;

/** A cause in a few words, for traces and `explain`. */
export function describeCause(c: Cause): string {
  switch (c.kind) {
    case 'gpu-fault':
      return `GPU fault: kernel '${c.kernel}' (dispatch ${c.dispatch}, round ${c.round}) on gpu${c.device}`;
    case 'prefetch':
      return `prefetch by '${c.policy}' with kernel '${c.kernel}' (dispatch ${c.dispatch}, round ${c.round}) on gpu${c.device}`;
    case 'declared':
      return `declared by validated kernel '${c.kernel}' (dispatch ${c.dispatch}) on gpu${c.device}`;
    case 'eviction':
      return `evicted from gpu${c.device} by '${c.policy}' to make room for ${c.for}`;
    case 'cpu-fault':
      return c.thread === 'main' ? 'CPU fault (main thread)' : 'CPU fault (a CPU thread, through the fault mailbox)';
    case 'call':
      return `explicit: ${c.call}`;
  }
}

export class Provenance {
  private readonly pages = new Map<string, PageEvent[]>();
  /** Placement decisions waiting for the move they explain, per `${mm}:${page}:${device}`. */
  private readonly decided = new Map<string, string>();
  enabled = true;
  /** Told of every move, whether or not histories are kept (a recording, src/replay/recorder.ts). */
  readonly observers = new Set<(mm: number, pages: readonly number[], move: PageMove, device: number, cause: Cause) => void>();

  /** `move` happened to `pages` of address space `mm` on `device`, because of `cause`. */
  record(mm: number, pages: readonly number[], move: PageMove, device: number, cause: Cause): void {
    for (const o of this.observers) o(mm, pages, move, device, cause);
    if (!this.enabled) return;
    const ts = performance.now();
    for (const p of pages) {
      const key = `${mm}:${p}`;
      let list = this.pages.get(key);
      if (!list) {
        if (this.pages.size >= MAX_PAGES) this.pages.delete(this.pages.keys().next().value!);
        this.pages.set(key, (list = []));
      }
      const placement = this.decided.get(`${key}:${device}`);
      // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true; deleting a missing key changes nothing
      if (placement !== undefined) this.decided.delete(`${key}:${device}`);
      list.push(placement !== undefined ? { ts, move, device, cause, placement } : { ts, move, device, cause });
      if (list.length > HISTORY) list.shift();
    }
  }

  /** The placement policy decided about a page a device faulted on; the next move of it records why. */
  decision(mm: number, page: number, device: number, text: string): void {
    if (!this.enabled) return;
    if (this.decided.size >= MAX_PAGES) this.decided.clear();
    this.decided.set(`${mm}:${page}:${device}`, text);
  }

  /** A page's history, oldest first (a copy). */
  history(mm: number, page: number): PageEvent[] {
    return [...(this.pages.get(`${mm}:${page}`) ?? [])];
  }

  /** An address space went: its pages' histories go too. */
  forget(mm: number): void {
    const prefix = `${mm}:`;
    for (const key of [...this.pages.keys()]) if (key.startsWith(prefix)) this.pages.delete(key);
  }
}
