// Plots of a BenchResult with uPlot: how far each goal is from its target, the workload ×
// strategy times, where the time of each run goes (a stacked bar per workload and strategy:
// each phase of fault service and migration as a share of the run), and, when user policy sets
// ran (--policy), the fault-driven strategies' fault rounds, bytes moved and evictions side by side. Used by the perf page (uPlot imported) and by the HTML report, which inlines
// this file as plain JS; so it must stay self-contained: no imports but types, no helpers
// outside the exported function.

import type uPlot from 'uplot';
import type { BenchResult } from './runner.ts';

type UPlotCtor = typeof uPlot;

/** Draw both plots into `host` (appended), each `width` pixels wide. */
export function drawPlots(UPlot: UPlotCtor, host: HTMLElement, result: BenchResult, width: number): void {
  const colors = ['#4269d0', '#efb118', '#ff725c', '#6cc5b0', '#a463f2', '#97bbf5'];
  const section = (title: string, note: string): HTMLElement => {
    const box = document.createElement('figure');
    box.className = 'bench-plot';
    const cap = document.createElement('figcaption');
    cap.textContent = title;
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = note;
    box.append(cap, p);
    host.append(box);
    return box;
  };
  // a log axis with a decade of room below the smallest value, so every bar shows
  const logRange = (_u: uPlot, min: number, max: number): [number, number] => [10 ** Math.floor(Math.log10(min) - 1), 10 ** Math.ceil(Math.log10(max))];
  const fmt = (x: number | null | undefined): string =>
    x == null || !Number.isFinite(x) ? '–' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(2);

  // ---- goals: achieved ÷ target, flipped for "at most" goals, so 1 is the target and above is met
  const goals = Object.values(result.goals).filter((g) => g !== undefined);
  if (goals.length > 0) {
    const score = (ratio: number, target: number, dir: string): number | null => {
      if (!Number.isFinite(ratio) || ratio <= 0) return null;
      return dir === '>=' ? ratio / target : target / ratio;
    };
    const xs = goals.map((_, i) => i + 1);
    const med = goals.map((g) => score(g.ratio, g.target, g.direction));
    // min/max of the ratio map to the worse and better ends of the score
    const lo = goals.map((g) => {
      const a = score(g.min, g.target, g.direction);
      const b = score(g.max, g.target, g.direction);
      return a === null || b === null ? null : Math.min(a, b);
    });
    const hi = goals.map((g) => {
      const a = score(g.min, g.target, g.direction);
      const b = score(g.max, g.target, g.direction);
      return a === null || b === null ? null : Math.max(a, b);
    });
    const box = section(
      'Goals: how far from target',
      'Achieved ÷ target on a log scale (inverted for "at most" goals), so 1 is the target and above 1 is met; dots are the best and worst repetition.',
    );
    new UPlot(
      {
        width,
        height: 300,
        scales: { x: { time: false, range: [0.4, goals.length + 0.6] }, y: { distr: 3, log: 10, range: logRange } },
        axes: [
          { splits: () => xs, values: (_u: uPlot, ticks: number[]) => ticks.map((t) => goals[t - 1]?.id.toUpperCase() ?? '') },
          { label: 'achieved ÷ target', values: (_u: uPlot, ticks: number[]) => ticks.map((t) => fmt(t)) },
        ],
        series: [
          { label: 'goal', value: (_u: uPlot, v: number) => goals[v - 1]?.title ?? '' },
          {
            label: 'median',
            fill: '#4269d0aa',
            stroke: '#4269d0',
            paths: UPlot.paths.bars!({ size: [0.6, 60] }),
            points: { show: false },
            value: (_u: uPlot, v: number | null) => fmt(v),
          },
          {
            label: 'worst',
            stroke: '#ff725c',
            paths: () => null,
            points: { show: true, size: 7, fill: '#ff725c' },
            value: (_u: uPlot, v: number | null) => fmt(v),
          },
          {
            label: 'best',
            stroke: '#3ca951',
            paths: () => null,
            points: { show: true, size: 7, fill: '#3ca951' },
            value: (_u: uPlot, v: number | null) => fmt(v),
          },
          { label: 'target', stroke: '#222', dash: [6, 4], width: 1, points: { show: false }, value: () => '1' },
        ],
      },
      [xs, med, lo, hi, xs.map(() => 1)] as uPlot.AlignedData,
      box,
    );
  }

  // ---- workloads: grouped bars, one group per workload, one bar per strategy
  if (result.workloads.length > 0) {
    const workloads = [...new Set(result.workloads.map((c) => c.workload))];
    const strategies = [...new Set(result.workloads.map((c) => c.strategy))];
    const step = 0.8 / strategies.length;
    const xs: number[] = [];
    const cols: (number | null)[][] = strategies.map(() => []);
    workloads.forEach((w, wi) => {
      strategies.forEach((s, si) => {
        xs.push(wi + 1 + (si - (strategies.length - 1) / 2) * step);
        const cell = result.workloads.find((c) => c.workload === w && c.strategy === s);
        strategies.forEach((_, k) => cols[k]!.push(k === si && cell && !cell.error && Number.isFinite(cell.ms.median) ? cell.ms.median : null));
      });
    });
    const box = section(
      'Workloads: time by strategy',
      'Median milliseconds from inputs in CPU memory to the result in CPU memory, log scale; lower is better.',
    );
    new UPlot(
      {
        width,
        height: 340,
        scales: { x: { time: false, range: [0.4, workloads.length + 0.6] }, y: { distr: 3, log: 10, range: logRange } },
        axes: [
          {
            splits: () => workloads.map((_, i) => i + 1),
            values: (_u: uPlot, ticks: number[]) => ticks.map((t) => workloads[Math.round(t) - 1] ?? ''),
            size: 40,
          },
          { label: 'ms', values: (_u: uPlot, ticks: number[]) => ticks.map((t) => fmt(t)) },
        ],
        series: [
          { label: 'workload', value: (_u: uPlot, v: number) => workloads[Math.round(v) - 1] ?? '' },
          ...strategies.map((s, i) => ({
            label: s,
            fill: colors[i % colors.length],
            stroke: colors[i % colors.length],
            paths: UPlot.paths.bars!({ size: [0.95, 40] }),
            points: { show: false },
            value: (_u: uPlot, v: number | null) => (v == null ? '' : `${fmt(v)} ms`),
          })),
        ],
      },
      [xs, ...cols] as uPlot.AlignedData,
      box,
    );
  }

  // ---- where the time goes: per workload, one stacked bar per strategy with phases, each
  // segment a phase's share of the run (% of wall time), the rest on top as 'other'
  const withPhases = result.workloads.filter((c) => c.phaseShares && !c.error);
  if (withPhases.length > 0) {
    const phaseColors = ['#4269d0', '#efb118', '#ff725c', '#6cc5b0', '#3ca951', '#ff8ab7', '#a463f2', '#97bbf5', '#9c6b4e', '#c9c9c9'];
    const workloads = [...new Set(withPhases.map((c) => c.workload))];
    const strategies = [...new Set(withPhases.map((c) => c.strategy))];
    const keys = Object.keys(withPhases[0]!.phaseShares!); // the phases in order, then 'other'
    const step = 0.8 / strategies.length;
    const xs: number[] = [];
    const cells: ((typeof withPhases)[number] | undefined)[] = [];
    workloads.forEach((w, wi) => {
      strategies.forEach((s, si) => {
        xs.push(wi + 1 + (si - (strategies.length - 1) / 2) * step);
        cells.push(withPhases.find((c) => c.workload === w && c.strategy === s));
      });
    });
    // cumulative shares in %: series k is the top of segment k; drawn tallest first so each
    // segment shows as the band between its own top and the one below
    const cumulative: (number | null)[][] = keys.map(() => []);
    cells.forEach((c) => {
      let acc = 0;
      keys.forEach((k, ki) => {
        const v = c ? (c.phaseShares as Record<string, number>)[k] : NaN;
        acc += Number.isFinite(v) ? v * 100 : 0;
        cumulative[ki]!.push(c ? acc : null);
      });
    });
    const order = keys.map((_, i) => keys.length - 1 - i);
    const box = section(
      'Where the time goes: phases as a share of each run',
      `One stacked bar per workload and strategy (${strategies.join(', ')}, left to right): the share of the run's wall time in each phase of fault service and migration (Stats.phaseMs), and "other" for the rest (launches that did not fault, CPU reads and writes).`,
    );
    new UPlot(
      {
        width,
        height: 340,
        scales: { x: { time: false, range: [0.4, workloads.length + 0.6] }, y: { range: [0, 100] } },
        axes: [
          {
            splits: () => workloads.map((_, i) => i + 1),
            values: (_u: uPlot, ticks: number[]) => ticks.map((t) => workloads[Math.round(t) - 1] ?? ''),
            size: 40,
          },
          { label: '% of the run', values: (_u: uPlot, ticks: number[]) => ticks.map((t) => `${t}`) },
        ],
        series: [
          {
            label: 'workload · strategy',
            value: (_u: uPlot, v: number) => {
              const c = cells[xs.indexOf(v)];
              return c ? `${c.workload} · ${c.strategy}` : '';
            },
          },
          ...order.map((ki) => ({
            label: keys[ki],
            fill: phaseColors[ki % phaseColors.length],
            stroke: phaseColors[ki % phaseColors.length],
            paths: UPlot.paths.bars!({ size: [0.95, 40] }),
            points: { show: false },
            value: (_u: uPlot, v: number | null, _si: number, idx: number | null) => {
              if (v == null || idx == null) return '';
              const below = ki > 0 ? (cumulative[ki - 1]![idx] ?? 0) : 0;
              return `${fmt(v - below)} %`;
            },
          })),
        ],
      },
      [xs, ...order.map((ki) => cumulative[ki]!)] as uPlot.AlignedData,
      box,
    );
  }

  // ---- policy sets: the fault-driven strategies' counters, one plot per figure (linear: 0 is common)
  if (result.workloads.some((c) => c.strategy.startsWith('policy:'))) {
    const faultDriven = (s: string): boolean => s === 'replayable' || s === 'replayable+prefetch' || s.startsWith('policy:');
    const workloads = [...new Set(result.workloads.map((c) => c.workload))];
    const all: string[] = [...new Set(result.workloads.map((c) => c.strategy))];
    const strategies = all.filter(faultDriven);
    const colour = (s: string): string => colors[all.indexOf(s) % colors.length]!; // as in the time plot
    const step = 0.8 / strategies.length;
    const figures: { title: string; unit: string; of: (c: (typeof result.workloads)[number]) => number | undefined }[] = [
      { title: 'GPU fault rounds', unit: 'rounds', of: (c) => c.faultRounds.median },
      { title: 'MiB moved (both ways)', unit: 'MiB', of: (c) => c.bytesMoved.median / (1 << 20) },
      { title: 'pages evicted', unit: 'pages', of: (c) => c.evictions?.median },
    ];
    for (const f of figures) {
      const xs: number[] = [];
      const cols: (number | null)[][] = strategies.map(() => []);
      let top = 0;
      workloads.forEach((w, wi) => {
        strategies.forEach((s, si) => {
          xs.push(wi + 1 + (si - (strategies.length - 1) / 2) * step);
          const cell = result.workloads.find((c) => c.workload === w && c.strategy === s);
          const v = cell && !cell.error ? f.of(cell) : undefined;
          if (v !== undefined && Number.isFinite(v)) top = Math.max(top, v);
          strategies.forEach((_, k) => cols[k]!.push(k === si && v !== undefined && Number.isFinite(v) ? v : null));
        });
      });
      const box = section(
        `Policy sets: ${f.title}`,
        `Median ${f.unit} per run of each fault-driven strategy, the built-in replayable ones and each --policy set; lower is better.`,
      );
      new UPlot(
        {
          width,
          height: 260,
          scales: { x: { time: false, range: [0.4, workloads.length + 0.6] }, y: { range: [0, top > 0 ? top * 1.1 : 1] } },
          axes: [
            {
              splits: () => workloads.map((_, i) => i + 1),
              values: (_u: uPlot, ticks: number[]) => ticks.map((t) => workloads[Math.round(t) - 1] ?? ''),
              size: 40,
            },
            { label: f.unit, values: (_u: uPlot, ticks: number[]) => ticks.map((t) => fmt(t)) },
          ],
          series: [
            { label: 'workload', value: (_u: uPlot, v: number) => workloads[Math.round(v) - 1] ?? '' },
            ...strategies.map((s) => ({
              label: s,
              fill: colour(s),
              stroke: colour(s),
              paths: UPlot.paths.bars!({ size: [0.95, 40] }),
              points: { show: false },
              value: (_u: uPlot, v: number | null) => (v == null ? '' : `${fmt(v)} ${f.unit}`),
            })),
          ],
        },
        [xs, ...cols] as uPlot.AlignedData,
        box,
      );
    }
  }
}
