// DeviceMemory: device-private memory, 4 KiB frames in one to four storage GPUBuffers (more
// than one when the pool exceeds a single storage binding). It owns the frame allocator and
// zeroes frames on free, so every free frame reads as zeros. Ordering makes that safe: the
// clear is queued after any GPU work already submitted against the frame, and every later
// use of the frame is queued after the clear.

import { PAGE_SIZE } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { FrameAllocator } from '../mm/frameAllocator.ts';

export const MAX_MEMORY_BUFFERS = 4; // the prelude binds hmm_mem0..hmm_mem3

export interface FrameLocation {
  buffer: GPUBuffer;
  offset: number;
}

export class DeviceMemory {
  readonly buffers: GPUBuffer[] = [];
  /** log2 of the frames held by each buffer (the prelude's HMM_FRAME_SHIFT). */
  readonly frameShift: number;
  readonly frameCount: number;
  private readonly frames: FrameAllocator;

  constructor(
    private readonly device: GPUDevice,
    readonly label: string,
    memoryBytes: number,
    maxBufferBytes: number,
  ) {
    if (!Number.isInteger(memoryBytes) || memoryBytes < PAGE_SIZE || memoryBytes % PAGE_SIZE !== 0)
      throw new HmmError('EINVAL', `${label}: memoryBytes ${memoryBytes} must be a positive multiple of 4096`);
    this.frameCount = memoryBytes / PAGE_SIZE;
    // Frames per buffer: a power of two so the prelude splits a frame number with a shift.
    const maxFrames = Math.max(1, Math.floor(maxBufferBytes / PAGE_SIZE));
    let shift = Math.floor(Math.log2(maxFrames));
    const needed = Math.ceil(Math.log2(this.frameCount));
    shift = Math.min(shift, Math.max(needed, 0));
    const perBuffer = 2 ** shift;
    const nbuf = Math.ceil(this.frameCount / perBuffer);
    if (nbuf > MAX_MEMORY_BUFFERS)
      throw new HmmError(
        'EINVAL',
        `${label}: ${memoryBytes} bytes of device memory need ${nbuf} buffers of ${perBuffer * PAGE_SIZE} bytes; at most ${MAX_MEMORY_BUFFERS} are bound`,
      );
    this.frameShift = shift;
    for (let b = 0; b < nbuf; b++) {
      const frames = Math.min(perBuffer, this.frameCount - b * perBuffer);
      this.buffers.push(
        device.createBuffer({
          label: `${label} memory ${b}`,
          size: frames * PAGE_SIZE,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        }),
      );
    }
    this.frames = new FrameAllocator(this.frameCount, label);
  }

  get freeFrames(): number {
    return this.frames.free;
  }

  /** Up to n zeroed frames, lowest first: fewer when memory runs short (callers fail the rest per page). */
  allocUpTo(n: number): number[] {
    // The free list hands frames back in the reverse of the order they were freed: sorted, a
    // batch is a few consecutive runs, so the copy engine writes it in a few large copies
    // instead of one small copy per frame.
    return this.frames.take(n).sort((a, b) => a - b);
  }

  /** The free frames in the order allocUpTo would take them (a recording's starting state, src/replay/). */
  freeOrder(): number[] {
    return this.frames.order();
  }

  /**
   * 512 consecutive frames in one buffer, 512-aligned: a 2 MiB device frame for a huge page.
   * Null when none is free (or buffers are smaller than 2 MiB): the caller falls back to 4 KiB.
   */
  allocHuge(): number | null {
    if (this.frameShift < 9) return null;
    return this.frames.takeAligned(512);
  }

  /** Free frames; they are cleared on the GPU before anyone can use them again. */
  free(frames: readonly number[]): void {
    if (frames.length === 0) return;
    const enc = this.device.createCommandEncoder({ label: `${this.label} zero freed frames` });
    for (const run of frameRuns(frames, this.frameShift)) {
      const loc = this.locate(run.first);
      enc.clearBuffer(loc.buffer, loc.offset, run.count * PAGE_SIZE);
    }
    this.device.queue.submit([enc.finish()]);
    for (const f of frames) this.frames.give(f);
  }

  locate(frame: number): FrameLocation {
    const b = frame >>> this.frameShift;
    const buffer = this.buffers[b];
    if (!buffer || frame >= this.frameCount) throw new Error(`DeviceMemory: frame ${frame} out of range`);
    return { buffer, offset: (frame - (b << this.frameShift)) * PAGE_SIZE };
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}

/** Consecutive frames within one buffer, in the given order, as [first, count] runs. */
export function frameRuns(frames: readonly number[], shift: number): { first: number; count: number; index: number }[] {
  const runs: { first: number; count: number; index: number }[] = [];
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]!;
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === f && f >>> shift === last.first >>> shift) last.count++;
    else runs.push({ first: f, count: 1, index: i });
  }
  return runs;
}
