// SystemRam: "system RAM" is one SharedArrayBuffer cut into 4 KiB frames. It owns the frame
// allocator and the rule that a frame is zeroed before it is handed out again. It knows
// nothing of address spaces; the CPU page table says which page a frame backs.

import { PAGE_SIZE } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { FrameAllocator } from './frameAllocator.ts';

export class SystemRam {
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly frameCount: number;
  private readonly frames: FrameAllocator;

  constructor(readonly sizeBytes: number) {
    if (!Number.isInteger(sizeBytes) || sizeBytes < PAGE_SIZE || sizeBytes % PAGE_SIZE !== 0)
      throw new HmmError('EINVAL', `systemRamBytes ${sizeBytes} must be a positive multiple of 4096`);
    this.buffer = new SharedArrayBuffer(sizeBytes);
    this.bytes = new Uint8Array(this.buffer);
    this.frameCount = sizeBytes / PAGE_SIZE;
    this.frames = new FrameAllocator(this.frameCount, 'SystemRam');
  }

  get freeFrames(): number {
    return this.frames.free;
  }

  /** Allocate one zeroed frame; ENOMEM names what it was for. */
  alloc(forWhat: string): number {
    if (this.frames.free === 0)
      throw new HmmError('ENOMEM', `system RAM exhausted (${this.frameCount} frames of 4 KiB in use) while ${forWhat}`);
    const f = this.frames.take(1)[0]!;
    this.frame(f).fill(0); // zeroed before reuse: no address space reads another's data
    return f;
  }

  /** Allocate n frames or none (all-or-nothing, so a failed batch leaks nothing). */
  allocMany(n: number, forWhat: string): number[] {
    if (n > this.frames.free)
      throw new HmmError('ENOMEM', `system RAM exhausted: ${n} frames needed, ${this.frames.free} free, while ${forWhat}`);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.alloc(forWhat));
    return out;
  }

  free(frame: number): void {
    this.frames.give(frame);
  }

  /** A view of one frame's 4096 bytes (shares memory with the SharedArrayBuffer). */
  frame(f: number): Uint8Array {
    return this.bytes.subarray(f * PAGE_SIZE, (f + 1) * PAGE_SIZE);
  }
}
