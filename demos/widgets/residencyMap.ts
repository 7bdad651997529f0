// ResidencyMap: the live picture of where pages live. One cell per 4 KiB page, one canvas per
// region (an array, a list, a pool), coloured by residence: unmapped, untouched, RAM, device,
// both (RAM with a device copy), exclusive (held by a device), migrating, poisoned. It reads
// `residency()` (the CPU page table) on every tick, so it shows faults and migrations as they
// happen, and writes the counts into data-counts for tests and screen readers.

import { PAGE_SIZE, residency, residencyCounts, residenceName, residenceDevice, type AddressSpace, type ResidenceName } from 'webgpu-hmm';

export interface Region {
  name: string;
  va: number;
  bytes: number;
}

/** Legend order, with the words a reader sees. */
const STATES: [ResidenceName, string][] = [
  ['unmapped', 'unmapped'],
  ['untouched', 'mapped, untouched'],
  ['ram', 'system RAM'],
  ['device', 'device memory'],
  ['copy', 'both (RAM + device copy)'],
  ['exclusive', 'exclusive (held by device)'],
  ['migrating', 'migrating'],
  ['poisoned', 'poisoned (device lost)'],
  ['pinned', 'pinned in RAM'],
];

/** Widest a grid gets; regions with more pages grow taller instead of cells shrinking below 3px. */
const MAX_COLS = 128;

interface Strip {
  region: Region;
  npages: number;
  canvas: HTMLCanvasElement;
  summary: HTMLElement;
  codes: Uint8Array;
}

export class ResidencyMap {
  private readonly strips: Strip[] = [];
  private readonly legendCounts = new Map<ResidenceName, HTMLElement>();
  private readonly colours = new Map<ResidenceName, string>();
  private readonly hover: HTMLElement;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly host: HTMLElement,
    private readonly mm: AddressSpace,
    regions: Region[],
  ) {
    host.replaceChildren();
    host.classList.add('residency-map');
    const legend = document.createElement('ul');
    legend.className = 'legend';
    for (const [state, words] of STATES) {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = `page page-${state}`;
      const count = document.createElement('span');
      count.className = 'muted';
      li.append(swatch, `${words} `, count);
      legend.append(li);
      this.legendCounts.set(state, count);
    }
    host.append(legend);
    const styles = getComputedStyle(document.documentElement);
    for (const [state] of STATES) this.colours.set(state, styles.getPropertyValue(`--page-${state}`).trim() || '#888');

    for (const region of regions) {
      const npages = Math.ceil(region.bytes / PAGE_SIZE);
      const row = document.createElement('div');
      row.className = 'map-row';
      const name = document.createElement('code');
      name.className = 'array-name';
      name.textContent = region.name;
      const canvas = document.createElement('canvas');
      canvas.className = 'map-canvas';
      canvas.setAttribute('role', 'img');
      const summary = document.createElement('span');
      summary.className = 'summary';
      row.append(name, canvas, summary);
      host.append(row);
      const strip: Strip = { region, npages, canvas, summary, codes: new Uint8Array(npages) };
      canvas.addEventListener('mousemove', (ev) => this.describe(strip, ev));
      canvas.addEventListener('mouseleave', () => (this.hover.textContent = '\u00a0'));
      this.strips.push(strip);
    }
    this.hover = document.createElement('p');
    this.hover.className = 'muted hover-line';
    this.hover.textContent = '\u00a0';
    host.append(this.hover);
    addEventListener('resize', () => this.update());
    this.update();
  }

  /** Read every region's residency now and repaint. Safe to call after the system is gone. */
  update(): void {
    if (this.mm.isDestroyed) return;
    const total: Partial<Record<ResidenceName, number>> = {};
    for (const s of this.strips) {
      s.codes = residency(this.mm, s.region.va, s.npages);
      const counts = residencyCounts(s.codes);
      for (const [k, v] of Object.entries(counts) as [ResidenceName, number][]) total[k] = (total[k] ?? 0) + v;
      const words = Object.entries(counts)
        .map(([k, v]) => `${v} ${k}`)
        .join(', ');
      s.summary.textContent = `${s.npages} pages: ${words}`;
      s.canvas.setAttribute('aria-label', `${s.region.name}: ${words}`);
      this.paint(s);
    }
    for (const [state, el] of this.legendCounts) el.textContent = total[state] ? `(${total[state]})` : '';
    this.host.dataset.counts = JSON.stringify(total);
  }

  /** Repaint every intervalMs until stop(). */
  start(intervalMs = 100): void {
    this.stop();
    this.timer = setInterval(() => this.update(), intervalMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.update();
  }

  private grid(s: Strip): { cols: number; cell: number } {
    const width = Math.max(64, s.canvas.clientWidth || 320); // 320 before the first layout
    const cols = Math.max(1, Math.min(s.npages, MAX_COLS, Math.floor(width / 3), Math.max(32, Math.ceil(Math.sqrt(s.npages * 4)))));
    return { cols, cell: Math.max(3, Math.min(12, Math.floor(width / cols))) };
  }

  private paint(s: Strip): void {
    const { cols, cell } = this.grid(s);
    const rows = Math.ceil(s.npages / cols);
    const ratio = devicePixelRatio || 1;
    const w = cols * cell;
    const h = rows * cell;
    if (s.canvas.width !== Math.round(w * ratio) || s.canvas.height !== Math.round(h * ratio)) {
      s.canvas.width = Math.round(w * ratio);
      s.canvas.height = Math.round(h * ratio);
      s.canvas.style.height = `${h}px`;
      s.canvas.style.maxWidth = `${w}px`;
    }
    const ctx = s.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const gap = cell > 4 ? 1 : 0;
    for (let i = 0; i < s.npages; i++) {
      ctx.fillStyle = this.colours.get(residenceName(s.codes[i]!))!;
      ctx.fillRect((i % cols) * cell, Math.floor(i / cols) * cell, cell - gap, cell - gap);
    }
  }

  /** The page under the pointer, in words: "list page 12 (0x10c000): device 0". */
  private describe(s: Strip, ev: MouseEvent): void {
    const { cols, cell } = this.grid(s);
    const rect = s.canvas.getBoundingClientRect();
    const scale = rect.width / (cols * cell) || 1;
    const i = Math.floor((ev.clientY - rect.top) / scale / cell) * cols + Math.floor((ev.clientX - rect.left) / scale / cell);
    if (i < 0 || i >= s.npages) return;
    const code = s.codes[i]!;
    const state = residenceName(code);
    const where = state === 'device' || state === 'exclusive' ? `${state} (device ${residenceDevice(code)})` : state;
    this.hover.textContent = `${s.region.name} page ${i} (0x${(s.region.va + i * PAGE_SIZE).toString(16)}): ${where}`;
  }
}
