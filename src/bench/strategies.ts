// Strategies: five ways to get a workload's data to the GPU and its result back to the CPU,
// timed the same way (from inputs in CPU memory to the result in CPU memory):
//   explicit             what a user writes without HMM: writeBuffer the inputs into plain
//                        GPU buffers, run the plain kernel, copy the outputs back and map them;
//   validated            declared ranges are faulted in before launch (XNACK off);
//   replayable           fault-driven, the density prefetcher off;
//   replayable+prefetch  fault-driven with the density prefetcher (the library's default);
//   advice+prefetch      cudaMemAdvise/cudaMemPrefetchAsync style: preferred location the
//                        device, explicit prefetch of every range before each launch and back
//                        to system RAM before the CPU reads.
// And, with `npm run bench -- --policy FILE`, one more per policy set the user loads:
//   policy:<name>        fault-driven (replayable) like replayable+prefetch, with the set passed
//                        as the dispatch's `policy` (the kinds it leaves out are the built-ins).
// Explicit, validated and advice+prefetch stay within the device pool (chunks of half of it,
// as a program written for that pool would); the fault-driven ones launch once over all data.
// Every run's result is checked word for word against the workload's CPU reference.

import { PAGE_SIZE, type AddressSpace, type DispatchRange, type HmmDevice, type HmmKernel, type PolicySet } from 'webgpu-hmm';
import { phaseDelta, zeroPhases, type PhaseMs } from './figures.ts';
import type { PlainKernel } from './shaders.ts';
import { Image, type Span, type Step, type Workload } from './workloads.ts';

export const STRATEGIES = ['explicit', 'validated', 'replayable', 'replayable+prefetch', 'advice+prefetch'] as const;
export type StrategyName = (typeof STRATEGIES)[number];
/** A user's policy set, run fault-driven: `policy:<its name>`. */
export type PolicyStrategyName = `policy:${string}`;
/** Any strategy a bench cell can have: a built-in one, or a policy set's. */
export type AnyStrategyName = StrategyName | PolicyStrategyName;

/** The fault-driven strategies: the ones whose fault rounds, evictions and prefetches come from the policies. */
export const isFaultDriven = (s: string): boolean => s === 'replayable' || s === 'replayable+prefetch' || s.startsWith('policy:');

export const STRATEGY_TITLES: Record<StrategyName, string> = {
  explicit: 'explicit copies into plain GPU buffers',
  validated: 'validated dispatch (declared ranges faulted in first)',
  replayable: 'replayable, fault-driven, no prefetch',
  'replayable+prefetch': 'replayable, fault-driven, density prefetcher',
  'advice+prefetch': 'advice (preferred: device) + explicit prefetch',
};

/** Where a workload runs: one device, one address space, its kernels, and its plain buffer. */
export interface Target {
  dev: HmmDevice;
  mm: AddressSpace;
  hmm: HmmKernel;
  plain: PlainKernel;
  /** VA of the region; the same for every run, so pointers in the data stay valid. */
  base: number;
  /** The most data one launch may declare or copy when staying within the pool. */
  chunkBytes: number;
  region: PlainRegion;
}

export interface RunOutcome {
  ms: number;
  /** Kernel launches (replays included). */
  launches: number;
  /** GPU fault rounds the library serviced. */
  faultRounds: number;
  /** Bytes that crossed between system RAM and the device: migrations, device copies, explicit copies. */
  bytesMoved: number;
  /** Pages that crossed (migrations both ways and device copies; explicit copies: their bytes in pages). */
  pagesMoved: number;
  /** Pages evicted from the device to make room (the `evictions` counter). */
  evictions: number;
  /** Pages brought in ahead of a fault (the `prefetchedPages` counter: a prefetch policy, or explicit prefetch). */
  prefetchedPages: number;
  /** Milliseconds of the run in each phase of fault service and migration (Stats.phaseMs deltas; all 0 for explicit copies). */
  phases: PhaseMs;
}

/** A plain GPU buffer holding one workload's region at the same offsets as in the address space. */
export class PlainRegion {
  readonly buffer: GPUBuffer;
  private readonly baseUniform: GPUBuffer;
  private readonly group1 = new Map<GPUComputePipeline, GPUBindGroup>();
  constructor(
    readonly device: GPUDevice,
    readonly bytes: number,
    readonly base: number,
  ) {
    this.buffer = device.createBuffer({
      label: 'bench plain region',
      size: bytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    this.baseUniform = device.createBuffer({ label: 'bench plain base', size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(this.baseUniform, 0, new Uint32Array([base, 0, 0, 0]));
  }

  /** Encode one launch of a plain kernel over this region. */
  encode(enc: GPUCommandEncoder, k: PlainKernel, uniforms: Uint32Array, workgroups: [number, number]): GPUBuffer {
    const { uniform: u, groups } = this.bind(k, uniforms);
    const pass = enc.beginComputePass({ label: `bench ${k.name} (plain)` });
    pass.setPipeline(k.pipeline);
    pass.setBindGroup(0, groups[0]);
    pass.setBindGroup(1, groups[1]);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1]);
    pass.end();
    return u;
  }

  /** The bind groups of a plain kernel's launch over this region, and its uniform buffer (the caller destroys it). */
  bind(k: PlainKernel, uniforms: Uint32Array): { uniform: GPUBuffer; groups: [GPUBindGroup, GPUBindGroup] } {
    const u = this.device.createBuffer({
      label: `bench ${k.name} uniforms`,
      size: Math.max(16, Math.ceil(uniforms.byteLength / 16) * 16),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.device.queue.writeBuffer(u, 0, uniforms.buffer, uniforms.byteOffset, uniforms.byteLength);
    let g1 = this.group1.get(k.pipeline);
    if (!g1) {
      g1 = this.device.createBindGroup({
        layout: k.pipeline.getBindGroupLayout(1),
        entries: [
          { binding: 0, resource: { buffer: this.buffer } },
          { binding: 1, resource: { buffer: this.baseUniform } },
        ],
      });
      this.group1.set(k.pipeline, g1);
    }
    const g0 = this.device.createBindGroup({ layout: k.pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: u } }] });
    return { uniform: u, groups: [g0, g1] };
  }

  destroy(): void {
    this.buffer.destroy();
    this.baseUniform.destroy();
  }
}

/** Bytes that crossed between RAM and a device, from the system counters. */
export function bytesMoved(stats: Record<string, number>): number {
  return (stats.bytesToDevice ?? 0) + (stats.bytesToSystem ?? 0) + (stats.deviceCopies ?? 0) * PAGE_SIZE;
}

/** Pages that crossed between RAM and a device, from the system counters. */
export function pagesMoved(stats: Record<string, number>): number {
  return (stats.pagesToDevice ?? 0) + (stats.pagesToSystem ?? 0) + (stats.deviceCopies ?? 0);
}

/** One cold run of a workload under a strategy: inputs in CPU memory, result back in CPU memory, checked. */
export async function runOnce(strategy: StrategyName, w: Workload, t: Target): Promise<RunOutcome> {
  const img = new Image(w.layout);
  w.init(img, t.base);
  const expected = img.copy();
  w.reference(expected);
  const out = strategy === 'explicit' ? await runExplicit(w, t, img) : await runHmm(strategy, w, t, img);
  check(w, strategy, img, expected);
  return out;
}

/** One cold run of a workload under a user's policy set (strategy `policy:<name>`), checked like the others. */
export async function runPolicy(set: PolicySet, w: Workload, t: Target): Promise<RunOutcome> {
  const img = new Image(w.layout);
  w.init(img, t.base);
  const expected = img.copy();
  w.reference(expected);
  const out = await runHmm('policy', w, t, img, set);
  check(w, `policy:${set.name}`, img, expected);
  return out;
}

function check(w: Workload, strategy: AnyStrategyName, got: Image, want: Image): void {
  for (const a of w.layout.arrays) {
    if (a.role === 'in') continue;
    const g = got.view(a.name);
    const e = want.view(a.name);
    for (let i = 0; i < a.words; i++) {
      if (g[i] !== e[i]) throw new Error(`${w.name} / ${strategy}: wrong result: ${a.name}[${i}] = ${g[i]}, expected ${e[i]}`);
    }
  }
}

const bytesOf = (img: Image, s: Span): Uint8Array => new Uint8Array(img.words.buffer, img.layout.offset(s.array) + s.offset, s.bytes);

// ---------------------------------------------------------------------------- explicit

async function runExplicit(w: Workload, t: Target, img: Image): Promise<RunOutcome> {
  const d = t.dev.device;
  const r = t.region;
  const steps = w.steps(t.base, t.chunkBytes);
  let launches = 0;
  let moved = 0;
  const t0 = performance.now();
  for (let it = 0; it < w.iterations; it++) {
    for (const step of steps) {
      for (const s of step.reads) {
        d.queue.writeBuffer(r.buffer, w.layout.offset(s.array) + s.offset, img.words.buffer, w.layout.offset(s.array) + s.offset, s.bytes);
        moved += s.bytes;
      }
      moved += await launchAndDownload(t, step, img);
      launches++;
    }
    if (w.cpuPhase) w.cpuPhase(img);
  }
  return {
    ms: performance.now() - t0,
    launches,
    faultRounds: 0,
    bytesMoved: moved,
    pagesMoved: Math.ceil(moved / PAGE_SIZE),
    evictions: 0,
    prefetchedPages: 0,
    phases: zeroPhases(),
  };
}

/** Launch one plain step, copy what it wrote into a readback buffer, map it, and copy into the image. */
async function launchAndDownload(t: Target, step: Step, img: Image): Promise<number> {
  const d = t.dev.device;
  const total = step.writes.reduce((n, s) => n + s.bytes, 0);
  const readback = d.createBuffer({ label: 'bench explicit readback', size: Math.max(4, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = d.createCommandEncoder({ label: 'bench explicit' });
  const u = t.region.encode(enc, t.plain, step.uniforms, step.workgroups);
  let at = 0;
  for (const s of step.writes) {
    enc.copyBufferToBuffer(t.region.buffer, img.layout.offset(s.array) + s.offset, readback, at, s.bytes);
    at += s.bytes;
  }
  d.queue.submit([enc.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const data = new Uint8Array(readback.getMappedRange());
  at = 0;
  for (const s of step.writes) {
    bytesOf(img, s).set(data.subarray(at, at + s.bytes));
    at += s.bytes;
  }
  readback.unmap();
  readback.destroy();
  u.destroy();
  return total;
}

// ---------------------------------------------------------------------------- through HMM

async function runHmm(strategy: Exclude<StrategyName, 'explicit'> | 'policy', w: Workload, t: Target, img: Image, policy?: PolicySet): Promise<RunOutcome> {
  const { mm, dev } = t;
  const m = dev.mirror(mm);
  const lay = w.layout;
  const va = (s: Span): number => t.base + lay.offset(s.array) + s.offset;
  // cold start: the inputs are in system RAM, the outputs never touched
  mm.mmap(lay.bytes, { addr: t.base });
  for (const a of lay.arrays) if (a.role !== 'out') await mm.write(t.base + lay.offset(a.name), bytesOf(img, lay.whole(a.name)));
  const stayInPool = strategy === 'validated' || strategy === 'advice+prefetch';
  const steps = w.steps(t.base, stayInPool ? t.chunkBytes : Infinity);
  const results = lay.arrays.filter((a) => a.role !== 'in').map((a) => lay.whole(a.name));
  const before = dev.stats.snapshot();
  const phasesBefore = dev.stats.phaseMs();
  let launches = 0;
  const t0 = performance.now();
  if (strategy === 'advice+prefetch') await mm.advise(t.base, lay.bytes, { preferred: dev.id });
  for (let it = 0; it < w.iterations; it++) {
    for (const step of steps) {
      if (strategy === 'validated') {
        const ranges: DispatchRange[] = step.writes.map((s) => ({ va: va(s), bytes: s.bytes, access: 'rw' }));
        for (const s of step.reads) if (!ranges.some((r) => r.va === va(s) && r.bytes === s.bytes)) ranges.push({ va: va(s), bytes: s.bytes, access: 'r' });
        launches += (await m.dispatch(t.hmm, { mode: 'validated', workgroups: step.workgroups, uniforms: step.uniforms, ranges })).rounds;
        continue;
      }
      if (strategy === 'advice+prefetch') for (const s of [...step.reads, ...step.writes]) await m.prefetch(va(s), s.bytes, 'device');
      if (strategy === 'policy') {
        // the device's policies (the built-ins here) with the set's over them
        launches += (await m.dispatch(t.hmm, { mode: 'replayable', policy, workgroups: step.workgroups, uniforms: step.uniforms })).rounds;
        continue;
      }
      const prefetch = strategy !== 'replayable';
      launches += (await m.dispatch(t.hmm, { mode: 'replayable', prefetch, workgroups: step.workgroups, uniforms: step.uniforms })).rounds;
    }
    if (w.cpuPhase) {
      // The CPU reads what the GPU wrote, changes it, and writes it back.
      if (strategy === 'advice+prefetch') for (const s of results) await m.prefetch(va(s), s.bytes, 'system');
      for (const s of results) bytesOf(img, s).set(await mm.read(va(s), s.bytes));
      w.cpuPhase(img);
      for (const s of results) await mm.write(va(s), bytesOf(img, s));
    }
  }
  if (strategy === 'advice+prefetch') for (const s of results) await m.prefetch(va(s), s.bytes, 'system');
  for (const s of results) bytesOf(img, s).set(await mm.read(va(s), s.bytes));
  const ms = performance.now() - t0;
  const after = dev.stats.snapshot();
  const phases = phaseDelta(phasesBefore, dev.stats.phaseMs());
  await mm.munmap(t.base, lay.bytes);
  const delta = (name: string): number => (after[name] ?? 0) - (before[name] ?? 0);
  return {
    ms,
    launches,
    faultRounds: delta('gpuFaults'),
    bytesMoved: bytesMoved(after) - bytesMoved(before),
    pagesMoved: pagesMoved(after) - pagesMoved(before),
    evictions: delta('evictions'),
    prefetchedPages: delta('prefetchedPages'),
    phases,
  };
}
