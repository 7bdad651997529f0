// SystemRam: "system RAM" is one SharedArrayBuffer cut into 4 KiB frames. It owns the frame
// allocator, the per-frame reference counts (fork shares frames copy-on-write), and the rule
// that a frame is zeroed before it is handed out again. It knows nothing of address spaces;
// the CPU page tables say which pages a frame backs.

import { PAGE_SIZE } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { FrameAllocator } from './frameAllocator.ts';

/** What a reused frame is cleared from. */
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

export class SystemRam {
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly frameCount: number;
  /**
   * References per frame (page-table entries that point at it), in a SharedArrayBuffer so CPU
   * threads can see that a private frame is shared copy-on-write and take the slow path.
   */
  readonly refs: Int32Array;
  private readonly frames: FrameAllocator;
  /** Frames unmapped while something still used them (a CPU thread inside, a pin): freed once `done`. */
  private deferred: { frame: number; done: () => boolean }[] = [];

  constructor(readonly sizeBytes: number) {
    if (!Number.isInteger(sizeBytes) || sizeBytes < PAGE_SIZE || sizeBytes % PAGE_SIZE !== 0)
      throw new HmmError('EINVAL', `systemRamBytes ${sizeBytes} must be a positive multiple of 4096`);
    this.buffer = new SharedArrayBuffer(sizeBytes);
    this.bytes = new Uint8Array(this.buffer);
    this.frameCount = sizeBytes / PAGE_SIZE;
    // Stryker disable next-line StringLiteral: free() checks the references first, so the allocator never names its owner
    this.frames = new FrameAllocator(this.frameCount, 'SystemRam');
    this.refs = new Int32Array(new SharedArrayBuffer(this.frameCount * 4));
  }

  get freeFrames(): number {
    return this.frames.free;
  }

  /**
   * Free `frame` once no CPU thread pins `page` in `pins` (its address space's table). Kept
   * here, not in the address space, so a frame outlives a destroyed one and is still reaped.
   */
  freeWhenUnpinned(frame: number, pins: Int32Array, page: number): void {
    this.freeWhen(frame, () => Atomics.load(pins, page) === 0);
  }

  /** Free `frame` (drop the reference its unmapped page held) once `done()` says nothing uses it. */
  freeWhen(frame: number, done: () => boolean): void {
    this.deferred.push({ frame, done });
  }

  /** Free the deferred frames nothing uses any more. */
  reap(): void {
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as false; filtering an empty list changes nothing
    if (this.deferred.length === 0) return;
    this.deferred = this.deferred.filter((d) => {
      if (!d.done()) return true;
      this.free(d.frame);
      return false;
    });
  }

  /**
   * Who can give frames back under pressure (an address space's pages marked madvise 'free'):
   * asked, in order, when an allocation would fail. Each returns the frames it freed.
   */
  private readonly reclaimers = new Set<(want: number) => number>();

  /** Register a reclaimer (see `reclaimers`); the result unregisters it. */
  onPressure(reclaim: (want: number) => number): () => void {
    this.reclaimers.add(reclaim);
    return () => this.reclaimers.delete(reclaim);
  }

  /** Make `n` frames free if reaping and reclaiming can. */
  private makeFree(n: number): void {
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true or `>=`; makeFree is only called when n > free
    if (n > this.frames.free) this.reap();
    for (const reclaim of this.reclaimers) {
      if (n <= this.frames.free) return;
      reclaim(n - this.frames.free);
    }
  }

  /**
   * Allocate one frame, zeroed unless `zero` is false (a migration destination the caller
   * overwrites whole before any page-table entry names it); ENOMEM names what it was for.
   */
  alloc(forWhat: string, zero = true): number {
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true; makeFree(1) with a frame free does nothing
    if (this.frames.free === 0) this.makeFree(1);
    if (this.frames.free === 0) throw new HmmError('ENOMEM', `system RAM exhausted (${this.frameCount} frames of 4 KiB in use) while ${forWhat}`);
    const f = this.frames.take(1)[0]!;
    // zeroed before reuse: no address space reads another's data (a copy from a zero page:
    // fill() on a SharedArrayBuffer view takes V8's slow path, 2.5x slower per frame)
    if (zero) this.bytes.set(ZERO_PAGE, f * PAGE_SIZE);
    Atomics.store(this.refs, f, 1);
    return f;
  }

  /**
   * A zeroed, aligned run of `n` frames (n a power of two: 512 for a 2 MiB huge page), each with
   * one reference; its first frame, or null when RAM has no such run free (it is fragmented).
   * The frames are ordinary frames after that: each is freed on its own. `zero` false skips
   * the clearing for a migration destination the caller overwrites whole before mapping it
   * (clearing 2 MiB was a third of a huge page's trip home on SwiftShader).
   */
  allocRun(n: number, zero = true): number | null {
    const base = this.frames.takeAligned(n);
    if (base === null) return null;
    if (zero) for (let f = base; f < base + n; f++) this.bytes.set(ZERO_PAGE, f * PAGE_SIZE);
    for (let f = base; f < base + n; f++) Atomics.store(this.refs, f, 1);
    return base;
  }

  /** Allocate n frames or none (all-or-nothing, so a failed batch leaks nothing); `zero` as for alloc. */
  allocMany(n: number, forWhat: string, zero = true): number[] {
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true or `>=`; makeFree(n) with n frames free does nothing
    if (n > this.frames.free) this.makeFree(n);
    if (n > this.frames.free) throw new HmmError('ENOMEM', `system RAM exhausted: ${n} frames needed, ${this.frames.free} free, while ${forWhat}`);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.alloc(forWhat, zero));
    return out;
  }

  /** Drop one reference; the frame goes back to the pool with the last one. */
  free(frame: number): void {
    const left = Atomics.sub(this.refs, frame, 1) - 1;
    if (left < 0) {
      Atomics.store(this.refs, frame, 0);
      throw new Error(`SystemRam: double free of frame ${frame} (no reference held)`);
    }
    if (left === 0) this.frames.give(frame);
  }

  /** One more page-table entry points at `frame` (fork). */
  share(frame: number): void {
    Atomics.add(this.refs, frame, 1);
  }

  /** How many entries point at `frame`; more than one means copy-on-write for private pages. */
  refCount(frame: number): number {
    return Atomics.load(this.refs, frame);
  }

  /** A view of one frame's 4096 bytes (shares memory with the SharedArrayBuffer). */
  frame(f: number): Uint8Array {
    return this.bytes.subarray(f * PAGE_SIZE, (f + 1) * PAGE_SIZE);
  }
}
