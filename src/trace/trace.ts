// TraceLog: a bounded, timestamped log of what the system did (faults, migrations, evictions,
// kernels, copies), with per-kind totals and an export to Chrome trace-event JSON that opens in
// Perfetto (ui.perfetto.dev) and chrome://tracing. One instance per System; off costs nothing.

export type TraceKind =
  | 'cpu-fault'
  | 'gpu-fault-round'
  | 'migrate-to-device'
  | 'migrate-to-system'
  | 'evict'
  | 'prefetch'
  | 'invalidate'
  | 'kernel'
  | 'thrash'
  | 'copy'
  | 'phase';

/**
 * The phases of servicing a fault round and migrating its pages (issue 15): a 'phase' span
 * names one in `phase`, and Stats sums the host time of each (`Stats.phaseMs`).
 * - fault-readback: mapping the status and fault queue back after a launch (host side)
 * - dedupe: deduplicating and sorting the round's fault records
 * - policy: asking the batching, prefetch, placement and eviction policies
 * - collect: collecting and isolating the pages to migrate (migrate_vma_setup)
 * - copy-upload: staging and submitting the copies (host side of the copy engine)
 * - gpu-wait: waiting for the GPU (copies, readbacks, kernels): not host CPU time
 * - commit: committing the migrated entries, freeing sources (migrate_vma_finalize)
 * - pt-upload: writing the device page table
 * - relaunch: encoding and submitting the next launch
 */
export type Phase = 'fault-readback' | 'dedupe' | 'policy' | 'collect' | 'copy-upload' | 'gpu-wait' | 'commit' | 'pt-upload' | 'relaunch';
export const PHASES: readonly Phase[] = ['fault-readback', 'dedupe', 'policy', 'collect', 'copy-upload', 'gpu-wait', 'commit', 'pt-upload', 'relaunch'];

export interface TraceEvent {
  kind: TraceKind;
  ts: number; // ms, from performance.now()
  dur?: number; // ms, for spans
  pages?: number;
  bytes?: number;
  va?: number; // first address
  device?: number;
  mm?: number;
  detail?: string;
  /** A fault round's id: the moves it caused carry it in `flow` (Perfetto draws the arrows). */
  id?: number;
  /** The id of the fault round that caused this move. */
  flow?: number;
  /** Counter samples taken at this event (Perfetto counter tracks): resident pages, bytes moved. */
  counters?: Record<string, number>;
  /** A 'phase' span: which phase of a fault round or migration. */
  phase?: Phase;
}

export interface TraceKindSummary {
  count: number;
  pages: number;
  bytes: number;
  totalMs: number;
}

const PID = 1;

// Lanes get fixed thread ids so a lane keeps its tid across exports and runs: cpu 1, host 2,
// gpu<d> 3 + d (device ids are small non-negative integers); any other device gets a free id.
const CPU_TID = 1;
const HOST_TID = 2;
const GPU_TID_BASE = 3;

function laneOf(ev: TraceEvent): string {
  if (ev.kind === 'cpu-fault' || ev.kind === 'invalidate') return 'cpu';
  if (ev.device !== undefined) return `gpu${ev.device}`;
  return 'host';
}

function hex(va: number): string {
  return `0x${va.toString(16).padStart(8, '0')}`;
}

/**
 * A bounded, timestamped log of what the system did (faults, migrations, evictions, kernels,
 * copies): `sys.trace()`. Exports Chrome trace-event JSON that opens in Perfetto.
 */
export class TraceLog {
  /** When false, record and span do nothing (span still runs its function). */
  enabled = true;
  /** Events overwritten because the buffer was full, since construction or the last clear. */
  dropped = 0;

  /** The most events it holds; older ones are overwritten (counted in `dropped`). */
  readonly capacity: number;
  private readonly ring: (TraceEvent | undefined)[];
  private head = 0; // index of the oldest event
  private size = 0;

  /**
   * An empty log of `capacity` events.
   * @throws {RangeError} `capacity` is not a positive integer.
   */
  constructor(capacity = 100_000) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`TraceLog capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
    this.ring = new Array<TraceEvent | undefined>(capacity);
  }

  private flows = 0;

  /**
   * A new flow id, for a fault round whose moves will point back at it.
   * @internal
   */
  newFlow(): number {
    return ++this.flows;
  }

  /** Number of events held now (at most capacity). */
  get length(): number {
    return this.size;
  }

  /** Records an instant event, or an already-timed one (give ts and dur). ts defaults to now. */
  record(ev: Omit<TraceEvent, 'ts'> & { ts?: number }): void {
    if (!this.enabled) return;
    const stored: TraceEvent = { ...ev, ts: ev.ts ?? performance.now() };
    if (this.size < this.capacity) {
      this.ring[(this.head + this.size) % this.capacity] = stored;
      this.size++;
    } else {
      this.ring[this.head] = stored; // overwrite the oldest
      this.head = (this.head + 1) % this.capacity;
      this.dropped++;
    }
  }

  /**
   * Times fn and records it as a span (ts = start, dur) once it settles. If fn throws, the span
   * is still recorded, with " failed: <message>" appended to detail, and the error is rethrown.
   */
  async span<T>(kind: TraceKind, fields: Omit<TraceEvent, 'kind' | 'ts' | 'dur'>, fn: () => Promise<T>): Promise<T> {
    if (!this.enabled) return fn();
    const start = performance.now();
    try {
      const result = await fn();
      this.record({ ...fields, kind, ts: start, dur: performance.now() - start });
      return result;
    } catch (err) {
      const dur = performance.now() - start;
      const message = err instanceof Error ? err.message : String(err);
      const detail = fields.detail ? `${fields.detail} failed: ${message}` : `failed: ${message}`;
      this.record({ ...fields, kind, ts: start, dur, detail });
      throw err;
    }
  }

  /** The events held, oldest first by ts (ties keep recording order); a copy. */
  events(): TraceEvent[] {
    const out: TraceEvent[] = [];
    for (let i = 0; i < this.size; i++) {
      out.push({ ...(this.ring[(this.head + i) % this.capacity] as TraceEvent) });
    }
    return out.sort((a, b) => a.ts - b.ts); // stable
  }

  /** Forget every event (and the `dropped` count). */
  clear(): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.size = 0;
    this.dropped = 0;
  }

  /**
   * Chrome trace-event JSON: spans as complete events (ph 'X'), instants as thread-scoped
   * instants (ph 'i', s 't'), ts and dur in microseconds relative to the first event, one
   * thread per lane (cpu, host, gpu<d>) named by thread_name metadata.
   */
  toChromeTrace(): { traceEvents: object[]; displayTimeUnit: 'ms' } {
    const evs = this.events();
    const t0 = evs.length > 0 ? evs[0]!.ts : 0;
    // Fixed ids first; a device number that has none gets an id above every fixed one.
    const lanes = new Map<string, number>();
    const odd: string[] = [];
    for (const ev of evs) {
      const lane = laneOf(ev);
      if (lanes.has(lane) || odd.includes(lane)) continue;
      if (lane === 'cpu') lanes.set(lane, CPU_TID);
      else if (lane === 'host') lanes.set(lane, HOST_TID);
      else if (Number.isInteger(ev.device) && ev.device! >= 0 && ev.device! < 1024) lanes.set(lane, GPU_TID_BASE + ev.device!);
      else odd.push(lane);
    }
    let nextFree = Math.max(GPU_TID_BASE, ...lanes.values()) + 1;
    for (const lane of odd) lanes.set(lane, nextFree++);

    const traceEvents: object[] = [{ name: 'process_name', ph: 'M', pid: PID, tid: 0, ts: 0, args: { name: 'webgpu-hmm' } }];
    for (const [lane, tid] of [...lanes].sort((a, b) => a[1] - b[1])) {
      traceEvents.push({ name: 'thread_name', ph: 'M', pid: PID, tid, ts: 0, args: { name: lane } });
      traceEvents.push({ name: 'thread_sort_index', ph: 'M', pid: PID, tid, ts: 0, args: { sort_index: tid } });
    }
    for (const ev of evs) {
      const args: Record<string, number | string> = {};
      if (ev.pages !== undefined) args.pages = ev.pages;
      if (ev.bytes !== undefined) args.bytes = ev.bytes;
      if (ev.va !== undefined) args.va = hex(ev.va);
      if (ev.device !== undefined) args.device = ev.device;
      if (ev.mm !== undefined) args.mm = ev.mm;
      if (ev.detail !== undefined) args.detail = ev.detail;
      const base = {
        name: ev.kind,
        cat: 'hmm',
        pid: PID,
        tid: lanes.get(laneOf(ev))!,
        ts: Math.max(0, (ev.ts - t0) * 1000),
      };
      if (ev.dur !== undefined) traceEvents.push({ ...base, ph: 'X', dur: Math.max(0, ev.dur * 1000), args });
      else traceEvents.push({ ...base, ph: 'i', s: 't', args });
      // A fault round starts a flow; each move it caused ends one (Perfetto's arrows), bound to
      // the enclosing slice at each end.
      if (ev.id !== undefined) traceEvents.push({ name: 'caused', cat: 'hmm.flow', ph: 's', id: ev.id, pid: PID, tid: base.tid, ts: base.ts });
      if (ev.flow !== undefined) traceEvents.push({ name: 'caused', cat: 'hmm.flow', ph: 'f', bp: 'e', id: ev.flow, pid: PID, tid: base.tid, ts: base.ts });
      // counter tracks: one per name
      if (ev.counters)
        for (const [name, value] of Object.entries(ev.counters))
          traceEvents.push({ name, cat: 'hmm.counter', ph: 'C', pid: PID, ts: base.ts, args: { value } });
    }
    return { traceEvents, displayTimeUnit: 'ms' };
  }

  /** Count, pages, bytes and span time per kind, for the kinds that occurred. */
  summary(): Record<TraceKind, TraceKindSummary> {
    const out: Partial<Record<TraceKind, TraceKindSummary>> = {};
    for (let i = 0; i < this.size; i++) {
      const ev = this.ring[(this.head + i) % this.capacity]!;
      const s = (out[ev.kind] ??= { count: 0, pages: 0, bytes: 0, totalMs: 0 });
      s.count++;
      s.pages += ev.pages ?? 0;
      s.bytes += ev.bytes ?? 0;
      s.totalMs += ev.dur ?? 0;
    }
    return out as Record<TraceKind, TraceKindSummary>;
  }
}
