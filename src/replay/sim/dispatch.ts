// The simulator's dispatch. A replayable dispatch replays its recorded launches as a script of
// what the kernel attempts next: a simulated launch touches the recorded round's (page, access)
// keys (hits set accessed and dirty bits), and its faults are the touched pages not valid on
// the device (not writable, for writes). The device's fault buffer delivers at most
// faultBufferPages of them (the rest overflow and fault again next round); which ones get a
// slot is the GPU's order, so the recorded queue is kept when it is what faulted or a full
// buffer's worth of it, else the recorded ones that faulted go first and the rest follow in
// page order. A launch with no faults goes straight on to the next recorded round's touches, as
// the kernel would within one launch, unless the recorded launch also ended clean (the progress
// rule moved its window on: a new launch); the dispatch ends once the last round's touches all
// hit. The progress rule (src/device/progress.ts) is the mechanism's own class, driven with what
// the simulated launches report: misses, and the invocations that faulted (the recorded count
// when the launch faulted as recorded, else the recorded count scaled by the faults). The fault
// service is dispatch.ts's serviceFaults: the batching policy's take within half the device
// (and, under the rule, within what the rule does not keep), the prefetch policy asked with a
// view of the simulated residency and the recorded mappings (no prefetch under the rule),
// writes then reads faulted in sparing the kept pages; no room under the rule narrows the
// window. Under the policies that ran, each simulated launch is the recorded one, so the counts
// come out the real run's.

import { PAGE_SIZE, hex } from '../../constants.ts';
import { ProgressRule } from '../../device/progress.ts';
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

/** The GPU fault queue's entries per launch (src/device/kernel.ts FAULT_QUEUE_CAP): the fault buffer of a trace that does not name one. */
const FAULT_QUEUE_CAP = 4096;
/**
 * A dispatch's invocations, for the progress rule: the trace's count, else the most that any of
 * its launches reported faulted (all of them, in the first launch of a dispatch that faults
 * everywhere), else one (a trace from before the rule: no window to narrow, as then).
 */
function invocationsOf(ev: DispatchEvent): number {
  if (ev.invocations !== undefined) return ev.invocations;
  return Math.max(1, ...ev.rounds.map((r) => r.faultedInvocations ?? 0));
}
/** Launches in a row faulting on the same keys before EBUSY (dispatch.ts STALLED_ROUNDS). */
const STALLED_ROUNDS = 8;

/** Pages of `space` on any device that no mapping covers any more (munmap'ed since): they go, as munmap took them. */
function forgetUnmapped(m: Machine, space: SimSpace): void {
  for (const dev of m.devices) {
    const t = dev.table(space.id);
    const gone = [...t.pages()].filter((p) => !space.find(p));
    for (const [p, where] of space.priv) if (where.dev === dev.id && !space.find(p) && !t.lookup(p)) gone.push(p);
    if (gone.length === 0) continue;
    const frames = gone
      .map((p) => space.priv.get(p))
      .filter((w) => w?.dev === dev.id)
      .map((w) => w!.frame);
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

/**
 * What the fault buffer of `capacity` delivers of a simulated launch's misses (ascending keys):
 * the recorded queue when it is what faulted (or a full buffer of it); otherwise the recorded
 * faults that are among the misses first, in the GPU's order, then the other misses in page
 * order, up to the capacity.
 */
export function faultQueue(recorded: readonly number[], missed: readonly number[], capacity: number): number[] {
  const set = new Set(missed);
  const mine = recorded.filter((k) => set.has(k));
  // Equivalent mutant (not disabled: that would hide this line's killed ones): this test's parts as false, `&&` or `>`; when it holds, the general path below builds the same list
  if (mine.length === recorded.length && (new Set(recorded).size === missed.length || recorded.length >= capacity)) return recorded.slice(0, capacity);
  const first = new Set(mine);
  return [...mine, ...missed.filter((k) => !first.has(k))].slice(0, capacity);
}

/**
 * The invocations a simulated launch reports faulted: the recorded count when it faulted as
 * recorded (the same distinct faults), else the recorded count scaled by its share of them
 * (at least one: something faulted), or the faults themselves where the trace has no count.
 */
function faultedInvocations(round: TraceRound, missed: number): number {
  if (missed === 0) return 0;
  const queued = round.queued ?? round.faults.length;
  const fi = round.faultedInvocations;
  if (fi === undefined) return missed;
  if (missed === queued) return fi;
  return queued > 0 ? Math.max(1, Math.round((fi * missed) / queued)) : missed;
}

/**
 * One replayable fault round's service (Dispatcher.serviceFaults). The thrashing throttle
 * naps only when someone else is using a thrashing page right now (a CPU access or move in
 * flight, another device's turn); a replay runs one thing at a time, so nobody ever is.
 */
function serviceFaults(
  m: Machine,
  dev: SimDevice,
  space: SimSpace,
  ev: DispatchEvent,
  round: number,
  keys: readonly number[],
  policies: Required<Policies>,
  rule: ProgressRule,
): void {
  const where = `dispatch '${ev.kernel}' round ${round}`;
  const writes = new Set<number>();
  for (const k of keys) if (k & 1) writes.add(k >>> 1);
  let faulted = [...new Set(keys.map((k) => k >>> 1))];
  const held = new Set(faulted);
  const frames = dev.frameCount;
  let cap = Math.max(1, Math.floor(frames / 2));
  if (rule.active) cap = Math.max(1, Math.min(cap, frames - rule.protectedPages.size));
  const plan = askBatching(
    policies.batching,
    { faulted: faulted.length, frames, batchPages: ev.batchPages, thrashing: false, thrashNapMs: space.thrashNapMs },
    where,
  );
  // Stryker disable next-line ConditionalExpression,EqualityOperator: the test as true or `>=`; slicing a list to its own length changes nothing
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
  // (under the progress rule no company: it would only take room the kept pages need)
  let wanted = rule.active ? faulted : askPrefetch(policies.prefetch, faulted, view, where);
  // Stryker disable next-line ConditionalExpression,EqualityOperator: the test as true or `>=`; within the cap the list rebuilt here is the same
  if (wanted.length > cap) wanted = [...faulted, ...wanted.filter((p) => !isFault.has(p)).slice(0, cap - faulted.length)].sort((a, b) => a - b);
  const keep = new Set(wanted);
  for (const w of writes) if (!keep.has(w)) writes.delete(w);
  // Stryker disable next-line MethodExpression: the writes were faulted in writable just before; reading them again finds them mapped
  const reads = wanted.filter((p) => !writes.has(p));
  // Stryker disable next-line ConditionalExpression: the test as true; nothing is protected while the rule is not in force
  if (rule.active) for (const p of rule.protectedPages) keep.add(p);
  m.metrics.prefetchedPages += wanted.length - faulted.length;
  const opts: FaultCtx = { ...ctx, keep, progress: isFault };
  try {
    // Stryker disable next-line MethodExpression,ArrowFunction,ArithmeticOperator: writes is built from the ascending keys, in their order
    faultInPages(
      m,
      dev,
      space,
      [...writes].sort((a, b) => a - b),
      true,
      opts,
    );
    faultInPages(m, dev, space, reads, false, opts);
  } catch (e) {
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the address tests (here and below) as true; faultInPages' EFAULT and EPERM always carry the address
    if (e instanceof HmmError && e.code === 'EFAULT' && e.address !== undefined)
      throw new HmmError('ESEGV', `kernel '${ev.kernel}' touched unmapped address ${hex(e.address)}`, e.address);
    if (e instanceof HmmError && e.code === 'EPERM' && e.address !== undefined)
      throw new HmmError('EPERM', `kernel '${ev.kernel}' wrote read-only address ${hex(e.address)}`, e.address);
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
  const capacity = trace.devices[ev.device]!.faultBufferPages ?? FAULT_QUEUE_CAP;
  const rule = new ProgressRule(invocationsOf(ev));
  const table = dev.table(space.id);
  let cursor = 0;
  let stalled = 0;
  // Stryker disable next-line StringLiteral: any start that no round's keys spell does
  let lastKeys = '';
  for (let round = 1; round <= ev.maxRounds; round++) {
    table.flush();
    dev.launches++;
    m.metrics.launches++;
    let missed: number[];
    let windowDone = false;
    for (;;) {
      const script = ev.rounds[cursor]!;
      // (the recorded clock: this round's service follows the recorded launch's return)
      m.now = Math.max(m.now, script.t);
      missed = touch(dev, space, script);
      if (missed.length > 0) break;
      if (cursor === last) {
        rule.launched(0, 0);
        return;
      }
      cursor++;
      // The recorded launch ended clean too, and the dispatch launched again: the progress rule
      // moved its window on. Here too, when the rule's window says so (or, with the invocation
      // count not in the trace, as recorded); else the kernel goes on within this launch.
      if (script.misses === 0 && (rule.launched(0, 0) === 'window-done' || ev.invocations === undefined)) {
        windowDone = true;
        break;
      }
    }
    if (windowDone) continue;
    const script = ev.rounds[cursor]!;
    rule.launched(missed.length, faultedInvocations(script, missed.length));
    const queue = faultQueue(script.faults, missed, capacity);
    const keys = [...new Set(queue)].sort((a, b) => a - b);
    m.metrics.faultRounds++;
    const sig = keys.join(',');
    stalled = sig === lastKeys ? stalled + 1 : 0;
    lastKeys = sig;
    if (stalled >= STALLED_ROUNDS || round === ev.maxRounds) {
      const pages = keys
        .slice(0, 8)
        .map((k) => hex((k >>> 1) * PAGE_SIZE))
        .join(', ');
      throw new HmmError(
        'EBUSY',
        `dispatch '${ev.kernel}': still faulting after ${round} rounds on ${keys.length} pages (${pages}${keys.length > 8 ? ', ...' : ''})`,
        (keys[0]! >>> 1) * PAGE_SIZE,
      );
    }
    m.metrics.faultedPages += keys.length;
    rule.faults(keys);
    if (cursor < last) cursor++;
    try {
      serviceFaults(m, dev, space, ev, round, keys, policies, rule);
    } catch (e) {
      // no room even with the rule in force: fewer invocations at a time (dispatch.ts)
      if (!(e instanceof HmmError && e.code === 'ENOMEM' && rule.active)) throw e;
      const first = rule.window[0];
      const alone = rule.protectedPages.size;
      if (!rule.shrink())
        throw new HmmError(
          'ENOMEM',
          `dispatch '${ev.kernel}': invocation ${first} alone does not fit ${dev.name}: it faulted on ${alone + keys.length} pages it needs at once (${alone} resident and kept) without finishing, and the device has ${dev.frameCount} frames (${e.message})`,
          e.address,
        );
      continue;
    }
    // what the service mapped: a fault on it again before any invocation finishes is a refault
    rule.servicedKeys(
      keys.filter((k) => {
        const e = table.lookup(k >>> 1);
        return e !== undefined && (e.write || !(k & 1));
      }),
    );
  }
  throw new HmmError('EBUSY', `dispatch '${ev.kernel}': no rounds allowed`);
}
