// The simulator's dispatch. A replayable dispatch replays its recorded launches as a script of
// what the kernel attempts next: a simulated launch touches the recorded round's (page, access)
// keys (hits set accessed and dirty bits), and its faults are the touched pages not valid on
// the device (not writable, for writes). When they are exactly the recorded fault queue the
// GPU's order is kept; otherwise they are taken in page order, up to the fault queue's size.
// A launch with no faults goes straight on to the next recorded round's touches, as the
// kernel would within one launch; the dispatch ends once the last round's touches all hit.
// The fault service is dispatch.ts's serviceFaults: the batching policy's take within half the
// device, the prefetch policy asked with a view of the simulated residency and the recorded
// mappings, writes then reads faulted in. Under the policies that ran, each simulated launch is
// the recorded one, so the counts come out the real run's.

import { PAGE_SIZE, hex } from '../../constants.ts';
import { HmmError } from '../../errors.ts';
import { askBatching, askPrefetch } from '../../policy/guard.ts';
import type { Policies, PrefetchView } from '../../policy/types.ts';
import type { DispatchEvent, FaultTrace, TraceRound } from '../format.ts';
import { fromRuns } from '../pageRuns.ts';
import type { SimDevice } from './device.ts';
import { faultInPages, migratable, type FaultCtx } from './faultIn.ts';
import type { Machine } from './machine.ts';
import { dropRuns, pageRuns } from './moves.ts';
import type { SimSpace } from './space.ts';

/** The GPU fault queue's entries per launch (src/device/kernel.ts FAULT_QUEUE_CAP). */
const FAULT_QUEUE_CAP = 4096;
/** Launches in a row faulting on the same keys before EBUSY (dispatch.ts STALLED_ROUNDS). */
const STALLED_ROUNDS = 8;

/** Pages of `space` on any device that no mapping covers any more (munmap'ed since): they go, as munmap took them. */
function forgetUnmapped(m: Machine, space: SimSpace): void {
  for (const dev of m.devices) {
    const t = dev.table(space.id);
    const gone = [...t.pages()].filter((p) => !space.find(p));
    for (const [p, where] of space.priv) if (where.dev === dev.id && !space.find(p) && !t.lookup(p)) gone.push(p);
    if (gone.length === 0) continue;
    const frames = gone.map((p) => space.priv.get(p)).filter((w) => w?.dev === dev.id).map((w) => w!.frame);
    dropRuns(dev, space, pageRuns(gone));
    for (const p of gone) {
      if (space.priv.get(p)?.dev === dev.id) space.priv.delete(p);
      if (space.held.get(p) === dev.id) space.held.delete(p);
    }
    dev.disown(frames);
    dev.free(frames);
  }
}

/** Touch one recorded round's keys; the keys that missed, ascending. */
function touch(dev: SimDevice, space: SimSpace, round: TraceRound): number[] {
  const t = dev.table(space.id);
  const missed: number[] = [];
  for (const p of fromRuns(round.touched.read)) if (!t.touch(p, false)) missed.push(p * 2);
  for (const p of fromRuns(round.touched.write)) if (!t.touch(p, true)) missed.push(p * 2 + 1);
  return missed.sort((a, b) => a - b);
}

/** The fault queue of a simulated launch: the recorded one when it is what faulted (or its full prefix), else page order. */
function faultQueue(recorded: readonly number[], missed: readonly number[]): number[] {
  const set = new Set(missed);
  const inSet = recorded.every((k) => set.has(k));
  if (inSet && (new Set(recorded).size === missed.length || recorded.length >= FAULT_QUEUE_CAP)) return [...recorded];
  return missed.slice(0, FAULT_QUEUE_CAP);
}

/** One replayable fault round's service (Dispatcher.serviceFaults). */
function serviceFaults(m: Machine, dev: SimDevice, space: SimSpace, ev: DispatchEvent, round: number, keys: readonly number[], policies: Required<Policies>): void {
  const where = `dispatch '${ev.kernel}' round ${round}`;
  const writes = new Set<number>();
  for (const k of keys) if (k & 1) writes.add(k >>> 1);
  let faulted = [...new Set(keys.map((k) => k >>> 1))];
  const held = new Set(faulted);
  const cap = Math.max(1, Math.floor(dev.frameCount / 2));
  const thrashing = space.thrash.config.enabled && faulted.some((p) => space.thrash.isPinned(p, m.now));
  const plan = askBatching(policies.batching, { faulted: faulted.length, frames: dev.frameCount, batchPages: ev.batchPages, thrashing, thrashNapMs: space.thrashNapMs }, where);
  if (faulted.length > Math.min(cap, plan.take)) faulted = faulted.slice(0, Math.min(cap, plan.take));
  space.countFaults(dev.id, faulted);
  const isFault = new Set(faulted);
  const ctx: FaultCtx = { policies, where, held };
  const table = dev.table(space.id);
  const view: PrefetchView = {
    device: dev.id,
    space: space.id,
    dispatch: ev.ticket,
    round,
    resident: (p: number) => table.lookup(p) !== undefined,
    allowed: (p: number) => migratable(m, dev, space, p, false, ctx, 'prefetch'),
  };
  let wanted = askPrefetch(policies.prefetch, faulted, view, where);
  if (wanted.length > cap) wanted = [...faulted, ...wanted.filter((p) => !isFault.has(p)).slice(0, cap - faulted.length)].sort((a, b) => a - b);
  const keep = new Set(wanted);
  for (const w of writes) if (!keep.has(w)) writes.delete(w);
  const reads = wanted.filter((p) => !writes.has(p));
  m.metrics.prefetchedPages += wanted.length - faulted.length;
  const opts: FaultCtx = { ...ctx, keep, progress: isFault };
  try {
    faultInPages(m, dev, space, [...writes].sort((a, b) => a - b), true, opts);
    faultInPages(m, dev, space, reads, false, opts);
  } catch (e) {
    if (e instanceof HmmError && e.code === 'EFAULT' && e.address !== undefined) throw new HmmError('ESEGV', `kernel '${ev.kernel}' touched unmapped address ${hex(e.address)}`, e.address);
    if (e instanceof HmmError && e.code === 'EPERM' && e.address !== undefined) throw new HmmError('EPERM', `kernel '${ev.kernel}' wrote read-only address ${hex(e.address)}`, e.address);
    throw e;
  }
}

/**
 * Replay one dispatch event under `policies`, counting into m.metrics. Throws what the
 * dispatch would throw (ESEGV, ENOMEM, EBUSY, a policy's EINVAL from the guard).
 */
export function replayDispatch(m: Machine, trace: FaultTrace, ev: DispatchEvent, policies: Required<Policies>): void {
  const dev = m.devices[ev.device]!;
  const space = m.space(ev.space);
  space.setMappings(trace.mappings[ev.mappings]!);
  forgetUnmapped(m, space);
  // The device's launches between recorded dispatches (dmirror reads and writes, unrecorded
  // kernels) move the clock that arrival and last access are told on.
  dev.launches += Math.max(0, ev.launchesBefore - dev.recordedLaunches);
  dev.recordedLaunches = ev.launchesAfter;
  m.now = Math.max(m.now, ev.t);
  const where = `dispatch '${ev.kernel}'`;
  const pagesOf = (r: { start: number; end: number }): number[] => Array.from({ length: r.end - r.start }, (_, i) => r.start + i);
  if (ev.mode === 'validated') {
    const declared = new Set(ev.ranges.flatMap(pagesOf));
    for (const r of ev.ranges) faultInPages(m, dev, space, pagesOf(r), r.write, { policies, where, keep: declared, held: declared });
    const t = dev.table(space.id);
    t.flush();
    dev.launches++;
    for (const r of ev.ranges) for (const p of pagesOf(r)) t.touch(p, r.write);
    return;
  }
  for (const r of ev.ranges) faultInPages(m, dev, space, pagesOf(r), r.write, { policies, where });
  const last = ev.rounds.length - 1;
  if (last < 0) return; // it failed before its first launch
  let cursor = 0;
  let stalled = 0;
  let lastKeys = '';
  for (let round = 1; round <= ev.maxRounds; round++) {
    dev.table(space.id).flush();
    dev.launches++;
    m.metrics.launches++;
    let missed: number[];
    for (;;) {
      // (the recorded clock: this round's service follows the recorded launch's return)
      m.now = Math.max(m.now, ev.rounds[cursor]!.t);
      missed = touch(dev, space, ev.rounds[cursor]!);
      if (missed.length > 0) break;
      if (cursor === last) return;
      cursor++;
    }
    const queue = faultQueue(ev.rounds[cursor]!.faults, missed);
    const keys = [...new Set(queue)].sort((a, b) => a - b);
    m.metrics.faultRounds++;
    const sig = keys.join(',');
    stalled = sig === lastKeys ? stalled + 1 : 0;
    lastKeys = sig;
    if (stalled >= STALLED_ROUNDS || round === ev.maxRounds) {
      const pages = keys.slice(0, 8).map((k) => hex((k >>> 1) * PAGE_SIZE)).join(', ');
      throw new HmmError('EBUSY', `dispatch '${ev.kernel}': still faulting after ${round} rounds on ${keys.length} pages (${pages}${keys.length > 8 ? ', ...' : ''})`, (keys[0]! >>> 1) * PAGE_SIZE);
    }
    m.metrics.faultedPages += keys.length;
    serviceFaults(m, dev, space, ev, round, keys, policies);
    if (cursor < last) cursor++;
  }
}
