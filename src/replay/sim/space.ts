// The simulator's address space, the CPU side of each page: its mappings (as the trace's last
// dispatch saw them), which pages live on a device (and in which frame), which RAM pages a
// device holds a writable copy of, the thrashing detector (the real one, src/policy/thrashing.ts,
// run on the recorded clock), and the faults each device took on each page (what a placement
// policy is told).

import { ThrashDetector } from '../../policy/thrashing.ts';
import type { TraceSpace, TraceVma } from '../format.ts';

export class SimSpace {
  readonly id: number;
  readonly thrashNapMs: number;
  /** Pages bouncing between RAM and devices, and pages a placement policy pinned ('pin'). */
  readonly thrash = new ThrashDetector();
  private vmas: readonly TraceVma[] = [];
  /** Pages living on a device: which one, which frame. */
  readonly priv = new Map<number, { dev: number; frame: number }>();
  /** RAM pages a device holds a writable copy of (written back before the CPU may touch them). */
  readonly held = new Map<number, number>();
  private readonly faultCounts = new Map<number, Map<number, number>>();

  constructor(s: TraceSpace) {
    this.id = s.id;
    this.thrashNapMs = s.thrashNapMs;
    this.thrash.config = { enabled: s.thrashing, windowMs: s.windowMs, threshold: s.threshold, pinMs: s.pinMs, napMs: s.thrashNapMs };
  }

  setMappings(vmas: readonly TraceVma[]): void {
    this.vmas = vmas;
  }

  /** The mapping holding page p (binary search), or undefined for a hole. */
  find(p: number): TraceVma | undefined {
    let lo = 0;
    let hi = this.vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.vmas[mid]!;
      if (p < v.start) hi = mid - 1;
      else if (p >= v.end) lo = mid + 1;
      else return v;
    }
    return undefined;
  }

  faults(dev: number, p: number): number {
    return this.faultCounts.get(dev)?.get(p) ?? 0;
  }

  countFaults(dev: number, pages: readonly number[]): void {
    let m = this.faultCounts.get(dev);
    if (!m) this.faultCounts.set(dev, (m = new Map()));
    for (const p of pages) m.set(p, (m.get(p) ?? 0) + 1);
  }
}
