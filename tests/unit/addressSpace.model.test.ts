// Property test: random sequences of mmap/munmap/mprotect/write/read on an AddressSpace (no
// devices) against a plain reference model. Every read byte, every error code and address,
// the VMA list (kernel-style merged) and the RAM frame count must match after every step.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MMAP_MIN_ADDR, PAGE_SIZE } from '../../src/constants.ts';
import { HmmError } from '../../src/errors.ts';
import type { AddressSpace } from '../../src/mm/addressSpace.ts';
import type { Prot } from '../../src/mm/vmaList.ts';
import { makeMm } from './helpers.ts';

const P = PAGE_SIZE;
const MIN_PAGE = MMAP_MIN_ADDR / P; // 16
const WIN_FIRST = MIN_PAGE - 2; // the window starts with two pages that can never be mapped
const WIN_PAGES = 24;
const RAM_FRAMES = 5; // small enough that writes run out of RAM now and then

type Op =
  | { t: 'mmap'; page: number; n: number; prot: Prot; fixed: boolean }
  | { t: 'munmap'; page: number; n: number; unaligned: boolean }
  | { t: 'mprotect'; page: number; n: number; prot: Prot }
  | { t: 'write'; off: number; len: number; seed: number }
  | { t: 'read'; off: number; len: number };

const page = fc.integer({ min: WIN_FIRST, max: WIN_FIRST + WIN_PAGES - 1 });
const npages = fc.integer({ min: 1, max: 6 });
const prot = fc.constantFrom<Prot>('none', 'r', 'rw');
const off = fc.integer({ min: 0, max: WIN_PAGES * P - 1 });
const len = fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 2 * P + 2 }));

// Weighted so that most sequences map something early and then access it.
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('mmap' as const), page, n: npages, prot, fixed: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('munmap' as const), page, n: npages, unaligned: fc.nat({ max: 9 }).map((x) => x === 0) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('mprotect' as const), page, n: npages, prot }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('write' as const), off, len, seed: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('read' as const), off, len }) },
);

type Outcome = { ok: true; value?: unknown } | { ok: false; code: string; address?: number };

async function outcome(f: () => unknown): Promise<Outcome> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    if (!(e instanceof HmmError)) throw e;
    return { ok: false, code: e.code, address: e.address };
  }
}

/** The reference: prot per mapped page, bytes by address (absent = 0), pages that own a frame. */
class Model {
  prot = new Map<number, Prot>();
  bytes = new Map<number, number>();
  framed = new Set<number>();

  unmap(first: number, n: number): void {
    for (let p = first; p < first + n; p++) {
      this.prot.delete(p);
      this.framed.delete(p);
      for (let a = p * P; a < (p + 1) * P; a++) this.bytes.delete(a);
    }
  }

  /** The error checkAccess must give for [va, va+len), or null. */
  accessError(va: number, length: number, write: boolean): Outcome | null {
    for (let p = Math.floor(va / P); p <= Math.floor((va + length - 1) / P); p++) {
      const at = Math.max(va, p * P);
      const pr = this.prot.get(p);
      if (pr === undefined || pr === 'none') return { ok: false, code: 'EFAULT', address: at };
      if (write && pr === 'r') return { ok: false, code: 'EPERM', address: at };
    }
    return null;
  }

  /** Maximal runs of equal prot: what a fully merged VMA list looks like. */
  vmas(): [number, number, Prot][] {
    const out: [number, number, Prot][] = [];
    for (const p of [...this.prot.keys()].sort((a, b) => a - b)) {
      const pr = this.prot.get(p)!;
      const last = out[out.length - 1];
      if (last && last[1] === p && last[2] === pr) last[1]++;
      else out.push([p, p + 1, pr]);
    }
    return out;
  }
}

const fill = (length: number, seed: number): Uint8Array => Uint8Array.from({ length }, (_, i) => ((i * 31 + seed) % 255) + 1);

async function step(mm: AddressSpace, m: Model, o: Op, freeFrames: () => number): Promise<void> {
  const va = (o.t === 'write' || o.t === 'read' ? WIN_FIRST * P + o.off : o.page * P) + (o.t === 'munmap' && o.unaligned ? 1 : 0);
  const where = JSON.stringify(o);
  switch (o.t) {
    case 'mmap': {
      if (o.fixed) {
        const expectErr = o.page < MIN_PAGE;
        const got = await outcome(() => mm.mmap(o.n * P, { prot: o.prot, addr: va }));
        if (expectErr) {
          expect(got, where).toEqual({ ok: false, code: 'EINVAL', address: va });
          return;
        }
        expect(got, where).toEqual({ ok: true, value: va });
        m.unmap(o.page, o.n);
        for (let p = o.page; p < o.page + o.n; p++) m.prot.set(p, o.prot);
      } else {
        const got = mm.mmap(o.n * P, { prot: o.prot });
        expect(got % P, where).toBe(0);
        expect(got, where).toBeGreaterThanOrEqual(MMAP_MIN_ADDR);
        for (let p = got / P; p < got / P + o.n; p++) {
          expect(m.prot.has(p), `${where}: mmap returned ${got}, overlapping page ${p}`).toBe(false);
          m.prot.set(p, o.prot);
        }
      }
      return;
    }
    case 'munmap': {
      const got = await outcome(() => mm.munmap(va, o.n * P));
      if (o.unaligned) {
        expect(got, where).toEqual({ ok: false, code: 'EINVAL', address: va });
        return;
      }
      expect(got, where).toEqual({ ok: true, value: undefined });
      m.unmap(o.page, o.n);
      return;
    }
    case 'mprotect': {
      let hole = -1;
      for (let p = o.page; p < o.page + o.n && hole < 0; p++) if (!m.prot.has(p)) hole = p;
      const got = await outcome(() => mm.mprotect(va, o.n * P, o.prot));
      if (hole >= 0) {
        expect(got, where).toEqual({ ok: false, code: 'ENOMEM', address: hole * P });
        return;
      }
      expect(got, where).toEqual({ ok: true, value: undefined });
      for (let p = o.page; p < o.page + o.n; p++) m.prot.set(p, o.prot);
      return;
    }
    case 'write': {
      const data = fill(o.len, o.seed);
      let want = m.accessError(va, o.len, true);
      const first = Math.floor(va / P);
      const last = Math.floor((va + o.len - 1) / P);
      const need: number[] = [];
      for (let p = first; p <= last; p++) if (!m.framed.has(p)) need.push(p);
      if (!want && need.length > RAM_FRAMES - m.framed.size) want = { ok: false, code: 'ENOMEM', address: undefined };
      const got = await outcome(() => mm.write(va, data));
      if (want) {
        expect(got, where).toEqual(want);
        return;
      }
      expect(got, where).toEqual({ ok: true, value: undefined });
      for (const p of need) m.framed.add(p);
      data.forEach((b, i) => m.bytes.set(va + i, b));
      expect(freeFrames(), where).toBe(RAM_FRAMES - m.framed.size);
      return;
    }
    case 'read': {
      const want = m.accessError(va, o.len, false);
      const got = await outcome(() => mm.read(va, o.len));
      if (want) {
        expect(got, where).toEqual(want);
        return;
      }
      expect(got.ok, where).toBe(true);
      const expected = Uint8Array.from({ length: o.len }, (_, i) => m.bytes.get(va + i) ?? 0);
      expect((got as { value: Uint8Array }).value, where).toEqual(expected);
      return;
    }
  }
}

describe('AddressSpace against a reference model', () => {
  it('random mmap/munmap/mprotect/write/read sequences match the model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 4, maxLength: 24, size: 'max' }), async (ops) => {
        const { mm, ram } = makeMm(RAM_FRAMES * P);
        const m = new Model();
        // Start from a mostly mapped window, so that accesses often succeed.
        const setup: Op = { t: 'mmap', page: MIN_PAGE, n: WIN_PAGES - 4, prot: 'rw', fixed: true };
        for (const o of [setup, ...ops]) {
          await step(mm, m, o, () => ram.freeFrames);
          expect(
            mm.vmas.all().map((v) => [v.start, v.end, v.prot]),
            JSON.stringify(o),
          ).toEqual(m.vmas());
          expect(ram.freeFrames).toBe(RAM_FRAMES - m.framed.size);
        }
        mm.destroy();
        expect(ram.freeFrames).toBe(RAM_FRAMES);
      }),
      { numRuns: 200 },
    );
  }, 60_000); // 200 sequences: seconds alone, longer beside GPU tests on two cores
});
