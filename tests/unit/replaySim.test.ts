// The replay simulator (src/replay/) on hand-made fault traces, no GPU: eviction decided as the
// built-in clock decides it on the device, the prefetch view, placement (migrate vs copy, and
// the CPU bringing pages back), determinism, a malformed trace, and a policy that throws.
import { describe, expect, it } from 'vitest';
import lru from '../../examples/policies/lru.ts';
import stride from '../../examples/policies/stride.ts';
import { HmmError } from '../../src/errors.ts';
import type { PolicySet, PrefetchView } from '../../src/policy/types.ts';
import { parseFaultTrace, type FaultTrace } from '../../src/replay/format.ts';
import { bitmapToRuns, fromRuns, toRuns } from '../../src/replay/pageRuns.ts';
import { builtinPolicies } from '../../src/replay/builtins.ts';
import { replayTrace } from '../../src/replay/simulate.ts';
import { replayDispatch } from '../../src/replay/sim/dispatch.ts';
import { Machine } from '../../src/replay/sim/machine.ts';
import { DENSITY, TraceBuilder, range } from './replayTraces.ts';

/** Replay a trace event by event under the built-ins; after each dispatch, the pages resident on the device. */
function residentAfterEach(trace: FaultTrace): number[][] {
  const m = new Machine(trace);
  const out: number[][] = [];
  for (const ev of trace.events) {
    if (ev.kind !== 'dispatch') continue;
    replayDispatch(m, trace, ev, builtinPolicies(ev.policies, trace.devices[0], new Set()));
    out.push([...m.space(1).priv.keys()].sort((a, b) => a - b));
  }
  return out;
}

const clone = (t: FaultTrace): FaultTrace => JSON.parse(JSON.stringify(t)) as FaultTrace;

describe('page runs', () => {
  it('encode page lists in order and touched bitmaps as read and write runs', () => {
    expect(toRuns([5, 6, 7, 9, 3, 4])).toEqual([5, 3, 9, 1, 3, 2]);
    expect(fromRuns([5, 3, 9, 1, 3, 2])).toEqual([5, 6, 7, 9, 3, 4]);
    const words = new Uint32Array(4);
    for (const key of [2 * 10, 2 * 11, 2 * 12 + 1, 2 * 40, 2 * 41 + 1]) words[key >>> 5]! |= 1 << (key & 31);
    expect(bitmapToRuns(words)).toEqual({ read: [10, 2, 40, 1], write: [12, 1, 41, 1] });
  });
});

describe('replay simulator', () => {
  it('evicts as the built-in clock does on the device: second chance, the hand moving past each victim', () => {
    // 8 frames, 4 KiB units, no prefetch: a batch takes at most 4 pages (half the device)
    const b = new TraceBuilder({ frames: 8 })
      .dispatch('fill', [{ read: range(100, 8) }]) // 100..107 in frames 0..7, all then touched
      .dispatch('hot', [{ read: [101, 103] }])
      .dispatch('a', [{ read: [108] }]) // all accessed: the first from the hand (100) goes, the rest lose their bits
      .dispatch('b', [{ read: [109] }]) // hand at frame 1: 101 (bit cleared) goes
      .dispatch('c', [{ read: [102, 103] }]) // 102 and 103 touched again
      .dispatch('d', [{ read: [110] }]); // hand at frame 2: 102 and 103 get a second chance, 104 goes
    const after = residentAfterEach(b.trace);
    expect(after[0]).toEqual(range(100, 8));
    expect(after[2]).toEqual([...range(101, 7), 108]);
    expect(after[3]).toEqual([...range(102, 6), 108, 109]);
    expect(after[5]).toEqual([102, 103, 105, 106, 107, 108, 109, 110]);
    const r = replayTrace(b.trace);
    expect(r.total.evictions).toBe(3);
    expect(r.total.pagesToSystem).toBe(3);
    expect(r.dispatches.map((d) => d.metrics.faultRounds)).toEqual([2, 0, 1, 1, 0, 1]);
  });

  it('fails a launch that needs more pages at once than the device holds, as the dispatch would (ENOMEM under the progress rule)', () => {
    // one launch script touching 24 pages on 8 frames: every relaunch repeats all 24 touches, so
    // some always miss; a refault puts the progress rule in force, what it keeps fills the
    // device, and its one invocation does not fit: the replay reports the dispatch failed and
    // goes on with the next one
    const b = new TraceBuilder({ frames: 8 }).dispatch('too big', [{ read: range(100, 24) }], { maxRounds: 50 }).dispatch('after', [{ read: [200] }]);
    const r = replayTrace(b.trace);
    expect(r.dispatches[0]!.error).toMatch(/^ENOMEM: dispatch 'too big': invocation 0 alone does not fit gpu0/);
    expect(r.dispatches[1]!.error).toBeUndefined();
    expect(r.dispatches[1]!.metrics.faultRounds).toBe(1);
  });

  it('gives a prefetch policy a view of the simulated residency and the recorded mappings', () => {
    const vmas = [
      { start: 100, end: 132, prot: 'rw' as const, shared: false, huge: false },
      { start: 132, end: 140, prot: 'rw' as const, shared: true, huge: false },
      { start: 160, end: 170, prot: 'none' as const, shared: false, huge: false },
    ];
    const b = new TraceBuilder({ frames: 16, vmas }).dispatch('first', [{ read: [100] }]).dispatch('second', [{ read: [101] }]);
    const seen: { faults: number[]; view: Omit<PrefetchView, 'resident' | 'allowed'>; answers: Record<string, boolean> }[] = [];
    const spy: PolicySet = {
      name: 'spy',
      prefetch: {
        name: 'spy',
        select(faults, view) {
          const answers: Record<string, boolean> = {};
          for (const p of [100, 101, 102]) answers[`resident ${p}`] = view.resident(p);
          for (const p of [102, 133, 150, 165]) answers[`allowed ${p}`] = view.allowed(p);
          seen.push({ faults: [...faults], view: { device: view.device, space: view.space, dispatch: view.dispatch, round: view.round }, answers });
          return [102, 133, 150, 165];
        },
      },
    };
    const r = replayTrace(b.trace, spy);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toEqual({
      faults: [101],
      view: { device: 0, space: 1, dispatch: 2, round: 1 },
      answers: {
        'resident 100': true,
        'resident 101': false,
        'resident 102': true,
        'allowed 102': false,
        'allowed 133': false,
        'allowed 150': false,
        'allowed 165': false,
      },
    });
    // the first round's 102 came along (133 shared, 150 a hole, 165 prot none: the guard drops them)
    expect(seen[0]!.answers['allowed 102']).toBe(true);
    expect(r.dispatches[0]!.metrics.prefetchedPages).toBe(1);
    expect(r.total.pagesToDevice).toBe(3);
  });

  it('copies or migrates as the placement policy says, and the CPU brings back what it touches', () => {
    const b = new TraceBuilder({ frames: 16 }).dispatch('k', [{ read: [101], write: [100] }]).cpu([100, 101], false);
    const migrate = replayTrace(b.trace);
    expect(migrate.total).toMatchObject({ pagesToDevice: 2, deviceCopies: 0, pagesToSystem: 2, writeBacks: 0 });
    const copy: PolicySet = { name: 'copy', placement: { name: 'copy', decide: () => 'copy' } };
    const copied = replayTrace(b.trace, copy);
    // the write is a held copy (written back when the CPU touches it), the read a read-only one (stays)
    expect(copied.total).toMatchObject({ pagesToDevice: 0, deviceCopies: 2, pagesToSystem: 0, writeBacks: 1 });
    // advice: preferred location 'system' makes the built-in copy too
    const advised = new TraceBuilder({ frames: 16, vmas: [{ start: 100, end: 200, prot: 'rw', shared: false, huge: false, preferred: 'system' }] }).dispatch(
      'k',
      [{ read: [101] }],
    );
    expect(replayTrace(advised.trace).total).toMatchObject({ pagesToDevice: 0, deviceCopies: 1 });
  });

  it('is deterministic: the same trace and policies give the same numbers, every dispatch', () => {
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const b = new TraceBuilder({ frames: 48, unit: 16, policies: DENSITY });
    for (let d = 0; d < 6; d++) {
      const launches = Array.from({ length: 4 }, () => ({
        read: [...new Set(Array.from({ length: 6 }, () => 100 + rnd(120)))].sort((x, y) => x - y),
        write: [100 + rnd(120)],
      }));
      b.dispatch(`k${d}`, launches);
      b.cpu([100 + rnd(120), 100 + rnd(120)], d % 2 === 0);
    }
    parseFaultTrace(clone(b.trace)); // a well-formed trace
    for (const set of [undefined, lru, stride]) {
      const one = replayTrace(clone(b.trace), set);
      const two = replayTrace(clone(b.trace), set);
      expect(two).toEqual(one);
      expect(one.total.faultRounds).toBeGreaterThan(0);
    }
  });

  it('refuses a malformed trace with an HmmError naming the field', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: [100] }]);
    const bad = clone(b.trace) as unknown as { events: { rounds: { faults: number[] }[] }[] };
    bad.events[0]!.rounds[0]!.faults = [200, -3];
    expect(() => parseFaultTrace(bad, 'trace.json')).toThrow(HmmError);
    expect(() => parseFaultTrace(bad, 'trace.json')).toThrow(/trace\.json: events\[0\]\.rounds\[0\]\.faults\[1\] is -3/);
    expect(() => parseFaultTrace({ ...clone(b.trace), version: 2 })).toThrow(/version is 2, not 1/);
    expect(() => parseFaultTrace({ format: 'something else' })).toThrow(/format is 'something else'/);
    expect(() => parseFaultTrace([])).toThrow(/the trace is an array of 0, not an object/);
    const noSpace = clone(b.trace);
    noSpace.spaces = [];
    expect(() => parseFaultTrace(noSpace)).toThrow(/events\[0\]\.space is 1, not an address space listed in spaces/);
    expect(parseFaultTrace(clone(b.trace))).toEqual(b.trace);
  });

  it("stops on a policy that throws or answers nonsense, with the guard's HmmError naming it and the round", () => {
    const b = new TraceBuilder({ frames: 4 }).dispatch('fill', [{ read: range(100, 2) }, { read: range(102, 2) }]).dispatch('more', [{ read: [104] }]);
    const boom: PolicySet = {
      name: 'boom',
      eviction: {
        name: 'boom',
        victims: () => {
          throw new Error('kaput');
        },
      },
    };
    const e = (() => {
      try {
        replayTrace(b.trace, boom);
      } catch (err) {
        return err;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(HmmError);
    expect((e as HmmError).code).toBe('EINVAL');
    expect((e as HmmError).message).toMatch(/eviction policy 'boom' threw in gpu0 eviction for dispatch 'more' round 1: kaput/);
    const silly: PolicySet = { name: 'silly', prefetch: { name: 'silly', select: () => 'everything' as unknown as number[] } };
    expect(() => replayTrace(b.trace, silly)).toThrow(/prefetch policy 'silly' returned 'everything' in dispatch 'fill' round 1, not an array of pages/);
  });
});
