// AddressSpace with no devices: mappings, demand-zero, CPU reads and writes, and the errors
// they give. Every failing call must change nothing.
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, MMAP_MIN_ADDR, PAGE_SIZE, VA_LIMIT } from '../../src/constants.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { InvalidateRange } from '../../src/mm/notifier.ts';
import type { Prot } from '../../src/mm/vmaList.ts';
import { hx, makeMm, pattern, throwsAsync, throwsSync } from './helpers.ts';

const P = PAGE_SIZE;
const kindAt = (env: ReturnType<typeof makeMm>, va: number): Kind => pte.kind(env.mm.pageTable.get(va / P));
const zeros = (n: number): Uint8Array => new Uint8Array(n);

describe('mmap', () => {
  it('returns page-aligned addresses at or above MMAP_MIN_ADDR, never 0, not overlapping', () => {
    const { mm } = makeMm();
    const got: [number, number][] = [];
    for (const len of [1, P, P + 1, 3 * P, 5]) {
      const va = mm.mmap(len);
      expect(va % P).toBe(0);
      expect(va).toBeGreaterThanOrEqual(MMAP_MIN_ADDR);
      const end = va + Math.ceil(len / P) * P;
      for (const [s, e] of got) expect(end <= s || va >= e).toBe(true);
      got.push([va, end]);
    }
  });

  it('rounds the length up to whole pages and records prot/shared', () => {
    const { mm } = makeMm();
    const va = mm.mmap(P + 1, { prot: 'r', shared: true });
    const v = mm.vmaAt(va)!;
    expect([v.start * P, v.end * P, v.prot, v.shared, v.huge]).toEqual([va, va + 2 * P, 'r', true, false]);
  });

  it("defaults to prot 'rw', private", () => {
    const { mm } = makeMm();
    const v = mm.vmaAt(mm.mmap(P))!;
    expect([v.prot, v.shared, v.huge]).toEqual(['rw', false, false]);
  });

  it('huge mappings are 2 MiB aligned and rounded up to 2 MiB', () => {
    const { mm } = makeMm();
    mm.mmap(P); // something small first, so alignment has work to do
    const va = mm.mmap(HUGE_SIZE + 1, { huge: true });
    expect(va % HUGE_SIZE).toBe(0);
    expect(va).toBeGreaterThan(0);
    const v = mm.vmaAt(va)!;
    expect(v.huge).toBe(true);
    expect((v.end - v.start) * P).toBe(2 * HUGE_SIZE);
    // A huge fixed mapping is rounded up too.
    const fixed = mm.mmap(5, { huge: true, addr: 16 * HUGE_SIZE });
    expect(fixed).toBe(16 * HUGE_SIZE);
    const f = mm.vmaAt(fixed)!;
    expect((f.end - f.start) * P).toBe(HUGE_SIZE);
  });

  it('a fixed address is used as given', () => {
    const { mm } = makeMm();
    expect(mm.mmap(P, { addr: 0x4000_0000 })).toBe(0x4000_0000);
    expect(mm.mmap(P, { addr: MMAP_MIN_ADDR })).toBe(MMAP_MIN_ADDR);
    expect(mm.mmap(P, { addr: VA_LIMIT - P })).toBe(VA_LIMIT - P);
  });

  it('MAP_FIXED replaces an existing mapping: its old contents are gone and its frames freed', async () => {
    const env = makeMm();
    const { mm, ram } = env;
    const va = mm.mmap(4 * P, { prot: 'rw' });
    await mm.write(va, pattern(4 * P));
    const free = ram.freeFrames;
    const again = mm.mmap(2 * P, { addr: va + P, prot: 'r' });
    expect(again).toBe(va + P);
    expect(ram.freeFrames).toBe(free + 2);
    expect(await mm.read(va + P, 2 * P)).toEqual(zeros(2 * P));
    expect(mm.vmaAt(va + P)!.prot).toBe('r');
    // The parts around it keep their data and prot.
    expect(await mm.read(va, P)).toEqual(pattern(4 * P).subarray(0, P));
    expect(await mm.read(va + 3 * P, P)).toEqual(pattern(4 * P).subarray(3 * P));
    expect(mm.vmaAt(va + 3 * P)!.prot).toBe('rw');
  });

  it.each([0, P, MMAP_MIN_ADDR - P])('a fixed address below MMAP_MIN_ADDR (%s) is EINVAL', (addr) => {
    const { mm } = makeMm();
    const e = throwsSync('EINVAL', () => mm.mmap(P, { addr }));
    expect(e.message).toContain(hx(addr));
    expect(mm.vmas.all()).toEqual([]);
  });

  it('an unaligned fixed address is EINVAL naming it', () => {
    const { mm } = makeMm();
    const e = throwsSync('EINVAL', () => mm.mmap(P, { addr: 0x20001 }));
    expect(e.message).toContain('0x00020001');
    expect(mm.vmas.all()).toEqual([]);
  });

  it('huge with an address that is page- but not 2 MiB-aligned is EINVAL', () => {
    const { mm } = makeMm();
    const e = throwsSync('EINVAL', () => mm.mmap(HUGE_SIZE, { huge: true, addr: HUGE_SIZE + P }));
    expect(e.message).toMatch(/2 MiB/);
    expect(e.address).toBe(HUGE_SIZE + P);
  });

  it('a fixed mapping running past 4 GiB is EINVAL', () => {
    const { mm } = makeMm();
    throwsSync('EINVAL', () => mm.mmap(2 * P, { addr: VA_LIMIT - P }));
    throwsSync('EINVAL', () => mm.mmap(P, { addr: VA_LIMIT }));
    expect(mm.vmas.all()).toEqual([]);
  });

  it.each(['x', 'w', 'RW', '', 3, true])('bad prot %s is EINVAL', (prot) => {
    const { mm } = makeMm();
    const e = throwsSync('EINVAL', () => mm.mmap(P, { prot: prot as unknown as Prot }));
    expect(e.message).toContain('prot');
  });

  it('a failing fixed mmap leaves the mapping it would have replaced alone', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(P);
    await mm.write(va, pattern(P));
    throwsSync('EINVAL', () => mm.mmap(P, { addr: va, prot: 'bad' as unknown as Prot }));
    expect(await mm.read(va, P)).toEqual(pattern(P));
  });

  it.each([0, -1, 1.5, NaN, Infinity, '4096'])('length %s is EINVAL', (len) => {
    const { mm } = makeMm();
    expect(throwsSync('EINVAL', () => mm.mmap(len as number)).message).toContain('length');
  });

  it('a length larger than the address space is ENOMEM', () => {
    const { mm } = makeMm();
    throwsSync('ENOMEM', () => mm.mmap(VA_LIMIT));
  });
});

describe('demand-zero and CPU access', () => {
  it('reading never-touched memory gives zeros, allocates no frame and maps the zero page', async () => {
    const env = makeMm();
    const { mm, ram } = env;
    const va = mm.mmap(3 * P);
    const free = ram.freeFrames;
    expect(kindAt(env, va)).toBe(Kind.None);
    expect(await mm.read(va + 10, 2 * P)).toEqual(zeros(2 * P));
    expect(ram.freeFrames).toBe(free);
    expect(kindAt(env, va)).toBe(Kind.Zero);
    expect(kindAt(env, va + P)).toBe(Kind.Zero);
    expect(kindAt(env, va + 2 * P)).toBe(Kind.Zero);
  });

  it("reading a never-touched 'r' mapping works the same", async () => {
    const env = makeMm();
    const va = env.mm.mmap(P, { prot: 'r' });
    expect(await env.mm.read(va, P)).toEqual(zeros(P));
    expect(kindAt(env, va)).toBe(Kind.Zero);
  });

  it('a write allocates one frame per touched page, including zero pages', async () => {
    const env = makeMm();
    const { mm, ram } = env;
    const va = mm.mmap(4 * P);
    await mm.read(va, P); // page 0 becomes the zero page
    const free = ram.freeFrames;
    await mm.write(va + P - 2, new Uint8Array([1, 2, 3, 4])); // pages 0 and 1
    expect(ram.freeFrames).toBe(free - 2);
    expect(kindAt(env, va)).toBe(Kind.Ram);
    expect(kindAt(env, va + P)).toBe(Kind.Ram);
    expect(kindAt(env, va + 2 * P)).toBe(Kind.None);
    // Writing the same pages again allocates nothing.
    await mm.write(va, pattern(2 * P));
    expect(ram.freeFrames).toBe(free - 2);
  });

  it('a write reads back, the rest of the page stays zero', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(2 * P);
    await mm.write(va + 100, new Uint8Array([9, 8, 7]));
    const got = await mm.read(va, P);
    const want = zeros(P);
    want.set([9, 8, 7], 100);
    expect(got).toEqual(want);
  });

  it('reads and writes cross page and VMA boundaries at arbitrary offsets and lengths', async () => {
    const { mm } = makeMm();
    // Two adjacent VMAs that do not merge (different prot), both writable by the test first.
    const a = mm.mmap(3 * P, { addr: 0x100000, prot: 'rw' });
    const b = mm.mmap(3 * P, { addr: 0x100000 + 3 * P, prot: 'rw', shared: true });
    expect(b).toBe(a + 3 * P);
    expect(mm.vmas.all().length).toBe(2);
    const model = new Uint8Array(6 * P);
    const cases: [number, number][] = [
      [0, 1],
      [P - 1, 2],
      [3 * P - 3, 7], // across the VMA boundary
      [123, 5 * P + 17],
      [2 * P + 1, 2 * P - 2],
      [6 * P - 1, 1],
    ];
    let seed = 3;
    for (const [off, len] of cases) {
      const data = pattern(len, seed++);
      await mm.write(a + off, data);
      model.set(data, off);
    }
    expect(await mm.read(a, 6 * P)).toEqual(model);
    for (const [off, len] of [...cases, [1, 6 * P - 2] as [number, number], [P + 7, 3 * P + 9] as [number, number]])
      expect(await mm.read(a + off, len)).toEqual(model.subarray(off, off + len));
    // Make the second VMA read-only: reads across the boundary still work.
    await mm.mprotect(b, 3 * P, 'r');
    expect(await mm.read(a + 3 * P - 10, 20)).toEqual(model.subarray(3 * P - 10, 3 * P + 10));
  });

  it('read of a hole is EFAULT naming the first bad address', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(2 * P, { addr: 0x100000 });
    // From inside the mapping into the hole after it: the first bad byte is the mapping's end.
    const e = await throwsAsync('EFAULT', () => mm.read(va + P + 5, P));
    expect(e.address).toBe(va + 2 * P);
    expect(e.message).toContain(hx(va + 2 * P));
    // Starting in a hole mid-page: the address itself.
    const e2 = await throwsAsync('EFAULT', () => mm.read(va - 7, 10));
    expect(e2.address).toBe(va - 7);
    expect(e2.message).toContain(hx(va - 7));
    await throwsAsync('EFAULT', () => mm.read(0, 1)); // null stays null
  });

  it('a write spanning into a hole changes nothing, not even the part before the hole', async () => {
    const { mm, ram } = makeMm();
    const va = mm.mmap(2 * P, { addr: 0x100000 });
    await mm.write(va, pattern(2 * P));
    mm.mmap(P, { addr: va + 3 * P }); // a mapping after the hole
    const free = ram.freeFrames;
    const e = await throwsAsync('EFAULT', () => mm.write(va + P, new Uint8Array(3 * P).fill(0xee)));
    expect(e.address).toBe(va + 2 * P);
    expect(e.message).toContain(hx(va + 2 * P));
    expect(await mm.read(va, 2 * P)).toEqual(pattern(2 * P));
    expect(await mm.read(va + 3 * P, P)).toEqual(zeros(P));
    expect(ram.freeFrames).toBe(free);
  });

  it("prot 'none' is EFAULT for reads and writes", async () => {
    const { mm } = makeMm();
    const va = mm.mmap(2 * P, { prot: 'none' });
    const e = await throwsAsync('EFAULT', () => mm.read(va + 3, 4));
    expect(e.message).toContain("prot 'none'");
    expect(e.address).toBe(va + 3);
    await throwsAsync('EFAULT', () => mm.write(va, new Uint8Array(1)));
  });

  it("a write to 'r' is EPERM naming the address, and a write that reaches into 'r' changes nothing", async () => {
    const { mm, ram } = makeMm();
    const rw = mm.mmap(P, { addr: 0x100000, prot: 'rw' });
    const r = mm.mmap(P, { addr: 0x100000 + P, prot: 'r' });
    const free = ram.freeFrames;
    const e = await throwsAsync('EPERM', () => mm.write(r + 8, new Uint8Array(4)));
    expect(e.address).toBe(r + 8);
    expect(e.message).toContain(hx(r + 8));
    const e2 = await throwsAsync('EPERM', () => mm.write(rw + P - 2, new Uint8Array([1, 2, 3, 4])));
    expect(e2.address).toBe(r);
    expect(await mm.read(rw, 2 * P)).toEqual(zeros(2 * P));
    expect(ram.freeFrames).toBe(free);
  });

  it('bad read/write arguments are EINVAL', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(P);
    await throwsAsync('EINVAL', () => mm.read(va, 0));
    await throwsAsync('EINVAL', () => mm.read(-1, 1));
    await throwsAsync('EINVAL', () => mm.read(va + 0.5, 1));
    await throwsAsync('EINVAL', () => mm.read(VA_LIMIT - 1, 2));
    await throwsAsync('EINVAL', () => mm.write(va, new Uint8Array(0)));
    await throwsAsync('EINVAL', () => mm.write(va, [1, 2, 3] as unknown as Uint8Array));
    await throwsAsync('EINVAL', () => mm.write(VA_LIMIT - 1, new Uint8Array(2)));
  });

  it('a write that needs more frames than are free is ENOMEM and changes nothing', async () => {
    const { mm, ram } = makeMm(4 * P); // four frames of RAM
    const va = mm.mmap(8 * P);
    await mm.write(va, pattern(2 * P)); // two frames used
    const e = await throwsAsync('ENOMEM', () => mm.write(va + P, new Uint8Array(4 * P).fill(0x77))); // needs 3 more
    expect(e.message).toContain(hx(va + P));
    expect(ram.freeFrames).toBe(2);
    expect(await mm.read(va, 8 * P)).toEqual(Uint8Array.from([...pattern(2 * P), ...zeros(6 * P)]));
    // Exactly what fits still works.
    await mm.write(va + 2 * P, new Uint8Array(2 * P).fill(1));
    expect(ram.freeFrames).toBe(0);
  });

  it('pins are released after reads, writes and failures', async () => {
    const { mm } = makeMm(2 * P);
    const va = mm.mmap(4 * P);
    await mm.read(va, 4 * P);
    await mm.write(va, new Uint8Array(P));
    await throwsAsync('ENOMEM', () => mm.write(va, new Uint8Array(4 * P)));
    for (let p = 0; p < 4; p++) expect(mm.pageTable.isPinned(va / P + p)).toBe(false);
  });
});

describe('munmap', () => {
  it('of a sub-range splits the VMA, frees its frames, and the neighbours keep their data', async () => {
    const env = makeMm();
    const { mm, ram } = env;
    const va = mm.mmap(5 * P, { addr: 0x200000 });
    const data = pattern(5 * P);
    await mm.write(va, data);
    const free = ram.freeFrames;
    await mm.munmap(va + P, 2 * P);
    expect(ram.freeFrames).toBe(free + 2);
    expect(mm.vmas.all().map((v) => [v.start * P, v.end * P])).toEqual([
      [va, va + P],
      [va + 3 * P, va + 5 * P],
    ]);
    expect(kindAt(env, va + P)).toBe(Kind.None);
    expect(await mm.read(va, P)).toEqual(data.subarray(0, P));
    expect(await mm.read(va + 3 * P, 2 * P)).toEqual(data.subarray(3 * P));
    await throwsAsync('EFAULT', () => mm.read(va + P, 1));
  });

  it('rounds the length up to pages, and unmapping a hole is fine', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(3 * P, { addr: 0x200000 });
    await mm.munmap(va, P + 1); // two pages
    expect(mm.vmaAt(va + P)).toBeUndefined();
    expect(mm.vmaAt(va + 2 * P)).toBeDefined();
    await mm.munmap(0x9000_0000, 10 * P);
  });

  it('a later mapping of the same range reads zeros (frames are zeroed before reuse)', async () => {
    const { mm } = makeMm(2 * P);
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(2 * P).fill(0xcc));
    await mm.munmap(va, 2 * P);
    const vb = mm.mmap(2 * P);
    await mm.write(vb, new Uint8Array([1]));
    await mm.write(vb + P, new Uint8Array([2]));
    const got = await mm.read(vb, 2 * P);
    const want = zeros(2 * P);
    want[0] = 1;
    want[P] = 2;
    expect(got).toEqual(want);
  });

  it('unaligned address or bad length is EINVAL and unmaps nothing', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(2 * P);
    await throwsAsync('EINVAL', () => mm.munmap(va + 1, P));
    await throwsAsync('EINVAL', () => mm.munmap(va, 0));
    await throwsAsync('EINVAL', () => mm.munmap(VA_LIMIT - P, 2 * P));
    expect(mm.vmaAt(va)).toBeDefined();
  });

  it("fires the notifier with event 'unmap' over the page range, and counts it", async () => {
    const { mm, stats } = makeMm();
    const va = mm.mmap(4 * P, { addr: 0x200000 });
    const seen: InvalidateRange[] = [];
    const sub = mm.notifier.insert(0, 1 << 20, (r) => seen.push({ ...r }));
    const seq = sub.readBegin();
    await mm.munmap(va + P, P);
    expect(seen.map((r) => [r.event, r.start, r.end])).toEqual([['unmap', va / P + 1, va / P + 2]]);
    expect(sub.readRetry(seq)).toBe(true);
    expect(stats.get('invalidations')).toBe(2); // the fixed mmap above fired one too
  });
});

describe('mprotect', () => {
  it('of a sub-range makes writes EPERM there only, and reads still work', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(4 * P, { addr: 0x200000 });
    await mm.write(va, pattern(4 * P));
    await mm.mprotect(va + P, 2 * P, 'r');
    expect(mm.vmas.all().map((v) => v.prot)).toEqual(['rw', 'r', 'rw']);
    await throwsAsync('EPERM', () => mm.write(va + P, new Uint8Array(1)));
    await throwsAsync('EPERM', () => mm.write(va + 3 * P - 1, new Uint8Array(1)));
    await mm.write(va + P - 1, new Uint8Array([0xaa]));
    await mm.write(va + 3 * P, new Uint8Array([0xbb]));
    const want = pattern(4 * P);
    want[P - 1] = 0xaa;
    want[3 * P] = 0xbb;
    expect(await mm.read(va, 4 * P)).toEqual(want);
    // Back to rw: one VMA again, writable everywhere.
    await mm.mprotect(va + P, 2 * P, 'rw');
    expect(mm.vmas.all().length).toBe(1);
    await mm.write(va + P, new Uint8Array([1]));
  });

  it("to 'none' keeps the data for when access comes back", async () => {
    const { mm } = makeMm();
    const va = mm.mmap(P);
    await mm.write(va, pattern(P));
    await mm.mprotect(va, P, 'none');
    await throwsAsync('EFAULT', () => mm.read(va, 1));
    await mm.mprotect(va, P, 'r');
    expect(await mm.read(va, P)).toEqual(pattern(P));
  });

  it('over a hole is ENOMEM naming the hole, and changes nothing (no prot, no notifier)', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(2 * P, { addr: 0x200000 });
    mm.mmap(P, { addr: va + 3 * P });
    const before = mm.vmas.all().map((v) => ({ ...v }));
    const seen: InvalidateRange[] = [];
    mm.notifier.insert(0, 1 << 20, (r) => seen.push(r));
    const e = await throwsAsync('ENOMEM', () => mm.mprotect(va, 4 * P, 'r'));
    expect(e.address).toBe(va + 2 * P);
    expect(e.message).toContain(hx(va + 2 * P));
    expect(mm.vmas.all()).toEqual(before);
    expect(seen).toEqual([]);
    await mm.write(va, new Uint8Array([1])); // still writable
  });

  it('bad prot, unaligned address or bad length is EINVAL', async () => {
    const { mm } = makeMm();
    const va = mm.mmap(P);
    await throwsAsync('EINVAL', () => mm.mprotect(va, P, 'x' as unknown as Prot));
    await throwsAsync('EINVAL', () => mm.mprotect(va + 4, P, 'r'));
    await throwsAsync('EINVAL', () => mm.mprotect(va, -P, 'r'));
    expect(mm.vmaAt(va)!.prot).toBe('rw');
  });

  it("fires the notifier with event 'protection' over the page range", async () => {
    const { mm } = makeMm();
    const va = mm.mmap(4 * P, { addr: 0x200000 });
    const seen: InvalidateRange[] = [];
    const sub = mm.notifier.insert(va / P + 3, va / P + 4, (r) => seen.push({ ...r }));
    const seq = sub.readBegin();
    await mm.mprotect(va, 4 * P, 'r');
    expect(seen.map((r) => [r.event, r.start, r.end])).toEqual([['protection', va / P, va / P + 4]]);
    expect(sub.readRetry(seq)).toBe(true);
  });
});

describe('destroy', () => {
  it('frees every frame, notifies release, then every call is EINVAL', async () => {
    const { mm, ram } = makeMm();
    const total = ram.freeFrames;
    const va = mm.mmap(3 * P);
    await mm.write(va, pattern(3 * P));
    const events: string[] = [];
    mm.notifier.insert(0, 1 << 20, (r) => events.push(r.event));
    mm.destroy();
    expect(ram.freeFrames).toBe(total);
    expect(events).toContain('release');
    mm.destroy(); // idempotent
    const e = throwsSync('EINVAL', () => mm.mmap(P));
    expect(e.message).toContain('destroyed');
    await throwsAsync('EINVAL', () => mm.munmap(va, P));
    await throwsAsync('EINVAL', () => mm.mprotect(va, P, 'r'));
    await throwsAsync('EINVAL', () => mm.read(va, 1));
    await throwsAsync('EINVAL', () => mm.write(va, new Uint8Array(1)));
  });
});
