// The concurrent fuzzer's checker (tests/fuzz/linearize.ts) on the issue-12 operations, and the
// model's mremap and madvise (tests/fuzz/model.ts): mremap is one atom (a read of one of its
// pages sees it before or after the move), madvise('free') leaves each page kept or dropped (zeros, never
// other bytes), 'dontneed' zeroes private pages only, pins change no data and fail per page,
// and advice splits mappings (mremap's EFAULT follows VMA boundaries).
import { describe, expect, it } from 'vitest';
import { initialWorld, linearize, type Observation, type Op, type Outcome, type World } from '../fuzz/linearize.ts';
import { BASE_VA, ModelSpace, PAGE } from '../fuzz/model.ts';

const va = (page: number, off = 0): number => BASE_VA + page * PAGE + off;
const fill = (len: number, byte: number): Uint8Array => new Uint8Array(len).fill(byte);
const ok = (bytes?: Uint8Array): Outcome => (bytes ? { ok: true, bytes } : { ok: true });
const fail = (code: string, address?: number): Outcome => ({ ok: false, code, address });
const obs = (op: Op, outcome: Outcome): Observation => ({ op, outcome });
const read = (page: number, len = PAGE): Op => ({ kind: 'read', s: 0, va: va(page), len, thread: 'main' });

/** One space: pages [0, n) private rw, page i holding bytes i+1; pages from `shared` on shared. */
function world(n = 6, shared = n): World[] {
  const w = initialWorld(2);
  const m = w.spaces[0]!;
  m.mmap(0, shared, 'rw', false);
  if (shared < n) m.mmap(shared, n - shared, 'rw', true);
  for (let i = 0; i < n; i++) m.write(va(i), fill(PAGE, i + 1));
  return [w];
}

const accepts = (worlds: World[], batch: Observation[]): boolean => linearize(worlds, batch).ok;

describe('mremap in the checker', () => {
  const move: Op = { kind: 'mremap', s: 0, first: 0, oldN: 2, newN: 2, to: 3 };
  it('a read of the target sees its old bytes or the moved ones, never anything else', () => {
    expect(accepts(world(), [obs(move, ok()), obs(read(3), ok(fill(PAGE, 4)))])).toBe(true); // before
    expect(accepts(world(), [obs(move, ok()), obs(read(3), ok(fill(PAGE, 1)))])).toBe(true); // after
    expect(accepts(world(), [obs(move, ok()), obs(read(3), ok(fill(PAGE, 2)))])).toBe(false);
  });
  it('a read spanning source and target may see each page on its own side of the move (per page), or fail', () => {
    const r: Op = { kind: 'read', s: 0, va: va(1), len: 3 * PAGE, thread: 'main' };
    // page 1 before the move (2s), page 3 after it (1s): per-page atomicity allows it
    const mixed = new Uint8Array([...fill(PAGE, 2), ...fill(PAGE, 3), ...fill(PAGE, 1)]);
    expect(accepts(world(), [obs(move, ok()), obs(r, ok(mixed))])).toBe(true);
    expect(accepts(world(), [obs(move, ok()), obs(r, fail('EFAULT', va(1)))])).toBe(true);
    // page 3 holding page 0's bytes (1s) never happens: only page 0 moves to 3, page 1 to 4
    const wrong = new Uint8Array([...fill(PAGE, 2), ...fill(PAGE, 3), ...fill(PAGE, 2)]);
    expect(accepts(world(), [obs(move, ok()), obs(r, ok(wrong))])).toBe(false);
  });
  it('after the move the moved bytes are at the target and DONTUNMAP leaves the source demand-zero', () => {
    const r = linearize(world(), [obs({ ...move, dontUnmap: true }, ok())]);
    expect(r.ok).toBe(true);
    const m = (r as { worlds: World[] }).worlds[0]!.spaces[0]!;
    expect(m.read(va(3), PAGE)).toEqual(fill(PAGE, 1));
    expect(m.read(va(0), 2 * PAGE)).toEqual(fill(2 * PAGE, 0));
    expect(m.pages[5]).not.toBeNull(); // untouched
  });
  it('EFAULT names the end of the mapping; advice splits a mapping', () => {
    const worlds = world(6, 4); // private 0..3, shared 4..5: two mappings
    expect(accepts(worlds, [obs({ kind: 'mremap', s: 0, first: 2, oldN: 3, newN: 3, to: 10 }, fail('EFAULT', va(4)))])).toBe(true);
    expect(accepts(worlds, [obs({ kind: 'mremap', s: 0, first: 2, oldN: 3, newN: 3, to: 10 }, ok())])).toBe(false);
    const m = new ModelSpace();
    m.mmap(0, 4, 'rw', false);
    m.advise(2, 2, { preferred: 1 });
    expect(m.mremap(0, 4, 4, { to: 10 }).error).toEqual({ code: 'EFAULT', address: va(2) });
    m.advise(2, 2, { preferred: null }); // cleared: one mapping again
    expect(m.mremap(0, 4, 4, { to: 10 }).error).toBeNull();
  });
  it('in place: ENOMEM without room, growth demand-zero with room', () => {
    const m = new ModelSpace();
    m.mmap(0, 2, 'r', false);
    m.mmap(3, 1, 'rw', false);
    expect(m.mremap(0, 2, 4, {}).error).toEqual({ code: 'ENOMEM', address: va(0) });
    expect(m.mremap(0, 2, 3, {})).toEqual({ error: null, to: 0 });
    expect(m.pages[2]).toMatchObject({ prot: 'r', shared: false });
    expect(m.mremap(0, 3, 1, {})).toEqual({ error: null, to: 0 });
    expect(m.pages[1]).toBeNull();
  });
});

describe('madvise in the checker', () => {
  const free: Op = { kind: 'madvise', s: 0, first: 0, n: 2, advice: 'free' };
  it("'free': each page kept or dropped, on its own; never other bytes", () => {
    for (const [a, b] of [
      [1, 2],
      [0, 2],
      [1, 0],
      [0, 0],
    ]) {
      const two = new Uint8Array([...fill(PAGE, a!), ...fill(PAGE, b!)]);
      expect(accepts(world(), [obs(free, ok()), obs(read(0, 2 * PAGE), ok(two))]), `${a} ${b}`).toBe(true);
    }
    expect(accepts(world(), [obs(free, ok()), obs(read(0), ok(fill(PAGE, 7)))])).toBe(false);
    const half = new Uint8Array([...fill(PAGE / 2, 1), ...fill(PAGE / 2, 0)]);
    expect(accepts(world(), [obs(free, ok()), obs(read(0), ok(half))])).toBe(false);
  });
  it("'free' on a shared mapping: EINVAL at its first page, after any hole (ENOMEM)", () => {
    const worlds = world(6, 4);
    expect(accepts(worlds, [obs({ kind: 'madvise', s: 0, first: 2, n: 3, advice: 'free' }, fail('EINVAL', va(4)))])).toBe(true);
    expect(accepts(worlds, [obs({ kind: 'madvise', s: 0, first: 4, n: 4, advice: 'free' }, fail('ENOMEM', va(6)))])).toBe(true);
    expect(accepts(worlds, [obs({ kind: 'madvise', s: 0, first: 4, n: 4, advice: 'free' }, fail('EINVAL', va(4)))])).toBe(false);
  });
  it("'dontneed' zeroes private pages and keeps shared ones", () => {
    const r = linearize(world(6, 4), [obs({ kind: 'madvise', s: 0, first: 2, n: 4, advice: 'dontneed' }, ok())]);
    expect(r.ok).toBe(true);
    const m = (r as { worlds: World[] }).worlds[0]!.spaces[0]!;
    expect(m.read(va(2), 2 * PAGE)).toEqual(fill(2 * PAGE, 0));
    expect(m.read(va(4), PAGE)).toEqual(fill(PAGE, 5));
  });
  it('the sequential model: a read decides a freed page, and a dropped page stays zero', () => {
    const m = world()[0]!.spaces[0]!;
    expect(m.madvise(0, 1, 'free')).toBeNull();
    expect(m.observeRead(va(0), fill(PAGE, 1))).toBe(-1); // kept so far, still marked
    expect(m.pages[0]!.free).toBe('marked');
    expect(m.observeRead(va(0), fill(PAGE, 0))).toBe(-1); // dropped since
    expect(m.pages[0]!.free).toBeUndefined();
    expect(m.observeRead(va(0), fill(PAGE, 1))).toBe(0); // and not back
  });
});

describe('pins in the checker', () => {
  it('change no data, and fail per page with the address of the first bad one', () => {
    const pin: Op = { kind: 'pin', s: 0, va: va(4, 100), len: 3 * PAGE, longterm: true };
    expect(accepts(world(6), [obs(pin, fail('EFAULT', va(6)))])).toBe(true);
    expect(accepts(world(8), [obs(pin, ok()), obs(read(4), ok(fill(PAGE, 5)))])).toBe(true);
    expect(accepts(world(8), [obs({ kind: 'unpin', handle: 0 }, ok())])).toBe(true);
  });
});
