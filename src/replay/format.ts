// The fault trace: what `sys.startRecording()` ... `recording.stop()` writes and what the
// replay simulator (simulate.ts) reads. Plain JSON, versioned. It holds the devices (sizes,
// eviction unit, fault buffer and batch cap, policies' names, the state they started in), the
// address spaces' mappings as each dispatch saw them, and the events in the order they began:
// dispatches with their launches (each launch's touched pages, its fault queue as the GPU
// reported it, how many faults asked for a slot and how many invocations faulted),
// CPU accesses that faulted, and the page moves no recorded dispatch caused. It also owns the
// check of a trace read from a file: a malformed one is an HmmError naming the field.

import { HmmError } from '../errors.ts';
import type { PrefetchConfig } from '../policy/prefetch.ts';
import type { PageRuns } from './pageRuns.ts';

export const TRACE_FORMAT = 'webgpu-hmm fault trace';
export const TRACE_VERSION = 1;

/** What a run (or one dispatch of it) cost: the numbers the replay table compares. */
export interface Metrics {
  /** Kernel launches of replayable dispatches (DispatchResult.rounds, summed). */
  launches: number;
  /** Launches that faulted (DispatchResult.faults, summed). */
  faultRounds: number;
  /** Distinct (page, access) faults serviced, summed over rounds (DispatchResult.faultedPages). */
  faultedPages: number;
  /** Pages migrated to a device. */
  pagesToDevice: number;
  /** Device copies of pages that stayed in RAM. */
  deviceCopies: number;
  /** Pages migrated back to RAM. */
  pagesToSystem: number;
  /** Held device copies written back to RAM. */
  writeBacks: number;
  /** Pages evicted (written back or dropped) to make room. */
  evictions: number;
  /** Pages a prefetch policy brought along with faults. */
  prefetchedPages: number;
}

export const METRIC_NAMES: readonly (keyof Metrics)[] = [
  'launches',
  'faultRounds',
  'faultedPages',
  'pagesToDevice',
  'deviceCopies',
  'pagesToSystem',
  'writeBacks',
  'evictions',
  'prefetchedPages',
];

export const zeroMetrics = (): Metrics => ({
  launches: 0,
  faultRounds: 0,
  faultedPages: 0,
  pagesToDevice: 0,
  deviceCopies: 0,
  pagesToSystem: 0,
  writeBacks: 0,
  evictions: 0,
  prefetchedPages: 0,
});

export function addMetrics(into: Metrics, m: Metrics): Metrics {
  for (const k of METRIC_NAMES) into[k] += m[k];
  return into;
}

/** One mapping (VMA) as a dispatch saw it, in pages [start, end). */
export interface TraceVma {
  start: number;
  end: number;
  prot: 'none' | 'r' | 'rw';
  shared: boolean;
  huge: boolean;
  preferred?: 'system' | number;
  readMostly?: boolean;
  accessedBy?: number[];
}

/** The policies a dispatch ran under, by name; the built-in prefetcher with its settings. */
export interface TracePolicies {
  prefetch: { name: string; density?: PrefetchConfig };
  eviction: string;
  placement: string;
  batching: string;
}

/** A device frame in use when recording began. */
export interface TraceFrame {
  frame: number;
  space: number;
  page: number;
  /** A copy of a RAM page (else the page lives here). */
  copy: boolean;
  /** Mapped writable (a held copy, for a copy). */
  write: boolean;
  arrived: number;
  lastAccess: number;
}

export interface TraceDevice {
  id: number;
  name: string;
  frames: number;
  evictionPages: number;
  faultBatchPages: number;
  /** The fault buffer: the most faults one launch delivered (absent in traces recorded before it existed: 4096, the whole queue). */
  faultBufferPages?: number;
  prefetch: PrefetchConfig;
  /** The device's own policies (a dispatch may have run under others: see its `policies`). */
  policies: TracePolicies;
  /** Its state when recording began: the clock hand, the launch count, the free frames in the order they would be handed out, the frames in use. */
  initial: { clockHand: number; launches: number; freeOrder: number[]; frames: TraceFrame[] };
}

/** An address space, with its thrashing detector's settings (the simulator runs the detector on the recorded clock). */
export interface TraceSpace {
  id: number;
  thrashing: boolean;
  windowMs: number;
  threshold: number;
  pinMs: number;
  thrashNapMs: number;
}

/** One launch of a replayable dispatch. */
export interface TraceRound {
  /** Every (page, access) the launch's invocations asked the prelude for, hits and misses. */
  touched: { read: PageRuns; write: PageRuns };
  /** The fault queue as the GPU reported it (page*2 + write), in its order: at most the fault buffer's capacity. */
  faults: number[];
  /** Faulting accesses before the GPU's deduplication. */
  misses: number;
  /** Distinct (page, access) faults that asked for a slot in the fault buffer, those it had no room for included. */
  queued?: number;
  /** Invocations that faulted in this launch (they did not finish): the progress rule's measure. */
  faultedInvocations?: number;
  /** When the launch came back, in ms since recording began (the fault service follows it). */
  t: number;
}

export interface DispatchEvent {
  kind: 'dispatch';
  /** 'validated': recorded as its declared ranges faulting in, then one launch touching all of them. */
  mode: 'replayable' | 'validated';
  device: number;
  space: number;
  kernel: string;
  /** The dispatch's age (its prefetch view's `dispatch`). */
  ticket: number;
  /** When it began, in ms since recording began. */
  t: number;
  /** The device's launch count when it began and ended (launches between dispatches keep the simulator's clock). */
  launchesBefore: number;
  launchesAfter: number;
  /** Index into FaultTrace.mappings: the address space's mappings when it began. */
  mappings: number;
  /** Its ranges (validated: declared; replayable: faulted in first), in pages [start, end). */
  ranges: { start: number; end: number; write: boolean }[];
  batchPages: number;
  maxRounds: number;
  /** Invocations the dispatch ran (replayable: the progress rule's windows are ranges of them). */
  invocations?: number;
  policies: TracePolicies;
  rounds: TraceRound[];
  result?: { faults: number; rounds: number; faultedPages: number };
  /** It failed (the HmmError's message). */
  error?: string;
  /** What it cost on the real device (counters while it ran). */
  real: Metrics;
}

/** A CPU access that took the fault path (main thread or a CPU thread's slow path). */
export interface CpuEvent {
  kind: 'cpu';
  /** ms since recording began. */
  t: number;
  space: number;
  write: boolean;
  thread: 'main' | 'worker';
  pages: PageRuns;
}

/** A page move no recorded dispatch or CPU access caused (an explicit call, a release, ...). */
export interface MoveEvent {
  kind: 'move';
  /** ms since recording began. */
  t: number;
  space: number;
  device: number;
  move: 'to-device' | 'to-system' | 'copy' | 'write-back' | 'dropped';
  pages: PageRuns;
  /** The cause, in words (describeCause). */
  cause: string;
  /** Index into FaultTrace.mappings: the address space's mappings then (absent if it was gone). */
  mappings?: number;
}

export type TraceEvent = DispatchEvent | CpuEvent | MoveEvent;

export interface FaultTrace {
  format: typeof TRACE_FORMAT;
  version: typeof TRACE_VERSION;
  createdAt: string;
  adapters: string[];
  devices: TraceDevice[];
  spaces: TraceSpace[];
  mappings: TraceVma[][];
  events: TraceEvent[];
  /** The whole recording's real numbers (launches and fault rounds: replayable dispatches; moves: every counter). */
  real: Metrics;
  /** What the recorder noticed that the simulator will not reproduce. */
  notes: string[];
}

// ---------------------------------------------------------------------------- checking

class Bad extends Error {}

const show = (v: unknown): string => {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `'${v.length > 30 ? `${v.slice(0, 30)}…` : v}'`;
  if (v === null || typeof v !== 'object') return String(v);
  return 'an object';
};

function fail(path: string, v: unknown, want: string): never {
  throw new Bad(`${path} is ${show(v)}, not ${want}`);
}

function obj(path: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(path, v, 'an object');
  return v as Record<string, unknown>;
}

function arr(path: string, v: unknown): unknown[] {
  if (!Array.isArray(v)) fail(path, v, 'an array');
  return v;
}

function int(path: string, v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    fail(path, v, `an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '…' : max}]`);
  return v;
}

function str(path: string, v: unknown): string {
  if (typeof v !== 'string') fail(path, v, 'a string');
  return v;
}

function bool(path: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(path, v, 'true or false');
  return v;
}

function oneOf<T extends string>(path: string, v: unknown, options: readonly T[]): T {
  if (typeof v !== 'string' || !options.includes(v as T)) fail(path, v, options.map((o) => `'${o}'`).join(' or '));
  return v as T;
}

const VA_PAGES = 1 << 20;

function runs(path: string, v: unknown): void {
  const a = arr(path, v);
  if (a.length % 2 !== 0) fail(path, v, 'page runs [first, count, ...] (an even length)');
  for (let i = 0; i < a.length; i += 2) {
    const first = int(`${path}[${i}]`, a[i], 0, VA_PAGES - 1);
    int(`${path}[${i + 1}]`, a[i + 1], 1, VA_PAGES - first);
  }
}

function metrics(path: string, v: unknown): void {
  const m = obj(path, v);
  for (const k of METRIC_NAMES) int(`${path}.${k}`, m[k]);
}

function prefetchConfig(path: string, v: unknown): void {
  const c = obj(path, v);
  bool(`${path}.enabled`, c.enabled);
  if (typeof c.threshold !== 'number' || !(c.threshold >= 0 && c.threshold <= 100)) fail(`${path}.threshold`, c.threshold, 'a percentage in [0, 100]');
  const up = int(`${path}.upgradePages`, c.upgradePages, 1, 512);
  if ((up & (up - 1)) !== 0) fail(`${path}.upgradePages`, up, 'a power of two');
}

function policies(path: string, v: unknown): void {
  const p = obj(path, v);
  const pf = obj(`${path}.prefetch`, p.prefetch);
  str(`${path}.prefetch.name`, pf.name);
  if (pf.density !== undefined) prefetchConfig(`${path}.prefetch.density`, pf.density);
  for (const k of ['eviction', 'placement', 'batching']) str(`${path}.${k}`, p[k]);
}

function device(path: string, v: unknown, i: number): void {
  const d = obj(path, v);
  if (int(`${path}.id`, d.id) !== i) fail(`${path}.id`, d.id, `${i} (devices are listed by id)`);
  str(`${path}.name`, d.name);
  const frames = int(`${path}.frames`, d.frames, 1);
  const unit = int(`${path}.evictionPages`, d.evictionPages, 1, 512);
  if (![1, 16, 512].includes(unit)) fail(`${path}.evictionPages`, unit, '1, 16 or 512');
  int(`${path}.faultBatchPages`, d.faultBatchPages, 1);
  if (d.faultBufferPages !== undefined) int(`${path}.faultBufferPages`, d.faultBufferPages, 1, 4096);
  prefetchConfig(`${path}.prefetch`, d.prefetch);
  policies(`${path}.policies`, d.policies);
  const init = obj(`${path}.initial`, d.initial);
  int(`${path}.initial.clockHand`, init.clockHand, 0, frames - 1);
  int(`${path}.initial.launches`, init.launches);
  const seen = new Set<number>();
  arr(`${path}.initial.freeOrder`, init.freeOrder).forEach((f, k) => {
    const frame = int(`${path}.initial.freeOrder[${k}]`, f, 0, frames - 1);
    if (seen.has(frame)) fail(`${path}.initial.freeOrder[${k}]`, f, 'a frame not listed before');
    seen.add(frame);
  });
  arr(`${path}.initial.frames`, init.frames).forEach((x, k) => {
    const at = `${path}.initial.frames[${k}]`;
    const f = obj(at, x);
    const frame = int(`${at}.frame`, f.frame, 0, frames - 1);
    if (seen.has(frame)) fail(`${at}.frame`, frame, 'a frame neither free nor listed before');
    seen.add(frame);
    int(`${at}.space`, f.space, 1);
    int(`${at}.page`, f.page, 0, VA_PAGES - 1);
    bool(`${at}.copy`, f.copy);
    bool(`${at}.write`, f.write);
    int(`${at}.arrived`, f.arrived);
    int(`${at}.lastAccess`, f.lastAccess);
  });
}

function vma(path: string, v: unknown): void {
  const m = obj(path, v);
  const start = int(`${path}.start`, m.start, 0, VA_PAGES - 1);
  int(`${path}.end`, m.end, start + 1, VA_PAGES);
  oneOf(`${path}.prot`, m.prot, ['none', 'r', 'rw'] as const);
  bool(`${path}.shared`, m.shared);
  bool(`${path}.huge`, m.huge);
  if (m.preferred !== undefined && m.preferred !== 'system') int(`${path}.preferred`, m.preferred);
  if (m.readMostly !== undefined) bool(`${path}.readMostly`, m.readMostly);
  if (m.accessedBy !== undefined) arr(`${path}.accessedBy`, m.accessedBy).forEach((d, k) => int(`${path}.accessedBy[${k}]`, d));
}

function ms(path: string, v: unknown): void {
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) fail(path, v, 'a time in ms >= 0');
}

function event(path: string, v: unknown, t: { devices: number; spaces: Set<number>; mappings: number }): void {
  const e = obj(path, v);
  const kind = oneOf(`${path}.kind`, e.kind, ['dispatch', 'cpu', 'move'] as const);
  ms(`${path}.t`, e.t);
  const space = int(`${path}.space`, e.space, 1);
  if (!t.spaces.has(space)) fail(`${path}.space`, space, 'an address space listed in spaces');
  if (kind === 'cpu') {
    bool(`${path}.write`, e.write);
    oneOf(`${path}.thread`, e.thread, ['main', 'worker'] as const);
    runs(`${path}.pages`, e.pages);
    return;
  }
  int(`${path}.device`, e.device, 0, t.devices - 1);
  if (kind === 'move') {
    oneOf(`${path}.move`, e.move, ['to-device', 'to-system', 'copy', 'write-back', 'dropped'] as const);
    runs(`${path}.pages`, e.pages);
    str(`${path}.cause`, e.cause);
    if (e.mappings !== undefined) int(`${path}.mappings`, e.mappings, 0, t.mappings - 1);
    return;
  }
  oneOf(`${path}.mode`, e.mode, ['replayable', 'validated'] as const);
  str(`${path}.kernel`, e.kernel);
  int(`${path}.ticket`, e.ticket);
  const before = int(`${path}.launchesBefore`, e.launchesBefore);
  int(`${path}.launchesAfter`, e.launchesAfter, before);
  int(`${path}.mappings`, e.mappings, 0, t.mappings - 1);
  arr(`${path}.ranges`, e.ranges).forEach((r, k) => {
    const at = `${path}.ranges[${k}]`;
    const o = obj(at, r);
    const start = int(`${at}.start`, o.start, 0, VA_PAGES - 1);
    int(`${at}.end`, o.end, start + 1, VA_PAGES);
    bool(`${at}.write`, o.write);
  });
  int(`${path}.batchPages`, e.batchPages, 1);
  int(`${path}.maxRounds`, e.maxRounds, 1);
  if (e.invocations !== undefined) int(`${path}.invocations`, e.invocations, 1);
  policies(`${path}.policies`, e.policies);
  arr(`${path}.rounds`, e.rounds).forEach((r, k) => {
    const at = `${path}.rounds[${k}]`;
    const o = obj(at, r);
    const touched = obj(`${at}.touched`, o.touched);
    runs(`${at}.touched.read`, touched.read);
    runs(`${at}.touched.write`, touched.write);
    arr(`${at}.faults`, o.faults).forEach((f, j) => int(`${at}.faults[${j}]`, f, 0, 2 * VA_PAGES - 1));
    int(`${at}.misses`, o.misses);
    if (o.queued !== undefined) int(`${at}.queued`, o.queued);
    if (o.faultedInvocations !== undefined) int(`${at}.faultedInvocations`, o.faultedInvocations);
    ms(`${at}.t`, o.t);
  });
  if (e.result !== undefined) {
    const r = obj(`${path}.result`, e.result);
    for (const k of ['faults', 'rounds', 'faultedPages']) int(`${path}.result.${k}`, r[k]);
  }
  if (e.error !== undefined) str(`${path}.error`, e.error);
  if (e.mode === 'replayable' && e.error === undefined && (e.rounds as unknown[]).length === 0)
    fail(`${path}.rounds`, e.rounds, 'at least one launch (a replayable dispatch that did not fail launched)');
  metrics(`${path}.real`, e.real);
}

/**
 * Check a parsed JSON value and return it as a FaultTrace. A value that is not one is an
 * HmmError (EINVAL) naming `source` and the first field that is wrong, e.g.
 * "trace.json: events[3].rounds[0].faults[2] is -1, not an integer in [0, 2097151]".
 */
export function parseFaultTrace(value: unknown, source = 'fault trace'): FaultTrace {
  try {
    const t = obj('the trace', value);
    if (t.format !== TRACE_FORMAT) fail('format', t.format, `'${TRACE_FORMAT}' (is this a fault trace from recording.stop()?)`);
    if (t.version !== TRACE_VERSION) fail('version', t.version, `${TRACE_VERSION} (this build reads version ${TRACE_VERSION} traces)`);
    str('createdAt', t.createdAt);
    arr('adapters', t.adapters).forEach((a, i) => str(`adapters[${i}]`, a));
    const devices = arr('devices', t.devices);
    devices.forEach((d, i) => device(`devices[${i}]`, d, i));
    const spaces = new Set<number>();
    arr('spaces', t.spaces).forEach((s, i) => {
      const o = obj(`spaces[${i}]`, s);
      spaces.add(int(`spaces[${i}].id`, o.id, 1));
      bool(`spaces[${i}].thrashing`, o.thrashing);
      for (const k of ['windowMs', 'pinMs', 'thrashNapMs']) ms(`spaces[${i}].${k}`, o[k]);
      int(`spaces[${i}].threshold`, o.threshold);
    });
    for (const d of devices as TraceDevice[])
      d.initial.frames.forEach((f, k) => {
        if (!spaces.has(f.space)) fail(`devices[${d.id}].initial.frames[${k}].space`, f.space, 'an address space listed in spaces');
      });
    const mappings = arr('mappings', t.mappings);
    mappings.forEach((m, i) => arr(`mappings[${i}]`, m).forEach((v, k) => vma(`mappings[${i}][${k}]`, v)));
    const ctx = { devices: devices.length, spaces, mappings: mappings.length };
    arr('events', t.events).forEach((e, i) => event(`events[${i}]`, e, ctx));
    metrics('real', t.real);
    arr('notes', t.notes).forEach((n, i) => str(`notes[${i}]`, n));
    return value as FaultTrace;
  } catch (e) {
    if (e instanceof Bad) throw new HmmError('EINVAL', `${source}: ${e.message}`);
    throw e;
  }
}
