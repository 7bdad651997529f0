// Timeline: a TraceLog's events drawn on one canvas, one lane per kind of event (kernels,
// fault rounds, prefetch, migrations each way, evictions, CPU faults, thrash), time left to
// right. Spans are bars as long as they lasted; instants are thin ticks. The workload's phases
// are shaded bands with their names on top. Hovering an event describes it below the canvas.

import type { TraceEvent, TraceKind } from 'webgpu-hmm';

export interface Phase {
  label: string;
  start: number; // ms, performance.now()
  end: number;
}

/** Lane order, top to bottom, with a colour per kind (kinds that never occurred get no lane). */
export const KIND_ORDER: [TraceKind, string][] = [
  ['kernel', '#5f6368'],
  ['gpu-fault-round', '#d93025'],
  ['prefetch', '#f9ab00'],
  ['migrate-to-device', '#188038'],
  ['evict', '#a142f4'],
  ['migrate-to-system', '#1a73e8'],
  ['cpu-fault', '#e8710a'],
  ['thrash', '#c5221f'],
  ['invalidate', '#12b5cb'],
  ['copy', '#9aa0a6'],
];

const LANE_HEIGHT = 22;
const PHASE_HEIGHT = 18;
const AXIS_HEIGHT = 22;
const RIGHT_PAD = 8;

export class Timeline {
  readonly lanes: TraceKind[];
  private readonly canvas: HTMLCanvasElement;
  private readonly hover: HTMLElement;
  private readonly t0: number;
  private readonly t1: number;

  constructor(
    host: HTMLElement,
    private readonly events: TraceEvent[],
    private readonly phases: Phase[],
  ) {
    const present = new Set(events.map((e) => e.kind));
    this.lanes = KIND_ORDER.map(([k]) => k).filter((k) => present.has(k));
    const times = [...events.flatMap((e) => [e.ts, e.ts + (e.dur ?? 0)]), ...phases.flatMap((p) => [p.start, p.end])];
    this.t0 = Math.min(...times);
    this.t1 = Math.max(this.t0 + 1, ...times);

    this.canvas = document.createElement('canvas');
    this.canvas.className = 'timeline-canvas';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', `timeline of ${events.length} events in ${this.lanes.length} lanes: ${this.lanes.join(', ')}`);
    this.canvas.dataset.events = String(events.length);
    this.canvas.dataset.lanes = this.lanes.join(',');
    this.hover = document.createElement('p');
    this.hover.className = 'muted hover-line';
    this.hover.textContent = 'Point at an event to see what it was.';
    const phaseLine = document.createElement('p');
    phaseLine.className = 'muted hover-line';
    phaseLine.textContent = `Phases: ${phases.map((p) => `${p.label} (${Math.round(p.start - this.t0)}–${Math.round(p.end - this.t0)} ms)`).join(', ')}.`;
    host.replaceChildren(this.canvas, phaseLine, this.hover);
    this.canvas.addEventListener('mousemove', (ev) => this.describe(ev));
    new ResizeObserver(() => requestAnimationFrame(() => this.draw())).observe(host);
    this.draw();
  }

  /** Lane labels take less room on a phone. */
  private get labelWidth(): number {
    return this.canvas.clientWidth < 500 ? 92 : 128;
  }

  private x(t: number): number {
    const plot = this.canvas.clientWidth - this.labelWidth - RIGHT_PAD;
    return this.labelWidth + ((t - this.t0) / (this.t1 - this.t0)) * plot;
  }

  draw(): void {
    const width = this.canvas.clientWidth || 600;
    const height = PHASE_HEIGHT + this.lanes.length * LANE_HEIGHT + AXIS_HEIGHT;
    const ratio = devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const styles = getComputedStyle(this.canvas);
    const fg = styles.color || '#1d1d1f';
    const lanesBottom = PHASE_HEIGHT + this.lanes.length * LANE_HEIGHT;
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';

    // phases: alternating bands, names on top (cut to the band's width)
    this.phases.forEach((p, i) => {
      const a = this.x(p.start);
      const b = Math.max(a + 1, this.x(p.end));
      ctx.fillStyle = i % 2 === 0 ? 'rgba(127, 127, 127, 0.10)' : 'rgba(127, 127, 127, 0.04)';
      ctx.fillRect(a, 0, b - a, lanesBottom);
      ctx.save();
      ctx.beginPath();
      ctx.rect(a, 0, b - a, PHASE_HEIGHT);
      ctx.clip();
      ctx.fillStyle = fg;
      // the whole name when it fits, else just its number ("3 CPU reads" -> "3")
      const name = ctx.measureText(p.label).width + 6 <= b - a ? p.label : p.label.split(' ')[0]!;
      ctx.fillText(name, a + 3, PHASE_HEIGHT / 2);
      ctx.restore();
    });

    // lanes: names and separators
    this.lanes.forEach((kind, i) => {
      const y = PHASE_HEIGHT + i * LANE_HEIGHT;
      ctx.fillStyle = fg;
      ctx.fillText(kind, 2, y + LANE_HEIGHT / 2, this.labelWidth - 6);
      ctx.fillStyle = 'rgba(127, 127, 127, 0.25)';
      ctx.fillRect(this.labelWidth, y + LANE_HEIGHT - 1, width - this.labelWidth - RIGHT_PAD, 1);
    });

    // events: spans as bars (at least 2px wide), instants as ticks
    const colours = new Map(KIND_ORDER);
    for (const ev of this.events) {
      const lane = this.lanes.indexOf(ev.kind);
      const y = PHASE_HEIGHT + lane * LANE_HEIGHT + 3;
      const a = this.x(ev.ts);
      ctx.fillStyle = colours.get(ev.kind) ?? fg;
      if (ev.dur !== undefined) ctx.fillRect(a, y, Math.max(2, this.x(ev.ts + ev.dur) - a), LANE_HEIGHT - 7);
      else ctx.fillRect(a - 1, y - 2, 2, LANE_HEIGHT - 3);
    }

    // time axis in ms from the first event
    const span = this.t1 - this.t0;
    const step = niceStep(span, Math.max(2, Math.floor((width - this.labelWidth) / 80)));
    ctx.fillStyle = fg;
    ctx.textAlign = 'center';
    for (let t = 0; t <= span + 1e-9; t += step) {
      const x = this.x(this.t0 + t);
      ctx.fillRect(x, lanesBottom, 1, 4);
      ctx.fillText(`${Math.round(t)} ms`, Math.min(x, width - 24), lanesBottom + 13);
    }
    ctx.textAlign = 'start';
  }

  /** The event under the pointer, in words. */
  private describe(ev: MouseEvent): void {
    const rect = this.canvas.getBoundingClientRect();
    const lane = Math.floor((ev.clientY - rect.top - PHASE_HEIGHT) / LANE_HEIGHT);
    const kind = this.lanes[lane];
    if (!kind) return;
    const px = ev.clientX - rect.left;
    let best: TraceEvent | undefined;
    let bestDistance = 4; // pixels
    for (const e of this.events) {
      if (e.kind !== kind) continue;
      const a = this.x(e.ts);
      const b = Math.max(a + 2, this.x(e.ts + (e.dur ?? 0)));
      const d = px < a ? a - px : px > b ? px - b : 0;
      if (d < bestDistance) {
        best = e;
        bestDistance = d;
      }
    }
    if (best) this.hover.textContent = describeEvent(best, this.t0);
  }
}

/** "migrate-to-device at 412.3 ms for 3.1 ms: 16 pages, 64 KiB, from 0x01000000 (gpu0)". */
export function describeEvent(e: TraceEvent, t0: number): string {
  const parts = [`${e.kind} at ${(e.ts - t0).toFixed(1)} ms`];
  if (e.dur !== undefined) parts[0] += ` for ${e.dur.toFixed(1)} ms`;
  const facts: string[] = [];
  if (e.pages !== undefined) facts.push(`${e.pages} pages`);
  if (e.bytes !== undefined) facts.push(`${e.bytes / 1024} KiB`);
  if (e.va !== undefined) facts.push(`from 0x${e.va.toString(16).padStart(8, '0')}`);
  if (e.device !== undefined) facts.push(`gpu${e.device}`);
  if (e.detail) facts.push(e.detail);
  return facts.length ? `${parts[0]}: ${facts.join(', ')}` : parts[0]!;
}

/** A round tick step (1, 2 or 5 times a power of ten) giving at most `most` ticks over span. */
function niceStep(span: number, most: number): number {
  const raw = span / most;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}
