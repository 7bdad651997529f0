// The replay table: a trace's recorded numbers beside its replays, one column each (the
// built-ins replayed, then every policy set), one row per metric, and how far the built-ins'
// replay is from the recorded run (the simulator's own check). Pure text; no Node.

import { METRIC_NAMES, type FaultTrace, type Metrics } from './format.ts';
import type { ReplayResult } from './simulate.ts';

const MiB = 1 << 20;
const PAGE = 4096;

interface Row {
  label: string;
  of: (m: Metrics) => number;
  /** Shown with one decimal (MiB). */
  mib?: boolean;
}

const ROWS: Row[] = [
  { label: 'launches', of: (m) => m.launches },
  { label: 'fault rounds', of: (m) => m.faultRounds },
  { label: 'faulted pages', of: (m) => m.faultedPages },
  { label: 'pages to device', of: (m) => m.pagesToDevice },
  { label: 'device copies', of: (m) => m.deviceCopies },
  { label: 'pages to RAM', of: (m) => m.pagesToSystem + m.writeBacks },
  { label: 'MiB to device', of: (m) => ((m.pagesToDevice + m.deviceCopies) * PAGE) / MiB, mib: true },
  { label: 'MiB to RAM', of: (m) => ((m.pagesToSystem + m.writeBacks) * PAGE) / MiB, mib: true },
  { label: 'evictions', of: (m) => m.evictions },
  { label: 'prefetched pages', of: (m) => m.prefetchedPages },
];

/** How far `sim` is from `real`, in percent of `real` (0 when both are 0). */
export function deviation(real: number, sim: number): number {
  if (real === 0) return sim === 0 ? 0 : Infinity;
  return (Math.abs(sim - real) / real) * 100;
}

/** The largest deviation over the metrics the acceptance check names: fault rounds, pages moved, evictions. */
export function worstDeviation(real: Metrics, sim: Metrics): { metric: keyof Metrics; percent: number } {
  let worst: { metric: keyof Metrics; percent: number } = { metric: 'faultRounds', percent: 0 };
  for (const k of ['faultRounds', 'pagesToDevice', 'deviceCopies', 'pagesToSystem', 'writeBacks', 'evictions'] as const) {
    const d = deviation(real[k], sim[k]);
    if (d > worst.percent) worst = { metric: k, percent: d };
  }
  return worst;
}

function cell(v: number, mib?: boolean): string {
  return mib ? v.toFixed(1) : String(v);
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A trace in one paragraph: where and when it was recorded, its devices and events. */
export function describeTrace(trace: FaultTrace, source: string): string {
  const count = (kind: string): number => trace.events.filter((e) => e.kind === kind).length;
  const devices = trace.devices
    .map(
      (d) =>
        `${d.name}: ${d.frames} frames of 4 KiB, eviction unit ${d.evictionPages} pages, fault buffer ${d.faultBufferPages ?? 4096}, fault batch ${d.faultBatchPages}; policies ${d.policies.prefetch.name} / ${d.policies.eviction} / ${d.policies.placement} / ${d.policies.batching}`,
    )
    .join('; ');
  return `${source}: recorded ${trace.createdAt} on ${trace.adapters.join(', ') || 'no device'}\n  ${devices}\n  ${count('dispatch')} dispatches, ${count('cpu')} CPU fault events, ${count('move')} explicit moves`;
}

/**
 * The comparison table: `recorded` (the real run), then each replay. The first replay is
 * expected to be the built-ins (`replayTrace(trace)`); its distance from the recording is shown.
 */
export function formatReplay(trace: FaultTrace, replays: readonly ReplayResult[], errors: readonly { name: string; error: string }[] = []): string {
  const head = ['', 'recorded', ...replays.map((r) => r.name)];
  const builtins = replays.find((r) => r.name === 'built-ins');
  if (builtins) head.splice(3, 0, 'Δ built-ins');
  const rows = ROWS.map((row) => {
    const cells = [row.label, cell(row.of(trace.real), row.mib), ...replays.map((r) => cell(row.of(r.total), row.mib))];
    if (builtins) {
      const d = deviation(row.of(trace.real), row.of(builtins.total));
      cells.splice(3, 0, d === Infinity ? 'new' : `${d.toFixed(1)} %`);
    }
    return cells;
  });
  const out = [table(head, rows)];
  const failed = replays.flatMap((r) =>
    r.dispatches.filter((d) => d.error && !d.realError).map((d) => `${r.name}: dispatch '${d.kernel}' (event ${d.event}) failed in the replay: ${d.error}`),
  );
  const notes = [
    ...trace.notes.map((n) => `recording: ${n}`),
    ...replays.flatMap((r) => r.notes.map((n) => `${r.name}: ${n}`)),
    ...failed,
    ...errors.map((e) => `${e.name}: ${e.error}`),
  ];
  if (notes.length > 0) out.push('', ...notes.map((n) => `note: ${n}`));
  return out.join('\n');
}

/** One row per dispatch: recorded and replayed fault rounds, pages in, evictions. */
export function formatPerDispatch(replays: readonly ReplayResult[]): string {
  if (replays.length === 0) return '';
  const head = [
    'event',
    'kernel',
    'rec rounds',
    ...replays.map((r) => `${r.name} rounds`),
    'rec in',
    ...replays.map((r) => `${r.name} in`),
    'rec evict',
    ...replays.map((r) => `${r.name} evict`),
  ];
  const rows = replays[0]!.dispatches.map((d, i) => [
    String(d.event),
    d.kernel,
    String(d.real.faultRounds),
    ...replays.map((r) => String(r.dispatches[i]!.metrics.faultRounds)),
    String(d.real.pagesToDevice + d.real.deviceCopies),
    ...replays.map((r) => String(r.dispatches[i]!.metrics.pagesToDevice + r.dispatches[i]!.metrics.deviceCopies)),
    String(d.real.evictions),
    ...replays.map((r) => String(r.dispatches[i]!.metrics.evictions)),
  ]);
  return table(head, rows);
}

/** The replays as JSON (for scripts): metric totals per replay and per dispatch. */
export function replayJson(trace: FaultTrace, replays: readonly ReplayResult[]): unknown {
  const pick = (m: Metrics): Record<string, number> => Object.fromEntries(METRIC_NAMES.map((k) => [k, m[k]]));
  return {
    recorded: pick(trace.real),
    notes: trace.notes,
    replays: replays.map((r) => ({
      name: r.name,
      total: pick(r.total),
      between: pick(r.between),
      notes: r.notes,
      dispatches: r.dispatches.map((d) => ({ ...d, metrics: pick(d.metrics), real: pick(d.real) })),
    })),
  };
}
