// The arithmetic behind the bench's newer figures (issue 15), apart from the GPU work that
// feeds it, so unit tests can check it on hand-made inputs: phase deltas and shares (the phase
// breakdown), host time per serviced page (G11), fault records per distinct page (G6), the
// mitigation and write-back ratios (G9), the span and per-launch time of a timed batch of
// launches (G10), huge-page against 4 KiB migration (G12), and the workload matrix's G5 column
// with its phase shares. Pure: no GPU, no System.

import { PHASES, type Phase } from '../trace/trace.ts';
import type { Summary } from './stats.ts';

export { PHASES, type Phase };

/** Milliseconds per phase (Stats.phaseMs(), or a difference of two of them). */
export type PhaseMs = Record<Phase, number>;
/** A phase, or the rest of a run's wall time that no phase accounts for. */
export type PhaseOrOther = Phase | 'other';

/** Every phase at 0 ms. */
export function zeroPhases(): PhaseMs {
  return Object.fromEntries(PHASES.map((p) => [p, 0])) as PhaseMs;
}

/** after − before, phase by phase (a phase missing from either counts as 0). */
export function phaseDelta(before: Partial<PhaseMs>, after: Partial<PhaseMs>): PhaseMs {
  return Object.fromEntries(PHASES.map((p) => [p, (after[p] ?? 0) - (before[p] ?? 0)])) as PhaseMs;
}

/** The sum of some phases (all of them by default). */
export function phaseSum(ms: Partial<PhaseMs>, phases: readonly Phase[] = PHASES): number {
  let s = 0;
  for (const p of phases) s += ms[p] ?? 0;
  return s;
}

/** Did the mechanism time anything at all? (Before its instrumentation every phase reads 0.) */
export function instrumented(ms: Partial<PhaseMs>): boolean {
  return PHASES.some((p) => (ms[p] ?? 0) > 0);
}

/** The phases that are host (JavaScript thread) work: all but the wait for the GPU. */
export const HOST_PHASES: readonly Phase[] = PHASES.filter((p) => p !== 'gpu-wait');

/**
 * Each phase's share of the wall time over a set of runs: its milliseconds summed over the runs
 * ÷ their wall milliseconds summed (a ratio of totals, so the shares of one set add up), and
 * `other` the rest: launches that did not fault, CPU reads and writes, the bench's own work. When
 * the phases add up to more than the wall time (they should not), `other` is 0 and the shares
 * are scaled to add up to 1. No runs or no wall time: every share NaN.
 */
export function phaseShares(runs: readonly { ms: number; phases: Partial<PhaseMs> }[]): Record<PhaseOrOther, number> {
  const wall = runs.reduce((s, r) => s + r.ms, 0);
  const totals = zeroPhases();
  for (const r of runs) for (const p of PHASES) totals[p] += Math.max(0, r.phases[p] ?? 0);
  const inPhases = phaseSum(totals);
  const out = {} as Record<PhaseOrOther, number>;
  if (!(wall > 0)) {
    for (const p of PHASES) out[p] = NaN;
    out.other = NaN;
    return out;
  }
  const scale = inPhases > wall ? wall / inPhases : 1;
  for (const p of PHASES) out[p] = (totals[p] * scale) / wall;
  out.other = Math.max(0, 1 - (inPhases * scale) / wall);
  return out;
}

/**
 * G11: host CPU time per serviced page, in µs: the phases of the round except the wait for the
 * GPU, summed, ÷ the pages the round serviced. NaN when no page was serviced.
 */
export function hostUsPerPage(phases: Partial<PhaseMs>, pages: number): number {
  if (!(pages > 0)) return NaN;
  return (phaseSum(phases, HOST_PHASES) * 1000) / pages;
}

/**
 * G6: fault records the host received ÷ distinct pages faulted, over a whole dispatch. 1 when
 * every page reached the host once; above 1 for every record of a page it had already received
 * (in the same round, or again in a later one).
 */
export function recordsPerDistinctPage(records: number, distinctPages: number): number {
  return distinctPages > 0 ? records / distinctPages : NaN;
}

/**
 * The fault rounds a cold stream of `pages` pages takes without prefetch when at most
 * `bufferPages` faults reach the host per round: at least ⌈pages ÷ buffer⌉.
 */
export function minFaultRounds(pages: number, bufferPages: number): number {
  return Math.ceil(pages / bufferPages);
}

/** G9: mitigation ÷ none, bytes and time. */
export function mitigationRatios(on: { bytes: number; ms: number }, off: { bytes: number; ms: number }): { bytes: number; time: number } {
  return { bytes: off.bytes > 0 ? on.bytes / off.bytes : NaN, time: off.ms > 0 ? on.ms / off.ms : NaN };
}

/** G9's second figure: bytes written back to RAM ÷ bytes the kernels stored (NaN when they stored none). */
export function writeBackRatio(writtenBack: number, stored: number): number {
  return stored > 0 ? writtenBack / stored : NaN;
}

/**
 * G10: how many launches one timed batch holds, so that it spans at least `minSpanMs`
 * (perf-anchors §6: timestamps only for spans ≥ 10 ms) at `msPerLaunch` each; at least 1, at
 * most `max`.
 */
export function launchesForSpan(msPerLaunch: number, minSpanMs = 10, max = 256): number {
  if (!(msPerLaunch > 0) || !Number.isFinite(msPerLaunch)) return max;
  return Math.max(1, Math.min(max, Math.ceil(minSpanMs / msPerLaunch)));
}

/** GPU timestamps (ns, as resolveQuerySet writes them) to milliseconds; NaN when the end is not after the start. */
export function timestampSpanMs(begin: bigint, end: bigint): number {
  return end > begin ? Number(end - begin) / 1e6 : NaN;
}

/** Migration times of one size, one mapping kind: system RAM → device, and back. */
export interface MigrationPair {
  toDevice: number;
  toSystem: number;
}

/** G12: huge ÷ 4 KiB pages, both directions together and each alone. */
export function thpRatio(huge: MigrationPair, regular: MigrationPair): { both: number; toDevice: number; toSystem: number } {
  const div = (a: number, b: number): number => (b > 0 ? a / b : NaN);
  return {
    both: div(huge.toDevice + huge.toSystem, regular.toDevice + regular.toSystem),
    toDevice: div(huge.toDevice, regular.toDevice),
    toSystem: div(huge.toSystem, regular.toSystem),
  };
}

/** hmm-tests `benchmark_thp_migration` sizes up to eight huge pages: ¼, ½, 1, 2, 4 and 8 × 2 MiB. */
export const THP_SIZES: readonly number[] = [0.25, 0.5, 1, 2, 4, 8].map((x) => x * 2 * 1024 * 1024);

/** A workload matrix cell as far as the G5 column needs it. */
export interface MatrixCell {
  workload: string;
  strategy: string;
  ms: Summary;
  error?: string;
  phaseShares?: Record<PhaseOrOther, number>;
}

/** One row of the matrix's G5 column: a fault-driven strategy ÷ explicit copies on one workload, with where its time went. */
export interface G5Row {
  workload: string;
  strategy: string;
  /** Median ms of the strategy ÷ median ms of explicit copies. */
  ratio: number;
  target: number;
  met: boolean;
  phaseShares?: Record<PhaseOrOther, number>;
}

/** The workloads G5's matrix column is judged on: triad, stencil and the gathers (issue 15). */
export const G5_WORKLOADS = (name: string): boolean => name === 'triad' || name === '2D stencil' || name.startsWith('gather');

/**
 * The workload matrix's G5 column: for each workload G5 names, `strategy` (replayable+prefetch
 * by default) ÷ explicit copies (ratio of the medians, as the matrix shows it), judged against
 * `target`, with the strategy's phase shares beside it. Failed cells give no row.
 */
export function g5Matrix(cells: readonly MatrixCell[], strategy = 'replayable+prefetch', target = 4): G5Row[] {
  const rows: G5Row[] = [];
  const names = [...new Set(cells.map((c) => c.workload))].filter(G5_WORKLOADS);
  for (const w of names) {
    const explicit = cells.find((c) => c.workload === w && c.strategy === 'explicit');
    const cell = cells.find((c) => c.workload === w && c.strategy === strategy);
    if (!explicit || !cell || explicit.error || cell.error) continue;
    const ratio = explicit.ms.median > 0 ? cell.ms.median / explicit.ms.median : NaN;
    rows.push({
      workload: w,
      strategy,
      ratio,
      target,
      met: Number.isFinite(ratio) && ratio <= target,
      ...(cell.phaseShares ? { phaseShares: cell.phaseShares } : {}),
    });
  }
  return rows;
}

/** The phases that take the largest shares, largest first (`other` included), at most `n`. */
export function topShares(shares: Record<PhaseOrOther, number>, n = 3): [PhaseOrOther, number][] {
  return (Object.entries(shares) as [PhaseOrOther, number][])
    .filter(([, v]) => Number.isFinite(v) && v > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n);
}
