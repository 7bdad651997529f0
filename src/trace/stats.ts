// Stats: named counters for everything the system does (faults, pages and bytes moved each
// way, invalidations), and the event log beside them. One instance per System; every part
// increments its own names.

import type { Recorder } from '../replay/recorder.ts';
import { Provenance } from './provenance.ts';
import { PHASES, TraceLog, type Phase } from './trace.ts';

/** Each phase's slot in the totals. */
const PHASE_INDEX = Object.fromEntries(PHASES.map((p, i) => [p, i])) as Record<Phase, number>;

export type Counter =
  | 'cpuFaults' // CPU touches that had to migrate device-private pages back first
  | 'gpuFaults' // device fault rounds (a miss seen on the GPU, serviced by the host)
  | 'pagesToDevice'
  | 'pagesToSystem'
  | 'bytesToDevice'
  | 'bytesToSystem' // bytes read back from devices into system RAM: pages coming home, held copies' write-backs (only their dirty blocks when those were known)
  | 'zeroPagesToDevice' // never-touched pages that became device pages without touching RAM
  | 'migrationFailures' // pages that a migration could not move (per page)
  | 'evictions' // pages moved off a device to make room (written back or dropped)
  | 'thrashEvents' // pages found bouncing between RAM and a device, and pinned in RAM
  | 'throttledBatches' // fault batches that waited because they touched thrashing pages
  | 'invalidations'
  | 'pageTableWrites' // batched device page-table uploads
  | 'copyBatches' // copy-engine submits (each serves many pages)
  | 'dispatches' // kernel launches, replays included
  | 'prefetchedPages' // pages brought to a device ahead of a fault (density rule or explicit prefetch)
  | 'faultsReported' // GPU misses in replayable rounds, before deduplication
  | 'faultsDeduplicated' // of those, repeats of a (page, access) already queued that round
  | 'faultRecords' // fault-queue entries the host read back (what it received, after the GPU's pending bits)
  | 'faultPages' // distinct pages among those records, summed over rounds
  | 'faultsOverflowed' // distinct (page, access) faults a round's fault buffer had no room for (they fault again next round)
  | 'progressRounds' // replayable rounds run with the progress rule in force (a dispatch that stopped progressing, design-notes §20)
  | 'bytesWrittenBack' // bytes of device data written into RAM frames: held copies' dirty 256-byte blocks, whole device-private pages coming home
  | 'bytesStored' // the footprint of kernels' stores on the pages written back or coming home: 256 bytes per dirty block
  | 'copyUpgrades' // read-only device copies made writable in place (held) for a write fault, without a second upload
  | 'deviceCopies' // device copies of pages that stay in RAM (shared, pinned, exclusive), each one upload (a copy made writable in place is a copyUpgrade instead)
  | 'forks'
  | 'cowBreaks' // private frames copied on the first write after a fork
  | 'threadFaults' // CPU thread accesses that took the slow path through the fault mailbox
  | 'pinnedPages' // pages pinned by mm.pin (pin_user_pages), counted as they are pinned
  | 'remaps'; // mm.mremap calls that moved their pages

export class Stats {
  private readonly counts = new Map<Counter, number>();
  /** The event log travels with the counters, so every part that counts can also record. */
  readonly trace = new TraceLog();
  /** Why each page moved (sys.explain). */
  readonly provenance = new Provenance();
  /** The recording in progress (sys.startRecording), told of dispatches and CPU faults; none most of the time. */
  recorder: Recorder | undefined;
  add(name: Counter, n = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + n);
  }
  get(name: Counter): number {
    return this.counts.get(name) ?? 0;
  }
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
  /** Milliseconds spent in each phase of fault service and migration so far (issue 15), by PHASES index. */
  private readonly phaseTotals = new Float64Array(PHASES.length);
  /** Add `ms` to a phase's total (the caller also records the span in the trace when it wants one). */
  addPhase(phase: Phase, ms: number): void {
    this.phaseTotals[PHASE_INDEX[phase]] += ms;
  }
  /**
   * A phase that started at `ts` (performance.now()) is over: its time goes to the total and,
   * while the trace is on and `span` is not false, a 'phase' span is recorded (on `device`'s lane).
   * Returns the time now, where the next phase starts.
   */
  endPhase(phase: Phase, ts: number, device?: number, mm?: number, span = true): number {
    const now = performance.now();
    this.phaseTotals[PHASE_INDEX[phase]] += now - ts;
    if (span && this.trace.enabled) this.trace.record({ kind: 'phase', phase, ts, dur: now - ts, device, mm, detail: phase });
    return now;
  }
  /** Each phase's total in milliseconds (every phase present, 0 when none). */
  phaseMs(): Record<Phase, number> {
    const out = {} as Record<Phase, number>;
    PHASES.forEach((p, i) => (out[p] = this.phaseTotals[i]!));
    return out;
  }
}
