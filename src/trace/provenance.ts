// Provenance: why each page moved. Every migration, device copy, write-back, eviction and
// prefetch is recorded against the pages it touched with its cause (a GPU fault of which kernel,
// dispatch and round; a prefetch of which policy for which round; an eviction by which policy
// and for what; a CPU fault of the main thread or a worker; an explicit call) and, for a page a
// device faulted on, the placement policy's decision. `sys.explain(mm, va)` reads one page's
// history back. Bounded: the last HISTORY events of each page, for at most MAX_PAGES pages.

import { VA_PAGES } from '../constants.ts';
import { MAX_DEVICES } from '../mm/cpuPageTable.ts';

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

/** A page's key in the maps below: pages of one address space are [0, VA_PAGES). */
function pageKey(mm: number, page: number): number {
  return mm * VA_PAGES + page;
}

/** A waiting decision's key: the page's, and the device (ids are below MAX_DEVICES; a string for any other). */
function decisionKey(key: number, device: number): number | string {
  return Number.isInteger(device) && device >= 0 && device < MAX_DEVICES ? key * MAX_DEVICES + device : `${key}:${device}`;
}

export class Provenance {
  // Keyed by number, not by a `${mm}:${page}` string: a fault round records hundreds of pages,
  // and building and hashing a string for each was a measurable part of its host time (G11).
  private readonly pages = new Map<number, PageEvent[]>();
  /** Placement decisions waiting for the move they explain, per page and device (decisionKey). */
  private readonly decided = new Map<number | string, string>();
  enabled = true;
  /** Told of every move, whether or not histories are kept (a recording, src/replay/recorder.ts). */
  readonly observers = new Set<(mm: number, pages: readonly number[], move: PageMove, device: number, cause: Cause) => void>();

  /** `move` happened to `pages` of address space `mm` on `device`, because of `cause`. */
  record(mm: number, pages: readonly number[], move: PageMove, device: number, cause: Cause): void {
    for (const o of this.observers) o(mm, pages, move, device, cause);
    if (!this.enabled) return;
    this.keep(mm, pages, move, device, () => cause);
  }

  /**
   * `move` happened to each of `pages` on `device`, each for its own cause (`causeOf`): as
   * record() page by page (observers are told of each page alone, as they would be), without
   * the per-page arrays and calls.
   */
  recordEach(mm: number, pages: readonly number[], move: PageMove, device: number, causeOf: (page: number) => Cause): void {
    if (this.observers.size > 0)
      for (const p of pages) {
        const cause = causeOf(p);
        for (const o of this.observers) o(mm, [p], move, device, cause);
      }
    if (!this.enabled) return;
    this.keep(mm, pages, move, device, causeOf);
  }

  /** The histories' side of record: an event for each page (one object for the pages it says the same of). */
  private keep(mm: number, pages: readonly number[], move: PageMove, device: number, causeOf: (page: number) => Cause): void {
    const ts = performance.now();
    let shared: PageEvent | undefined;
    for (const p of pages) {
      const key = pageKey(mm, p);
      let list = this.pages.get(key);
      if (!list) {
        if (this.pages.size >= MAX_PAGES) this.pages.delete(this.pages.keys().next().value!);
        this.pages.set(key, (list = []));
      }
      const cause = causeOf(p);
      // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true; with nothing waiting the get below finds nothing
      const dkey = this.decided.size > 0 ? decisionKey(key, device) : undefined;
      const placement = dkey === undefined ? undefined : this.decided.get(dkey);
      // Stryker disable next-line ConditionalExpression: the test as true; deleting a missing key changes nothing
      if (placement !== undefined) this.decided.delete(dkey!);
      // (pages with the same cause and decision share one event: a round's pages mostly do)
      if (shared?.cause !== cause || shared.placement !== placement)
        shared = placement !== undefined ? { ts, move, device, cause, placement } : { ts, move, device, cause };
      list.push(shared);
      if (list.length > HISTORY) list.shift();
    }
  }

  /** The placement policy decided about a page a device faulted on; the next move of it records why. */
  decision(mm: number, page: number, device: number, text: string): void {
    if (!this.enabled) return;
    if (this.decided.size >= MAX_PAGES) this.decided.clear();
    this.decided.set(decisionKey(pageKey(mm, page), device), text);
  }

  /** A page's history, oldest first (a copy). */
  history(mm: number, page: number): PageEvent[] {
    return [...(this.pages.get(pageKey(mm, page)) ?? [])];
  }

  /** An address space went: its pages' histories go too. */
  forget(mm: number): void {
    for (const key of [...this.pages.keys()]) if (Math.floor(key / VA_PAGES) === mm) this.pages.delete(key);
  }
}
