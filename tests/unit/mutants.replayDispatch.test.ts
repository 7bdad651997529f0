// The replay simulator's dispatches and whole traces (src/replay/sim/dispatch.ts,
// src/replay/simulate.ts) on hand-made traces, no GPU: the batch within half the device
// whatever a batching policy asks, a prefetch policy's company within it, the fault buffer's
// order, validated dispatches, pages munmap'ed between dispatches, the device clock between
// recorded dispatches, and each way a dispatch fails (ESEGV, EPERM, EBUSY) with the words a
// user reads in the replay's report.
import { describe, expect, it } from 'vitest';
import type { PolicySet } from '../../src/policy/types.ts';
import { builtinPolicies } from '../../src/replay/builtins.ts';
import { zeroMetrics, type DispatchEvent, type FaultTrace, type TraceVma } from '../../src/replay/format.ts';
import { toRuns } from '../../src/replay/pageRuns.ts';
import { faultQueue, replayDispatch } from '../../src/replay/sim/dispatch.ts';
import { Machine } from '../../src/replay/sim/machine.ts';
import { replayTrace } from '../../src/replay/simulate.ts';
import { held, mapped, priv } from './replayMachine.ts';
import { NO_PREFETCH, TraceBuilder, range } from './replayTraces.ts';

const vma = (start: number, end: number, over: Partial<TraceVma> = {}): TraceVma => ({ start, end, prot: 'rw', shared: false, huge: false, ...over });

/** Replay the trace's dispatches one by one on one machine under the built-ins; the machine after. */
function replayAll(trace: FaultTrace, set?: PolicySet): Machine {
  const m = new Machine(trace);
  for (const ev of trace.events) {
    if (ev.kind !== 'dispatch') continue;
    const base = builtinPolicies(ev.policies, trace.devices[0], new Set());
    replayDispatch(m, trace, ev, { ...base, ...(set?.prefetch ? { prefetch: set.prefetch } : {}), ...(set?.batching ? { batching: set.batching } : {}) });
  }
  return m;
}

/** A prefetch policy that records the faults of each round and answers `more`. */
function prefetchSpy(more: number[] = []) {
  const rounds: number[][] = [];
  const set: PolicySet = {
    name: 'spy',
    prefetch: {
      name: 'spy',
      select(faults) {
        rounds.push([...faults]);
        return more;
      },
    },
  };
  return { set, rounds };
}

describe('the fault buffer', () => {
  it('keeps the recorded order when the recorded faults are what faulted, cut to the buffer', () => {
    expect(faultQueue([6, 2, 4], [2, 4, 6], 10)).toEqual([6, 2, 4]);
    expect(faultQueue([6, 2, 4], [2, 4, 6], 2)).toEqual([6, 2]);
  });

  it('otherwise the recorded faults that missed first, then the other misses in page order, each once', () => {
    expect(faultQueue([6], [2, 4, 6], 10)).toEqual([6, 2, 4]);
    expect(faultQueue([9, 4], [2, 4, 6], 10)).toEqual([4, 2, 6]);
    expect(faultQueue([], [2, 4, 6], 2)).toEqual([2, 4]);
  });

  it('a launch that misses more than the buffer holds delivers the lowest keys first, reads and writes together', () => {
    const b = new TraceBuilder({ frames: 16 }).dispatch('k', [{ read: [105, 106], write: [101] }]);
    b.trace.devices[0]!.faultBufferPages = 2;
    const spy = prefetchSpy();
    replayAll(b.trace, spy.set);
    expect(spy.rounds).toEqual([[101, 105], [106]]);
  });

  it('serves the faults of a round in page order, whatever order the GPU queued them in', () => {
    const b = new TraceBuilder({ frames: 16 }).dispatch('k', [{ read: [105], write: [101] }]);
    (b.trace.events[0] as DispatchEvent).rounds[0]!.faults = [210, 203];
    const spy = prefetchSpy();
    replayAll(b.trace, spy.set);
    expect(spy.rounds).toEqual([[101, 105]]);
  });
});

describe('the fault service', () => {
  it('takes at most half the device a round, whatever the batching policy asks', () => {
    const greedy: PolicySet = { name: 'greedy', batching: { name: 'greedy', plan: () => ({ take: 100, napMs: 0 }) } };
    for (const touch of [{ read: range(100, 6) }, { write: range(100, 6) }]) {
      const b = new TraceBuilder({ frames: 8 }).dispatch('k', [touch]);
      const spy = prefetchSpy();
      replayAll(b.trace, { ...greedy, prefetch: spy.set.prefetch });
      expect(spy.rounds).toEqual([range(100, 4), [104, 105]]);
      const r = replayTrace(b.trace, greedy);
      expect(r.dispatches[0]!.metrics).toMatchObject({ faultRounds: 2, faultedPages: 8, pagesToDevice: 6, launches: 3 });
    }
  });

  it('takes what the batching policy asks when it is less', () => {
    const one: PolicySet = { name: 'one', batching: { name: 'one', plan: () => ({ take: 1, napMs: 0 }) } };
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: range(100, 3) }]);
    expect(replayTrace(b.trace, one).dispatches[0]!.metrics).toMatchObject({ faultRounds: 3, faultedPages: 6, pagesToDevice: 3 });
  });

  it("a prefetch policy's company fills the batch up to half the device: the faults first, then its lowest pages", () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: [110] }]);
    const m = replayAll(b.trace, prefetchSpy(range(100, 10)).set);
    expect(priv(m.space(1))).toEqual([
      [100, 0, 0],
      [101, 0, 1],
      [102, 0, 2],
      [110, 0, 3],
    ]);
    const r = replayTrace(b.trace, prefetchSpy(range(100, 10)).set);
    expect(r.dispatches[0]!.metrics.prefetchedPages).toBe(3);
  });

  it("a prefetch policy's company never repeats a fault: the batch is the faults and the lowest other pages", () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: [101] }]);
    const m = replayAll(b.trace, prefetchSpy(range(100, 10)).set);
    expect(priv(m.space(1)).map((e) => e[0])).toEqual([100, 101, 102, 103]);
  });

  it('asks the placement policy about prefetch candidates as reads, and says they are prefetch candidates', () => {
    const asked: [number, boolean, boolean][] = [];
    const watch: PolicySet = {
      name: 'watch',
      prefetch: { name: 'one more', select: (faults) => faults.map((p) => p + 1) },
      placement: {
        name: 'watch',
        decide(c) {
          asked.push([c.page, c.write, c.prefetch]);
          return c.advice.readMostly && !c.write ? 'copy' : 'migrate';
        },
      },
    };
    const b = new TraceBuilder({ frames: 8, vmas: [vma(100, 104, { readMostly: true })] }).dispatch('k', [{ write: [100] }]);
    const r = replayTrace(b.trace, watch);
    expect(asked).toContainEqual([101, false, true]);
    expect(asked).toContainEqual([100, true, false]);
    // a read-mostly page is copied on a read: no company for a write
    expect(r.dispatches[0]!.metrics).toMatchObject({ pagesToDevice: 1, prefetchedPages: 0 });
  });

  it('tells the batching policy no page is thrashing: a replay never naps', () => {
    const seen: boolean[] = [];
    const watch: PolicySet = {
      name: 'watch',
      batching: {
        name: 'watch',
        plan(ctx) {
          seen.push(ctx.thrashing);
          return { take: ctx.thrashing ? 1 : 100, napMs: 0 };
        },
      },
    };
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: range(100, 3) }]);
    expect(replayTrace(b.trace, watch).dispatches[0]!.metrics.faultRounds).toBe(1);
    expect(seen).toEqual([false]);
  });

  it('a write the batch leaves out is not served this round', () => {
    const b = new TraceBuilder({ frames: 4 }).dispatch('k', [{ write: [100, 101, 102] }]);
    const spy = prefetchSpy();
    const m = replayAll(b.trace, spy.set);
    expect(spy.rounds).toEqual([[100, 101], [102]]);
    expect(mapped(m.devices[0]!).map(([p, , w]) => [p, w])).toEqual([
      [100, true],
      [101, true],
      [102, true],
    ]);
  });

  it('reads hit read-only mappings and writes hit writable ones: each dispatch settles in one fault round', () => {
    const b = new TraceBuilder({ frames: 8, vmas: [vma(100, 104), vma(104, 108, { prot: 'r' })] })
      .dispatch('read', [{ read: [104, 105] }])
      .dispatch('write', [{ write: [100, 101] }]);
    const r = replayTrace(b.trace);
    expect(r.dispatches.map((d) => [d.error, d.metrics.faultRounds, d.metrics.launches])).toEqual([
      [undefined, 1, 2],
      [undefined, 1, 2],
    ]);
  });

  it('a clean recorded launch before the last is a launch of its own when the trace has no invocation count', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('warm', [{ read: [100] }]).dispatch('k', [{ read: [100] }, { read: [101] }]);
    expect(replayTrace(b.trace).dispatches[1]!.metrics).toMatchObject({ launches: 3, faultRounds: 1 });
    // recorded with misses, the kernel went on within the launch
    (b.trace.events[1] as DispatchEvent).rounds[0]!.misses = 1;
    expect(replayTrace(b.trace).dispatches[1]!.metrics).toMatchObject({ launches: 2, faultRounds: 1 });
  });
});

describe('the progress rule in a replay', () => {
  // 8 frames, and a launch script touching 12 pages at once that two invocations fault on
  const twelve = { read: range(100, 12), misses: 12, faultedInvocations: 1 };

  it("narrows the window over the trace's invocation count, not the most any launch reported faulted", () => {
    const counted = replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', [twelve], { invocations: 2 }).trace).dispatches[0]!;
    const guessed = replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', [twelve]).trace).dispatches[0]!;
    // with two invocations the window narrows to one before that one is found not to fit
    expect(counted.metrics).toMatchObject({ launches: 7, faultRounds: 7, pagesToDevice: 20 });
    expect(guessed.metrics).toMatchObject({ launches: 4, faultRounds: 4, pagesToDevice: 12 });
    for (const d of [counted, guessed]) expect(d.error).toMatch(/^ENOMEM: dispatch 'k': invocation 0 alone does not fit gpu0/);
  });
});

describe('the progress rule, driven with what each simulated launch reports', () => {
  // Working sets larger than the device, one launch script repeated: the rule comes into force
  // on a refault, narrows the window, and one invocation that does not fit is ENOMEM. Where the
  // trace has no count of faulted invocations the faults stand in; where a launch faulted on
  // fewer pages than recorded, the recorded count is scaled by its share of them.
  const cases: [string, number, object, object, object][] = [
    ['no counts in the trace', 2, { read: [100, 101, 102] }, {}, { launches: 6, faultRounds: 6, faultedPages: 9, pagesToDevice: 5, evictions: 3 }],
    [
      'counts as recorded',
      4,
      { read: range(100, 6), misses: 6, faultedInvocations: 2 },
      { invocations: 2 },
      { launches: 8, faultRounds: 8, faultedPages: 22, pagesToDevice: 12, evictions: 8 },
    ],
    [
      'counts scaled by the faults',
      4,
      { read: range(100, 6), misses: 3, faultedInvocations: 4 },
      { invocations: 4 },
      { launches: 12, faultRounds: 12, faultedPages: 30, pagesToDevice: 18, evictions: 14 },
    ],
    [
      'a queue twice the faults',
      8,
      { read: range(100, 12), misses: 24, faultedInvocations: 2 },
      { invocations: 2 },
      { launches: 7, faultRounds: 7, faultedPages: 40, pagesToDevice: 20, evictions: 12 },
    ],
  ];
  it.each(cases)('%s', (_what, frames, launch, over, want) => {
    const d = replayTrace(new TraceBuilder({ frames }).dispatch('k', [launch], over).trace).dispatches[0]!;
    expect(d.metrics).toMatchObject(want);
    expect(d.error).toMatch(/^ENOMEM: dispatch 'k': invocation 0 alone does not fit gpu0/);
  });
});

describe('how a dispatch fails', () => {
  it('a kernel touching an unmapped address is ESEGV, one writing a read-only address EPERM, each naming it', () => {
    const b = new TraceBuilder({ frames: 8, vmas: [vma(100, 104), vma(104, 108, { prot: 'r' })] })
      .dispatch('stray', [{ read: [100, 120] }])
      .dispatch('scribble', [{ write: [105] }])
      .dispatch('fine', [{ read: [101] }]);
    const r = replayTrace(b.trace);
    expect(r.dispatches.map((d) => d.error)).toEqual([
      "ESEGV: kernel 'stray' touched unmapped address 0x00078000",
      "EPERM: kernel 'scribble' wrote read-only address 0x00069000",
      undefined,
    ]);
  });

  it('EBUSY at maxRounds, naming at most eight of the pages it still faults on', () => {
    const b = new TraceBuilder({ frames: 64 })
      .dispatch('wide', [{ read: range(100, 10) }], { maxRounds: 1 })
      .dispatch('narrow', [{ read: [120, 121] }], { maxRounds: 1 })
      .dispatch('enough', [{ read: [130] }], { maxRounds: 2 })
      .dispatch('none', [{ read: [140] }], { maxRounds: 0 })
      .dispatch('eight', [{ read: range(150, 8) }], { maxRounds: 1 });
    const r = replayTrace(b.trace);
    const pages = range(100, 8)
      .map((p) => `0x${(p * 4096).toString(16).padStart(8, '0')}`)
      .join(', ');
    expect(r.dispatches.map((d) => d.error)).toEqual([
      `EBUSY: dispatch 'wide': still faulting after 1 rounds on 10 pages (${pages}, ...)`,
      "EBUSY: dispatch 'narrow': still faulting after 1 rounds on 2 pages (0x00078000, 0x00079000)",
      undefined,
      "EBUSY: dispatch 'none': no rounds allowed",
      `EBUSY: dispatch 'eight': still faulting after 1 rounds on 8 pages (${range(150, 8)
        .map((p) => `0x${(p * 4096).toString(16).padStart(8, '0')}`)
        .join(', ')})`,
    ]);
    // the error's address is the first page's
    const m = new Machine(b.trace);
    let err: unknown;
    try {
      replayDispatch(m, b.trace, b.trace.events[1] as DispatchEvent, builtinPolicies(NO_PREFETCH, b.trace.devices[0], new Set()));
    } catch (e) {
      err = e;
    }
    expect((err as { address?: number }).address).toBe(120 * 4096);
  });

  it('a dispatch that failed before its first launch replays as nothing, and its recorded error is reported beside', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('early', [], { error: 'ENOMEM: recorded' });
    const r = replayTrace(b.trace);
    expect(r.dispatches[0]).toMatchObject({ kernel: 'early', realError: 'ENOMEM: recorded', metrics: zeroMetrics() });
    expect(r.dispatches[0]!.error).toBeUndefined();
    const ok = replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: [100] }]).trace);
    expect('realError' in ok.dispatches[0]!).toBe(false);
  });
});

describe('around the dispatches', () => {
  it('a validated dispatch faults its declared ranges in and launches once', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('v', [], {
      mode: 'validated',
      ranges: [
        { start: 100, end: 102, write: true },
        { start: 104, end: 105, write: false },
      ],
    });
    const m = new Machine(b.trace);
    const ev = b.trace.events[0] as DispatchEvent;
    replayDispatch(m, b.trace, ev, builtinPolicies(NO_PREFETCH, b.trace.devices[0], new Set()));
    expect(priv(m.space(1)).map((e) => e[0])).toEqual([100, 101, 104]);
    expect(m.devices[0]!.launches).toBe(1);
    const t = m.devices[0]!.table(1);
    expect([t.bitsOf(100), t.bitsOf(101), t.bitsOf(104)]).toEqual([3, 3, 1]);
    expect(m.metrics).toMatchObject({ pagesToDevice: 3, launches: 0, faultRounds: 0 });
  });

  it("a policy that fails while a dispatch's declared ranges are faulted in is named with the dispatch", () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('v', [], { mode: 'validated', ranges: [{ start: 100, end: 101, write: false }] });
    const broken: PolicySet = {
      name: 'broken',
      placement: {
        name: 'broken',
        decide: () => {
          throw new Error('no');
        },
      },
    };
    expect(() => replayTrace(b.trace, broken)).toThrow(/dispatch 'v'/);
  });

  it('a replayable dispatch with declared ranges faults them in before its first launch', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('r', [{ read: [100] }], { ranges: [{ start: 100, end: 103, write: false }] });
    expect(replayTrace(b.trace).dispatches[0]!.metrics).toMatchObject({ pagesToDevice: 3, faultRounds: 0, launches: 1 });
  });

  it("moves the device's clock by the launches made between recorded dispatches, and the replay's clock never back", () => {
    const b = new TraceBuilder({ frames: 8 })
      .dispatch('a', [{ read: [100] }], { launchesBefore: 0, launchesAfter: 4, t: 30 })
      .dispatch('b', [{ read: [101] }], { launchesBefore: 10, launchesAfter: 12, t: 20 });
    const m = new Machine(b.trace);
    const pol = builtinPolicies(NO_PREFETCH, b.trace.devices[0], new Set());
    replayDispatch(m, b.trace, b.trace.events[0] as DispatchEvent, pol);
    expect([m.devices[0]!.launches, m.devices[0]!.recordedLaunches, m.now]).toEqual([2, 4, 30]);
    replayDispatch(m, b.trace, b.trace.events[1] as DispatchEvent, pol);
    expect([m.devices[0]!.launches, m.devices[0]!.recordedLaunches, m.now]).toEqual([2 + 6 + 2, 12, 30]);
    expect(m.devices[0]!.arrivedAt[1]).toBe(9); // 101 arrived after the first launch of the second dispatch
  });

  it("pages munmap'ed since the last dispatch leave every device, their frames free again", () => {
    const b = new TraceBuilder({ frames: 8, vmas: [vma(100, 104), vma(104, 108, { preferred: 'system' })] });
    b.trace.mappings.push([vma(100, 101)]);
    b.dispatch('a', [{ read: [100, 101, 105], write: [106] }]).dispatch('b', [{ read: [100] }], { mappings: 1 });
    const m = replayAll(b.trace);
    const s = m.space(1);
    expect(priv(s).map((e) => e[0])).toEqual([100]);
    expect(held(s)).toEqual([]);
    expect(mapped(m.devices[0]!).map((e) => e[0])).toEqual([100]);
    expect(m.devices[0]!.freeFrames).toBe(7);
    expect(m.devices[0]!.take(7)).toEqual([0, 2, 3, 4, 5, 6, 7]); // every frame but 100's
  });

  it('a device page unmapped on the device but still mapped in the address space stays where it is', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('a', [{ read: [100, 101] }]).dispatch('b', [{ read: [101] }]);
    const m = new Machine(b.trace);
    const pol = builtinPolicies(NO_PREFETCH, b.trace.devices[0], new Set());
    replayDispatch(m, b.trace, b.trace.events[0] as DispatchEvent, pol);
    m.devices[0]!.table(1).unmap(100);
    replayDispatch(m, b.trace, b.trace.events[1] as DispatchEvent, pol);
    expect(priv(m.space(1))).toEqual([
      [100, 0, 0],
      [101, 0, 1],
    ]);
  });

  it('a device page left unmapped on the device whose mapping is gone goes too', () => {
    const b = new TraceBuilder({ frames: 8 });
    b.trace.mappings.push([vma(100, 101)]);
    b.dispatch('a', [{ read: [100, 101] }]).dispatch('b', [{ read: [100] }], { mappings: 1 });
    const m = new Machine(b.trace);
    const pol = builtinPolicies(NO_PREFETCH, b.trace.devices[0], new Set());
    replayDispatch(m, b.trace, b.trace.events[0] as DispatchEvent, pol);
    m.devices[0]!.table(1).unmap(101);
    replayDispatch(m, b.trace, b.trace.events[1] as DispatchEvent, pol);
    expect(priv(m.space(1)).map((e) => e[0])).toEqual([100]);
    expect(m.devices[0]!.freeFrames).toBe(7);
  });

  it('events between dispatches count in `between`, with the mappings a move names', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [{ read: [100] }]).cpu([100], false);
    b.trace.mappings.push([vma(100, 2000)]);
    // mapped since the dispatch (the move names the mappings it saw), then a move under those same mappings
    b.trace.events.push({ kind: 'move', t: 50, space: 1, device: 0, move: 'to-device', pages: toRuns([1500, 1501]), cause: 'm.migrate', mappings: 1 });
    b.trace.events.push({ kind: 'move', t: 51, space: 1, device: 0, move: 'to-device', pages: toRuns([1502]), cause: 'm.migrate' });
    const r = replayTrace(b.trace);
    expect(r.between).toMatchObject({ pagesToSystem: 1, pagesToDevice: 3 });
    expect(r.total).toMatchObject({ pagesToSystem: 1, pagesToDevice: 4 });
  });

  it('notes the recorded policies it could not rebuild', () => {
    const b = new TraceBuilder({ frames: 8, policies: { ...NO_PREFETCH, eviction: 'lru' } }).dispatch('k', [{ read: [100] }]);
    expect(replayTrace(b.trace).notes).toEqual(["eviction policy 'lru' ran, which is not a built-in: the built-in 'clock' stands in for it"]);
  });
});
