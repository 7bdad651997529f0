// Fault injection: a test hook that lets tests make a real failure happen at a named point of
// a migration, a copy or a kernel launch, so every phase can be hit deterministically. Loss in
// the wild comes at any moment; these points are the moments that change the outcome.
//
// The hook only *causes* failures with the real WebGPU objects: it destroys the real
// GPUDevice (real device loss: `device.lost` resolves, later mapAsync calls reject), or
// destroys / unmaps the real buffer whose mapAsync is pending (the real mapAsync rejects with
// AbortError while the device stays alive). It never fakes a result, never throws into the
// library, and the library treats whatever follows exactly as it would in production. No
// production path sets `HmmDevice.faultInjection`; unset, each point costs one optional call.

/** Where a failure can be injected, in the order a migration reaches them. */
export type FaultPoint =
  /** migrate (both ways): pages isolated (entries Migrating, devices unmapped), nothing allocated yet. */
  | 'isolated'
  /** migrateToDevice: destination frames taken, nothing copied yet. */
  | 'allocated'
  /** copy engine: the staging upload and its scatter copies are submitted. */
  | 'uploadSubmitted'
  /** migrateToDevice: about to wait for the copy to finish on the GPU (settle). */
  | 'settling'
  /**
   * migrateToDevice: the copy has finished on the GPU; the commit follows in this same tick.
   * migrateToSystem: the downloaded bytes are in hand; the commit follows in this same tick.
   */
  | 'beforeCommit'
  /** migrate (both ways): entries point at the new place; finalize (waking CPU waiters) follows. */
  | 'committed'
  /** migrate (both ways): finalized, the migration is over. */
  | 'finalized'
  /** copy engine: the gather copy into the readback buffer is submitted, mapAsync not called yet. */
  | 'downloadSubmitted'
  /** A readback's mapAsync was called and has not resolved; `ctx.buffer` is that buffer. */
  | 'mapPending'
  /** A kernel launch was submitted; its status is not read back yet. */
  | 'launchSubmitted'
  /**
   * A migration is about to take a 2 MiB run of frames for a whole huge block: on the device
   * (`direction` 'toDevice') or in system RAM ('toSystem'). `ctx.refuse()` makes that one
   * allocation fail, as test_hmm's HMM_DMIRROR_FLAG_FAIL_ALLOC does: the block then moves
   * as 4 KiB pages.
   */
  | 'allocHuge';

export interface FaultContext {
  /** The real GPUDevice: `ctx.device.destroy()` loses it. */
  readonly device: GPUDevice;
  /** At 'mapPending': the buffer being mapped (`destroy()` or `unmap()` makes mapAsync reject). */
  readonly buffer?: GPUBuffer;
  /** Migration points: which way the pages move. */
  readonly direction?: 'toDevice' | 'toSystem';
  /** What the readback at 'mapPending' is for. */
  readonly what?: 'download' | 'launch' | 'mirror' | 'pageTable';
  /** At 'allocHuge': make this 2 MiB allocation fail. */
  readonly refuse?: () => void;
}

export interface FaultInjection {
  /** Called at every point; may destroy `ctx.device` or `ctx.buffer`. Must not throw. */
  at(point: FaultPoint, ctx: FaultContext): void;
}

/**
 * One failure at the `nth` time (1-based) `point` is reached with a context `match` accepts,
 * then none. `fail` does the real damage, e.g. `(c) => c.device.destroy()`.
 */
export function failAt(
  point: FaultPoint,
  fail: (ctx: FaultContext) => void,
  opts: { nth?: number; match?: (ctx: FaultContext) => boolean } = {},
): FaultInjection & { readonly fired: boolean } {
  let seen = 0;
  let fired = false;
  return {
    get fired() {
      return fired;
    },
    at(p, ctx) {
      if (fired || p !== point || (opts.match && !opts.match(ctx))) return;
      if (++seen < (opts.nth ?? 1)) return;
      fired = true;
      fail(ctx);
    },
  };
}

/** Real device loss. */
export const loseDevice = (ctx: FaultContext): void => ctx.device.destroy();

/** The 2 MiB allocation fails (the pool keeps its frames). Use at 'allocHuge'. */
export const refuseAlloc = (ctx: FaultContext): void => {
  if (!ctx.refuse) throw new Error(`refuseAlloc: no allocation at this point`);
  ctx.refuse();
};

/** The pending mapAsync rejects (AbortError); the device stays alive. Use at 'mapPending'. */
export const abortMap = (ctx: FaultContext): void => {
  if (!ctx.buffer) throw new Error(`abortMap: no buffer at this point`);
  ctx.buffer.destroy();
};
