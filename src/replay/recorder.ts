// The recorder behind `sys.startRecording()`: while it runs, the mechanism reports to it (the
// System's Stats carry it, so every part that counts can reach it) and it builds a FaultTrace
// (format.ts). It owns what goes into the trace and how events are attributed:
// - a dispatch (dispatch.ts) reports when it begins (with its invocation count), each launch's
//   touched bitmap and fault queue (recording pipelines, HMM_RECORD) with the faults that asked
//   for a slot and the invocations that faulted (what the progress rule decides on), and how it
//   ended; its real cost is the counters' change while it ran;
// - CPU accesses that took the fault path (AddressSpace.faultPages) are events: the simulator
//   derives their page moves itself, under whatever policies it replays;
// - every page move (provenance) that no recorded dispatch and no CPU access caused, and that
//   is not an eviction (the simulator makes its own room), is an event the simulator applies.
// It never changes what the mechanism does; it only listens.

import type { HmmDevice } from '../device/hmmDevice.ts';
import type { LaunchStatus } from '../device/launch.ts';
import { HmmError } from '../errors.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import { densityPrefetch, type PrefetchConfig } from '../policy/prefetch.ts';
import { DEFAULT_THRASH } from '../policy/thrashing.ts';
import type { Policies } from '../policy/types.ts';
import { describeCause, type Cause, type PageMove } from '../trace/provenance.ts';
import type { Counter, Stats } from '../trace/stats.ts';
import {
  TRACE_FORMAT,
  TRACE_VERSION,
  zeroMetrics,
  type DispatchEvent,
  type FaultTrace,
  type Metrics,
  type TraceDevice,
  type TraceEvent,
  type TracePolicies,
  type TraceVma,
} from './format.ts';
import { bitmapToRuns, toRuns } from './pageRuns.ts';

/** What the recorder needs of the System (system.ts passes itself). */
export interface RecordedSystem {
  readonly devices: readonly HmmDevice[];
  readonly addressSpaces: readonly AddressSpace[];
  readonly counters: Stats;
  adapters(): string[];
}

/** What a dispatch tells the recorder when it begins. */
export interface DispatchStart {
  kernel: string;
  ticket: number;
  mode: 'replayable' | 'validated';
  ranges: readonly { start: number; end: number; write: boolean }[];
  batchPages: number;
  maxRounds: number;
  policies: Required<Policies>;
  /** The dispatch's `prefetch` option (it sets the built-in prefetcher's settings). */
  prefetch?: boolean | Partial<PrefetchConfig>;
  /** Replayable: its invocations (the progress rule's windows are ranges of them). */
  invocations?: number;
}

/** One dispatch being recorded: its launches, then its end. */
export interface DispatchRecording {
  /** A launch of a replayable dispatch came back (with its touched bitmap). */
  round(status: LaunchStatus): void;
  /** It ended with `result`, or failed with `error`. */
  end(result?: { faults: number; rounds: number; faultedPages: number }, error?: unknown): void;
}

/** sys.startRecording()'s handle. */
export interface Recording {
  /** Still recording. */
  readonly active: boolean;
  /** Stop, and return the trace (JSON-serializable: JSON.stringify it to a file for `npm run replay`). */
  stop(): FaultTrace;
}

/** The counters a dispatch's real cost is read from (write-backs come from provenance). */
const COUNTED: readonly [keyof Metrics, Counter][] = [
  ['pagesToDevice', 'pagesToDevice'],
  ['deviceCopies', 'deviceCopies'],
  ['pagesToSystem', 'pagesToSystem'],
  ['evictions', 'evictions'],
  ['prefetchedPages', 'prefetchedPages'],
];

interface Active {
  event: DispatchEvent;
  device: number;
  space: number;
  before: Record<string, number>;
  writeBacks: number;
}

/** The settings of the built-in prefetcher a dispatch's `prefetch` option asks for (as dispatch.ts resolves them). */
function prefetchSettings(base: PrefetchConfig, o: DispatchStart['prefetch']): PrefetchConfig {
  if (o === undefined || o === true) return { ...base };
  if (o === false) return { ...base, enabled: false };
  return { ...base, ...o };
}

/** Policies by name; the prefetcher's settings when it is the built-in density prefetcher. */
export function describePolicies(p: Required<Policies>, cfg: PrefetchConfig): TracePolicies {
  const density = densityPrefetch(cfg).name === p.prefetch.name ? { density: { ...cfg } } : {};
  return { prefetch: { name: p.prefetch.name, ...density }, eviction: p.eviction.name, placement: p.placement.name, batching: p.batching.name };
}

export class Recorder implements Recording {
  private readonly events: TraceEvent[] = [];
  private readonly mappings: TraceVma[][] = [];
  private readonly mappingIds = new Map<string, number>();
  /** Address spaces the trace names, with their thrashing settings. */
  private readonly spaces = new Map<number, { thrashing: boolean; windowMs: number; threshold: number; pinMs: number; thrashNapMs: number }>();
  /** The recording's clock (performance.now() when it began): events and launches carry their time on it. */
  private readonly t0 = performance.now();
  private readonly devices: TraceDevice[];
  /** Recorded dispatches by ticket: their own moves are theirs, not events. */
  private readonly tickets = new Set<number>();
  private readonly inFlight: Active[] = [];
  private readonly notes = new Set<string>();
  private readonly start: Record<string, number>;
  private writeBacks = 0;
  private running = true;
  private readonly unhook: () => void;

  constructor(private readonly sys: RecordedSystem) {
    const stats = sys.counters;
    if (stats.recorder) throw new HmmError('EBUSY', 'startRecording: a recording is already running on this system; stop() it first');
    this.devices = sys.devices.map((d) => {
      const initial = d.recordingState();
      for (const f of initial.frames) this.noteSpace(f.space);
      if (initial.frames.length > 0)
        this.notes.add(
          `${d.name} held ${initial.frames.length} pages when recording began: the replay starts from them with their accessed bits clear and no fault counts`,
        );
      return {
        id: d.id,
        name: d.name,
        frames: d.memory.frameCount,
        evictionPages: d.evictionPages,
        faultBatchPages: d.faultBatchPages,
        faultBufferPages: d.faultBufferPages,
        prefetch: { ...d.prefetch },
        policies: describePolicies(d.policies, d.prefetch),
        initial,
      };
    });
    this.start = stats.snapshot();
    stats.recorder = this;
    const observe = (mm: number, pages: readonly number[], move: PageMove, device: number, cause: Cause): void => this.moved(mm, pages, move, device, cause);
    stats.provenance.observers.add(observe);
    this.unhook = () => {
      if (stats.recorder === this) stats.recorder = undefined;
      stats.provenance.observers.delete(observe);
    };
  }

  /** ms since the recording began. */
  private now(): number {
    return Math.round((performance.now() - this.t0) * 1000) / 1000;
  }

  get active(): boolean {
    return this.running;
  }

  /** An address space the trace names (its thrashing settings; the defaults' if it is gone). */
  private noteSpace(id: number, mm = this.sys.addressSpaces.find((s) => s.id === id)): void {
    if (this.spaces.has(id)) return;
    const c = mm?.thrash.config ?? DEFAULT_THRASH;
    this.spaces.set(id, { thrashing: c.enabled, windowMs: c.windowMs, threshold: c.threshold, pinMs: c.pinMs, thrashNapMs: c.napMs });
  }

  /** The address space's mappings now, as an index into `mappings` (equal snapshots share one). */
  private mappingsOf(mm: AddressSpace): number {
    const vmas: TraceVma[] = mm.vmas.all().map((v) => ({
      start: v.start,
      end: v.end,
      prot: v.prot,
      shared: v.shared,
      huge: v.huge,
      ...(v.preferred !== undefined ? { preferred: v.preferred } : {}),
      ...(v.readMostly !== undefined ? { readMostly: v.readMostly } : {}),
      ...(v.accessedBy !== undefined ? { accessedBy: [...v.accessedBy] } : {}),
    }));
    if (vmas.some((v) => v.huge)) this.notes.add('some mappings are huge (2 MiB): the simulator moves their pages 4 KiB at a time');
    const key = JSON.stringify(vmas);
    let id = this.mappingIds.get(key);
    if (id === undefined) {
      id = this.mappings.length;
      this.mappings.push(vmas);
      this.mappingIds.set(key, id);
    }
    return id;
  }

  /** A dispatch begins on `dev` for `mm` (dispatch.ts). */
  dispatchBegin(dev: HmmDevice, mm: AddressSpace, d: DispatchStart): DispatchRecording {
    this.noteSpace(mm.id, mm);
    const cfg = prefetchSettings(dev.prefetch, d.prefetch);
    const event: DispatchEvent = {
      kind: 'dispatch',
      mode: d.mode,
      device: dev.id,
      space: mm.id,
      kernel: d.kernel,
      ticket: d.ticket,
      t: this.now(),
      launchesBefore: dev.launcher.launches,
      launchesAfter: dev.launcher.launches,
      mappings: this.mappingsOf(mm),
      ranges: d.ranges.map((r) => ({ start: r.start, end: r.end, write: r.write })),
      batchPages: d.batchPages,
      maxRounds: d.maxRounds,
      ...(d.invocations !== undefined ? { invocations: d.invocations } : {}),
      policies: describePolicies(d.policies, cfg),
      rounds: [],
      real: zeroMetrics(),
    };
    if (d.mode === 'validated')
      this.notes.add('validated dispatches replay as their declared ranges faulting in, then one launch that touches every declared page');
    if (this.inFlight.some((a) => a.device === dev.id))
      this.notes.add(`dispatches ran at the same time on ${dev.name}: the replay runs them one after another, in the order they began`);
    this.tickets.add(d.ticket);
    this.events.push(event);
    const a: Active = { event, device: dev.id, space: mm.id, before: this.sys.counters.snapshot(), writeBacks: 0 };
    this.inFlight.push(a);
    let open = true;
    return {
      round: (status) => {
        if (!open) return;
        const touched = status.touched ? bitmapToRuns(status.touched) : { read: [], write: [] };
        event.rounds.push({
          touched,
          faults: status.faults ? Array.from(status.faults) : [],
          misses: status.misses,
          ...(status.queued !== undefined ? { queued: status.queued } : {}),
          ...(status.faultedInvocations !== undefined ? { faultedInvocations: status.faultedInvocations } : {}),
          t: this.now(),
        });
      },
      end: (result, error) => {
        if (!open) return;
        open = false;
        this.finish(a, dev, result, error);
      },
    };
  }

  private finish(a: Active, dev: HmmDevice, result?: { faults: number; rounds: number; faultedPages: number }, error?: unknown): void {
    const i = this.inFlight.indexOf(a);
    if (i >= 0) this.inFlight.splice(i, 1);
    const e = a.event;
    e.launchesAfter = dev.launcher.launches;
    const now = this.sys.counters.snapshot();
    for (const [m, c] of COUNTED) e.real[m] = (now[c] ?? 0) - (a.before[c] ?? 0);
    e.real.writeBacks = a.writeBacks;
    if (result) {
      e.result = { ...result };
      if (e.mode === 'replayable') {
        e.real.launches = result.rounds;
        e.real.faultRounds = result.faults;
        e.real.faultedPages = result.faultedPages;
      }
    }
    if (error !== undefined) e.error = error instanceof Error ? error.message : String(error);
    else if (!result) e.error = 'it had not ended when the recording stopped';
  }

  /** A CPU access reached the fault path (AddressSpace.faultPages). */
  cpuAccess(mm: AddressSpace, pages: readonly number[], write: boolean, cause: Cause): void {
    if (!this.running || cause.kind !== 'cpu-fault' || pages.length === 0) return;
    this.noteSpace(mm.id, mm);
    const last = this.events[this.events.length - 1];
    // consecutive accesses of one kind within a millisecond are one event: their pages in order, as the CPU touched them
    if (last?.kind === 'cpu' && last.space === mm.id && last.write === write && last.thread === cause.thread && this.now() - last.t < 1) {
      last.pages.push(...toRuns(pages));
      return;
    }
    this.events.push({ kind: 'cpu', t: this.now(), space: mm.id, write, thread: cause.thread, pages: toRuns(pages) });
  }

  /** Provenance observer: a page move. */
  private moved(mm: number, pages: readonly number[], move: PageMove, device: number, cause: Cause): void {
    if (!this.running || pages.length === 0) return;
    if (move === 'write-back') {
      this.writeBacks += pages.length;
      for (const a of this.inFlight) if (a.device === device) a.writeBacks += pages.length;
    }
    // The simulator decides evictions itself, and derives what CPU accesses move.
    if (cause.kind === 'eviction' || cause.kind === 'cpu-fault') return;
    if ((cause.kind === 'gpu-fault' || cause.kind === 'prefetch' || cause.kind === 'declared') && this.tickets.has(cause.dispatch)) return;
    // (a recorded dispatch's own fault-in of its ranges is an explicit migration by its cause)
    if (this.inFlight.some((a) => a.device === device && a.space === mm)) return;
    const space = this.sys.addressSpaces.find((s) => s.id === mm);
    this.noteSpace(mm, space);
    const why = describeCause(cause);
    const last = this.events[this.events.length - 1];
    if (last?.kind === 'move' && last.space === mm && last.device === device && last.move === move && last.cause === why && this.now() - last.t < 1) {
      last.pages.push(...toRuns(pages));
      return;
    }
    this.events.push({
      kind: 'move',
      t: this.now(),
      space: mm,
      device,
      move,
      pages: toRuns(pages),
      cause: why,
      ...(space ? { mappings: this.mappingsOf(space) } : {}),
    });
  }

  stop(): FaultTrace {
    if (!this.running) throw new HmmError('EINVAL', 'recording.stop(): this recording was already stopped');
    this.running = false;
    this.unhook();
    for (const a of [...this.inFlight]) this.finish(a, this.sys.devices[a.device]!);
    const now = this.sys.counters.snapshot();
    const real = zeroMetrics();
    for (const [m, c] of COUNTED) real[m] = (now[c] ?? 0) - (this.start[c] ?? 0);
    real.writeBacks = this.writeBacks;
    for (const e of this.events) {
      if (e.kind !== 'dispatch') continue;
      real.launches += e.real.launches;
      real.faultRounds += e.real.faultRounds;
      real.faultedPages += e.real.faultedPages;
    }
    const thrash = (now.thrashEvents ?? 0) - (this.start.thrashEvents ?? 0);
    if (thrash > 0)
      this.notes.add(
        `thrashing detection pinned ${thrash} pages in RAM during the recording: the simulator's detector runs on the recorded clock, so its verdicts may differ near the window's edge`,
      );
    const naps = (now.throttledBatches ?? 0) - (this.start.throttledBatches ?? 0);
    if (naps > 0) this.notes.add(`${naps} fault batches were throttled; the simulator counts no time`);
    return {
      format: TRACE_FORMAT,
      version: TRACE_VERSION,
      createdAt: new Date().toISOString(),
      adapters: this.sys.adapters(),
      devices: this.devices,
      spaces: [...this.spaces].sort((a, b) => a[0] - b[0]).map(([id, s]) => ({ id, ...s })),
      mappings: this.mappings,
      events: this.events,
      real,
      notes: [...this.notes],
    };
  }
}
