// SystemRam: "system RAM" is one SharedArrayBuffer cut into 4 KiB frames. It owns the frame
// allocator and the rule that a frame is zeroed before it is handed out again. It knows
// nothing of address spaces; the CPU page table says which page a frame backs.

import { PAGE_SIZE } from '../constants.ts';
import { HmmError } from '../errors.ts';

export class SystemRam {
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly frameCount: number;
  private readonly freeStack: Int32Array;
  private freeTop: number;
  /** 1 while a frame is handed out: catches double frees before they hand one frame to two owners. */
  private readonly inUse: Uint8Array;

  constructor(readonly sizeBytes: number) {
    if (!Number.isInteger(sizeBytes) || sizeBytes < PAGE_SIZE || sizeBytes % PAGE_SIZE !== 0)
      throw new HmmError('EINVAL', `systemRamBytes ${sizeBytes} must be a positive multiple of 4096`);
    this.buffer = new SharedArrayBuffer(sizeBytes);
    this.bytes = new Uint8Array(this.buffer);
    this.frameCount = sizeBytes / PAGE_SIZE;
    this.freeStack = new Int32Array(this.frameCount);
    // Lowest frames on top, so allocation order is predictable in tests and traces.
    for (let i = 0; i < this.frameCount; i++) this.freeStack[i] = this.frameCount - 1 - i;
    this.freeTop = this.frameCount;
    this.inUse = new Uint8Array(this.frameCount);
  }

  get freeFrames(): number {
    return this.freeTop;
  }

  /** Allocate one zeroed frame; ENOMEM names what it was for. */
  alloc(forWhat: string): number {
    if (this.freeTop === 0)
      throw new HmmError('ENOMEM', `system RAM exhausted (${this.frameCount} frames of 4 KiB in use) while ${forWhat}`);
    const f = this.freeStack[--this.freeTop]!;
    this.inUse[f] = 1;
    this.frame(f).fill(0); // zeroed before reuse: no address space reads another's data
    return f;
  }

  /** Allocate n frames or none (all-or-nothing, so a failed batch leaks nothing). */
  allocMany(n: number, forWhat: string): number[] {
    if (n > this.freeTop)
      throw new HmmError('ENOMEM', `system RAM exhausted: ${n} frames needed, ${this.freeTop} free, while ${forWhat}`);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.alloc(forWhat));
    return out;
  }

  free(frame: number): void {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.frameCount)
      throw new Error(`SystemRam.free: frame ${frame} out of range`);
    if (!this.inUse[frame]) throw new Error(`SystemRam.free: double free of frame ${frame}`);
    this.inUse[frame] = 0;
    this.freeStack[this.freeTop++] = frame;
  }

  /** A view of one frame's 4096 bytes (shares memory with the SharedArrayBuffer). */
  frame(f: number): Uint8Array {
    return this.bytes.subarray(f * PAGE_SIZE, (f + 1) * PAGE_SIZE);
  }
}
