// Hand-made fault traces for the simulator's unit tests: one device of a few frames, one address
// space, and dispatches written as the pages each launch touches (the recorded fault queues
// left empty: the simulator then takes the faults in page order, as it does for any policy).
import { DEFAULT_PREFETCH } from '../../src/policy/prefetch.ts';
import { TRACE_FORMAT, TRACE_VERSION, zeroMetrics, type DispatchEvent, type FaultTrace, type TracePolicies, type TraceVma } from '../../src/replay/format.ts';
import { toRuns } from '../../src/replay/pageRuns.ts';

export const NO_PREFETCH: TracePolicies = {
  prefetch: { name: 'none', density: { ...DEFAULT_PREFETCH, enabled: false } },
  eviction: 'clock',
  placement: 'advice',
  batching: 'cap',
};

export const DENSITY: TracePolicies = { ...NO_PREFETCH, prefetch: { name: 'density 51% / 64 KiB', density: { ...DEFAULT_PREFETCH } } };

export interface Launch {
  read?: number[];
  write?: number[];
  /** What the recorded launch reported: its faulting accesses (default 0; as many distinct faults asked for a slot) and the invocations that faulted (default: not recorded). */
  misses?: number;
  faultedInvocations?: number;
}

export class TraceBuilder {
  readonly trace: FaultTrace;
  private launches = 0;
  private ticket = 1;
  private t = 0;

  constructor(opts: { frames: number; unit?: number; vmas?: TraceVma[]; policies?: TracePolicies; faultBufferPages?: number }) {
    this.trace = {
      format: TRACE_FORMAT,
      version: TRACE_VERSION,
      createdAt: '2026-01-01T00:00:00.000Z',
      adapters: ['hand-made'],
      devices: [
        {
          id: 0,
          name: 'gpu0',
          frames: opts.frames,
          evictionPages: opts.unit ?? 1,
          faultBatchPages: 4096,
          ...(opts.faultBufferPages !== undefined ? { faultBufferPages: opts.faultBufferPages } : {}),
          prefetch: { ...DEFAULT_PREFETCH },
          policies: opts.policies ?? NO_PREFETCH,
          initial: { clockHand: 0, launches: 0, freeOrder: Array.from({ length: opts.frames }, (_, i) => i), frames: [] },
        },
      ],
      spaces: [{ id: 1, thrashing: false, windowMs: 50, threshold: 3, pinMs: 1000, thrashNapMs: 1 }],
      mappings: [opts.vmas ?? [{ start: 100, end: 1100, prot: 'rw', shared: false, huge: false }]],
      events: [],
      real: zeroMetrics(),
      notes: [],
    };
  }

  /** A replayable dispatch whose kernel touches these pages, launch after launch (the last launch's touches repeat until they hit). */
  dispatch(kernel: string, launches: Launch[], over: Partial<DispatchEvent> = {}): this {
    const ev: DispatchEvent = {
      kind: 'dispatch',
      mode: 'replayable',
      device: 0,
      space: 1,
      kernel,
      ticket: this.ticket++,
      t: this.t++,
      launchesBefore: this.launches,
      launchesAfter: this.launches,
      mappings: 0,
      ranges: [],
      batchPages: 4096,
      maxRounds: 1000,
      policies: this.trace.devices[0]!.policies,
      rounds: launches.map((l) => ({
        touched: { read: toRuns(l.read ?? []), write: toRuns(l.write ?? []) },
        faults: [],
        misses: l.misses ?? 0,
        ...(l.misses !== undefined ? { queued: l.misses } : {}),
        ...(l.faultedInvocations !== undefined ? { faultedInvocations: l.faultedInvocations } : {}),
        t: this.t++,
      })),
      result: { faults: 0, rounds: launches.length, faultedPages: 0 },
      real: zeroMetrics(),
      ...over,
    };
    this.trace.events.push(ev);
    return this;
  }

  cpu(pages: number[], write: boolean): this {
    this.trace.events.push({ kind: 'cpu', t: this.t++, space: 1, write, thread: 'main', pages: toRuns(pages) });
    return this;
  }
}

export const range = (from: number, n: number, step = 1): number[] => Array.from({ length: n }, (_, i) => from + i * step);
