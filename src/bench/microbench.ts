// The goal microbenchmarks of perf-anchors §6 and §7: for each goal, the two figures its ratio
// divides, measured side by side in every repetition (so each repetition yields one ratio),
// plus the secondary figures the goal asks for. Timing is host-side performance.now() around
// operations that end in a GPU completion (onSubmittedWorkDone or a mapAsync), except G10,
// which times its batches of launches with GPU timestamps where the device has them. The
// phase figures (G11, and the breakdown) are the mechanism's own Stats.phaseMs deltas.
// goals.ts turns these measurements into verdicts, figures.ts holds their arithmetic.

import { HUGE_SIZE, PAGE_SIZE, type AddressSpace, type HmmDevice, type HmmKernel, type Mirror, type System } from 'webgpu-hmm';
import { migrateToDevice } from '../hmm/migrate.ts'; // internal: migrates a page list, not a range
import {
  HOST_PHASES,
  hostUsPerPage,
  instrumented,
  launchesForSpan,
  minFaultRounds,
  mitigationRatios,
  phaseDelta,
  phaseSum,
  PHASES,
  recordsPerDistinctPage,
  thpRatio,
  timestampSpanMs,
  writeBackRatio,
  type PhaseMs,
} from './figures.ts';
import type { GoalId, GoalMeasurement } from './goals.ts';
import { grid, type KernelName, type PlainKernel } from './shaders.ts';
import type { BenchSizes } from './sizes.ts';
import { bytesMoved, PlainRegion, runOnce, type Target } from './strategies.ts';
import { Image, type Layout, oversubscribedStream, pingPong, rng, triad } from './workloads.ts';

export interface BenchContext {
  sys: System;
  /** Device 0, the big pool; device 1, the small pool the matrix oversubscribes; device 2, the pool G7/G8 oversubscribe. */
  main: HmmDevice;
  small: HmmDevice;
  evict: HmmDevice;
  sizes: BenchSizes;
  reps: number;
  warmup: number;
  hmm(dev: HmmDevice, name: KernelName): HmmKernel;
  plain(dev: HmmDevice, name: KernelName): PlainKernel;
  /** One repetition of something finished (progress). */
  tick(label: string): void;
}

/** Warm-up runs (untimed), then the timed repetitions. */
async function repeat(ctx: BenchContext, label: string, body: (timed: boolean, rep: number) => Promise<void>): Promise<void> {
  for (let r = -ctx.warmup; r < ctx.reps; r++) {
    await body(r >= 0, r);
    ctx.tick(label);
  }
}

const now = (): number => performance.now();

/** The mechanism's phase totals so far (ms per phase). */
const phasesOf = (ctx: BenchContext): PhaseMs => ctx.sys.counters.phaseMs();

/** The device's fault buffer (faultBufferPages): at most this many faults reach the host per round. */
const faultBuffer = (dev: HmmDevice): number => dev.faultBufferPages;

/** Run `body` with the device's fault buffer set to `pages`, then put it back. */
async function withFaultBuffer<T>(dev: HmmDevice, pages: number, body: () => Promise<T>): Promise<T> {
  const saved = dev.faultBufferPages;
  dev.faultBufferPages = pages;
  try {
    return await body();
  } finally {
    dev.faultBufferPages = saved;
  }
}

/** Regions of the goal runs: each goal maps its own, 2 MiB aligned, in its own address space. */
const REGION = 0x1000_0000;

function pattern(bytes: number, seed: number): Uint8Array {
  const w = new Uint32Array(bytes / 4);
  for (let i = 0; i < w.length; i++) w[i] = (Math.imul(i, 2654435761) + seed) >>> 0;
  return new Uint8Array(w.buffer);
}

/** An empty round trip: submit a 16-byte copy into a mappable buffer and map it (the platform floor). */
class RoundTrip {
  private readonly src: GPUBuffer;
  private readonly dst: GPUBuffer;
  constructor(private readonly device: GPUDevice) {
    this.src = device.createBuffer({ label: 'bench round trip src', size: 16, usage: GPUBufferUsage.COPY_SRC });
    this.dst = device.createBuffer({ label: 'bench round trip dst', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }
  /** Submit `enc` (or nothing) plus the copy, and wait for the map. */
  async run(enc?: GPUCommandEncoder): Promise<void> {
    const e = enc ?? this.device.createCommandEncoder({ label: 'bench round trip' });
    e.copyBufferToBuffer(this.src, 0, this.dst, 0, 16);
    this.device.queue.submit([e.finish()]);
    await this.dst.mapAsync(GPUMapMode.READ);
    this.dst.unmap();
  }
  destroy(): void {
    this.src.destroy();
    this.dst.destroy();
  }
}

// ---------------------------------------------------------------------------- G1

/** Migrating 256 scattered RAM pages to the pool vs one bulk writeBuffer, and one writeBuffer per page. */
async function g1(ctx: BenchContext): Promise<GoalMeasurement> {
  const dev = ctx.main;
  const d = dev.device;
  const n = ctx.sizes.batchPages;
  const span = 16 * n;
  const next = rng(0x61);
  const all = Array.from({ length: span }, (_, i) => i);
  for (let i = span - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const picked = all.slice(0, n).sort((a, b) => a - b);
  const data = pattern(n * PAGE_SIZE, 1);
  const bulkBuf = d.createBuffer({ label: 'bench g1 bulk', size: n * PAGE_SIZE, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const naiveBuf = d.createBuffer({ label: 'bench g1 per page', size: span * PAGE_SIZE, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const mm = ctx.sys.createAddressSpace();
  dev.mirror(mm);
  const bulk: number[] = [];
  const migrate: number[] = [];
  const naive: number[] = [];
  try {
    await repeat(ctx, 'G1 migration vs bulk writeBuffer', async (timed, rep) => {
      mm.mmap(span * PAGE_SIZE, { addr: REGION });
      const pages = picked.map((p) => REGION / PAGE_SIZE + p);
      for (let i = 0; i < n; i++) await mm.write(pages[i]! * PAGE_SIZE, data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
      await d.queue.onSubmittedWorkDone();
      const runs: Record<string, () => Promise<number>> = {
        bulk: async () => {
          const t0 = now();
          d.queue.writeBuffer(bulkBuf, 0, data.buffer, 0, data.byteLength);
          await d.queue.onSubmittedWorkDone();
          return now() - t0;
        },
        migrate: async () => {
          const t0 = now();
          const res = await migrateToDevice(mm, dev, pages);
          const ms = now() - t0;
          if (res.moved !== n) throw new Error(`G1: only ${res.moved} of ${n} pages migrated`);
          return ms;
        },
        naive: async () => {
          const t0 = now();
          for (let i = 0; i < n; i++) d.queue.writeBuffer(naiveBuf, picked[i]! * PAGE_SIZE, data.buffer, i * PAGE_SIZE, PAGE_SIZE);
          await d.queue.onSubmittedWorkDone();
          return now() - t0;
        },
      };
      // alternate the order, so neither side always runs on a warmer queue
      const order = rep % 2 === 0 ? ['bulk', 'migrate', 'naive'] : ['naive', 'migrate', 'bulk'];
      const got: Record<string, number> = {};
      for (const k of order) got[k] = await runs[k]!();
      await mm.munmap(REGION, span * PAGE_SIZE);
      if (!timed) return;
      bulk.push(got.bulk!);
      migrate.push(got.migrate!);
      naive.push(got.naive!);
    });
  } finally {
    bulkBuf.destroy();
    naiveBuf.destroy();
    mm.destroy();
  }
  return {
    ratios: bulk.map((b, i) => b / migrate[i]!),
    checks: { naive: bulk.map((b, i) => b / naive[i]!) },
    figures: { bulkMs: { samples: bulk, unit: 'ms' }, migrateMs: { samples: migrate, unit: 'ms' }, perPageMs: { samples: naive, unit: 'ms' } },
    notes: [
      `${n} pages (${(n * PAGE_SIZE) >> 10} KiB) picked at random from ${span}; migration = library migrateToDevice (collect, isolate, packed upload, scatter, settle, commit)`,
    ],
  };
}

// ---------------------------------------------------------------------------- G2, G11

/**
 * One fault round of 256 distinct pages vs an empty submit + mapAsync (G2); the same rounds'
 * phases, all but the GPU wait, per page serviced (G11).
 */
async function faultRoundGoals(ctx: BenchContext): Promise<Record<'g2' | 'g11', GoalMeasurement | Error>> {
  const dev = ctx.main;
  const n = ctx.sizes.batchPages;
  const stride = 17; // pages: each fault in its own 64 KiB big page
  const touch = ctx.hmm(dev, 'touch');
  const g = grid(n, 64);
  const uniforms = new Uint32Array([REGION, stride * PAGE_SIZE, n, g.row]);
  const mm = ctx.sys.createAddressSpace();
  const m = dev.mirror(mm);
  const rt = new RoundTrip(dev.device);
  const page = pattern(PAGE_SIZE, 2);
  const round: number[] = [];
  const floor: number[] = [];
  const rounds: number[] = [];
  const serviced: number[] = [];
  const hostUs: number[] = [];
  const allUs: number[] = [];
  const wallUs: number[] = [];
  const perPhase = Object.fromEntries(PHASES.map((p) => [p, [] as number[]])) as Record<keyof PhaseMs, number[]>;
  let timedPhases = false;
  try {
    await repeat(ctx, 'G2/G11 fault round vs empty round trip', async (timed) => {
      mm.mmap(n * stride * PAGE_SIZE, { addr: REGION });
      for (let i = 0; i < n; i++) await mm.write(REGION + i * stride * PAGE_SIZE, page);
      // the floor: the median of a few empty round trips, taken right before the fault round
      const empties: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = now();
        await rt.run();
        empties.push(now() - t0);
      }
      const before = phasesOf(ctx);
      const t0 = now();
      const r = await m.dispatch(touch, { mode: 'replayable', prefetch: false, workgroups: g.workgroups, uniforms });
      const ms = now() - t0;
      const delta = phaseDelta(before, phasesOf(ctx));
      await mm.munmap(REGION, n * stride * PAGE_SIZE);
      if (!timed) return;
      round.push(ms);
      floor.push(empties.sort((a, b) => a - b)[2]!);
      rounds.push(r.rounds);
      serviced.push(r.faultedPages);
      timedPhases ||= instrumented(delta);
      hostUs.push(hostUsPerPage(delta, r.faultedPages));
      allUs.push((phaseSum(delta) * 1000) / r.faultedPages);
      wallUs.push(((ms - delta['gpu-wait']) * 1000) / r.faultedPages);
      for (const p of PHASES) perPhase[p].push((delta[p] * 1000) / r.faultedPages);
    });
  } finally {
    rt.destroy();
    mm.destroy();
  }
  const g2: GoalMeasurement = {
    ratios: round.map((x, i) => x / floor[i]!),
    figures: {
      faultRoundMs: { samples: round, unit: 'ms' },
      emptyRoundTripMs: { samples: floor, unit: 'ms' },
      launches: { samples: rounds, unit: 'launches' },
    },
    notes: [
      `${n} pages, one per 68 KiB, written by the CPU first; prefetch off; the dispatch = faulting launch + service + replay (launches per dispatch: ${[...new Set(rounds)].join(', ')})`,
    ],
  };
  const g11: GoalMeasurement | Error = !timedPhases
    ? new Error("the library timed no phase of the fault rounds (Stats.phaseMs stayed 0): G11 needs the mechanism's phase instrumentation")
    : {
        ratios: hostUs,
        checks: { withWait: allUs, wallLessWait: wallUs },
        figures: {
          hostUsPerPage: { samples: hostUs, unit: 'µs/page' },
          pagesServiced: { samples: serviced, unit: 'pages' },
          roundMs: { samples: round, unit: 'ms' },
        },
        rows: PHASES.map((p) => ({ key: p, label: p, figures: { usPerPage: { samples: perPhase[p], unit: 'µs/page' } } })),
        info: { hostPhases: HOST_PHASES.join(' + '), faultBufferPages: faultBuffer(dev) },
        notes: [
          `G2's rounds: ${n} distinct CPU-written pages, prefetch off; host time = the phases ${HOST_PHASES.join(', ')} (all but gpu-wait), from Stats.phaseMs, ÷ the pages the round serviced`,
        ],
      };
  return { g2, g11 };
}

// ---------------------------------------------------------------------------- G3

/** The same faulting kernel with the fault batch capped at 1, 256 and 1024 pages. */
async function g3(ctx: BenchContext): Promise<GoalMeasurement> {
  const dev = ctx.main;
  const n = ctx.sizes.faultPages;
  const touch = ctx.hmm(dev, 'touch');
  const g = grid(n, 64);
  const uniforms = new Uint32Array([REGION, PAGE_SIZE, n, g.row]);
  const mm = ctx.sys.createAddressSpace();
  const m = dev.mirror(mm);
  const data = pattern(n * PAGE_SIZE, 3);
  const caps = [1, 256, 1024] as const;
  const ms: Record<number, number[]> = { 1: [], 256: [], 1024: [] };
  const rounds: Record<number, number[]> = { 1: [], 256: [], 1024: [] };
  try {
    // The fault buffer must hold what the largest cap takes, or cap 1024 could not differ from 256.
    await withFaultBuffer(dev, 1024, () =>
      repeat(ctx, 'G3 fault batch cap 1 / 256 / 1024', async (timed, rep) => {
        const order = rep % 2 === 0 ? caps : [...caps].reverse();
        for (const cap of order) {
          mm.mmap(n * PAGE_SIZE, { addr: REGION });
          await mm.write(REGION, data);
          const t0 = now();
          const r = await m.dispatch(touch, { mode: 'replayable', prefetch: false, faultBatchPages: cap, workgroups: g.workgroups, uniforms });
          const t = now() - t0;
          await mm.munmap(REGION, n * PAGE_SIZE);
          if (!timed) continue;
          ms[cap]!.push(t);
          rounds[cap]!.push(r.rounds);
        }
      }),
    );
  } finally {
    mm.destroy();
  }
  // pages per second = n / ms: the ratio of rates is the inverse ratio of times
  return {
    ratios: ms[1]!.map((t1, i) => t1 / ms[256]![i]!),
    checks: { cap1024: ms[256]!.map((t, i) => t / ms[1024]![i]!) },
    figures: {
      cap1Ms: { samples: ms[1]!, unit: 'ms' },
      cap256Ms: { samples: ms[256]!, unit: 'ms' },
      cap1024Ms: { samples: ms[1024]!, unit: 'ms' },
      cap1Launches: { samples: rounds[1]!, unit: 'launches' },
      cap256Launches: { samples: rounds[256]!, unit: 'launches' },
      cap1024Launches: { samples: rounds[1024]!, unit: 'launches' },
    },
    notes: [
      `${n} contiguous pages written by the CPU, one touch each; prefetch off; the fault buffer set to 1024 for these runs, so cap 1024 can take 1024 (a round services at most what the buffer delivers)`,
    ],
  };
}

// ---------------------------------------------------------------------------- G4, G5, G6

interface StreamRun {
  ms: number;
  /** Launches that faulted (fault rounds). */
  faultRounds: number;
  /** Fault records the host read back, over every round. */
  records: number;
  /** Misses the GPU saw, before the pending bits. */
  rawMisses: number;
  /** Faults a round's buffer had no room for, summed over rounds (each (page, access) once a round). */
  overflowed: number;
  /** Milliseconds of the dispatch in each phase (Stats.phaseMs delta). */
  phases: PhaseMs;
}

/** The cold streaming read, fault-driven (G4/G5/G6), against bulk writeBuffer + the same kernel on plain buffers (G5). */
async function streamGoals(ctx: BenchContext): Promise<Record<'g4' | 'g5' | 'g6', GoalMeasurement>> {
  const dev = ctx.main;
  const bytes = ctx.sizes.streamBytes;
  const n = bytes / 256; // invocations: 64 words each
  const outBytes = Math.ceil((n * 4) / PAGE_SIZE) * PAGE_SIZE;
  // every page of the input and the output faults at least once (cold, prefetch off, fits the pool)
  const distinctPages = (bytes + outBytes) / PAGE_SIZE;
  const buffer = faultBuffer(dev);
  const stream = ctx.hmm(dev, 'stream');
  const g = grid(n, 64);
  const uniforms = new Uint32Array([REGION, REGION + bytes, n, g.row]);
  const data = pattern(bytes, 4);
  const words = new Uint32Array(data.buffer);
  const expected = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let w = 0; w < 64; w++) s = (s + words[i * 64 + w]!) >>> 0;
    expected[i] = s;
  }
  const mm = ctx.sys.createAddressSpace();
  const m = dev.mirror(mm);
  const explicit = new StreamExplicit(dev, ctx.plain(dev, 'stream'), data, expected);
  // halfCap: the host fetches a full buffer of faults each round but services only half of it
  const variants = {
    off: { prefetch: false, cap: undefined },
    on: { prefetch: true, cap: undefined },
    halfCap: { prefetch: false, cap: Math.max(1, Math.floor(buffer / 2)) },
  } as const;
  type Variant = keyof typeof variants;
  const runs: Record<Variant, StreamRun[]> = { off: [], on: [], halfCap: [] };
  const explicitMs: number[] = [];
  const faultDriven = async (v: Variant, verify: boolean): Promise<StreamRun> => {
    mm.mmap(bytes + outBytes, { addr: REGION });
    await mm.write(REGION, data);
    const before = dev.stats.snapshot();
    const phasesBefore = phasesOf(ctx);
    const t0 = now();
    const r = await m.dispatch(stream, {
      mode: 'replayable',
      prefetch: variants[v].prefetch,
      faultBatchPages: variants[v].cap,
      workgroups: g.workgroups,
      uniforms,
    });
    const ms = now() - t0;
    const phases = phaseDelta(phasesBefore, phasesOf(ctx));
    const after = dev.stats.snapshot();
    if (verify) {
      const out = new Uint32Array((await mm.read(REGION + bytes, n * 4)).buffer);
      const bad = out.findIndex((x, i) => x !== expected[i]);
      if (bad >= 0) throw new Error(`stream (${v}): out[${bad}] = ${out[bad]}, expected ${expected[bad]}`);
    }
    await mm.munmap(REGION, bytes + outBytes);
    const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
    return {
      ms,
      faultRounds: r.faults,
      records: delta('faultRecords'),
      rawMisses: delta('faultsReported'),
      overflowed: delta('faultsOverflowed'),
      phases,
    };
  };
  try {
    await repeat(ctx, 'G4-G6 cold streaming read', async (timed, rep) => {
      const order: (Variant | 'explicit')[] = ['off', 'on', 'explicit', 'halfCap'];
      if (rep % 2 === 1) order.reverse();
      for (const v of order) {
        if (v === 'explicit') {
          const ms = await explicit.run(rep <= 0);
          if (timed) explicitMs.push(ms);
          continue;
        }
        const r = await faultDriven(v, rep <= 0);
        if (timed) runs[v].push(r);
      }
    });
  } finally {
    explicit.destroy();
    mm.destroy();
  }
  const ms = (v: Variant): number[] => runs[v].map((r) => r.ms);
  const faultRounds = (v: Variant): number[] => runs[v].map((r) => r.faultRounds);
  const fig = (samples: number[], unit: string) => ({ samples, unit });
  const streamPages = bytes / PAGE_SIZE;
  const sizeNote = `${bytes >> 20} MiB (${streamPages} pages) read cold from system RAM (written by the CPU, never on the device), sums into ${outBytes / PAGE_SIZE} output pages; device pool ${ctx.sizes.mainPoolBytes >> 20} MiB in ${dev.memory.buffers.length} buffer(s)`;
  const bufferNote = `fault buffer ${buffer} faults a round: without prefetch at least ⌈${streamPages} ÷ ${buffer}⌉ = ${minFaultRounds(streamPages, buffer)} rounds for the input alone`;
  const info = { faultBufferPages: buffer, streamPages, minRoundsWithoutPrefetch: minFaultRounds(streamPages, buffer) };
  return {
    g4: {
      ratios: ms('off').map((x, i) => x / ms('on')[i]!),
      checks: {
        rounds: faultRounds('on').map((x, i) => x / faultRounds('off')[i]!),
        offRounds: faultRounds('off'),
      },
      figures: {
        prefetchOffMs: fig(ms('off'), 'ms'),
        prefetchOnMs: fig(ms('on'), 'ms'),
        prefetchOffFaultRounds: fig(faultRounds('off'), 'rounds'),
        prefetchOnFaultRounds: fig(faultRounds('on'), 'rounds'),
      },
      // where each side's time went: the phases, and the rest of the dispatch (kernels' JS, awaits outside the phases)
      rows: [
        ...PHASES.map((p) => ({
          key: p,
          label: p,
          figures: {
            offMs: fig(
              runs.off.map((r) => r.phases[p]),
              'ms',
            ),
            onMs: fig(
              runs.on.map((r) => r.phases[p]),
              'ms',
            ),
          },
        })),
        {
          key: 'other',
          label: 'other (the dispatch outside the phases)',
          figures: {
            offMs: fig(
              runs.off.map((r) => r.ms - phaseSum(r.phases)),
              'ms',
            ),
            onMs: fig(
              runs.on.map((r) => r.ms - phaseSum(r.phases)),
              'ms',
            ),
          },
        },
      ],
      info,
      notes: [sizeNote, bufferNote, `fault batch cap: the library default (${dev.faultBatchPages} pages per round, at most half the pool)`],
    },
    g5: {
      ratios: ms('on').map((x, i) => x / explicitMs[i]!),
      checks: { noPrefetch: ms('off').map((x, i) => x / explicitMs[i]!) },
      figures: {
        faultDrivenMs: fig(ms('on'), 'ms'),
        noPrefetchMs: fig(ms('off'), 'ms'),
        explicitMs: fig(explicitMs, 'ms'),
        noPrefetchFaultRounds: fig(faultRounds('off'), 'rounds'),
      },
      info,
      notes: [
        sizeNote,
        bufferNote,
        `explicit: ${explicit.segments} bulk writeBuffer(s) from a plain ArrayBuffer + the same kernel on plain buffers, completion by mapAsync`,
      ],
    },
    g6: {
      ratios: runs.off.map((r) => recordsPerDistinctPage(r.records, distinctPages)),
      checks: {
        raw: runs.off.map((r) => recordsPerDistinctPage(r.rawMisses, distinctPages)),
        overflow: runs.off.map((r) => r.overflowed / distinctPages),
        halfCap: runs.halfCap.map((r) => recordsPerDistinctPage(r.records, distinctPages)),
      },
      figures: {
        faultRecords: fig(
          runs.off.map((r) => r.records),
          'records',
        ),
        distinctPages: fig(
          runs.off.map(() => distinctPages),
          'pages',
        ),
        rawMisses: fig(
          runs.off.map((r) => r.rawMisses),
          'misses',
        ),
        overflowedFaults: fig(
          runs.off.map((r) => r.overflowed),
          'faults',
        ),
        faultRounds: fig(faultRounds('off'), 'rounds'),
        halfCapRecords: fig(
          runs.halfCap.map((r) => r.records),
          'records',
        ),
        halfCapFaultRounds: fig(faultRounds('halfCap'), 'rounds'),
      },
      info: { ...info, halfCapBatchPages: variants.halfCap.cap },
      notes: [
        `every round of the prefetch-off streaming read (16 invocations per page, each stops at its first miss); distinct pages = the ${streamPages} input + ${outBytes / PAGE_SIZE} output pages, each faulted at least once`,
        bufferNote,
        `halfCap: the same run with the batch cap at ${variants.halfCap.cap}, half the buffer: the faults it leaves are received again next round`,
      ],
    },
  };
}

/** The explicit side of G5: bulk writeBuffer of the data into plain buffers, then the stream kernel on them. */
class StreamExplicit {
  readonly segments: number;
  private readonly regions: { region: PlainRegion; from: number; bytes: number }[] = [];
  private readonly rt: RoundTrip;
  constructor(
    private readonly dev: HmmDevice,
    private readonly kernel: PlainKernel,
    private readonly data: Uint8Array,
    private readonly expected: Uint32Array,
  ) {
    const bytes = data.byteLength;
    const lim = dev.device.limits;
    // one binding holds a segment's data and its sums (1/64 more)
    const most = Math.floor(Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize) / (1 + 1 / 64) / (1 << 20)) << 20;
    for (let from = 0; from < bytes; from += most) {
      const seg = Math.min(most, bytes - from);
      this.regions.push({ region: new PlainRegion(dev.device, seg + seg / 64, REGION + from), from, bytes: seg });
    }
    this.segments = this.regions.length;
    this.rt = new RoundTrip(dev.device);
  }
  async run(verify: boolean): Promise<number> {
    const d = this.dev.device;
    const data = this.data;
    await d.queue.onSubmittedWorkDone();
    const uniforms: GPUBuffer[] = [];
    const t0 = now();
    const enc = d.createCommandEncoder({ label: 'bench g5 explicit' });
    for (const s of this.regions) {
      d.queue.writeBuffer(s.region.buffer, 0, data.buffer, data.byteOffset + s.from, s.bytes);
      const n = s.bytes / 256;
      const g = grid(n, 64);
      const base = REGION + s.from;
      uniforms.push(s.region.encode(enc, this.kernel, new Uint32Array([base, base + s.bytes, n, g.row]), g.workgroups));
    }
    await this.rt.run(enc);
    const ms = now() - t0;
    for (const u of uniforms) u.destroy();
    if (verify) await this.verify();
    return ms;
  }
  private async verify(): Promise<void> {
    const d = this.dev.device;
    for (const s of this.regions) {
      const n = s.bytes / 256;
      const rb = d.createBuffer({ size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = d.createCommandEncoder();
      enc.copyBufferToBuffer(s.region.buffer, s.bytes, rb, 0, n * 4);
      d.queue.submit([enc.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const out = new Uint32Array(rb.getMappedRange().slice(0));
      rb.destroy();
      const first = s.from / 256;
      const bad = out.findIndex((x, i) => x !== this.expected[first + i]);
      if (bad >= 0) throw new Error(`stream (explicit): out[${first + bad}] = ${out[bad]}, expected ${this.expected[first + bad]}`);
    }
  }
  destroy(): void {
    for (const s of this.regions) s.region.destroy();
    this.rt.destroy();
  }
}

// ---------------------------------------------------------------------------- G7, G8

/** A cyclic stream (two passes) over 1.25x the eviction pool at three eviction units, and on a device where it fits. */
async function oversubGoals(ctx: BenchContext): Promise<Record<'g7' | 'g8', GoalMeasurement>> {
  const w = oversubscribedStream(ctx.sizes.evictionPoolBytes, 1.25);
  const lay = w.layout;
  const words = lay.spec('src').words;
  const src = pattern(words * 4, 5);
  const srcWords = new Uint32Array(src.buffer);
  const mms = new Map<HmmDevice, AddressSpace>([
    [ctx.evict, ctx.sys.createAddressSpace()],
    [ctx.main, ctx.sys.createAddressSpace()],
  ]);
  const variants = {
    unit4k: { dev: ctx.evict, evictionPages: 1, prefetch: false },
    unit2m: { dev: ctx.evict, evictionPages: 512, prefetch: true },
    unit64k: { dev: ctx.evict, evictionPages: 16, prefetch: true },
    fits: { dev: ctx.main, evictionPages: 512, prefetch: true },
  } as const;
  type Variant = keyof typeof variants;
  const ms: Record<Variant, number[]> = { unit4k: [], unit2m: [], unit64k: [], fits: [] };
  const evictions: Record<Variant, number[]> = { unit4k: [], unit2m: [], unit64k: [], fits: [] };
  const saved = new Map([...mms.keys()].map((d) => [d, d.evictionPages]));
  const run = async (v: Variant, verify: boolean): Promise<[number, number]> => {
    const { dev, evictionPages, prefetch } = variants[v];
    const mm = mms.get(dev)!;
    const m = dev.mirror(mm);
    const kernel = ctx.hmm(dev, 'scale');
    const [step] = w.steps(REGION, Infinity);
    mm.mmap(lay.bytes, { addr: REGION });
    await mm.write(REGION + lay.offset('src'), src);
    dev.evictionPages = evictionPages;
    const before = dev.stats.get('evictions');
    const t0 = now();
    for (let pass = 0; pass < 2; pass++) await m.dispatch(kernel, { mode: 'replayable', prefetch, workgroups: step!.workgroups, uniforms: step!.uniforms });
    const t = now() - t0;
    const ev = dev.stats.get('evictions') - before;
    if (verify) {
      const out = new Uint32Array((await mm.read(REGION + lay.offset('dst'), words * 4)).buffer);
      const bad = out.findIndex((x, i) => x !== (2 * srcWords[i]! + 1) >>> 0);
      if (bad >= 0) throw new Error(`oversubscribed stream (${v}): dst[${bad}] = ${out[bad]}, expected ${(2 * srcWords[bad]! + 1) >>> 0}`);
    }
    await mm.munmap(REGION, lay.bytes);
    return [t, ev];
  };
  try {
    await repeat(ctx, 'G7/G8 oversubscribed cyclic stream', async (timed, rep) => {
      const order: Variant[] = ['unit4k', 'unit2m', 'unit64k', 'fits'];
      if (rep % 2 === 1) order.reverse();
      for (const v of order) {
        const [t, ev] = await run(v, rep <= 0);
        if (!timed) continue;
        ms[v].push(t);
        evictions[v].push(ev);
      }
    });
  } finally {
    for (const [d, pages] of saved) d.evictionPages = pages;
    for (const mm of mms.values()) mm.destroy();
  }
  const fig = (samples: number[], unit: string) => ({ samples, unit });
  const units = ctx.sizes.evictionPoolBytes / HUGE_SIZE;
  const note = `working set ${(lay.bytes / (1 << 20)).toFixed(1)} MiB (src + dst) = 1.25x the ${ctx.sizes.evictionPoolBytes >> 20} MiB pool (${units} units of 2 MiB), two passes of dst = 2 src + 1; "fits" = the same on the ${ctx.sizes.mainPoolBytes >> 20} MiB device; eviction is the library's clock with second chance (accessed bits), not LRU`;
  return {
    g7: {
      ratios: ms.unit4k.map((x, i) => x / ms.unit2m[i]!),
      checks: { unit64k: ms.unit4k.map((x, i) => x / ms.unit64k[i]!) },
      figures: {
        evict4kNoPrefetchMs: fig(ms.unit4k, 'ms'),
        evict2mPrefetchMs: fig(ms.unit2m, 'ms'),
        evict64kPrefetchMs: fig(ms.unit64k, 'ms'),
        evictions4k: fig(evictions.unit4k, 'pages'),
        evictions2m: fig(evictions.unit2m, 'pages'),
      },
      info: { poolBytes: ctx.sizes.evictionPoolBytes, poolUnits2MiB: units, faultBufferPages: faultBuffer(ctx.evict) },
      notes: [note],
    },
    g8: {
      ratios: ms.unit2m.map((x, i) => x / ms.fits[i]!),
      figures: { oversubscribedMs: fig(ms.unit2m, 'ms'), fitsMs: fig(ms.fits, 'ms') },
      notes: [note],
    },
  };
}

// ---------------------------------------------------------------------------- G9

/** The CPU/GPU ping-pong with thrashing mitigation (pin + throttle) on and off: bytes, time, and write-back ÷ stored. */
async function g9(ctx: BenchContext, target: (dev: HmmDevice, mm: AddressSpace, kernel: KernelName, layout: Layout) => Target): Promise<GoalMeasurement> {
  const w = pingPong(ctx.sizes.pingPongPages, ctx.sizes.pingPongIterations);
  const on = ctx.sys.createAddressSpace();
  const off = ctx.sys.createAddressSpace();
  off.thrash.config = { ...off.thrash.config, enabled: false };
  const tOn = target(ctx.main, on, 'increment', w.layout);
  const tOff = target(ctx.main, off, 'increment', w.layout);
  const bytes: Record<'on' | 'off', number[]> = { on: [], off: [] };
  const ms: Record<'on' | 'off', number[]> = { on: [], off: [] };
  const writtenBack: Record<'on' | 'off', number[]> = { on: [], off: [] };
  const stored: Record<'on' | 'off', number[]> = { on: [], off: [] };
  const pinned: number[] = [];
  try {
    await repeat(ctx, 'G9 CPU/GPU ping-pong, thrashing on / off', async (timed, rep) => {
      const order: ('on' | 'off')[] = rep % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      for (const v of order) {
        const c = ctx.sys.counters;
        const before = { back: c.get('bytesWrittenBack'), stored: c.get('bytesStored'), pinned: c.get('thrashEvents') };
        const r = await runOnce('replayable+prefetch', w, v === 'on' ? tOn : tOff);
        if (!timed) continue;
        bytes[v].push(r.bytesMoved);
        ms[v].push(r.ms);
        writtenBack[v].push(c.get('bytesWrittenBack') - before.back);
        stored[v].push(c.get('bytesStored') - before.stored);
        if (v === 'on') pinned.push(c.get('thrashEvents') - before.pinned);
      }
    });
  } finally {
    tOn.region.destroy();
    tOff.region.destroy();
    on.destroy();
    off.destroy();
  }
  const pairs = bytes.on.map((_, i) => mitigationRatios({ bytes: bytes.on[i]!, ms: ms.on[i]! }, { bytes: bytes.off[i]!, ms: ms.off[i]! }));
  return {
    ratios: pairs.map((p) => p.bytes),
    checks: {
      time: pairs.map((p) => p.time),
      bytesGoal: pairs.map((p) => p.bytes),
      writeBack: writtenBack.on.map((x, i) => writeBackRatio(x, stored.on[i]!)),
    },
    figures: {
      bytesEnabled: { samples: bytes.on, unit: 'bytes' },
      bytesDisabled: { samples: bytes.off, unit: 'bytes' },
      msEnabled: { samples: ms.on, unit: 'ms' },
      msDisabled: { samples: ms.off, unit: 'ms' },
      pagesPinned: { samples: pinned, unit: 'pages' },
      writtenBackEnabled: { samples: writtenBack.on, unit: 'bytes' },
      storedEnabled: { samples: stored.on, unit: 'bytes' },
      writtenBackDisabled: { samples: writtenBack.off, unit: 'bytes' },
      storedDisabled: { samples: stored.off, unit: 'bytes' },
    },
    notes: [
      `${w.title}; GPU phase: replayable dispatch (library defaults), CPU phase: mm.read + mm.write; bytes = migrations both ways + device copies`,
      "write-back ÷ stored: bytesWrittenBack (held copies' dirty 256-byte blocks, whole device pages coming home) ÷ bytesStored (256 bytes per block the kernels dirtied on those pages), over the enabled run",
    ],
  };
}

// ---------------------------------------------------------------------------- G10

/** Where a timed batch reads its 16 status bytes from. */
interface StatusSource {
  buffer: GPUBuffer;
  offset: number;
}

/**
 * A batch of launches timed as one: `k` dispatches of one pipeline in one compute pass, one
 * submit, one 16-byte status copy into a mappable buffer and its map. GPU timestamps at the
 * pass's beginning and end when the device has 'timestamp-query'; the host's submit-to-map time
 * always. Both sides of G10 run exactly this, so they pay the same submissions and readbacks.
 */
class LaunchBatch {
  readonly timestamps: boolean;
  private readonly query: GPUQuerySet | undefined;
  private readonly resolve: GPUBuffer | undefined;
  private readonly readback: GPUBuffer;
  constructor(private readonly device: GPUDevice) {
    this.timestamps = device.features.has('timestamp-query');
    if (this.timestamps) {
      this.query = device.createQuerySet({ label: 'bench g10 timestamps', type: 'timestamp', count: 2 });
      this.resolve = device.createBuffer({ label: 'bench g10 timestamps', size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    }
    this.readback = device.createBuffer({ label: 'bench g10 readback', size: 32, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  async run(
    k: number,
    bind: (pass: GPUComputePassEncoder) => void,
    workgroups: [number, number],
    status: StatusSource,
  ): Promise<{ hostMs: number; gpuMs: number; status: Uint32Array }> {
    const d = this.device;
    const enc = d.createCommandEncoder({ label: 'bench g10 batch' });
    const pass = enc.beginComputePass(
      this.query
        ? { label: 'bench g10 batch', timestampWrites: { querySet: this.query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
        : { label: 'bench g10 batch' },
    );
    bind(pass);
    for (let i = 0; i < k; i++) pass.dispatchWorkgroups(workgroups[0], workgroups[1]);
    pass.end();
    if (this.query && this.resolve) {
      enc.resolveQuerySet(this.query, 0, 2, this.resolve, 0);
      enc.copyBufferToBuffer(this.resolve, 0, this.readback, 16, 16);
    }
    enc.copyBufferToBuffer(status.buffer, status.offset, this.readback, 0, 16);
    const cmd = enc.finish();
    await d.queue.onSubmittedWorkDone(); // start from an idle queue
    const t0 = now();
    d.queue.submit([cmd]);
    await this.readback.mapAsync(GPUMapMode.READ);
    const hostMs = now() - t0;
    const range = this.readback.getMappedRange();
    const st = new Uint32Array(range, 0, 4).slice();
    const ts = this.timestamps ? new BigUint64Array(range, 16, 2).slice() : undefined;
    this.readback.unmap();
    return { hostMs, gpuMs: ts ? timestampSpanMs(ts[0]!, ts[1]!) : NaN, status: st };
  }

  destroy(): void {
    this.query?.destroy();
    this.resolve?.destroy();
    this.readback.destroy();
  }
}

/** Bind an HMM kernel's validated pipeline with a mirror's page table and a control buffer, as a launch does, for a timed batch. */
function hmmBinding(
  dev: HmmDevice,
  m: Mirror,
  kernel: HmmKernel,
  uniforms: Uint32Array,
): { bind: (pass: GPUComputePassEncoder) => void; status: StatusSource; release: () => void } {
  const d = dev.device;
  const usize = Math.max(16, Math.ceil(uniforms.byteLength / 16) * 16);
  const ubuf = d.createBuffer({ label: 'bench g10 hmm uniforms', size: usize, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const padded = new Uint8Array(usize);
  padded.set(new Uint8Array(uniforms.buffer, uniforms.byteOffset, uniforms.byteLength));
  d.queue.writeBuffer(ubuf, 0, padded);
  const group0 = d.createBindGroup({ layout: dev.layouts.group0, entries: [{ binding: 0, resource: { buffer: ubuf } }] });
  const ctl = m.controls.take();
  // status words as a launch writes them: no misses yet, no lowest miss, validated mode
  d.queue.writeBuffer(ctl.buffer, 0, new Uint32Array([0, 0xffffffff, 0xffffffff, 0, 0]));
  return {
    bind: (pass) => {
      pass.setPipeline(kernel.pipeline);
      pass.setBindGroup(0, group0);
      pass.setBindGroup(1, ctl.bindGroup);
    },
    status: { buffer: ctl.buffer, offset: 0 },
    release: () => {
      m.controls.give(ctl);
      ubuf.destroy();
    },
  };
}

/** The most launches one G10 batch holds (a fast GPU may then span less than minSpanMs; the JSON says so). */
const MAX_BATCH_LAUNCHES = 4096;

/**
 * The triad through the page table with every page resident, against the same kernel on a
 * plain buffer, each as a batch of the same launches (LaunchBatch); read-mostly bytes.
 */
async function g10(ctx: BenchContext): Promise<GoalMeasurement> {
  const dev = ctx.main;
  const d = dev.device;
  const w = triad(ctx.sizes.arrayBytes / 4);
  const lay = w.layout;
  const [step] = w.steps(REGION, Infinity);
  const ranges = [
    { va: REGION + lay.offset('a'), bytes: lay.spec('a').words * 4, access: 'rw' as const },
    { va: REGION + lay.offset('b'), bytes: lay.spec('b').words * 4, access: 'r' as const },
    { va: REGION + lay.offset('c'), bytes: lay.spec('c').words * 4, access: 'r' as const },
  ];
  const mm = ctx.sys.createAddressSpace();
  const m = dev.mirror(mm);
  const kernel = ctx.hmm(dev, 'triad');
  const plain = ctx.plain(dev, 'triad');
  const region = new PlainRegion(d, lay.bytes, REGION);
  const batch = new LaunchBatch(d);
  const rt = new RoundTrip(d);
  const viaTable: number[] = [];
  const direct: number[] = [];
  const dispatchMs: number[] = [];
  // read-mostly: N phases of CPU read + GPU read, with and without duplication
  const rmPages = ctx.sizes.readMostlyPages;
  const phases = ctx.sizes.readMostlyPhases;
  const rmMm = ctx.sys.createAddressSpace();
  const rm = dev.mirror(rmMm);
  const rmData = pattern(rmPages * PAGE_SIZE, 6);
  const rmBytes: Record<'dup' | 'plain', number[]> = { dup: [], plain: [] };
  const readPhases = async (advice: boolean): Promise<number> => {
    rmMm.mmap(rmPages * PAGE_SIZE, { addr: REGION });
    await rmMm.write(REGION, rmData);
    if (advice) await rmMm.advise(REGION, rmPages * PAGE_SIZE, { readMostly: true });
    const before = bytesMoved(ctx.sys.stats());
    for (let i = 0; i < phases; i++) {
      await rm.read(REGION, rmPages);
      await rmMm.read(REGION, rmPages * PAGE_SIZE);
    }
    const moved = bytesMoved(ctx.sys.stats()) - before;
    await rmMm.munmap(REGION, rmPages * PAGE_SIZE);
    return moved;
  };
  let hmm: ReturnType<typeof hmmBinding> | undefined;
  let plainBind: ReturnType<PlainRegion['bind']> | undefined;
  let method: 'gpu-timestamps' | 'host' = 'host';
  let k = 1;
  try {
    const img = new Image(lay);
    w.init(img, REGION);
    mm.mmap(lay.bytes, { addr: REGION });
    await mm.write(REGION, new Uint8Array(img.words.buffer));
    d.queue.writeBuffer(region.buffer, 0, img.words.buffer, 0, lay.bytes);
    // make every page resident: the timed launches find them all mapped (checked: no misses)
    await m.dispatch(kernel, { mode: 'validated', workgroups: step!.workgroups, uniforms: step!.uniforms, ranges });
    hmm = hmmBinding(dev, m, kernel, step!.uniforms);
    plainBind = region.bind(plain, step!.uniforms);
    const pb = plainBind;
    const sides = {
      viaTable: () => batch.run(k, hmm!.bind, step!.workgroups, hmm!.status),
      direct: () =>
        batch.run(
          k,
          (pass) => {
            pass.setPipeline(plain.pipeline);
            pass.setBindGroup(0, pb.groups[0]);
            pass.setBindGroup(1, pb.groups[1]);
          },
          step!.workgroups,
          { buffer: region.buffer, offset: 0 },
        ),
    };
    const checked = async (side: keyof typeof sides): Promise<{ hostMs: number; gpuMs: number }> => {
      const r = await sides[side]();
      if (side === 'viaTable' && r.status[0] !== 0)
        throw new Error(`G10: ${r.status[0]} accesses missed the page table although every page was made resident first`);
      return r;
    };
    // calibrate: how long a plain launch takes, and whether the timestamps are usable
    k = 4;
    const cal = [await checked('direct'), await checked('viaTable'), await checked('direct')];
    method = batch.timestamps && cal.every((c) => Number.isFinite(c.gpuMs) && c.gpuMs > 0) ? 'gpu-timestamps' : 'host';
    const span = (c: { hostMs: number; gpuMs: number }): number => (method === 'gpu-timestamps' ? c.gpuMs : c.hostMs);
    k = launchesForSpan(Math.min(span(cal[0]!), span(cal[2]!)) / 4, ctx.sizes.minSpanMs, MAX_BATCH_LAUNCHES);
    await repeat(ctx, 'G10 translation tax, read-mostly', async (timed, rep) => {
      const order = rep % 2 === 0 ? (['viaTable', 'direct'] as const) : (['direct', 'viaTable'] as const);
      const got: Record<string, number> = {};
      for (const side of order) got[side] = span(await checked(side));
      // the whole validated dispatch, for reference (host work, error scope and readback included)
      const t0 = now();
      await m.dispatch(kernel, { mode: 'validated', workgroups: step!.workgroups, uniforms: step!.uniforms, ranges });
      const whole = now() - t0;
      const dup = await readPhases(true);
      const noDup = await readPhases(false);
      if (!timed) return;
      viaTable.push(got.viaTable!);
      direct.push(got.direct!);
      dispatchMs.push(whole);
      rmBytes.dup.push(dup);
      rmBytes.plain.push(noDup);
    });
  } finally {
    hmm?.release();
    plainBind?.uniform.destroy();
    batch.destroy();
    region.destroy();
    rt.destroy();
    mm.destroy();
    rmMm.destroy();
  }
  const perLaunch = (xs: number[]): number[] => xs.map((x) => x / k);
  const shortSpan = direct.some((x) => x < ctx.sizes.minSpanMs);
  return {
    ratios: viaTable.map((x, i) => x / direct[i]!),
    checks: { readMostly: rmBytes.dup.map((x, i) => x / rmBytes.plain[i]!) },
    checkTargets: { readMostly: 1 / phases },
    figures: {
      pageTableMsPerLaunch: { samples: perLaunch(viaTable), unit: 'ms' },
      plainBufferMsPerLaunch: { samples: perLaunch(direct), unit: 'ms' },
      pageTableSpanMs: { samples: viaTable, unit: 'ms' },
      plainBufferSpanMs: { samples: direct, unit: 'ms' },
      dispatchMs: { samples: dispatchMs, unit: 'ms' },
      readMostlyBytes: { samples: rmBytes.dup, unit: 'bytes' },
      noAdviceBytes: { samples: rmBytes.plain, unit: 'bytes' },
    },
    info: { timing: method, timestampQuery: batch.timestamps, launchesPerBatch: k, minSpanMs: ctx.sizes.minSpanMs, spanBelowMinimum: shortSpan },
    notes: [
      `${w.title}; each side ${k} launches in one compute pass, one submit, one 16-byte readback; every page resident (the page-table side checks that nothing missed)`,
      method === 'gpu-timestamps'
        ? 'timed by GPU timestamps at the beginning and end of the pass'
        : batch.timestamps
          ? 'timed on the host, submit to map: the timestamps came back unusable in calibration'
          : "timed on the host, submit to map: the device has no 'timestamp-query'",
      `dispatchMs: one whole validated m.dispatch of the same kernel (host walk, status, error scope, readback), for reference`,
      `read-mostly: ${rmPages} pages, N = ${phases} phases of GPU read (mirror.read) + CPU read`,
    ],
  };
}

// ---------------------------------------------------------------------------- G12

/** hmm-tests benchmark_thp_migration: each size migrated RAM → device → RAM as a huge mapping and as 4 KiB pages. */
async function g12(ctx: BenchContext): Promise<GoalMeasurement> {
  const dev = ctx.main;
  const mm = ctx.sys.createAddressSpace();
  const m = dev.mirror(mm);
  const sizes = ctx.sizes.thpBytes;
  const kinds = ['huge', 'regular'] as const;
  type Kind = (typeof kinds)[number];
  const times = new Map<number, Record<Kind, { toDevice: number[]; toSystem: number[] }>>(
    sizes.map((b) => [b, { huge: { toDevice: [], toSystem: [] }, regular: { toDevice: [], toSystem: [] } }]),
  );
  const data = pattern(Math.max(...sizes), 12);
  const once = async (bytes: number, kind: Kind, verify: boolean): Promise<[number, number]> => {
    const npages = bytes / PAGE_SIZE;
    mm.mmap(bytes, { addr: REGION, huge: kind === 'huge' });
    try {
      await mm.write(REGION, data.subarray(0, bytes));
      // a warm-up round trip first, as hmm-tests does
      await m.migrateToDevice(REGION, npages);
      await m.migrateToSystem(REGION, npages);
      const t0 = now();
      const to = await m.migrateToDevice(REGION, npages);
      const t1 = now();
      if (to.cpages !== npages) throw new Error(`G12: ${to.cpages} of ${npages} pages reached the device (${kind}, ${bytes} bytes)`);
      if (kind === 'huge' && bytes >= HUGE_SIZE && !m.table.isHuge(REGION / PAGE_SIZE))
        throw new Error(`G12: a ${bytes >> 20} MiB huge mapping did not move as 2 MiB units (no 2 MiB device frame?)`);
      const t2 = now();
      const back = await m.migrateToSystem(REGION, npages);
      const t3 = now();
      if (back.cpages !== npages) throw new Error(`G12: ${back.cpages} of ${npages} pages came back (${kind}, ${bytes} bytes)`);
      if (verify) {
        const got = await mm.read(REGION, bytes);
        for (let i = 0; i < bytes; i++) if (got[i] !== data[i]) throw new Error(`G12: byte ${i} of the ${kind} ${bytes}-byte buffer changed in the round trip`);
      }
      return [t1 - t0, t3 - t2];
    } finally {
      await mm.munmap(REGION, bytes);
    }
  };
  try {
    await repeat(ctx, 'G12 huge vs 4 KiB page migration', async (timed, rep) => {
      for (const bytes of sizes) {
        const order = rep % 2 === 0 ? kinds : ([...kinds].reverse() as Kind[]);
        for (const kind of order) {
          const [toDevice, toSystem] = await once(bytes, kind, rep <= 0);
          if (!timed) continue;
          const t = times.get(bytes)![kind];
          t.toDevice.push(toDevice);
          t.toSystem.push(toSystem);
        }
      }
    });
  } finally {
    mm.destroy();
  }
  const ratiosAt = (bytes: number) => {
    const t = times.get(bytes)!;
    return t.huge.toDevice.map((_, i) =>
      thpRatio({ toDevice: t.huge.toDevice[i]!, toSystem: t.huge.toSystem[i]! }, { toDevice: t.regular.toDevice[i]!, toSystem: t.regular.toSystem[i]! }),
    );
  };
  const label = (b: number): string => (b >= 1 << 20 ? `${b / (1 << 20)} MiB` : `${b / 1024} KiB`);
  const head = ratiosAt(HUGE_SIZE);
  const t2m = times.get(HUGE_SIZE)!;
  return {
    ratios: head.map((r) => r.both),
    checks: { toDevice: head.map((r) => r.toDevice), toSystem: head.map((r) => r.toSystem) },
    figures: {
      hugeToDeviceMs: { samples: t2m.huge.toDevice, unit: 'ms' },
      hugeToSystemMs: { samples: t2m.huge.toSystem, unit: 'ms' },
      regularToDeviceMs: { samples: t2m.regular.toDevice, unit: 'ms' },
      regularToSystemMs: { samples: t2m.regular.toSystem, unit: 'ms' },
    },
    rows: sizes.map((b) => {
      const t = times.get(b)!;
      const r = ratiosAt(b);
      return {
        key: String(b),
        label: `${label(b)} (${b / HUGE_SIZE} × 2 MiB)`,
        figures: {
          hugeToDeviceMs: { samples: t.huge.toDevice, unit: 'ms' },
          hugeToSystemMs: { samples: t.huge.toSystem, unit: 'ms' },
          regularToDeviceMs: { samples: t.regular.toDevice, unit: 'ms' },
          regularToSystemMs: { samples: t.regular.toSystem, unit: 'ms' },
          ratio: { samples: r.map((x) => x.both), unit: 'huge ÷ 4 KiB' },
          ratioToDevice: { samples: r.map((x) => x.toDevice), unit: 'huge ÷ 4 KiB' },
          ratioToSystem: { samples: r.map((x) => x.toSystem), unit: 'huge ÷ 4 KiB' },
        },
      };
    }),
    info: { sizes: sizes.map(label).join(', ') },
    notes: [
      'each size mapped huge (mmap { huge: true }: 2 MiB blocks, a huge page in RAM once written) or not, written by the CPU, one untimed round trip, then m.migrateToDevice and m.migrateToSystem of the whole buffer, each timed (hmm-tests benchmark_thp_migration)',
      'below 2 MiB a huge mapping has no whole block to move as one: both kinds move 4 KiB pages, and the ratio is 1 by construction',
    ],
  };
}

/** Every goal measurement, in order; a goal that throws is reported as failed and the rest go on. */
export async function measureGoals(
  ctx: BenchContext,
  target: (dev: HmmDevice, mm: AddressSpace, kernel: KernelName, layout: Layout) => Target,
): Promise<Record<GoalId, GoalMeasurement | Error>> {
  const out = {} as Record<GoalId, GoalMeasurement | Error>;
  const attempt = async <K extends GoalId>(ids: K[], fn: () => Promise<Record<K, GoalMeasurement | Error> | GoalMeasurement>): Promise<void> => {
    try {
      const r = await fn();
      if (ids.length === 1 && 'ratios' in r) out[ids[0]!] = r as GoalMeasurement;
      else for (const id of ids) out[id] = (r as Record<K, GoalMeasurement | Error>)[id];
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      for (const id of ids) out[id] = err;
    }
  };
  await attempt(['g1'], () => g1(ctx));
  await attempt(['g2', 'g11'], () => faultRoundGoals(ctx));
  await attempt(['g3'], () => g3(ctx));
  await attempt(['g4', 'g5', 'g6'], () => streamGoals(ctx));
  await attempt(['g7', 'g8'], () => oversubGoals(ctx));
  await attempt(['g9'], () => g9(ctx, target));
  await attempt(['g10'], () => g10(ctx));
  await attempt(['g12'], () => g12(ctx));
  return out;
}

/** Repetition groups measureGoals runs (for the progress total). */
export const GOAL_GROUPS = 8;
