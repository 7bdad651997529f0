// CopyEngine: moves page contents between system RAM and device frames the way a DMA engine
// would: many pages per GPU round trip. Uploads pack every page into one plain array; when the
// destination frames form a few consecutive runs, each run is one writeBuffer into the pool,
// otherwise one staging writeBuffer and GPU scatter copies; downloads gather frames into one
// readback buffer and map it once. Never one writeBuffer per page.

import { PAGE_SIZE } from '../constants.ts';
import type { Stats } from '../trace/stats.ts';
import { type DeviceMemory, frameRuns } from './deviceMemory.ts';
import type { FaultContext, FaultPoint } from './faultInjection.ts';

/** A dirty block: what one bit of a page's dirty-block word stands for (shaders/hmm.wgsl). */
export const BLOCK_SIZE = 256;
export const BLOCKS_PER_PAGE = PAGE_SIZE / BLOCK_SIZE;

/** Set bits of a dirty-block word. */
export function popcount16(b: number): number {
  b = b - ((b >>> 1) & 0x5555);
  b = (b & 0x3333) + ((b >>> 2) & 0x3333);
  b = (b + (b >>> 4)) & 0x0f0f;
  return (b + (b >>> 8)) & 0x1f;
}

/**
 * Dirty-block words to read in the same readback as a download: `words[i]` is page i's word
 * index in `buffer` (a leaf buffer), or -1 when it has none; what is read lands in `out[i]`
 * (left as it was for -1).
 */
export interface StatusRead {
  buffer: GPUBuffer;
  words: readonly number[];
  out: Uint32Array;
}

/** Runs of consecutive word indices: [position in the list, first word, count]. */
function wordRuns(words: readonly number[]): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w < 0) continue;
    const last = out[out.length - 1];
    if (last && last[0] + last[2] === i && last[1] + last[2] === w) last[2]++;
    else out.push([i, w, 1]);
  }
  return out;
}

/** The largest staging or readback buffer one batch uses; bigger batches are split. */
const MAX_BATCH_BYTES = 32 << 20;
/**
 * Up to this many runs of consecutive destination frames (of 4 pages or more on average), an
 * upload writes each run straight into the pool; otherwise it goes through the staging buffer
 * and a GPU scatter. Measured on Dawn (SwiftShader), 256 pages: 1 run 0.05 ms direct vs
 * 0.14 ms staged, 16 runs 0.06 vs 0.16.
 */
const DIRECT_MAX_RUNS = 16;

export class CopyEngine {
  private staging: GPUBuffer | undefined;
  /** A readback buffer no download is using (readbackBuffer). */
  private spareReadback: GPUBuffer | undefined;
  private packed = new Uint8Array(0);
  /** Test hook (faultInjection.ts): set by HmmDevice, called at the copy points. */
  inject: ((point: FaultPoint, ctx: Partial<FaultContext>) => void) | undefined;

  constructor(
    private readonly device: GPUDevice,
    private readonly memory: DeviceMemory,
    private readonly stats: Stats,
  ) {}

  /**
   * Queue the upload of `sources[i]` (4096 bytes each) into `frames[i]`. The bytes are copied
   * out of `sources` before this returns (staging is a plain ArrayBuffer: Dawn in Node cannot
   * upload from a SharedArrayBuffer view), so the caller may reuse them at once.
   */
  upload(frames: readonly number[], sources: readonly Uint8Array[]): void {
    const perBatch = MAX_BATCH_BYTES / PAGE_SIZE;
    for (let from = 0; from < frames.length; from += perBatch) {
      const fs = frames.length <= perBatch ? frames : frames.slice(from, from + perBatch);
      const bytes = fs.length * PAGE_SIZE;
      if (this.packed.length < bytes) this.packed = new Uint8Array(Math.max(bytes, this.packed.length * 2));
      for (let i = 0; i < fs.length; i++) this.packed.set(sources[from + i]!, i * PAGE_SIZE);
      const runs = frameRuns(fs, this.memory.frameShift);
      if (runs.length === 1 || (runs.length <= DIRECT_MAX_RUNS && fs.length >= 4 * runs.length)) {
        // Few, long destination runs (the usual case: frames come out of the allocator sorted):
        // write each run straight into the pool. writeBuffer stages the bytes itself, so going
        // through our staging buffer would only add a second GPU-side copy of every byte and a
        // submit. Short runs would make this one write per page: those take the staging path.
        for (const run of runs) {
          const dst = this.memory.locate(run.first);
          this.device.queue.writeBuffer(dst.buffer, dst.offset, this.packed.buffer, run.index * PAGE_SIZE, run.count * PAGE_SIZE);
        }
      } else {
        // Scattered frames: one staging write, then the GPU scatters the pages to their frames.
        const staging = this.stagingBuffer(bytes);
        this.device.queue.writeBuffer(staging, 0, this.packed.buffer, 0, bytes);
        const enc = this.device.createCommandEncoder({ label: 'hmm upload scatter' });
        for (const run of runs) {
          const dst = this.memory.locate(run.first);
          enc.copyBufferToBuffer(staging, run.index * PAGE_SIZE, dst.buffer, dst.offset, run.count * PAGE_SIZE);
        }
        this.device.queue.submit([enc.finish()]);
      }
      this.stats.add('copyBatches');
      this.inject?.('uploadSubmitted', { direction: 'toDevice' });
    }
  }

  /**
   * Read frames back; result holds frame i at offset i*4096. With `status`, the pages'
   * dirty-block words come back in the same readback (the first batch's, submitted before this
   * returns to the event loop: the words are the ones the queue's earlier kernels left).
   */
  async download(frames: readonly number[], status?: StatusRead): Promise<Uint8Array> {
    const out = new Uint8Array(frames.length * PAGE_SIZE);
    const perBatch = MAX_BATCH_BYTES / PAGE_SIZE;
    for (let from = 0; from < frames.length; from += perBatch) {
      const fs = frames.slice(from, from + perBatch);
      const bytes = fs.length * PAGE_SIZE;
      const words = from === 0 && status ? wordRuns(status.words) : [];
      const wordBytes = words.length > 0 ? status!.words.length * 4 : 0;
      const size = bytes + wordBytes;
      const readback = this.readbackBuffer(size);
      const enc = this.device.createCommandEncoder({ label: 'hmm download gather' });
      for (const run of frameRuns(fs, this.memory.frameShift)) {
        const src = this.memory.locate(run.first);
        enc.copyBufferToBuffer(src.buffer, src.offset, readback, run.index * PAGE_SIZE, run.count * PAGE_SIZE);
      }
      for (const [at, first, count] of words) enc.copyBufferToBuffer(status!.buffer, first * 4, readback, bytes + at * 4, count * 4);
      this.device.queue.submit([enc.finish()]);
      this.stats.add('copyBatches');
      this.inject?.('downloadSubmitted', { direction: 'toSystem' });
      let reusable = false;
      try {
        const mapped = readback.mapAsync(GPUMapMode.READ, 0, size);
        this.inject?.('mapPending', { buffer: readback, what: 'download', direction: 'toSystem' });
        await mapped;
        const range = readback.getMappedRange(0, size);
        out.set(new Uint8Array(range, 0, bytes), from * PAGE_SIZE);
        if (wordBytes > 0) {
          const got = new Uint32Array(range, bytes, status!.words.length);
          status!.words.forEach((w, i) => w >= 0 && (status!.out[i] = got[i]!));
        }
        readback.unmap();
        reusable = true;
      } finally {
        if (reusable) this.keepReadback(readback);
        else readback.destroy(); // a failed map: the buffer's state is unknown, never reuse it
      }
    }
    return out;
  }

  /**
   * Read back only the 256-byte blocks `blocks[i]` names of frame i (bit b: block b), packed:
   * frame 0's blocks in ascending order, then frame 1's, and so on. One readback per batch, one
   * copy per run of consecutive blocks; frames with no block cost nothing.
   */
  async downloadBlocks(frames: readonly number[], blocks: readonly number[]): Promise<Uint8Array> {
    let total = 0;
    for (const b of blocks) total += popcount16(b);
    const out = new Uint8Array(total * BLOCK_SIZE);
    let done = 0;
    for (let from = 0; from < frames.length; ) {
      // a batch: frames whose blocks fit MAX_BATCH_BYTES
      let to = from;
      let bytes = 0;
      while (to < frames.length && bytes + popcount16(blocks[to]!) * BLOCK_SIZE <= MAX_BATCH_BYTES) bytes += popcount16(blocks[to++]!) * BLOCK_SIZE;
      if (bytes === 0) {
        from = to;
        continue;
      }
      const readback = this.device.createBuffer({ label: 'hmm dirty-block gather', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = this.device.createCommandEncoder({ label: 'hmm dirty-block gather' });
      let at = 0;
      for (let i = from; i < to; i++) {
        const b = blocks[i]!;
        if (b === 0) continue;
        const src = this.memory.locate(frames[i]!);
        for (let k = 0; k < BLOCKS_PER_PAGE; ) {
          if (!(b & (1 << k))) {
            k++;
            continue;
          }
          let n = 1;
          while (k + n < BLOCKS_PER_PAGE && b & (1 << (k + n))) n++;
          enc.copyBufferToBuffer(src.buffer, src.offset + k * BLOCK_SIZE, readback, at, n * BLOCK_SIZE);
          at += n * BLOCK_SIZE;
          k += n;
        }
      }
      this.device.queue.submit([enc.finish()]);
      this.stats.add('copyBatches');
      this.inject?.('downloadSubmitted', { direction: 'toSystem' });
      try {
        const mapped = readback.mapAsync(GPUMapMode.READ);
        this.inject?.('mapPending', { buffer: readback, what: 'download', direction: 'toSystem' });
        await mapped;
        out.set(new Uint8Array(readback.getMappedRange()), done);
        readback.unmap();
      } finally {
        readback.destroy();
      }
      done += bytes;
      from = to;
    }
    return out;
  }

  /**
   * A readback buffer of at least `bytes` (at most twice: a small download never maps a large
   * one): the spare one a finished download left, or a new one. Creating a 2 MiB MAP_READ
   * buffer per download was 0.8 ms of a huge page's 2.5 ms trip home on SwiftShader (Dawn
   * clears every new buffer); downloads running at once each get their own.
   */
  private readbackBuffer(bytes: number): GPUBuffer {
    const spare = this.spareReadback;
    if (spare && spare.size >= bytes && spare.size <= 2 * bytes) {
      this.spareReadback = undefined;
      return spare;
    }
    return this.device.createBuffer({ label: 'hmm download gather', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** An unmapped readback buffer, free again: kept as the spare (the latest size wins). */
  private keepReadback(buffer: GPUBuffer): void {
    if (this.spareReadback) this.spareReadback.destroy();
    this.spareReadback = buffer;
  }

  private stagingBuffer(bytes: number): GPUBuffer {
    if (!this.staging || this.staging.size < bytes) {
      // Safe to drop the old one now: destroy() waits for queued work that uses it.
      this.staging?.destroy();
      this.staging = this.device.createBuffer({
        label: 'hmm upload staging',
        size: Math.max(bytes, 64 * PAGE_SIZE),
        usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
    }
    return this.staging;
  }

  destroy(): void {
    this.staging?.destroy();
    this.spareReadback?.destroy();
  }
}
