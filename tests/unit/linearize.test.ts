// The concurrent fuzzer's linearizability checker (tests/fuzz/linearize.ts) on hand-written
// batches: it must accept every interleaving the per-page contract allows and reject lost
// adds, torn or zero reads, wrong errors and errors at the wrong address.
import { describe, expect, it } from 'vitest';
import { initialWorld, linearize, type Observation, type Op, type Outcome, type World } from '../fuzz/linearize.ts';
import { BASE_VA, PAGE } from '../fuzz/model.ts';

const va = (page: number, off = 0): number => BASE_VA + page * PAGE + off;
const fill = (len: number, byte: number): Uint8Array => new Uint8Array(len).fill(byte);
const words = (n: number, value: number): Uint8Array => new Uint8Array(new Uint32Array(n).fill(value).buffer);
const ok = (bytes?: Uint8Array): Outcome => (bytes ? { ok: true, bytes } : { ok: true });
const fail = (code: string, address?: number): Outcome => ({ ok: false, code, address });
const obs = (op: Op, outcome: Outcome): Observation => ({ op, outcome });

/** One space with window pages [0, n) mapped rw private (zeros), two devices. */
function mapped(n = 8): World[] {
  const w = initialWorld(2);
  w.spaces[0]!.mmap(0, n, 'rw', false);
  return [w];
}

/** Run batches in turn; the worlds after the last one, or the failing report. */
function run(worlds: World[], ...batches: Observation[][]): { ok: true; worlds: World[] } | { ok: false; report: string } {
  let cur = worlds;
  for (const b of batches) {
    const r = linearize(cur, b);
    if (!r.ok) return r;
    cur = r.worlds;
  }
  return { ok: true, worlds: cur };
}

const read = (page: number, len = PAGE, off = 0, thread: 'main' | 'w0' | 'w1' = 'main'): Op => ({ kind: 'read', s: 0, va: va(page, off), len, thread });
const write = (page: number, data: Uint8Array, off = 0, thread: 'main' | 'w0' | 'w1' = 'main'): Op => ({
  kind: 'write',
  s: 0,
  va: va(page, off),
  data,
  thread,
});
const add = (first: number, n: number, value: number, d = 0, validated = false): Op => ({ kind: 'kernelAdd', s: 0, d, first, n, add: value, validated });

describe('linearizability checker', () => {
  it('accepts a read that sees a concurrent write, or does not', () => {
    for (const seen of [0, 7]) expect(run(mapped(), [obs(write(0, fill(PAGE, 7)), ok()), obs(read(0), ok(fill(PAGE, seen)))]).ok).toBe(true);
  });

  it('rejects a read that sees a value nobody wrote, or a torn one inside a page', () => {
    expect(run(mapped(), [obs(write(0, fill(PAGE, 7)), ok()), obs(read(0), ok(fill(PAGE, 9)))]).ok).toBe(false);
    const torn = fill(PAGE, 7);
    torn.fill(0, 2048);
    expect(run(mapped(), [obs(write(0, fill(PAGE, 7)), ok()), obs(read(0), ok(torn))]).ok).toBe(false);
  });

  it('rejects a zero read of a page that holds data (the bytes "moved meanwhile")', () => {
    const r = run(
      mapped(),
      [obs(write(1, fill(PAGE, 5)), ok())],
      [obs({ kind: 'toDevice', s: 0, d: 0, first: 0, n: 4 }, ok()), obs(read(1), ok(fill(PAGE, 0)))],
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.report).toMatch(/page\(s\) 1/);
  });

  it('a multi-page read is atomic per page, not across pages', () => {
    const both = new Uint8Array(2 * PAGE);
    both.fill(7, 0, PAGE); // page 0 after the write, page 1 before it
    expect(run(mapped(), [obs(write(0, fill(2 * PAGE, 7)), ok()), obs(read(0, 2 * PAGE), ok(both))]).ok).toBe(true);
  });

  it('accepts both orders of two concurrent writes, keeps both states, and a later read picks one', () => {
    const r = run(mapped(), [obs(write(2, fill(PAGE, 1)), ok()), obs({ kind: 'gpuWrite', s: 0, d: 1, first: 2, data: fill(PAGE, 2) }, ok())]);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.worlds.length).toBe(2);
    for (const v of [1, 2]) {
      const after = run(r.worlds, [obs(read(2), ok(fill(PAGE, v)))]);
      expect(after.ok).toBe(true);
      if (after.ok) expect(after.worlds.length).toBe(1);
    }
    expect(run(r.worlds, [obs(read(2), ok(fill(PAGE, 3)))]).ok).toBe(false);
  });

  it('counts every add of concurrent kernels and worker atomics; a lost add is rejected', () => {
    const batch = [
      obs(add(0, 2, 1, 0), ok()),
      obs(add(0, 2, 10, 1, true), ok()),
      obs({ kind: 'atomicAdd', s: 0, va: va(1, 8), value: 100, thread: 'w0' }, { ok: true, value: 11 }), // after both kernels
    ];
    const all = words(1024, 11);
    new Uint32Array(all.buffer)[2] = 111;
    expect(run(mapped(), batch, [obs(read(1), ok(all))]).ok).toBe(true);
    const lost = words(1024, 11);
    new Uint32Array(lost.buffer)[2] = 101; // the worker's add landed on a value without one kernel's
    expect(run(mapped(), batch, [obs(read(1), ok(lost))]).ok).toBe(false);
    expect(run(mapped(), batch, [obs(read(0), ok(words(1024, 1)))]).ok).toBe(false); // gpu1's add missing
  });

  it("a worker's atomic add must return the old value of some order", () => {
    const batch = (old: number) => [obs(add(3, 1, 5), ok()), obs({ kind: 'atomicAdd', s: 0, va: va(3), value: 1, thread: 'w1' }, { ok: true, value: old })];
    expect(run(mapped(), batch(0)).ok).toBe(true);
    expect(run(mapped(), batch(5)).ok).toBe(true);
    expect(run(mapped(), batch(6)).ok).toBe(false);
  });

  it("a copy kernel's page is copied at one point: old or new source, never a mixture", () => {
    const copy: Op = { kind: 'kernelCopy', s: 0, d: 0, src: 0, dst: 4, n: 1, add: 1, validated: false };
    const start = run(mapped(), [obs(write(0, words(1024, 10)), ok())]);
    if (!start.ok) throw new Error(start.report);
    const readAfter = (dst: Uint8Array) => run(start.worlds, [obs(copy, ok()), obs(write(0, words(1024, 20)), ok())], [obs(read(4), ok(dst))]);
    expect(readAfter(words(1024, 11)).ok).toBe(true);
    expect(readAfter(words(1024, 21)).ok).toBe(true);
    const mixed = words(1024, 11);
    new Uint32Array(mixed.buffer).fill(21, 512);
    expect(readAfter(mixed).ok).toBe(false);
  });

  it('a read beside a concurrent munmap: the data, or EFAULT at its first unmapped byte, nowhere else', () => {
    const munmap: Op = { kind: 'munmap', s: 0, first: 1, n: 1 };
    const r = (o: Outcome) => run(mapped(), [obs(munmap, ok()), obs(read(0, 2 * PAGE, 0), o)]);
    expect(r(ok(new Uint8Array(2 * PAGE))).ok).toBe(true);
    expect(r(fail('EFAULT', va(1))).ok).toBe(true);
    expect(r(fail('EFAULT', va(0))).ok).toBe(false);
    expect(r(fail('EPERM', va(1))).ok).toBe(false);
    expect(r(fail('EBUSY')).ok).toBe(false);
  });

  it('fork beside a kernel: the child sees each page with or without the add, the parent always with it', () => {
    const batch = [obs(add(0, 2, 1), ok()), obs({ kind: 'fork', s: 0 }, ok())];
    const r = run(mapped(), batch);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.worlds.length).toBe(4); // the child's pages 0 and 1, each before or after the add
    const childRead = (page: number, v: number): Observation => obs({ kind: 'read', s: 1, va: va(page), len: PAGE, thread: 'main' }, ok(words(1024, v)));
    expect(run(r.worlds, [childRead(0, 1), childRead(1, 0), obs(read(0), ok(words(1024, 1)))]).ok).toBe(true);
    expect(run(r.worlds, [obs(read(1), ok(words(1024, 0)))]).ok).toBe(false);
  });

  it('destroy beside a read of the destroyed space: the data, EINVAL, or EFAULT at the first page', () => {
    const start = run(mapped(), [obs({ kind: 'fork', s: 0 }, ok())]);
    if (!start.ok) throw new Error(start.report);
    const r = (o: Outcome) => run(start.worlds, [obs({ kind: 'destroy', s: 1 }, ok()), obs({ kind: 'read', s: 1, va: va(0), len: 2 * PAGE, thread: 'w0' }, o)]);
    expect(r(ok(new Uint8Array(2 * PAGE))).ok).toBe(true);
    expect(r(fail('EINVAL')).ok).toBe(true);
    expect(r(fail('EFAULT', va(0))).ok).toBe(true);
    expect(r(fail('EFAULT', va(1))).ok).toBe(true); // page 0 read before the unmap, page 1 after it
    expect(r(fail('EPOISON', va(0))).ok).toBe(false);
  });

  it('device loss: the poisoned page reads as data before the loss or EPOISON after; device calls EDEVLOST after', () => {
    const start = run(mapped(), [obs(write(0, fill(PAGE, 3)), ok())]);
    if (!start.ok) throw new Error(start.report);
    const lose: Observation = { op: { kind: 'lose', d: 0 }, outcome: ok(), poisoned: [[0, 0]] };
    const r = (o: Outcome, g: Outcome) => run(start.worlds, [lose, obs(read(0), o), obs({ kind: 'gpuRead', s: 0, d: 0, first: 1, n: 1 }, g)]);
    expect(r(ok(fill(PAGE, 3)), ok(fill(PAGE, 0))).ok).toBe(true);
    expect(r(fail('EPOISON', va(0)), fail('EDEVLOST')).ok).toBe(true);
    expect(r(ok(fill(PAGE, 0)), ok(fill(PAGE, 0))).ok).toBe(false); // zeros are never the data of a poisoned page
    const later = run(start.worlds, [lose], [obs(read(0), ok(fill(PAGE, 3)))]);
    expect(later.ok).toBe(false);
  });

  it('failed operations: a kernel over holes must fail (ESEGV replayable, EFAULT validated) and change nothing', () => {
    expect(run(mapped(2), [obs(add(4, 2, 1), fail('ESEGV'))]).ok).toBe(true);
    expect(run(mapped(2), [obs(add(4, 2, 1, 0, true), fail('EFAULT'))]).ok).toBe(true);
    expect(run(mapped(2), [obs(add(4, 2, 1), ok())]).ok).toBe(false);
    expect(run(mapped(2), [obs(add(0, 2, 1), fail('ESEGV'))]).ok).toBe(false);
  });

  it('ENOENT from migrateToDevice is allowed any time; success is not for a shared page', () => {
    const w = initialWorld(2);
    w.spaces[0]!.mmap(0, 2, 'rw', true);
    expect(run([w], [obs({ kind: 'toDevice', s: 0, d: 1, first: 0, n: 2 }, fail('ENOENT', va(0)))]).ok).toBe(true);
    expect(run([w], [obs({ kind: 'toDevice', s: 0, d: 1, first: 0, n: 2 }, ok())]).ok).toBe(false);
  });

  it('mprotect beside a read: EFAULT for prot none only if the read came after it', () => {
    const r = (o: Outcome) => run(mapped(), [obs({ kind: 'mprotect', s: 0, first: 2, n: 1, prot: 'none' }, ok()), obs(read(2, 4, 8), o)]);
    expect(r(ok(new Uint8Array(4))).ok).toBe(true);
    expect(r(fail('EFAULT', va(2, 8))).ok).toBe(true);
    expect(r(fail('EFAULT', va(2))).ok).toBe(false); // the address is the first byte of the access
  });

  it('keeps state counts small: many independent pages give one world', () => {
    const batch = Array.from({ length: 6 }, (_, k) => obs(write(k, fill(PAGE, k + 1)), ok()));
    const r = run(mapped(), batch);
    expect(r.ok && r.worlds.length).toBe(1);
  });

  it('too many open states: names the open pages, and reads made after the batch close them', () => {
    const batch = [
      obs({ kind: 'fork', s: 0 }, ok()),
      ...[0, 1, 2, 3].map((k) => obs(write(2 * k, fill(2 * PAGE, k + 1), 0, 'main'), ok())),
      obs(add(0, 1, 5, 1), ok()),
    ];
    const r = linearize(mapped(), batch, { maxWorlds: 8 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.ambiguous).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // the child saw nothing of the writes, the parent saw them all (and the add after the write)
    const probes: Observation[] = [];
    for (let i = 0; i < 8; i++) {
      const parent = fill(PAGE, Math.floor(i / 2) + 1);
      if (i === 0) new Uint32Array(parent.buffer).forEach((v, k, a) => (a[k] = v + 5));
      probes.push(obs({ kind: 'read', s: 0, va: va(i), len: PAGE, thread: 'main' }, ok(parent)));
      probes.push(obs({ kind: 'read', s: 1, va: va(i), len: PAGE, thread: 'main' }, ok(new Uint8Array(PAGE))));
    }
    const closed = linearize(mapped(), batch, { maxWorlds: 8, probes });
    expect(closed.ok && closed.worlds.length).toBe(1);
    probes[1] = obs({ kind: 'read', s: 1, va: va(0), len: PAGE, thread: 'main' }, ok(fill(PAGE, 9)));
    expect(linearize(mapped(), batch, { maxWorlds: 8, probes }).ok).toBe(false);
  });

  it('a loss that poisons many pages at once is checked quickly', () => {
    const w = mapped(30);
    const lose: Observation = { op: { kind: 'lose', d: 1 }, outcome: ok(), poisoned: Array.from({ length: 30 }, (_, i) => [0, i] as const) };
    const t0 = performance.now();
    const r = run(w, [lose, obs(read(3), fail('EPOISON', va(3)))]);
    expect(r.ok).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
