// ControlBuffers: the control buffers of one mirror's launches (status words, fault queue,
// pending bitmap, done bitmap: the layout is in shaders/hmm.wgsl), each with the prelude bind
// group that binds it beside the mirror's page table and the device memory.
//
// Every launch has a control buffer to itself, and a replayable dispatch keeps one for all its
// rounds: its done bitmap says which invocations finished, and another dispatch clearing or
// setting those bits would skip or rerun invocations of this one. Buffers go back to a small
// free list when their launch or dispatch ends, so a steady stream of dispatches creates none.

import { CTL_DONE, CTL_DONE_RECORDING } from './kernel.ts';

export interface Control {
  readonly buffer: GPUBuffer;
  /** @group(1) for the prelude: page table, memory buffers and this control buffer. */
  readonly bindGroup: GPUBindGroup;
}

/** Free buffers kept for reuse; more exist only while that many launches are in flight. */
const KEEP_FREE = 4;

export class ControlBuffers {
  private readonly free: Control[] = [];
  private closed = false;

  constructor(
    private readonly device: GPUDevice,
    private readonly label: string,
    /** The prelude bind group for a control buffer. */
    private readonly bind: (buffer: GPUBuffer) => GPUBindGroup,
  ) {}

  /**
   * A control buffer whose done bitmap has at least `doneBytes`, for one launch or dispatch;
   * with `record`, room for the touched bitmap of a recording pipeline before it.
   */
  take(doneBytes = 16, record = false): Control {
    const size = (record ? CTL_DONE_RECORDING : CTL_DONE) * 4 + Math.max(16, Math.ceil(doneBytes / 16) * 16);
    const i = this.free.findIndex((c) => c.buffer.size >= size);
    if (i >= 0) return this.free.splice(i, 1)[0]!;
    const buffer = this.device.createBuffer({
      label: `${this.label} control`,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    return { buffer, bindGroup: this.bind(buffer) };
  }

  /**
   * The launch or dispatch is over. Commands already submitted may still use the buffer: a
   * later launch that takes it writes its status words and clears its bitmaps in queue order,
   * after them, so reuse never mixes two launches' state.
   */
  give(c: Control): void {
    if (this.closed || this.free.length >= KEEP_FREE) {
      c.buffer.destroy();
    } else this.free.push(c);
  }

  /** Destroy the free buffers; those in use are destroyed when given back. */
  close(): void {
    this.closed = true;
    for (const c of this.free.splice(0)) c.buffer.destroy();
  }
}
