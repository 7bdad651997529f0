// The replay simulator's model of issue 15's mechanism, no GPU: the page table's accessed and
// dirty words (an upload clears only what the host zeroes), read-only copies made writable in
// place, the fault buffer (at most faultBufferPages faults a launch, the rest next round; the
// recorded queue kept when it is what faulted), and the progress rule driven with what the simulated launches report (refaults keep
// pages, no room narrows the window, one invocation that does not fit is ENOMEM).
import { describe, expect, it } from 'vitest';
import { parseFaultTrace, type FaultTrace } from '../../src/replay/format.ts';
import { replayTrace } from '../../src/replay/simulate.ts';
import { faultQueue } from '../../src/replay/sim/dispatch.ts';
import { ACCESSED, DIRTY, SimTable } from '../../src/replay/sim/table.ts';
import type { PolicySet } from '../../src/policy/types.ts';
import { TraceBuilder, range } from './replayTraces.ts';

const clone = (t: FaultTrace): FaultTrace => JSON.parse(JSON.stringify(t)) as FaultTrace;

describe('simulated page table', () => {
  it('keeps the bits kernels set through uploads of other entries; a new mapping starts clean, a second chance loses only accessed', () => {
    const t = new SimTable();
    t.map(100, 0, true);
    t.map(101, 1, true);
    t.flush();
    expect(t.touch(100, true)).toBe(true);
    expect(t.touch(101, false)).toBe(true);
    expect(t.touch(102, false)).toBe(false); // a miss sets nothing
    expect(t.bitsOf(100)).toBe(ACCESSED | DIRTY);
    // a neighbour in the same leaf is mapped and uploaded: 100 and 101 keep their bits
    t.map(102, 2, false);
    t.flush();
    expect([t.bitsOf(100), t.bitsOf(101), t.bitsOf(102)]).toEqual([ACCESSED | DIRTY, ACCESSED, 0]);
    // second chance: accessed goes at the upload, not before; dirty stays for the write-back
    t.clearAccessed([100, 101]);
    expect(t.bitsOf(100)).toBe(ACCESSED | DIRTY);
    t.flush();
    expect([t.bitsOf(100), t.bitsOf(101)]).toEqual([DIRTY, 0]);
    // the same frame mapped again (a copy made writable) keeps them; another frame starts clean from the upload on
    t.touch(100, true);
    t.map(100, 0, true);
    t.flush();
    expect(t.bitsOf(100)).toBe(ACCESSED | DIRTY);
    t.map(100, 5, true);
    expect(t.bitsOf(100)).toBe(ACCESSED | DIRTY);
    t.flush();
    expect(t.bitsOf(100)).toBe(0);
    // unmapped and uploaded: nothing to read, and mapped again it starts clean
    t.touch(101, false);
    t.unmap(101);
    t.flush();
    expect(t.bitsOf(101)).toBe(0);
  });
});

describe('simulated copies', () => {
  it('makes a read-only copy writable in place for a write: no new frame, no upload, not another copy', () => {
    const copy: PolicySet = { name: 'copy', placement: { name: 'copy', decide: () => 'copy' } };
    // 100 read (a read-only copy), then written (the same frame, held now), then the CPU reads it (written back)
    const b = new TraceBuilder({ frames: 4 })
      .dispatch('r', [{ read: [100, 101, 102, 103] }])
      .dispatch('w', [{ write: [100] }])
      .cpu([100], false);
    const r = replayTrace(b.trace, copy);
    expect(r.dispatches.map((d) => d.metrics.deviceCopies)).toEqual([4, 0]);
    // the device is full of the four copies: a new copy for the write would have evicted one
    expect(r.dispatches[1]!.metrics).toMatchObject({ faultRounds: 1, evictions: 0 });
    expect(r.between.writeBacks).toBe(1);
  });
  it('serves a read of a thrashing page with a held copy: the store that follows needs no second round', () => {
    const b = new TraceBuilder({ frames: 8 });
    b.trace.spaces[0]!.thrashing = true;
    // the page bounces between the device and CPU writes until the detector keeps it in RAM
    for (let i = 0; i < 4; i++) b.dispatch(`bounce ${i}`, [{ read: [100] }]).cpu([100], true);
    b.dispatch('load then store', [{ read: [100] }, { read: [100], write: [100] }]).cpu([100], false);
    const r = replayTrace(b.trace);
    expect(r.dispatches.map((d) => [d.metrics.pagesToDevice, d.metrics.deviceCopies])).toEqual([
      [1, 0],
      [1, 0],
      [0, 1],
      [0, 1],
      [0, 1],
    ]);
    expect(r.dispatches[4]!.metrics.faultRounds).toBe(1);
    // every copy was held: each CPU touch after it wrote it back
    expect(r.between.writeBacks).toBe(3);
  });
});

describe('simulated fault buffer', () => {
  it('keeps the recorded queue when it is what faulted or a full buffer of it; otherwise recorded faults first, then page order', () => {
    expect(faultQueue([9, 4, 7], [4, 7, 9], 256)).toEqual([9, 4, 7]);
    // a full buffer: the GPU's choice among more misses stands
    expect(faultQueue([9, 4], [2, 4, 7, 9], 2)).toEqual([9, 4]);
    // the replay missed otherwise: what the GPU delivered that still missed, then the rest ascending
    expect(faultQueue([9, 4, 8], [2, 4, 7, 9], 3)).toEqual([9, 4, 2]);
    expect(faultQueue([], [5, 3, 1].sort(), 2)).toEqual([1, 3]);
  });

  it('delivers at most faultBufferPages faults a launch: the rest overflow and fault again next round', () => {
    const launch = [{ read: range(100, 10) }];
    // 32 frames: a batch may take 16 pages, the buffer is the limit
    const small = replayTrace(new TraceBuilder({ frames: 32, faultBufferPages: 4 }).dispatch('k', launch).trace);
    expect(small.total).toMatchObject({ launches: 4, faultRounds: 3, faultedPages: 10, pagesToDevice: 10 });
    // a trace from before the fault buffer: the whole queue (4096) in one round
    const whole = replayTrace(new TraceBuilder({ frames: 32 }).dispatch('k', launch).trace);
    expect(whole.total).toMatchObject({ launches: 2, faultRounds: 1, faultedPages: 10, pagesToDevice: 10 });
    const bad = clone(new TraceBuilder({ frames: 16, faultBufferPages: 4 }).trace) as unknown as { devices: { faultBufferPages: number }[] };
    bad.devices[0]!.faultBufferPages = 5000;
    expect(() => parseFaultTrace(bad, 't.json')).toThrow(/t\.json: devices\[0\]\.faultBufferPages is 5000, not an integer in \[1, 4096\]/);
  });
});

describe('simulated progress rule', () => {
  // 8 frames, 4 KiB units: a batch takes at most 4 pages. Two invocations that both fault need
  // pages 100..111 at once (12 > 8), and in this script every launch of theirs touches all 12.
  // Round 3 evicts what round 1 brought, round 5 refaults on what round 4 evicted: the rule is
  // in force, everything serviced is kept, nothing may go, and the window narrows to
  // invocation 0; rounds 6 and 7 bring 4 pages each, sparing the kept ones; in round 8 the kept
  // pages fill the device and one invocation that does not fit is ENOMEM.
  const twelve = { read: range(100, 12), misses: 12, faultedInvocations: 2 };

  it('keeps what the dispatch faulted in after a refault, narrows the window when nothing may go, and fails one invocation that does not fit', () => {
    const b = new TraceBuilder({ frames: 8 }).dispatch('k', [twelve], { invocations: 2 }).dispatch('after', [{ read: [200] }]);
    const r = replayTrace(parseFaultTrace(clone(b.trace)));
    expect(r.dispatches[0]!.error).toMatch(
      /^ENOMEM: dispatch 'k': invocation 0 alone does not fit gpu0: it faulted on 12 pages it needs at once \(8 resident and kept\) without finishing, and the device has 8 frames/,
    );
    expect(r.dispatches[0]!.metrics).toMatchObject({ launches: 8, faultRounds: 8, pagesToDevice: 24, evictions: 16 });
    expect(r.dispatches[1]!.error).toBeUndefined();
    // a trace without the dispatch's invocation count: the most any launch reported faulted stands in
    expect(replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', [twelve]).trace).dispatches[0]).toEqual(r.dispatches[0]);
  });

  it('asks the prefetch policy for no company while the rule is in force', () => {
    const asked: number[] = [];
    const spy: PolicySet = {
      name: 'spy',
      prefetch: {
        name: 'spy',
        select: (faults, view) => {
          asked.push(view.round);
          return [...faults];
        },
      },
    };
    const r = replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', [twelve], { invocations: 2 }).trace, spy);
    expect(r.dispatches[0]!.metrics.faultRounds).toBe(8);
    expect(asked).toEqual([1, 2, 3, 4]);
  });

  it('runs a clean recorded launch before the last as a new launch only when the window moved on', () => {
    // a fault on 100, a clean launch (100 hits), a fault on 101, the last launch clean
    const launches = [{ read: [100], misses: 1, faultedInvocations: 1 }, { read: [100] }, { read: [101], misses: 1, faultedInvocations: 1 }, { read: [101] }];
    // whole window (the rule never narrowed it): the kernel goes on within the launch
    const whole = replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', launches, { invocations: 4 }).trace);
    expect(whole.total).toMatchObject({ launches: 3, faultRounds: 2 });
    // no invocation count in the trace: as recorded, a clean launch that was not the last was followed by another
    const asRecorded = replayTrace(new TraceBuilder({ frames: 8 }).dispatch('k', launches).trace);
    expect(asRecorded.total).toMatchObject({ launches: 4, faultRounds: 2 });
  });
});
