// Vector add three ways, side by side: c = a + b
//
//   fault-driven     a replayable dispatch on mirrored pointers: nothing moves first; pages
//                    fault in on the GPU at first touch, in batches, and the kernel is replayed
//   validated        a validated dispatch: the declared ranges are migrated before the launch
//   explicit copies  what a WebGPU user writes without HMM: GPUBuffers, writeBuffer, a plain
//                    kernel over buffer indices, and a copy back through a mappable buffer
//
// Each strategy starts from a and b in CPU memory and ends with c readable by the CPU (the HMM
// ones read c with mm.read, which faults its pages home). The page times each step, checks
// every result against the CPU's own sums, shows the live residency map of the HMM arrays and
// the counters each strategy moved. #result passes only when all three results are correct,
// with one data-* attribute per strategy for tests.

import { HUGE_SIZE, PAGE_SIZE, createSystem, type AddressSpace, type HmmDevice, type HmmKernel, type System } from 'webgpu-hmm';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult, showSource } from '../common.ts';
import { CounterTable } from '../widgets/counterTable.ts';
import { ResidencyMap, type Region } from '../widgets/residencyMap.ts';
import hmmKernelSource from './vector_add.wgsl?raw';
import plainKernelSource from './vector_add_plain.wgsl?raw';

const WORKGROUP_SIZE = 64; // both kernels
const DEFAULT_N = 64 * 1024;
const MAX_N = 1 << 20; // 2 strategies x 3 arrays x 4 MiB fit the 32 MiB device
/**
 * Each HMM strategy gets its own 2 MiB-aligned stretch of the address space. The prefetcher
 * works on 2 MiB blocks: arrays of both strategies in one block would let the fault-driven
 * run prefetch the validated run's pages and blur the comparison.
 */
const ARENA_BASE = 0x1000_0000;

type StrategyName = 'fault-driven' | 'validated' | 'explicit copies';
/** The data-* attribute of #result that holds each strategy's check (data-fault-driven, ...). */
const DATA_KEY: Record<StrategyName, string> = { 'fault-driven': 'faultDriven', validated: 'validated', 'explicit copies': 'explicitCopies' };
type Check = 'correct' | 'wrong' | 'error';

/** One row of the timing table per step; every strategy has these three. */
const STEPS = ['CPU writes a and b', 'kernel (with any migration)', 'CPU reads c'] as const;

interface Outcome {
  name: StrategyName;
  /** Milliseconds per step, in STEPS order (missing when the strategy failed before it). */
  ms: number[];
  check: Check;
  /** The check in words: "correct", or the first wrong element, or the error. */
  detail: string;
  /** What else the strategy did, e.g. "3 fault rounds, 48 pages faulted". */
  note: string;
  /** sys.stats() counters this strategy moved (zero for explicit copies: HMM is not involved). */
  counters: Record<string, number>;
  /** Fault-driven only: launches that faulted, each serviced as one batch. */
  faultRounds?: number;
}

interface Arrays {
  a: number;
  b: number;
  c: number;
}

/** N from ?n=, validated; the default otherwise. */
function elementCount(): number {
  const raw = new URLSearchParams(location.search).get('n');
  if (raw === null) return DEFAULT_N;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_N) throw new Error(`?n=${raw}: N must be an integer in [1, ${MAX_N}]`);
  return n;
}

/** The inputs: a[i] = i / 2, b[i] = 1000 - i / 4. Every sum is exact in f32. */
function inputs(n: number): { a: Float32Array<ArrayBuffer>; b: Float32Array<ArrayBuffer>; expected: Float32Array } {
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  const expected = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = i / 2;
    b[i] = 1000 - i / 4;
    expected[i] = a[i]! + b[i]!; // rounded to f32 on store, as the GPU rounds
  }
  return { a, b, expected };
}

const bytesOf = (f: Float32Array): Uint8Array => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);

/** Compare c with the expected sums: 'correct', or the first wrong element in words. */
function checkSums(c: Float32Array, expected: Float32Array): { check: Check; detail: string } {
  let first = -1;
  let wrong = 0;
  for (let i = 0; i < expected.length; i++) {
    if (c[i] !== expected[i]) {
      if (first < 0) first = i;
      wrong++;
    }
  }
  if (first < 0) return { check: 'correct', detail: 'correct' };
  return { check: 'wrong', detail: `wrong: c[${first}] = ${c[first]}, expected ${expected[first]}; ${wrong} of ${expected.length} differ` };
}

const plural = (count: number, one: string, many = `${one}s`): string => `${count} ${count === 1 ? one : many}`;

/** Counters that moved between two sys.stats() snapshots. */
function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) d[k] = v - (before[k] ?? 0);
  return d;
}

/** Runs the steps of one strategy, timing each; an error ends it with check 'error'. */
class StepTimer {
  readonly ms: number[] = [];
  async step<T>(fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const v = await fn();
    this.ms.push(performance.now() - t0);
    return v;
  }
}

// ---------------------------------------------------------------------------- the strategies

interface Context {
  sys: System;
  dev: HmmDevice;
  mm: AddressSpace;
  n: number;
  a: Float32Array<ArrayBuffer>;
  b: Float32Array<ArrayBuffer>;
  expected: Float32Array;
}

/** The two HMM strategies: same kernel, same arrays layout, different dispatch mode. */
async function runHmm(ctx: Context, name: 'fault-driven' | 'validated', kernel: HmmKernel, arrays: Arrays): Promise<Outcome> {
  const { sys, dev, mm, n } = ctx;
  const bytes = n * 4;
  const m = dev.mirror(mm);
  const before = sys.stats();
  const t = new StepTimer();
  const outcome: Outcome = { name, ms: t.ms, check: 'error', detail: '', note: '', counters: {} };
  try {
    await t.step(async () => {
      await mm.write(arrays.a, bytesOf(ctx.a));
      await mm.write(arrays.b, bytesOf(ctx.b));
    });
    const uniforms = new Uint32Array([arrays.a, arrays.b, arrays.c, n]);
    const workgroups = Math.ceil(n / WORKGROUP_SIZE);
    const result = await t.step(() =>
      name === 'validated'
        ? m.dispatch(kernel, {
            mode: 'validated',
            workgroups,
            uniforms,
            ranges: [
              { va: arrays.a, bytes, access: 'r' },
              { va: arrays.b, bytes, access: 'r' },
              { va: arrays.c, bytes, access: 'rw' },
            ],
          })
        : m.dispatch(kernel, { mode: 'replayable', workgroups, uniforms }),
    );
    // c's pages are device-private now: this read faults them home before it completes.
    const cBytes = await t.step(() => mm.read(arrays.c, bytes));
    Object.assign(outcome, checkSums(new Float32Array(cBytes.buffer, cBytes.byteOffset, n), ctx.expected));
    outcome.counters = delta(sys.stats(), before);
    if (name === 'fault-driven') outcome.faultRounds = result.faults;
    outcome.note =
      name === 'validated'
        ? `${plural(outcome.counters.pagesToDevice ?? 0, 'page')} migrated before the launch`
        : `${plural(result.faults, 'fault round')}: ${plural(result.faultedPages, 'page')} faulted, ${outcome.counters.prefetchedPages ?? 0} prefetched`;
  } catch (e) {
    console.error(e);
    outcome.detail = `error: ${describeError(e)}`;
    outcome.counters = delta(sys.stats(), before);
  }
  return outcome;
}

/** Explicit copies: plain GPUBuffers on the same GPUDevice, no HMM anywhere. */
async function runExplicit(ctx: Context, pipeline: GPUComputePipeline): Promise<Outcome> {
  const device = ctx.dev.device;
  const bytes = ctx.n * 4;
  const t = new StepTimer();
  const outcome: Outcome = { name: 'explicit copies', ms: t.ms, check: 'error', detail: '', note: '', counters: {} };
  const buffers: GPUBuffer[] = [];
  const buffer = (label: string, size: number, usage: number): GPUBuffer => {
    const b = device.createBuffer({ label, size, usage });
    buffers.push(b);
    return b;
  };
  try {
    const inputUsage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    const a = buffer('a', bytes, inputUsage);
    const b = buffer('b', bytes, inputUsage);
    const c = buffer('c', bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const readback = buffer('c readback', bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const params = buffer('n', 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    await t.step(async () => {
      device.queue.writeBuffer(a, 0, ctx.a);
      device.queue.writeBuffer(b, 0, ctx.b);
      device.queue.writeBuffer(params, 0, new Uint32Array([ctx.n, 0, 0, 0]));
      await device.queue.onSubmittedWorkDone(); // the copies have landed
    });
    await t.step(async () => {
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [params, a, b, c].map((buf, binding) => ({ binding, resource: { buffer: buf } })),
      });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(Math.ceil(ctx.n / WORKGROUP_SIZE));
      pass.end();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    });
    const out = await t.step(async () => {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(c, 0, readback, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const copy = new Float32Array(readback.getMappedRange().slice(0));
      readback.unmap();
      return copy;
    });
    Object.assign(outcome, checkSums(out, ctx.expected));
    outcome.note = `3 buffers + 1 staging buffer, ${((3 * bytes) / 1024).toLocaleString('en-US')} KiB copied by hand`;
  } catch (e) {
    console.error(e);
    outcome.detail = `error: ${describeError(e)}`;
  } finally {
    for (const b of buffers) b.destroy();
  }
  return outcome;
}

// ---------------------------------------------------------------------------- display

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

const fmtMs = (ms: number | undefined): string => (ms === undefined ? '–' : `${ms.toFixed(1)} ms`);
const total = (o: Outcome): number | undefined => (o.ms.length === STEPS.length ? o.ms.reduce((s, v) => s + v, 0) : undefined);

/** Steps down, strategies across; then the total, the check and what else happened. */
function showComparison(outcomes: Outcome[]): void {
  const table = document.getElementById('comparison') as HTMLTableElement;
  const head = el('tr');
  head.append(el('th', 'step'), ...outcomes.map((o) => el('th', o.name, 'num')));
  table.tHead!.replaceChildren(head);
  const rows = STEPS.map((label, i) => {
    const tr = el('tr');
    tr.append(el('td', label), ...outcomes.map((o) => el('td', fmtMs(o.ms[i]), 'num')));
    return tr;
  });
  const totalRow = el('tr', undefined, 'total');
  totalRow.append(el('td', 'total'), ...outcomes.map((o) => el('td', fmtMs(total(o)), 'num')));
  const checkRow = el('tr');
  checkRow.append(
    el('td', 'result'),
    ...outcomes.map((o) => {
      const td = el('td', o.check, `num check-${o.check}`);
      td.title = o.detail;
      return td;
    }),
  );
  const noteRow = el('tr', undefined, 'notes');
  noteRow.append(el('td', 'what happened'), ...outcomes.map((o) => el('td', o.note || o.detail, 'note-cell')));
  table.tBodies[0]!.replaceChildren(...rows, totalRow, checkRow, noteRow);
}

// ---------------------------------------------------------------------------- the demo

async function run(n: number): Promise<void> {
  const bytes = n * 4;
  const npages = Math.ceil(bytes / PAGE_SIZE);
  document.getElementById('n')!.textContent = `N = ${n.toLocaleString('en-US')} floats per array: ${npages} pages of 4 KiB each`;
  const { a, b, expected } = inputs(n);

  const sys = await createSystem({ systemRamBytes: 64 << 20, devices: [{ memoryBytes: 32 << 20 }] });
  let map: ResidencyMap | undefined;
  try {
    const dev = sys.devices[0]!;
    document.getElementById('adapter')!.textContent = `GPU adapter: ${dev.adapterName}`;
    const mm = sys.createAddressSpace();

    // Two arenas of three arrays each, mapped up front so the map can show them from the start.
    const arenaBytes = Math.ceil((3 * bytes) / HUGE_SIZE) * HUGE_SIZE;
    const arrays = (arena: number, arrayBytes: number): Arrays => {
      const base = ARENA_BASE + arena * arenaBytes;
      const stride = Math.ceil(arrayBytes / PAGE_SIZE) * PAGE_SIZE;
      return { a: mm.mmap(arrayBytes, { addr: base }), b: mm.mmap(arrayBytes, { addr: base + stride }), c: mm.mmap(arrayBytes, { addr: base + 2 * stride }) };
    };
    const faultArrays = arrays(0, bytes);
    const validatedArrays = arrays(1, bytes);
    const regions: Region[] = [];
    for (const [label, set] of [
      ['fault-driven', faultArrays],
      ['validated', validatedArrays],
    ] as const)
      for (const name of ['a', 'b', 'c'] as const) regions.push({ name: `${label} ${name}`, va: set[name], bytes });
    map = new ResidencyMap(document.getElementById('residency-map')!, mm, regions);
    map.start(50);

    // Compile first, outside the timings: each strategy's kernel is ready before it runs.
    const hmmKernel = await dev.createKernel({ code: hmmKernelSource, workgroupSize: WORKGROUP_SIZE, label: 'vector_add' });
    const plainPipeline = await dev.device.createComputePipelineAsync({
      label: 'vector_add_plain',
      layout: 'auto',
      compute: { module: dev.device.createShaderModule({ label: 'vector_add_plain.wgsl', code: plainKernelSource }), entryPoint: 'main' },
    });

    // Warm up: each path runs once on one workgroup's worth of elements (in a third arena), so
    // first-use costs (pipeline state, control and staging buffers) stay out of the timings.
    const tiny = inputs(WORKGROUP_SIZE);
    const warm: Context = { sys, dev, mm, n: WORKGROUP_SIZE, ...tiny };
    const warmArrays = arrays(2, WORKGROUP_SIZE * 4);
    for (const mode of ['fault-driven', 'validated'] as const) {
      const o = await runHmm(warm, mode, hmmKernel, warmArrays);
      if (o.check !== 'correct') throw new Error(`warm-up of the ${mode} path: ${o.detail}`);
      await mm.munmap(warmArrays.c, WORKGROUP_SIZE * 4); // c starts untouched again for the next mode
      mm.mmap(WORKGROUP_SIZE * 4, { addr: warmArrays.c });
    }
    const warmExplicit = await runExplicit(warm, plainPipeline);
    if (warmExplicit.check !== 'correct') throw new Error(`warm-up of explicit copies: ${warmExplicit.detail}`);

    const ctx: Context = { sys, dev, mm, n, a, b, expected };
    const counters = new CounterTable(document.getElementById('counters') as HTMLTableElement);
    const outcomes: Outcome[] = [];
    const strategies: [StrategyName, () => Promise<Outcome>][] = [
      ['fault-driven', () => runHmm(ctx, 'fault-driven', hmmKernel, faultArrays)],
      ['validated', () => runHmm(ctx, 'validated', hmmKernel, validatedArrays)],
      ['explicit copies', () => runExplicit(ctx, plainPipeline)],
    ];
    for (const [name, go] of strategies) {
      setResult(`running: ${name}…`, 'running');
      outcomes.push(await go());
      showComparison(outcomes);
      counters.show(outcomes.map((o) => [o.name, o.counters]));
    }
    map.stop();

    // The figures a test reads: one attribute per strategy, plus the sizes and timings.
    const result = document.getElementById('result')!;
    const data = result.dataset;
    data.n = String(n);
    data.pagesPerArray = String(npages);
    for (const o of outcomes) {
      const key = DATA_KEY[o.name];
      data[key] = o.check;
      const ms = total(o);
      if (ms !== undefined) data[`${key}Ms`] = ms.toFixed(1);
      if (o.faultRounds !== undefined) data[`${key}FaultRounds`] = String(o.faultRounds);
    }
    const bad = outcomes.filter((o) => o.check !== 'correct');
    if (bad.length === 0) setResult(`result: all three correct (${n} elements)`, 'pass');
    else setResult(`result: ${bad.map((o) => `${o.name} ${o.detail}`).join('; ')}`, bad.some((o) => o.check === 'error') ? 'error' : 'fail');
  } finally {
    map?.stop();
    sys.destroy();
  }
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  showSource('vector_add.wgsl (fault-driven and validated)', hmmKernelSource);
  showSource('vector_add_plain.wgsl (explicit copies)', plainKernelSource);
  const select = document.querySelector<HTMLSelectElement>('select[name=n]');
  const asked = new URLSearchParams(location.search).get('n');
  if (select && Array.from(select.options).some((o) => o.value === asked)) select.value = asked!; // "Run again" keeps the size
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  setResult('running…', 'running');
  try {
    await run(elementCount());
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();
