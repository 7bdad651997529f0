// Provenance (src/trace/provenance.ts) on its own, without a GPU: what sys.explain reads back.
// Each case checks a behaviour a user of explain() relies on (which page, which address space,
// how much history, which placement decision goes with which move, the words of each cause);
// written while mutation testing (docs/testing.md) found these unchecked.
import { describe, expect, it } from 'vitest';
import { MAX_DEVICES } from '../../src/mm/cpuPageTable.ts';
import { describeCause, Provenance, type Cause } from '../../src/trace/provenance.ts';

const call: Cause = { kind: 'call', call: 'mm.fork()' };
const moves = (p: Provenance, mm: number, page: number): string[] => p.history(mm, page).map((e) => e.move);

describe('describeCause: each cause in words', () => {
  it('names the kernel, dispatch, round and device of a GPU fault', () => {
    expect(describeCause({ kind: 'gpu-fault', device: 2, kernel: 'walk', dispatch: 7, round: 3 })).toBe(
      "GPU fault: kernel 'walk' (dispatch 7, round 3) on gpu2",
    );
  });
  it('names the policy of a prefetch, with the kernel and round it came with', () => {
    expect(describeCause({ kind: 'prefetch', device: 1, kernel: 'walk', dispatch: 4, round: 2, policy: 'stride(16)' })).toBe(
      "prefetch by 'stride(16)' with kernel 'walk' (dispatch 4, round 2) on gpu1",
    );
  });
  it('names the validated kernel that declared a range', () => {
    expect(describeCause({ kind: 'declared', device: 0, kernel: 'sum', dispatch: 9 })).toBe("declared by validated kernel 'sum' (dispatch 9) on gpu0");
  });
  it('names the eviction policy and what it made room for', () => {
    expect(describeCause({ kind: 'eviction', device: 3, policy: 'clock', for: "kernel 'k'" })).toBe("evicted from gpu3 by 'clock' to make room for kernel 'k'");
  });
  it('tells the main thread from a CPU thread', () => {
    expect(describeCause({ kind: 'cpu-fault', thread: 'main' })).toBe('CPU fault (main thread)');
    expect(describeCause({ kind: 'cpu-fault', thread: 'worker' })).toBe('CPU fault (a CPU thread, through the fault mailbox)');
  });
  it('names an explicit call', () => {
    expect(describeCause(call)).toBe('explicit: mm.fork()');
  });
});

describe('Provenance', () => {
  it('keeps each page of each address space apart, oldest move first', () => {
    const p = new Provenance();
    p.record(1, [5, 6], 'to-device', 0, call);
    p.record(1, [5], 'to-system', 0, call);
    p.record(2, [5], 'copy', 1, call);
    expect(p.history(1, 5)).toMatchObject([
      { move: 'to-device', device: 0, cause: call },
      { move: 'to-system', device: 0, cause: call },
    ]);
    expect(moves(p, 1, 6)).toEqual(['to-device']);
    expect(p.history(2, 5)).toMatchObject([{ move: 'copy', device: 1 }]);
    expect(p.history(1, 7)).toEqual([]);
    expect(typeof p.history(1, 5)[0]!.ts).toBe('number');
  });

  it('history is a copy: changing it changes nothing recorded', () => {
    const p = new Provenance();
    p.record(1, [0], 'to-device', 0, call);
    p.history(1, 0).push(p.history(1, 0)[0]!);
    expect(p.history(1, 0)).toHaveLength(1);
  });

  it('keeps the last 32 moves of a page', () => {
    const p = new Provenance();
    for (let i = 0; i < 40; i++) p.record(1, [0], i % 2 ? 'to-system' : 'to-device', i, call);
    const h = p.history(1, 0);
    expect(h).toHaveLength(32);
    expect(h[0]!.device).toBe(8);
    expect(h.at(-1)!.device).toBe(39);
  });

  it('keeps 32 moves exactly: the 32nd move does not push out the first', () => {
    const p = new Provenance();
    for (let i = 0; i < 32; i++) p.record(1, [0], 'copy', i, call);
    expect(p.history(1, 0).map((e) => e.device)).toEqual(Array.from({ length: 32 }, (_, i) => i));
  });

  it('records nothing while disabled, but still tells its observers', () => {
    const p = new Provenance();
    const seen: unknown[] = [];
    p.observers.add((...args: unknown[]) => seen.push(args));
    p.enabled = false;
    p.decision(1, 0, 0, 'advice: copy');
    p.record(1, [0], 'to-device', 0, call);
    expect(p.history(1, 0)).toEqual([]);
    expect(seen).toEqual([[1, [0], 'to-device', 0, call]]);
    p.enabled = true;
    p.record(1, [0], 'to-device', 0, call);
    expect(p.history(1, 0)[0]!.placement).toBeUndefined(); // the decision taken while disabled was not kept
  });

  it("a placement decision goes with the page's next move on that device only, once", () => {
    const p = new Provenance();
    p.decision(1, 4, 0, 'advice: migrate');
    p.record(1, [4], 'to-device', 1, call); // another device: not the move the decision explains
    p.record(2, [4], 'to-device', 0, call); // another address space
    p.record(1, [3], 'to-device', 0, call); // another page
    p.record(1, [4], 'to-device', 0, call);
    p.record(1, [4], 'to-system', 0, call);
    expect(p.history(1, 4).map((e) => e.placement)).toEqual([undefined, 'advice: migrate', undefined]);
    expect(p.history(1, 4)[0]).not.toHaveProperty('placement');
    expect(p.history(2, 4)[0]).not.toHaveProperty('placement');
    expect(p.history(1, 3)[0]).not.toHaveProperty('placement');
  });

  it('forget(mm) drops that address space only (space 1 is not space 11)', () => {
    const p = new Provenance();
    p.record(1, [0, 1], 'to-device', 0, call);
    p.record(11, [0], 'to-device', 0, call);
    p.record(21, [1], 'to-device', 0, call);
    p.forget(1);
    expect(p.history(1, 0)).toEqual([]);
    expect(p.history(1, 1)).toEqual([]);
    expect(moves(p, 11, 0)).toEqual(['to-device']);
    expect(moves(p, 21, 1)).toEqual(['to-device']);
  });

  it('is bounded: past 65536 pages the oldest page is forgotten first', () => {
    const p = new Provenance();
    const pages = Array.from({ length: 1 << 16 }, (_, i) => i);
    p.record(1, pages, 'to-device', 0, call);
    p.record(1, [0], 'to-system', 0, call); // an existing page: nothing is forgotten
    expect(moves(p, 1, 0)).toEqual(['to-device', 'to-system']);
    expect(moves(p, 1, 1)).toEqual(['to-device']);
    p.record(1, [1 << 16], 'to-device', 0, call); // one page more: the oldest (page 0) goes
    expect(p.history(1, 0)).toEqual([]);
    expect(moves(p, 1, 1)).toEqual(['to-device']);
    expect(moves(p, 1, 1 << 16)).toEqual(['to-device']);
  });

  it('is bounded: past 65536 waiting decisions the old ones are dropped', () => {
    const p = new Provenance();
    for (let i = 0; i < 1 << 16; i++) p.decision(1, i, 0, `d${i}`);
    p.record(1, [7], 'to-device', 0, call);
    expect(p.history(1, 7)[0]!.placement).toBe('d7'); // 65536 waiting: all kept
    p.decision(1, 8, 1, 'x'); // 65535 waiting: still room
    p.record(1, [9], 'to-device', 0, call);
    expect(p.history(1, 9)[0]!.placement).toBe('d9');
    p.decision(1, 1 << 16, 0, 'new'); // 65535 + 1: room
    p.decision(1, (1 << 16) + 1, 0, 'newer'); // full: the waiting ones are dropped first
    p.record(1, [10, (1 << 16) + 1], 'to-device', 0, call);
    expect(p.history(1, 10)[0]!.placement).toBeUndefined();
    expect(p.history(1, (1 << 16) + 1)[0]!.placement).toBe('newer');
  });
});

describe('Provenance: each placement decision goes to its own page and device, whatever the device id', () => {
  const placements = (p: Provenance, mm: number, page: number): (string | undefined)[] => p.history(mm, page).map((e) => e.placement);

  it('a decision is not read back by a neighbouring page on another device', () => {
    const p = new Provenance();
    p.decision(1, 10, 1, 'migrate (advice)');
    p.record(1, [9], 'to-device', MAX_DEVICES - 1, call);
    p.record(1, [10], 'to-device', 1, call);
    expect(placements(p, 1, 9)).toEqual([undefined]);
    expect(placements(p, 1, 10)).toEqual(['migrate (advice)']);
  });

  it('device ids outside [0, MAX_DEVICES) keep their decisions apart from the pages beside them, and from each other', () => {
    const p = new Provenance();
    p.decision(1, 10, MAX_DEVICES, 'far');
    p.decision(1, 20, -1, 'negative');
    p.record(1, [11], 'to-device', 0, call);
    p.record(1, [19], 'to-device', MAX_DEVICES - 1, call);
    expect(placements(p, 1, 11)).toEqual([undefined]);
    expect(placements(p, 1, 19)).toEqual([undefined]);
    p.record(1, [10], 'to-device', MAX_DEVICES, call);
    p.record(1, [20], 'to-device', -1, call);
    expect(placements(p, 1, 10)).toEqual(['far']);
    expect(placements(p, 1, 20)).toEqual(['negative']);
  });
});
