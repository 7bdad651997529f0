// FrameAllocator: the free list behind both system RAM and device memory. Frames are small
// integers; the lowest come out first, so allocation order is predictable in tests and
// traces. It refuses a double free, which would otherwise hand one frame to two owners.

export class FrameAllocator {
  private readonly freeStack: Int32Array;
  private top: number;
  private readonly inUse: Uint8Array;

  constructor(
    readonly count: number,
    private readonly owner: string,
  ) {
    this.freeStack = new Int32Array(count);
    for (let i = 0; i < count; i++) this.freeStack[i] = count - 1 - i;
    this.top = count;
    this.inUse = new Uint8Array(count);
  }

  get free(): number {
    return this.top;
  }

  /** Up to n frames: fewer when the pool runs short. */
  take(n: number): number[] {
    const k = Math.min(n, this.top);
    const out = new Array<number>(k);
    for (let i = 0; i < k; i++) {
      const f = this.freeStack[--this.top]!;
      this.inUse[f] = 1;
      out[i] = f;
    }
    return out;
  }

  give(frame: number): void {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.count) throw new Error(`${this.owner}: frame ${frame} out of range`);
    if (!this.inUse[frame]) throw new Error(`${this.owner}: double free of frame ${frame}`);
    this.inUse[frame] = 0;
    this.freeStack[this.top++] = frame;
  }
}
