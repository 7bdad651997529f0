// Kernel launches on one device: a launch binds the kernel's uniforms, the address space's
// page table and a control buffer, submits, and reads back the miss status and (replayable)
// the fault queue in one round trip; the dmirror read/write kernels run the same way. The
// uniform and readback buffers are pooled. It counts launches: a held copy handed out before
// the last launch may have been written by it (hmmDevice.ts).

import { HmmError } from '../errors.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import type { Control, ControlBuffers } from './controlBuffers.ts';
import type { DevicePageTable } from './devicePageTable.ts';
import type { HmmDevice } from './hmmDevice.ts';
import {
  CTL_DONE,
  CTL_DONE_RECORDING,
  CTL_FAULTED,
  CTL_QCAP,
  CTL_QLEN,
  CTL_QUEUE,
  CTL_TOUCHED,
  CTL_WINDOW_END,
  CTL_WINDOW_START,
  FAULT_QUEUE_CAP,
  TOUCHED_WORDS,
  compileKernel,
  type HmmKernel,
} from './kernel.ts';
import { shaderSource } from './shaders.ts';

/** What a launch binds and flushes first: one address space's device page table and control buffers. */
export interface LaunchTarget {
  readonly table: DevicePageTable;
  readonly mm: AddressSpace;
  readonly controls: ControlBuffers;
}

export interface LaunchStatus {
  misses: number;
  minMiss: number;
  minWriteMiss: number;
  /** Replayable launches: the fault queue (page*2 + write), each key once per round, at most the fault buffer's capacity. */
  faults?: Uint32Array;
  /** Replayable launches: distinct (page, access) faults that asked for a slot, those the fault buffer had no room for included. */
  queued?: number;
  /** Replayable launches: invocations that faulted (they did not finish this launch). */
  faultedInvocations?: number;
  /** Recording launches: the touched bitmap, bit page*2 + write set for every access asked for, hit or miss. */
  touched?: Uint32Array;
}

export class Launcher {
  private launchCount = 0;
  /** Launch buffers reused from one launch to the next (see launch()), and the uniforms' bind groups. */
  private readonly uniformPool = new BufferPool();
  private readonly readbackPool = new BufferPool();
  private readonly uniformGroups = new WeakMap<GPUBuffer, Map<GPUBindGroupLayout, GPUBindGroup>>();
  /** What each pooled uniform buffer was last written with. */
  private readonly uniformBytes = new WeakMap<GPUBuffer, Uint8Array>();
  /** A launch's control header: misses, min miss, min write miss, fault cap, queue length, faulted, window [start, end). */
  private readonly ctlHeader = new Uint32Array([0, 0xffffffff, 0xffffffff, 0, 0, 0, 0, 0xffffffff]);
  /** The dmirror read/write kernel, compiled on first use. */
  private internal: Promise<HmmKernel> | undefined;

  constructor(private readonly dev: HmmDevice) {}

  /** Kernels submitted so far. */
  get launches(): number {
    return this.launchCount;
  }

  checkWorkgroups(label: string, wg: number | [number, number?, number?]): [number, number, number] {
    if (typeof wg !== 'number' && !(Array.isArray(wg) && wg.length >= 1 && wg.length <= 3))
      throw new HmmError(
        'EINVAL',
        `dispatch '${label}': workgroups ${Array.isArray(wg) ? `[${wg.join(', ')}]` : String(wg)} is not a number or an array [x, y?, z?]`,
      );
    const arr = typeof wg === 'number' ? [wg] : wg;
    const out: [number, number, number] = [arr[0] ?? 1, arr[1] ?? 1, arr[2] ?? 1];
    const max = this.dev.device.limits.maxComputeWorkgroupsPerDimension;
    out.forEach((n, i) => {
      if (!Number.isInteger(n) || n < 1 || n > max)
        throw new HmmError('EINVAL', `dispatch '${label}': workgroups[${i}] = ${String(n)} is not an integer in [1, ${max}]`);
    });
    return out;
  }

  /** Submit one kernel on a mirror and read back its miss status (one round trip). */
  async launch(
    mirror: LaunchTarget,
    control: Control,
    kernel: HmmKernel,
    workgroups: [number, number, number],
    uniforms?: ArrayBufferView | ArrayBuffer,
    io?: GPUBuffer,
    /**
     * Replayable: the replay pipeline and fault queue; clearDone at a dispatch's first launch;
     * record: the recording variant, whose touched bitmap comes back too (src/replay/);
     * faultBuffer: the most faults it delivers (default the device's faultBufferPages); window:
     * the invocations that run, [start, end) of the linear ids (default all).
     */
    replay: { replayable: boolean; clearDone: boolean; record?: boolean; faultBuffer?: number; window?: readonly [number, number] } = {
      replayable: false,
      clearDone: false,
    },
  ): Promise<LaunchStatus> {
    const replayable = replay.replayable;
    const record = replayable && replay.record === true;
    // Only a replayable launch may wait here (for its pipeline's first compile): a validated one
    // submits with no await after mirror.dispatch's last check.
    const pipeline = record ? await kernel.recordingPipeline() : replayable ? await kernel.replayablePipeline() : kernel.pipeline;
    const d = this.dev.device;
    const stats = this.dev.stats;
    // Phases: the page-table upload is 'pt-upload', the rest of the launch's host work up to the
    // submit 'relaunch', waiting for the kernel and the map 'gpu-wait', reading the status back
    // 'fault-readback'; spans only for a launch whose round faulted (below).
    const t0 = performance.now();
    // The GPU's page table must be what the host's says when the kernel starts: a launch is
    // checked against the host table (validated dispatch), so any change not uploaded yet goes
    // now, ahead of the kernel in queue order (nothing when nothing changed).
    stats.add('pageTableWrites', mirror.table.flush());
    const tTable = performance.now();
    const ubytes = uniforms ? toPlainBytes(uniforms) : new Uint8Array(16);
    // The uniform buffer, its bind group and the readback buffer come from pools: a fault round
    // launches at least twice, and creating them anew each time costs more host time than the
    // rest of the launch. Reuse is safe: writeBuffer is ordered on the queue after the earlier
    // launches that read the old uniforms, and a buffer goes back only after its launch's map.
    const usize = Math.max(16, Math.ceil(ubytes.length / 16) * 16);
    const ubuf = this.uniformPool.take(usize, () =>
      d.createBuffer({ label: `uniforms (${usize} bytes)`, size: usize, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
    );
    // the whole buffer, zero padded as a fresh one would be: a reused one holds older uniforms
    const ufull = ubytes.length === usize ? ubytes : new Uint8Array(usize);
    if (ufull !== ubytes) ufull.set(ubytes);
    // A relaunch finds its uniforms still there (a fault round's launches share them, and a pooled
    // buffer is written by nothing else): no second write then.
    const last = this.uniformBytes.get(ubuf);
    if (!last || !sameBytes(last, ufull)) {
      d.queue.writeBuffer(ubuf, 0, ufull.buffer, ufull.byteOffset, usize);
      this.uniformBytes.set(ubuf, ufull.slice());
    }
    const layout = kernel.ioBinding ? this.dev.layouts.group0io : this.dev.layouts.group0;
    let group0 = io ? undefined : this.uniformGroups.get(ubuf)?.get(layout);
    if (!group0) {
      group0 = d.createBindGroup({
        layout,
        entries: io
          ? [
              { binding: 0, resource: { buffer: ubuf } },
              { binding: 1, resource: { buffer: io } },
            ]
          : [{ binding: 0, resource: { buffer: ubuf } }],
      });
      if (!io) {
        const byLayout = this.uniformGroups.get(ubuf) ?? new Map<GPUBindGroupLayout, GPUBindGroup>();
        byLayout.set(layout, group0);
        this.uniformGroups.set(ubuf, byLayout);
      }
    }
    const ctl = control.buffer;
    // Replayable: the fault buffer delivers at most `cap` faults this round (the rest overflow
    // and fault again next round), and only the window's invocations run.
    const cap = replayable ? Math.min(FAULT_QUEUE_CAP, replay.faultBuffer ?? this.dev.faultBufferPages) : 0;
    // (the header goes through one scratch array: writeBuffer copies it before returning)
    const header = this.ctlHeader;
    header[CTL_QCAP] = cap;
    header[CTL_WINDOW_START] = replay.window ? replay.window[0] : 0;
    header[CTL_WINDOW_END] = replay.window ? replay.window[1] : 0xffffffff;
    d.queue.writeBuffer(ctl, 0, header);
    // (a recording launch reads the touched bitmap back behind the queue, in the same map, and
    // every launch the dirty-block words of the address space's held copies after that: a
    // write-back before the next launch then reads only the blocks they name, hmmDevice.ts)
    const queueBytes = (CTL_QUEUE + cap) * 4;
    const touchedBytes = record ? TOUCHED_WORDS * 4 : 0;
    const held = this.dev.heldWords(mirror.mm, mirror.table, HELD_WORDS_MAX);
    // (rounded up to 64 words, so that the pool sees a few sizes, not one per count)
    const heldBytes = held ? Math.ceil(held.words.length / 64) * 256 : 0;
    const readBytes = queueBytes + touchedBytes + heldBytes;
    const readback = this.readbackPool.take(readBytes, () =>
      d.createBuffer({ label: `status readback (${readBytes} bytes)`, size: readBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
    );
    d.pushErrorScope('validation');
    const enc = d.createCommandEncoder({ label: kernel.label });
    // A fresh pending bitmap each round: a page still missing must be able to report again.
    // (Recording: the touched bitmap after it too, one clear for both.)
    const doneBase = record ? CTL_DONE_RECORDING : CTL_DONE;
    if (replayable) enc.clearBuffer(ctl, (CTL_QUEUE + FAULT_QUEUE_CAP) * 4, (doneBase - CTL_QUEUE - FAULT_QUEUE_CAP) * 4);
    // And a fresh done bitmap at a dispatch's first launch (the control buffer is the dispatch's own).
    if (replayable && replay.clearDone) enc.clearBuffer(ctl, doneBase * 4, ctl.size - doneBase * 4);
    const pass = enc.beginComputePass({ label: kernel.label });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group0);
    pass.setBindGroup(1, control.bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
    pass.end();
    enc.copyBufferToBuffer(ctl, 0, readback, 0, queueBytes);
    if (record) enc.copyBufferToBuffer(ctl, CTL_TOUCHED * 4, readback, queueBytes, TOUCHED_WORDS * 4);
    if (held) copyWords(enc, mirror.table.leafBuffer, held.words, readback, queueBytes + touchedBytes);
    this.launchCount++; // held copies handed out before this launch may be written from now on
    const launchedAt = this.launchCount;
    d.queue.submit([enc.finish()]);
    const tSubmit = performance.now();
    this.dev.inject('launchSubmitted', {});
    // The validation result first, then the map. Asking for both at once saves ≈0.03 ms a
    // launch in Node but costs ≈2 ms in Chromium (measured): there a map requested while the
    // kernel still runs is answered at the GPU process's next poll, one requested a round trip
    // later at once.
    const invalid = await d.popErrorScope();
    if (invalid) {
      this.uniformPool.give(ubuf);
      this.readbackPool.give(readback);
      throw new HmmError('EINVAL', `kernel '${kernel.label}' could not be launched on ${this.dev.name}: ${invalid.message}`);
    }
    try {
      const mapped = readback.mapAsync(GPUMapMode.READ);
      this.dev.inject('mapPending', { buffer: readback, what: 'launch' });
      await mapped;
    } catch (e) {
      readback.destroy(); // never back to the pool: a test hook may have destroyed or unmapped it
      throw await this.dev.gpuFailure(`kernel '${kernel.label}'`, e);
    } finally {
      this.uniformPool.give(ubuf);
    }
    const tMapped = performance.now();
    // Only the words the kernel reported: the header, and the fault entries it queued.
    const range = readback.getMappedRange();
    const head = new Uint32Array(range, 0, CTL_QUEUE);
    const words = replayable ? CTL_QUEUE + Math.min(head[CTL_QLEN]!, cap) : CTL_QUEUE;
    const s = new Uint32Array(range, 0, words).slice();
    const touched = record ? new Uint32Array(range, queueBytes, TOUCHED_WORDS).slice() : undefined;
    if (held) this.dev.heldWordsRead(held, new Uint32Array(range, queueBytes + touchedBytes, held.words.length), launchedAt);
    readback.unmap();
    this.readbackPool.give(readback);
    const status: LaunchStatus = { misses: s[0]!, minMiss: s[1]!, minWriteMiss: s[2]! };
    if (replayable) {
      status.faults = s.subarray(CTL_QUEUE);
      status.queued = s[CTL_QLEN]!;
      status.faultedInvocations = s[CTL_FAULTED]!;
    }
    if (touched) status.touched = touched;
    // A launch whose round faulted is part of a fault round: its phases are spans in that round
    // (dispatch.ts records the round around it); a launch that did not fault only adds its time.
    const tDone = performance.now();
    stats.addPhase('pt-upload', tTable - t0);
    stats.addPhase('relaunch', tSubmit - tTable);
    stats.addPhase('gpu-wait', tMapped - tSubmit);
    stats.addPhase('fault-readback', tDone - tMapped);
    if (replayable && status.misses > 0 && stats.trace.enabled) {
      const dev = this.dev.id;
      const mm = mirror.mm.id;
      stats.trace.record({ kind: 'phase', phase: 'pt-upload', detail: 'pt-upload', ts: t0, dur: tTable - t0, device: dev, mm });
      stats.trace.record({ kind: 'phase', phase: 'relaunch', detail: 'relaunch', ts: tTable, dur: tSubmit - tTable, device: dev, mm });
      stats.trace.record({ kind: 'phase', phase: 'gpu-wait', detail: 'gpu-wait', ts: tSubmit, dur: tMapped - tSubmit, device: dev, mm });
      stats.trace.record({ kind: 'phase', phase: 'fault-readback', detail: 'fault-readback', ts: tMapped, dur: tDone - tMapped, device: dev, mm });
    }
    this.dev.stats.trace.record({
      kind: 'kernel',
      ts: t0,
      dur: tDone - t0,
      device: this.dev.id,
      mm: mirror.mm.id,
      detail: `${kernel.label} ${workgroups.join('x')} workgroups${status.misses ? `, ${status.misses} misses` : ''}`,
    });
    return status;
  }

  /** The dmirror read/write ioctls as GPU kernels over [va, va + 4*nwords). */
  async runMirrorKernel(
    mirror: LaunchTarget,
    op: 'read' | 'write',
    va: number,
    nwords: number,
    data?: Uint8Array,
  ): Promise<{ misses: number; data?: Uint8Array }> {
    this.dev.checkAlive(`mirror.${op}`);
    this.internal ??= shaderSource('mirrorCopy').then((code) =>
      compileKernel(this.dev.device, this.dev.layouts, this.dev.memory, { code, label: 'mirror copy', ioBinding: true }),
    );
    const kernel = await this.internal;
    const d = this.dev.device;
    const bytes = nwords * 4;
    const io = d.createBuffer({ label: `mirror ${op} io`, size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    try {
      if (data) {
        const plain = toPlainBytes(data);
        d.queue.writeBuffer(io, 0, plain.buffer, plain.byteOffset, plain.length);
      }
      const groups = Math.ceil(nwords / 64);
      const x = Math.min(groups, 32768);
      const y = Math.ceil(groups / x);
      const args = new Uint32Array([va, nwords, x * 64, op === 'write' ? 1 : 0]);
      const ctl = mirror.controls.take();
      let status: LaunchStatus;
      try {
        status = await this.launch(mirror, ctl, kernel, [x, y, 1], args, io);
      } finally {
        mirror.controls.give(ctl);
      }
      if (op === 'write' || status.misses > 0) return { misses: status.misses };
      const rb = d.createBuffer({ label: 'mirror read back', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = d.createCommandEncoder();
      enc.copyBufferToBuffer(io, 0, rb, 0, bytes);
      d.queue.submit([enc.finish()]);
      try {
        const mapped = rb.mapAsync(GPUMapMode.READ);
        this.dev.inject('mapPending', { buffer: rb, what: 'mirror' });
        await mapped;
      } catch (e) {
        rb.destroy();
        throw await this.dev.gpuFailure('mirror.read', e);
      }
      const out = new Uint8Array(rb.getMappedRange().slice(0));
      rb.unmap();
      rb.destroy();
      return { misses: 0, data: out };
    } finally {
      io.destroy();
    }
  }

  destroy(): void {
    this.uniformPool.destroy();
    this.readbackPool.destroy();
  }
}

/** A launch reads back the dirty-block words of at most this many held copies (more: a write-back reads them itself). */
const HELD_WORDS_MAX = 1024;

/** Copy words `words` (indices into `src`) to `dst` from `at`, one copy per run of consecutive indices. */
function copyWords(enc: GPUCommandEncoder, src: GPUBuffer, words: readonly number[], dst: GPUBuffer, at: number): void {
  for (let i = 0; i < words.length; ) {
    let n = 1;
    while (i + n < words.length && words[i + n] === words[i]! + n) n++;
    enc.copyBufferToBuffer(src, words[i]! * 4, dst, at + i * 4, n * 4);
    i += n;
  }
}

/**
 * Free GPU buffers by size, for buffers used once per launch. A few of each size are kept (more
 * are only needed while that many launches run at once); the rest are destroyed.
 */
class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  take(size: number, create: () => GPUBuffer): GPUBuffer {
    return this.free.get(size)?.pop() ?? create();
  }
  give(buffer: GPUBuffer): void {
    let list = this.free.get(buffer.size);
    if (!list) this.free.set(buffer.size, (list = []));
    if (list.length < 4) list.push(buffer);
    else buffer.destroy();
  }
  destroy(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A copy in a plain ArrayBuffer when the view sits on a SharedArrayBuffer (Dawn in Node cannot upload from one). */
export function toPlainBytes(v: ArrayBufferView | ArrayBuffer): Uint8Array {
  const u8 = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return u8.buffer instanceof SharedArrayBuffer ? u8.slice() : u8;
}
