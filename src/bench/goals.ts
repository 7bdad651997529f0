// The goals of perf-anchors §6 and §7 (G1–G12): what each ratio divides by what, its target,
// the anchor it is set against (sources named as perf-anchors names them), and the rule that
// says whether a measured ratio meets it. Secondary figures a goal asks for ("also report ...")
// are checks beside the headline ratio; `met` is about the headline ratio only. G11 is a figure
// with a unit (µs per page), not a ratio. Pure: the measurements themselves are in
// microbench.ts, their arithmetic in figures.ts.

import { summarize, type Summary } from './stats.ts';

export type GoalId = 'g1' | 'g2' | 'g3' | 'g4' | 'g5' | 'g6' | 'g7' | 'g8' | 'g9' | 'g10' | 'g11' | 'g12';
/** '>=': the ratio must be at least the target; '<=': at most. */
export type Direction = '>=' | '<=';

export interface CheckSpec {
  key: string;
  title: string;
  /** null: reported for information, no target. */
  target: number | null;
  direction: Direction;
}

export interface GoalSpec {
  id: GoalId;
  title: string;
  /** The headline ratio, numerator ÷ denominator, in words. */
  ratio: string;
  target: number;
  direction: Direction;
  /** What the headline is in, when it is not a plain ratio (G11: 'µs/page'). */
  unit?: string;
  anchor: string;
  checks: CheckSpec[];
}

export const GOALS: readonly GoalSpec[] = [
  {
    id: 'g1',
    title: 'Batched migration efficiency',
    ratio:
      'throughput migrating 256 scattered 4 KiB pages RAM → device pool (one packed staging writeBuffer + GPU scatter) ÷ throughput of one bulk writeBuffer of the same bytes',
    target: 0.5,
    direction: '>=',
    anchor:
      "4 KB vs bulk: 0.16–0.18 for a CUDA copy (Allen & Ge SC'21 Fig. 1; UVM-Smart curve); 0.10–0.22 for wgpu 4 KiB writes (pygfx-benchmarks); UVM's fault path ≈0.11 of direct",
    checks: [{ key: 'naive', title: 'naive baseline: one writeBuffer per page ÷ bulk (expected 0.10–0.25)', target: null, direction: '>=' }],
  },
  {
    id: 'g2',
    title: 'Fault-round overhead vs platform floor',
    ratio:
      'one full fault round with 256 distinct faulting pages (kernel faults → readback → service → replay completes) ÷ an empty submit + mapAsync round trip',
    target: 2.0,
    direction: '<=',
    anchor: "Chrome floor 0.47 ms (ekzhang/jax-js PR #124); a full UVM 256-fault batch ≈0.75 ms on Titan V (Allen & Ge SC'21 Fig. 6)",
    checks: [],
  },
  {
    id: 'g3',
    title: 'Batching amortisation',
    ratio: 'pages serviced per second with the fault batch cap at 256 ÷ with the cap at 1 (same kernel, same data, prefetch off)',
    target: 50,
    direction: '>=',
    anchor:
      "UVM default batch 256 (uvm_perf_fault_batch_count); larger batches are always better and plateau above 1024 (Allen & Ge SC'21 §4.2); a 0.47 ms round floor makes the ideal ≈100×",
    checks: [{ key: 'cap1024', title: 'cap 1024 ÷ cap 256: no regression', target: 1.0, direction: '>=' }],
  },
  {
    id: 'g4',
    title: 'Prefetch payoff',
    ratio:
      'wall time of a cold streaming read, fault-driven under the 256-fault buffer, prefetch off ÷ density prefetcher on (51 %, 64 KiB upgrade, within the 2 MiB block)',
    target: 2.7,
    direction: '>=',
    anchor:
      "3.39× and 2.72× kernel speedup (Allen & Ge SC'21 Table 4); ≈3.1× sgemm GFLOPS (uvm-eval figs); −93 % batches (SC'21 §5.2); NVIDIA threshold 51 (uvm_perf_prefetch.c)",
    checks: [
      { key: 'rounds', title: 'fault rounds, prefetch on ÷ off', target: 0.1, direction: '<=' },
      { key: 'offRounds', title: 'fault rounds without prefetch (at least 10: rounds for prefetch to save)', target: 10, direction: '>=' },
    ],
  },
  {
    id: 'g5',
    title: 'Fault-driven vs explicit copy',
    ratio: 'streaming kernel on cold SAB data, fault-driven with prefetch ÷ (bulk writeBuffer of all data + the same kernel on a plain buffer)',
    target: 4.0,
    direction: '<=',
    anchor: "UVM without hints ≈14–15× direct copy at ≥1 GB (Allen & Ge SC'21 Fig. 1); divided by UVM's ≈3× prefetch gain ≈4.7×",
    checks: [{ key: 'noPrefetch', title: 'fault-driven without prefetch ÷ explicit', target: 14, direction: '<=' }],
  },
  {
    id: 'g6',
    title: 'Duplicate suppression',
    ratio:
      'fault records the host received ÷ distinct pages faulted, over every round of the cold stream without prefetch, under the 256-fault buffer (faults past 256 overflow and fault again next round; a record of a page already received counts again)',
    target: 1.05,
    direction: '<=',
    anchor: "UVM stream batches: ≈256 raw faults for ≈50 unique (Allen & Ge SC'21 Fig. 8); the driver relies on buffer flushes (replay_update_put_ratio = 50)",
    checks: [
      { key: 'raw', title: 'raw misses ÷ distinct pages (what the host would get without the pending bits)', target: null, direction: '<=' },
      {
        key: 'overflow',
        title: 'faults the buffer had no room for, summed over rounds, ÷ distinct pages (rounds a page waited)',
        target: null,
        direction: '<=',
      },
      {
        key: 'halfCap',
        title: 'the same records ÷ pages with the batch cap at half the buffer (the host fetches faults it does not service)',
        target: null,
        direction: '<=',
      },
    ],
  },
  {
    id: 'g7',
    title: 'Eviction policy under oversubscription',
    ratio: 'working set 1.25× a device pool of at least 8 × 2 MiB, cyclic stream (two passes): 4 KiB eviction, no prefetch ÷ 2 MiB eviction + prefetch',
    target: 1.5,
    direction: '>=',
    anchor:
      "+93 % for tree eviction + prefetch vs LRU 4 KB, +18.5 % vs LRU 2 MB (Ganguly et al. ISCA'19 [2nd]); UVM evicts whole 2 MiB root chunks (uvm_pmm_gpu.c)",
    checks: [{ key: 'unit64k', title: '4 KiB no prefetch ÷ 64 KiB eviction + prefetch', target: null, direction: '>=' }],
  },
  {
    id: 'g8',
    title: 'Oversubscription cost',
    ratio: 'the same cyclic stream at 1.25× oversubscription ÷ on a device where it fits (both 2 MiB eviction + prefetch)',
    target: 3.0,
    direction: '<=',
    anchor: 'No clean anchor (engineering judgment): 2–4× for UVM graph apps (DREAM [2nd]) up to >1000× (ETC [2nd]); up to 100× variation (NVIDIA blog)',
    checks: [],
  },
  {
    id: 'g9',
    title: 'Thrash mitigation',
    ratio:
      'bytes moved in a CPU/GPU ping-pong on the same pages with thrashing mitigation (throttle and pin) enabled ÷ disabled: never more than none (≤ 1.0 now; ≤ 0.5 is the goal)',
    target: 1.0,
    direction: '<=',
    anchor:
      'UVM: 3 events within 500 µs, nap 500 µs, pin after 10 throttles for 150 ms (uvm_perf_thrashing.c); UVM pins and maps remotely, moving only the lines touched; WebGPU cannot map across, so the floor is one upload per page per round and write-back of only the dirtied 256-byte blocks (perf-anchors §7)',
    checks: [
      { key: 'time', title: 'time, enabled ÷ disabled', target: 1.0, direction: '<=' },
      { key: 'bytesGoal', title: 'bytes, enabled ÷ disabled, against the goal', target: 0.5, direction: '<=' },
      { key: 'writeBack', title: 'bytes written back ÷ bytes stored by kernels (enabled)', target: null, direction: '<=' },
    ],
  },
  {
    id: 'g10',
    title: 'Resident-path translation tax',
    ratio:
      'kernel time through the software page table, every page resident ÷ the same kernel on a plain storage buffer; each side the same launches in one compute pass, one submit and one readback, timed by GPU timestamps around the pass where the adapter has them (spans ≥ 10 ms), by the host otherwise',
    target: 1.25,
    direction: '<=',
    anchor:
      'No direct numeric anchor (flagged); host-resident managed memory is 40× slower than device-resident on MI100 (UoB-HPC/utpx); ReadMostly semantics from the CUDA cudaMemAdvise docs',
    checks: [
      { key: 'readMostly', title: 'read-mostly: bytes over N CPU-read/GPU-read phases with duplication ÷ without (target 1/N)', target: null, direction: '<=' },
    ],
  },
  {
    id: 'g11',
    title: 'Host cost per serviced page',
    ratio:
      'host (JavaScript thread) time of one 256-fault round: the fault-service phases except the wait for the GPU, summed, ÷ the pages the round serviced, in µs',
    target: 3,
    direction: '<=',
    unit: 'µs/page',
    anchor:
      "A whole UVM batch of 256 faults costs ≈0.75 ms on Titan V, ≈2.9 µs per 4 KiB page including the transfer (Allen & Ge SC'21 Fig. 6, perf-anchors §7): our bookkeeping alone should not cost more than their whole service",
    checks: [
      { key: 'withWait', title: 'every phase, the GPU wait included, per page (µs)', target: null, direction: '<=' },
      {
        key: 'wallLessWait',
        title: "the round's wall time less its GPU wait, per page (µs): host work the phases do not cover included",
        target: null,
        direction: '<=',
      },
    ],
  },
  {
    id: 'g12',
    title: 'Huge-page migration',
    ratio:
      'migrating one 2 MiB huge page ÷ the same 2 MiB as 512 separate 4 KiB pages, RAM → device plus device → RAM, one call each way (hmm-tests benchmark_thp_migration: a MADV_HUGEPAGE buffer against a MADV_NOHUGEPAGE one)',
    target: 0.25,
    direction: '<=',
    anchor:
      'Device-private THP series (linux-mm "mm/zone_device THP", NVIDIA, Sep–Oct 2025): 4× throughput and 5× lower latency in test_hmm; on Xe a 2 MiB fault went from 966 µs to 132 µs, 7.3× (dri-devel "drm/pagemap: THP"; perf-anchors §7)',
    checks: [
      { key: 'toDevice', title: 'RAM → device only', target: 0.25, direction: '<=' },
      { key: 'toSystem', title: 'device → RAM only', target: 0.25, direction: '<=' },
    ],
  },
];

export const GOAL_IDS: readonly GoalId[] = GOALS.map((g) => g.id);

/** Does a ratio meet a target? Never for a ratio that is not a finite number. */
export function meets(ratio: number, target: number, direction: Direction): boolean {
  if (!Number.isFinite(ratio)) return false;
  return direction === '>=' ? ratio >= target : ratio <= target;
}

export interface CheckResult {
  key: string;
  title: string;
  ratio: number;
  min: number;
  max: number;
  target: number | null;
  direction: Direction;
  /** null when the check has no target. */
  met: boolean | null;
}

export interface GoalResult {
  id: GoalId;
  title: string;
  ratio: number;
  min: number;
  max: number;
  target: number;
  direction: Direction;
  met: boolean;
  /** The headline ratio in words. */
  definition: string;
  /** The headline's unit when it is not a plain ratio (G11: 'µs/page'). */
  unit?: string;
  anchor: string;
  /** The raw figures behind the ratio (ms, bytes, counts), each the median of the repetitions with min and max. */
  figures: Record<string, Summary & { unit: string }>;
  checks: CheckResult[];
  /** Setup facts worth knowing when reading the ratio (sizes, rounds, the batch cap in force). */
  notes: string[];
  /** Facts of the run a reader or script needs by name (G10's timing method, the fault buffer in force, ...). */
  info?: Record<string, string | number | boolean | null>;
  /** A table of figures by row (G12: one row per hmm-tests size), each figure a median with min and max. */
  rows?: GoalRow[];
  /** Set when the measurement failed; the ratio is then NaN and `met` false. */
  error?: string;
}

export interface GoalRow {
  key: string;
  label: string;
  figures: Record<string, Summary & { unit: string }>;
}

/** What a measurement hands back for one goal: per-repetition ratios and raw samples. */
export interface GoalMeasurement {
  ratios: number[];
  checks?: Record<string, number[] | undefined>;
  /** A check whose target depends on the run (G10's 1/N). */
  checkTargets?: Record<string, number>;
  figures?: Record<string, { samples: number[]; unit: string }>;
  notes?: string[];
  info?: Record<string, string | number | boolean | null>;
  rows?: { key: string; label: string; figures: Record<string, { samples: number[]; unit: string }> }[];
}

/** Judge one goal from its measurement (or its failure). */
export function evaluateGoal(spec: GoalSpec, m: GoalMeasurement | Error): GoalResult {
  const base = {
    id: spec.id,
    title: spec.title,
    target: spec.target,
    direction: spec.direction,
    definition: spec.ratio,
    ...(spec.unit ? { unit: spec.unit } : {}),
    anchor: spec.anchor,
  };
  if (m instanceof Error) {
    return { ...base, ratio: NaN, min: NaN, max: NaN, met: false, figures: {}, checks: [], notes: [], error: m.message };
  }
  const r = summarize(m.ratios);
  const checks: CheckResult[] = spec.checks.map((c) => {
    const s = summarize(m.checks?.[c.key] ?? []);
    const target = m.checkTargets?.[c.key] ?? c.target;
    return {
      key: c.key,
      title: c.title,
      ratio: s.median,
      min: s.min,
      max: s.max,
      target,
      direction: c.direction,
      met: target === null ? null : meets(s.median, target, c.direction),
    };
  });
  const summarized = (fs: Record<string, { samples: number[]; unit: string }> | undefined): GoalResult['figures'] => {
    const out: GoalResult['figures'] = {};
    for (const [k, f] of Object.entries(fs ?? {})) out[k] = { ...summarize(f.samples), unit: f.unit };
    return out;
  };
  return {
    ...base,
    ratio: r.median,
    min: r.min,
    max: r.max,
    met: meets(r.median, spec.target, spec.direction),
    figures: summarized(m.figures),
    checks,
    notes: m.notes ?? [],
    ...(m.info ? { info: m.info } : {}),
    ...(m.rows ? { rows: m.rows.map((row) => ({ key: row.key, label: row.label, figures: summarized(row.figures) })) } : {}),
  };
}
