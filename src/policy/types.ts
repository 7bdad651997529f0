// The policy interfaces: every decision the mechanism (src/hmm, src/device) takes about where
// pages live is asked of a policy, a plain object with a `name` and one method, given only what
// the mechanism shows it. The built-ins (prefetch.ts, eviction.ts, placement.ts, batching.ts)
// implement these same interfaces; a user's policy is passed the same way (createSystem's
// `devices[i].policy`, or a dispatch's `policy`). Pages are VA page numbers (va / 4096).
//
// A policy only decides. The mechanism keeps every page safe whatever it returns: it ignores
// pages it may not populate, never evicts what the current fault batch needs or what an older
// operation holds, never moves a pinned page, and a policy that throws or returns something
// that is not an answer fails that operation with an HmmError naming the policy (guard.ts).

/** What a prefetch policy may look at: the device's view of one address space. */
export interface PrefetchView {
  /** The device faulting, and the address space (ids): a stateful policy keeps its streams apart by them. */
  readonly device: number;
  readonly space: number;
  /** The dispatch (its age, the same for all its rounds) and the fault round asking. */
  readonly dispatch: number;
  readonly round: number;
  /** Already valid on the device. */
  resident(page: number): boolean;
  /** May be brought in with the faults: mapped, readable, movable, and nobody else's turn. */
  allowed(page: number): boolean;
}

export interface PrefetchPolicy {
  readonly name: string;
  /**
   * The pages to bring to the device with a batch of faulted pages (`faults`, sorted): the
   * faults themselves need not be listed (they are always served); pages `view.allowed`
   * refuses are ignored.
   */
  select(faults: readonly number[], view: PrefetchView): readonly number[];
}

/** One unit of device memory that could be evicted (its pages are consecutive). */
export interface EvictionCandidate {
  /** Its first page (VA page number in its address space). */
  readonly page: number;
  /** How many pages (1, 16 or 512: the device's eviction unit, or fewer where the unit is not all resident). */
  readonly pages: number;
  /** The address space it belongs to (its id). */
  readonly owner: number;
  /** A kernel touched it since the last sweep (the GPU-set accessed bits). */
  readonly accessed: boolean;
  /** A kernel wrote it since it arrived (it is written back, not dropped). */
  readonly dirty: boolean;
  /** When it arrived on the device (the device's launch count then). */
  readonly arrived: number;
  /**
   * When a sweep last found it accessed, on the same clock as `arrived` (the device's launch
   * count at that sweep; 0: never). The GPU sets accessed bits; the mechanism learns of them
   * only when it sweeps, so this is the latest launch by which the unit was last touched.
   */
  readonly lastAccess: number;
  /** Its place on the clock, from the hand: candidates come in this order. */
  readonly clock: number;
}

export interface EvictionPolicy {
  readonly name: string;
  /**
   * Which candidates to evict to free `need` pages: a subset of `candidates` (anything else
   * is ignored). Fewer than needed is allowed (the caller waits, or evicts again).
   */
  victims(need: number, candidates: readonly EvictionCandidate[]): readonly EvictionCandidate[];
}

/** What a placement policy sees about a page a device faults on. */
export interface PlacementContext {
  readonly page: number;
  /** The device asking. */
  readonly device: number;
  /** A write fault (a read otherwise). */
  readonly write: boolean;
  /** Advice on the page's mapping (mm.advise). */
  readonly advice: { readonly preferred?: 'system' | number; readonly readMostly?: boolean; readonly accessedBy?: readonly number[] };
  /** The page bounces between RAM and devices (the thrashing detector's verdict). */
  readonly thrashing: boolean;
  /** Faults this device took on the page so far (this address space, replayable fault rounds). */
  readonly faults: number;
  /**
   * Why it is asked: false for a page the device faulted on; true for a page that would come
   * along with the faults (a prefetch candidate, or another page of a 2 MiB block). A policy
   * that copies untouched pages turns prefetch off for them: 'copy' leaves them out.
   */
  readonly prefetch: boolean;
}

/**
 * 'migrate': the page moves to the device. 'copy': it stays in RAM and the device maps a copy
 * (read-only for a read; held, written back later, for a write). 'pin': as 'copy', and the
 * page is also kept in RAM against later migrations for a while (thrashing mitigation).
 */
export type Placement = 'migrate' | 'copy' | 'pin';

export interface PlacementPolicy {
  readonly name: string;
  decide(ctx: PlacementContext): Placement;
}

/** What a batching policy sees about one replayable fault round. */
export interface BatchContext {
  /** Distinct pages that faulted this round. */
  readonly faulted: number;
  /** The device's frames. */
  readonly frames: number;
  /** The dispatch's fault batch cap (faultBatchPages). */
  readonly batchPages: number;
  /** Some faulted page is thrashing. */
  readonly thrashing: boolean;
  /** The thrashing throttle's nap the system is configured with (createSystem's `thrashing.napMs`). */
  readonly thrashNapMs: number;
}

export interface BatchPlan {
  /** Faulted pages to serve this round (the rest fault again next round); at least 1. */
  readonly take: number;
  /** Wait this long before serving (throttle), in milliseconds. */
  readonly napMs: number;
}

export interface BatchingPolicy {
  readonly name: string;
  plan(ctx: BatchContext): BatchPlan;
}

/** A device's policies (createSystem's `devices[i].policy`, a dispatch's `policy`): any may be left out. */
export interface Policies {
  prefetch?: PrefetchPolicy;
  eviction?: EvictionPolicy;
  placement?: PlacementPolicy;
  batching?: BatchingPolicy;
}

/**
 * A named set of policies: what a policy module (examples/policies/*.ts) default-exports, and
 * what `npm run bench -- --policy`, `npm run replay -- --policy` and the Policy lab page load.
 * Its `name` labels the set in tables, plots and traces; the policies it leaves out are the
 * built-ins.
 */
export interface PolicySet extends Policies {
  readonly name: string;
}
