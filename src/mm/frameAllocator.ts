// FrameAllocator: the free list behind both system RAM and device memory. Frames are small
// integers; the lowest come out first, so allocation order is predictable in tests and
// traces. It refuses a double free, which would otherwise hand one frame to two owners, and
// can hand out an aligned run of frames (a 2 MiB device frame for a huge page).

export class FrameAllocator {
  /** Free frames, lowest on top. May hold stale entries for frames taken by takeAligned. */
  private readonly stack: number[] = [];
  private readonly inUse: Uint8Array;
  /** 1 while a frame has an entry in `stack` (fresh or stale), so it is never pushed twice. */
  private readonly onStack: Uint8Array;
  private freeCount: number;

  constructor(
    readonly count: number,
    private readonly owner: string,
  ) {
    for (let i = count - 1; i >= 0; i--) this.stack.push(i);
    this.inUse = new Uint8Array(count);
    this.onStack = new Uint8Array(count).fill(1);
    this.freeCount = count;
  }

  get free(): number {
    return this.freeCount;
  }

  /** Up to n frames: fewer when the pool runs short. */
  take(n: number): number[] {
    const out: number[] = [];
    while (out.length < n && this.stack.length > 0) {
      const f = this.stack.pop()!;
      this.onStack[f] = 0;
      if (this.inUse[f]) continue; // stale: taken as part of an aligned run
      this.inUse[f] = 1;
      out.push(f);
    }
    this.freeCount -= out.length;
    return out;
  }

  /** The free frames in the order take() would hand them out (stale entries left out). */
  order(): number[] {
    const out: number[] = [];
    for (let i = this.stack.length - 1; i >= 0; i--) if (!this.inUse[this.stack[i]!]) out.push(this.stack[i]!);
    return out;
  }

  /** `n` consecutive free frames starting at a multiple of `n`, or null. */
  takeAligned(n: number): number | null {
    for (let base = 0; base + n <= this.count; base += n) {
      let free = true;
      for (let f = base; f < base + n && free; f++) if (this.inUse[f]) free = false;
      if (!free) continue;
      for (let f = base; f < base + n; f++) this.inUse[f] = 1;
      this.freeCount -= n;
      return base;
    }
    return null;
  }

  give(frame: number): void {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.count) throw new Error(`${this.owner}: frame ${frame} out of range`);
    if (!this.inUse[frame]) throw new Error(`${this.owner}: double free of frame ${frame}`);
    this.inUse[frame] = 0;
    this.freeCount++;
    if (!this.onStack[frame]) {
      this.onStack[frame] = 1;
      this.stack.push(frame);
    }
  }
}
