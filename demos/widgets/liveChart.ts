// LiveChart: a time series that grows while a demo runs (faults, evictions, bytes moved),
// drawn with uPlot (small, fast, well kept). Points are appended with push(); the plot redraws
// at most once per animation frame and follows its container's width.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface SeriesSpec {
  label: string;
  colour: string;
  /** 'y' (left axis, default) or 'y2' (right axis, e.g. bytes beside counts). */
  scale?: 'y' | 'y2';
}

export class LiveChart {
  private readonly plot: uPlot;
  private readonly data: number[][];
  private pending = false;

  constructor(host: HTMLElement, title: string, series: SeriesSpec[], axes: { x: string; y: string; y2?: string }) {
    this.data = [[], ...series.map(() => [])];
    const width = Math.max(240, host.clientWidth || 600);
    this.plot = new uPlot(
      {
        title,
        width,
        height: 260,
        scales: { x: { time: false } },
        series: [{ label: axes.x }, ...series.map((s) => ({ label: s.label, stroke: s.colour, width: 2, scale: s.scale ?? 'y' }))],
        axes: [
          { label: axes.x },
          { label: axes.y, scale: 'y' },
          ...(axes.y2 ? [{ label: axes.y2, scale: 'y2', side: 1 as const, grid: { show: false } }] : []),
        ],
      },
      this.data as uPlot.AlignedData,
      host,
    );
    // Resize on the next frame, and only when the width changed: resizing inside the observer's
    // callback can change the layout again in the same frame, which browsers report as a
    // "ResizeObserver loop" error on window (and demos treat window errors as failures).
    let lastWidth = width;
    new ResizeObserver(() =>
      requestAnimationFrame(() => {
        const next = Math.max(240, host.clientWidth);
        if (next === lastWidth) return;
        lastWidth = next;
        this.plot.setSize({ width: next, height: 260 });
      }),
    ).observe(host);
  }

  /** Append one point: x, then one value per series. */
  push(x: number, values: number[]): void {
    this.data[0]!.push(x);
    values.forEach((v, i) => this.data[i + 1]!.push(v));
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.plot.setData(this.data as uPlot.AlignedData);
    });
  }

  /** Number of points so far. */
  get length(): number {
    return this.data[0]!.length;
  }
}
