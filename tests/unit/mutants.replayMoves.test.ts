// The replay simulator's building blocks (src/replay/sim/) on their own, no GPU: the device's
// frames (taken sorted, the last freed first), its reverse map and table, the address space's
// mappings and fault counts, the machine built from a trace's starting state, and the page moves
// (migration both ways, write-back, dropped mappings and copies) with what each leaves behind on
// every device. The simulator's promise is to make each move as the mechanism does, down to
// the frames taken and freed, since the frames decide where a page sits on the eviction clock:
// so the frames are checked here, not only the pages.
import { describe, expect, it } from 'vitest';
import { HmmError } from '../../src/errors.ts';
import type { TraceFrame, TraceVma } from '../../src/replay/format.ts';
import { Machine } from '../../src/replay/sim/machine.ts';
import { dropCopies, dropRuns, hasCopies, migrateToDevice, migrateToSystem, pageRuns, revoke } from '../../src/replay/sim/moves.ts';
import { SimSpace } from '../../src/replay/sim/space.ts';
import { ACCESSED, DIRTY, SimTable } from '../../src/replay/sim/table.ts';
import { mapCopies } from '../../src/replay/sim/faultIn.ts';
import { held, machine, mapped, priv, rmap } from './replayMachine.ts';
import { TraceBuilder } from './replayTraces.ts';

describe('pageRuns', () => {
  it('sorts, merges neighbours and drops repeats', () => {
    expect(pageRuns([9, 5, 3, 4, 10, 9, 3])).toEqual([
      [3, 6],
      [9, 11],
    ]);
    expect(pageRuns([7])).toEqual([[7, 8]]);
    expect(pageRuns([])).toEqual([]);
    expect(pageRuns([20, 2, 11])).toEqual([
      [2, 3],
      [11, 12],
      [20, 21],
    ]);
  });
});

describe('the simulated page table', () => {
  it('a read hit adds to the bits a write set; a write to a read-only entry misses', () => {
    const t = new SimTable();
    t.map(100, 0, true);
    t.map(101, 1, false);
    t.flush();
    t.touch(100, true);
    expect(t.touch(100, false)).toBe(true);
    expect(t.bitsOf(100)).toBe(ACCESSED | DIRTY);
    expect(t.touch(101, true)).toBe(false);
    expect(t.bitsOf(101)).toBe(0);
  });

  it('a second chance given to a page remapped since the last upload still starts it clean', () => {
    const t = new SimTable();
    t.map(100, 0, true);
    t.flush();
    t.touch(100, true);
    t.map(100, 3, true); // another frame: both bits go at the upload
    t.clearAccessed([100]);
    t.flush();
    expect(t.bitsOf(100)).toBe(0);
  });

  it('unmapping a page that is not mapped is -1 and changes nothing', () => {
    const t = new SimTable();
    expect(t.unmap(100)).toBe(-1);
    t.map(101, 4, true);
    expect(t.unmap(101)).toBe(4);
    expect(t.unmap(101)).toBe(-1);
    expect([...t.pages()]).toEqual([]);
  });

  it('unmapRange tells each page it unmaps, lowest first, with its frame', () => {
    const t = new SimTable();
    for (const [p, f] of [
      [105, 2],
      [101, 7],
      [103, 1],
    ] as const)
      t.map(p, f, true);
    const seen: [number, number][] = [];
    t.unmapRange(100, 105, (p, f) => seen.push([p, f]));
    expect(seen).toEqual([
      [101, 7],
      [103, 1],
    ]);
    expect([...t.pages()]).toEqual([105]);
  });
});

describe('the simulated device', () => {
  it('hands frames out in its free order, each batch sorted, and takes back the last freed first', () => {
    const { d0 } = machine({ frames: [6] });
    expect(d0.freeFrames).toBe(6);
    expect(d0.take(2)).toEqual([0, 1]);
    d0.free([5 - 5 + 1, 0]); // 1, then 0: 0 is on top
    expect(d0.take(1)).toEqual([0]);
    d0.free([0]);
    expect(d0.take(3)).toEqual([0, 1, 2]);
    expect(d0.take(10)).toEqual([3, 4, 5]);
    expect(d0.freeFrames).toBe(0);
    expect(d0.take(1)).toEqual([]);
    d0.free([4, 1, 3]);
    expect(d0.take(3)).toEqual([1, 3, 4]); // sorted, whatever order they came back in
  });

  it('a free frame belongs to nobody in the reverse map; adopt, ownCopy and disown keep it true', () => {
    const { d0 } = machine({ frames: [4] });
    for (let f = 0; f < 4; f++) expect(rmap(d0, f)).toEqual([-1, -1, 0]);
    d0.launches = 7;
    d0.adopt(1, [105, 106], [2, 3], [true, false]);
    expect(rmap(d0, 2)).toEqual([1, 105, 0]);
    expect(rmap(d0, 3)).toEqual([1, 106, 0]);
    expect([d0.arrivedAt[2], d0.arrivedAt[3]]).toEqual([7, 7]);
    expect(mapped(d0)).toEqual([
      [105, 2, true],
      [106, 3, false],
    ]);
    d0.lastAccess[1] = 5;
    d0.ownCopy(1, 1, 110);
    expect(rmap(d0, 1)).toEqual([1, 110, 1]);
    expect([d0.arrivedAt[1], d0.lastAccess[1]]).toEqual([7, 0]);
    d0.disown([1, 2]);
    expect(rmap(d0, 1)).toEqual([-1, -1, 0]);
    expect(rmap(d0, 2)).toEqual([-1, -1, 0]);
    expect(rmap(d0, 3)).toEqual([1, 106, 0]);
    expect([...d0.spaces()]).toEqual([1]);
  });
});

describe('the machine and its address spaces, from a trace', () => {
  it("starts from the trace's resident frames: device pages, held copies and read-only copies", () => {
    const frames: TraceFrame[] = [
      { frame: 2, space: 1, page: 104, copy: false, write: true, arrived: 3, lastAccess: 4 },
      { frame: 0, space: 1, page: 105, copy: true, write: true, arrived: 1, lastAccess: 2 },
      { frame: 1, space: 1, page: 106, copy: true, write: false, arrived: 5, lastAccess: 6 },
    ];
    const { m, space, d0, trace } = machine({ frames: [4], initial: [frames] });
    expect(priv(space)).toEqual([[104, 0, 2]]);
    expect(held(space)).toEqual([[105, 0]]);
    expect(mapped(d0)).toEqual([
      [104, 2, true],
      [105, 0, true],
      [106, 1, false],
    ]);
    expect([rmap(d0, 0), rmap(d0, 1), rmap(d0, 2), rmap(d0, 3)]).toEqual([
      [1, 105, 1],
      [1, 106, 1],
      [1, 104, 0],
      [-1, -1, 0],
    ]);
    expect([...d0.arrivedAt.slice(0, 3)]).toEqual([1, 5, 3]);
    expect([...d0.lastAccess.slice(0, 3)]).toEqual([2, 6, 4]);
    expect(m.devices.map((d) => d.name)).toEqual(['gpu0']);
    expect(d0.unit).toBe(trace.devices[0]!.evictionPages);
  });

  it('a starting frame of an address space the trace does not list is refused, naming it', () => {
    const b = new TraceBuilder({ frames: 2 });
    b.trace.devices[0]!.initial.frames = [{ frame: 0, space: 7, page: 1, copy: false, write: true, arrived: 0, lastAccess: 0 }];
    expect(() => new Machine(b.trace)).toThrow(HmmError);
    try {
      new Machine(b.trace);
    } catch (e) {
      expect((e as HmmError).code).toBe('EINVAL');
      expect((e as HmmError).message).toContain("fault trace: address space 7 is not in the trace's spaces");
    }
  });

  it('an address space takes its thrashing settings from the trace', () => {
    const b = new TraceBuilder({ frames: 2 });
    b.trace.spaces[0] = { id: 1, thrashing: true, windowMs: 20, threshold: 2, pinMs: 300, thrashNapMs: 5 };
    const s = new Machine(b.trace).space(1);
    expect(s.thrash.config).toEqual({ enabled: true, windowMs: 20, threshold: 2, pinMs: 300, napMs: 5 });
    expect(s.thrashNapMs).toBe(5);
  });

  it('finds the mapping of a page by binary search: both ends of each, and the holes between', () => {
    const s = new SimSpace({ id: 1, thrashing: false, windowMs: 50, threshold: 3, pinMs: 1000, thrashNapMs: 1 });
    expect(s.find(100)).toBeUndefined(); // no mappings yet
    const a: TraceVma = { start: 100, end: 104, prot: 'rw', shared: false, huge: false };
    const b: TraceVma = { start: 104, end: 106, prot: 'r', shared: false, huge: false };
    const c: TraceVma = { start: 200, end: 201, prot: 'rw', shared: true, huge: false };
    s.setMappings([a, b, c]);
    expect([99, 100, 103, 104, 105, 106, 199, 200, 201].map((p) => s.find(p))).toEqual([undefined, a, a, b, b, undefined, undefined, c, undefined]);
  });

  it('counts the faults each device took on each page', () => {
    const s = new SimSpace({ id: 1, thrashing: false, windowMs: 50, threshold: 3, pinMs: 1000, thrashNapMs: 1 });
    expect(s.faults(0, 100)).toBe(0);
    s.countFaults(0, [100, 101]);
    s.countFaults(0, [100]);
    s.countFaults(1, [100]);
    expect([s.faults(0, 100), s.faults(0, 101), s.faults(1, 100), s.faults(1, 101), s.faults(2, 100)]).toEqual([2, 1, 1, 0, 0]);
  });
});

describe('migration to a device', () => {
  const VMAS: TraceVma[] = [
    { start: 100, end: 110, prot: 'rw', shared: false, huge: false },
    { start: 110, end: 112, prot: 'none', shared: false, huge: false },
    { start: 112, end: 114, prot: 'rw', shared: true, huge: false },
    { start: 114, end: 116, prot: 'r', shared: false, huge: false },
  ];

  it('moves only what may move (not holes, prot none, shared, already there, or held), mapped as the mapping allows', () => {
    const { m, space, d0 } = machine({ frames: [8], vmas: VMAS });
    space.held.set(101, 0);
    m.now = 12;
    const res = migrateToDevice(m, d0, space, [99, 100, 101, 110, 112, 114, 116]);
    expect(res).toEqual({ moved: 2, nomem: 0 });
    expect(priv(space)).toEqual([
      [100, 0, 0],
      [114, 0, 1],
    ]);
    expect(mapped(d0)).toEqual([
      [100, 0, true],
      [114, 1, false],
    ]);
    expect(m.metrics.pagesToDevice).toBe(2);
    expect(migrateToDevice(m, d0, space, [100, 114])).toEqual({ moved: 0, nomem: 0 });
    expect(m.metrics.pagesToDevice).toBe(2);
  });

  it('takes frames for the first pages asked, as many as there are; the rest are nomem', () => {
    const { m, space, d0 } = machine({ frames: [2] });
    expect(migrateToDevice(m, d0, space, [103, 101, 102])).toEqual({ moved: 2, nomem: 1 });
    expect(priv(space)).toEqual([
      [101, 0, 1],
      [103, 0, 0],
    ]);
    expect(d0.freeFrames).toBe(0);
  });

  it("drops every device's copies of the pages first, freeing their frames", () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4] });
    mapCopies(m, d1, space, [105], false, new Set(), ctx());
    mapCopies(m, d0, space, [106], false, new Set(), ctx());
    expect(d1.freeFrames).toBe(3);
    migrateToDevice(m, d0, space, [105, 106]);
    expect(mapped(d1)).toEqual([]);
    expect(d1.freeFrames).toBe(4);
    expect(rmap(d1, 0)).toEqual([-1, -1, 0]);
    // the copy's frame on d0 came back first and was taken again, with one more
    expect(priv(space)).toEqual([
      [105, 0, 0],
      [106, 0, 1],
    ]);
    expect(mapped(d0)).toEqual([
      [105, 0, true],
      [106, 1, true],
    ]);
  });

  it('each migration is told to the thrashing detector with its direction', () => {
    const { m, space, d0 } = machine({ frames: [4] });
    space.thrash.config = { enabled: true, windowMs: 50, threshold: 2, pinMs: 100, napMs: 1 };
    for (let i = 0; i < 2; i++) {
      migrateToDevice(m, d0, space, [100]);
      m.now += 1;
      migrateToSystem(m, d0, space, [100]);
      m.now += 1;
    }
    expect(space.thrash.isPinned(100, m.now)).toBe(true);
    expect(space.thrash.isPinned(100, m.now + 100)).toBe(false);
  });
});

describe('migration home, write-back, dropped mappings', () => {
  it("migrateToSystem brings home only this device's pages, freeing their frames in order", () => {
    const { m, space, d0, d1 } = machine({ frames: [4, 4] });
    migrateToDevice(m, d0, space, [100, 101, 102]);
    migrateToDevice(m, d1, space, [103]);
    expect(migrateToSystem(m, d0, space, [102, 100, 103, 104])).toBe(2);
    expect(priv(space)).toEqual([
      [101, 0, 1],
      [103, 1, 0],
    ]);
    expect(mapped(d0)).toEqual([[101, 1, true]]);
    expect(m.metrics.pagesToSystem).toBe(2);
    expect(rmap(d0, 0)).toEqual([-1, -1, 0]);
    expect(rmap(d0, 2)).toEqual([-1, -1, 0]);
    expect(d0.take(1)).toEqual([0]); // freed last (102's frame 2, then 100's frame 0): 0 is taken first
    expect(migrateToSystem(m, d0, space, [103])).toBe(0);
  });

  it("revoke writes back this device's held copies only, frame 0 included", () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [2, 2] });
    mapCopies(m, d0, space, [100, 101], true, new Set(), ctx());
    mapCopies(m, d1, space, [102], true, new Set(), ctx());
    expect(held(space)).toEqual([
      [100, 0],
      [101, 0],
      [102, 1],
    ]);
    expect(revoke(m, d0, space, [100, 102, 103])).toBe(1);
    expect(held(space)).toEqual([
      [101, 0],
      [102, 1],
    ]);
    expect(mapped(d0)).toEqual([[101, 1, true]]);
    expect(d0.freeFrames).toBe(1);
    expect(rmap(d0, 0)).toEqual([-1, -1, 0]);
    expect(m.metrics.writeBacks).toBe(1);
    expect(revoke(m, d0, space, [102])).toBe(0);
    expect(m.metrics.writeBacks).toBe(1);
  });

  it("dropRuns unmaps the runs: a copy's frame is freed, a device page keeps its frame", () => {
    const { m, space, d0, ctx } = machine({ frames: [4] });
    migrateToDevice(m, d0, space, [100, 101]);
    mapCopies(m, d0, space, [102], false, new Set(), ctx());
    expect(d0.freeFrames).toBe(1);
    dropRuns(d0, space, [
      [100, 101],
      [102, 104],
    ]);
    expect(mapped(d0)).toEqual([[101, 1, true]]);
    expect(d0.freeFrames).toBe(2);
    expect(rmap(d0, 2)).toEqual([-1, -1, 0]);
    expect(rmap(d0, 0)).toEqual([1, 100, 0]); // still the page's home, only unmapped
    expect(priv(space)).toEqual([
      [100, 0, 0],
      [101, 0, 1],
    ]);
    expect(d0.take(1)).toEqual([2]);
  });

  it('read-only copies: hasCopies finds them on any device; dropCopies removes them all, and never a device page or a held copy', () => {
    const { m, space, d0, d1, ctx } = machine({ frames: [4, 4] });
    mapCopies(m, d1, space, [105], false, new Set(), ctx());
    expect(hasCopies(m, space, 105)).toBe(true);
    expect(hasCopies(m, space, 106)).toBe(false);
    mapCopies(m, d0, space, [105], false, new Set(), ctx());
    dropCopies(m, space, 105);
    expect(hasCopies(m, space, 105)).toBe(false);
    expect([mapped(d0), mapped(d1)]).toEqual([[], []]);
    expect([d0.freeFrames, d1.freeFrames]).toEqual([4, 4]);
    // a device page and a held copy are mapped, but they are no read-only copies
    migrateToDevice(m, d0, space, [107]);
    mapCopies(m, d1, space, [108], true, new Set(), ctx());
    expect(hasCopies(m, space, 107)).toBe(false);
    expect(hasCopies(m, space, 108)).toBe(false);
    dropCopies(m, space, 107);
    dropCopies(m, space, 108);
    expect(mapped(d0)).toEqual([[107, 0, true]]);
    expect(mapped(d1)).toEqual([[108, 0, true]]);
  });
});
