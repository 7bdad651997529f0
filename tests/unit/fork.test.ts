// fork() without a GPU: the child gets the parent's VMAs and page states; private frames are
// shared copy-on-write (reference counts in SystemRam) until either side writes; shared
// mappings get a frame for every page and stay shared; failures (ENOMEM, EBUSY, EINVAL) leave
// the parent as it was. A property test checks random write/read/fork/munmap/mmap sequences
// over a family of address spaces against a plain model.
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HUGE_SIZE, MMAP_MIN_ADDR, PAGE_SIZE } from '../../src/constants.ts';
import { HmmError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/mm/addressSpace.ts';
import { CTL_FORKING, Kind, pte } from '../../src/mm/cpuPageTable.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';
import { Stats } from '../../src/trace/stats.ts';
import { pattern, throwsAsync } from './helpers.ts';

const P = PAGE_SIZE;

interface Family {
  mm: AddressSpace;
  ram: SystemRam;
  stats: Stats;
  /** How many children spawn() has made. */
  spawned: () => number;
}
/** An address space with no devices whose fork() works; children share RAM and stats. */
function makeFamily(ramBytes = 1 << 20): Family {
  const ram = new SystemRam(ramBytes);
  const stats = new Stats();
  let next = 1;
  const make = (): AddressSpace => new AddressSpace(next++, ram, () => [], stats, make);
  return { mm: make(), ram, stats, spawned: () => next - 2 };
}

const kindAt = (mm: AddressSpace, va: number): Kind => pte.kind(mm.pageTable.get(Math.floor(va / P)));
const frameAt = (mm: AddressSpace, va: number): number => pte.frame(mm.pageTable.get(Math.floor(va / P)));
const u32 = (b: Uint8Array, at = 0): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const word = (v: number): Uint8Array => new Uint8Array(new Uint32Array([v >>> 0]).buffer);
const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const cow = (s: Stats): number => s.snapshot().cowBreaks ?? 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pins taken by a test (a simulated CPU thread inside an access); released if the test fails. */
const pins: [AddressSpace, number][] = [];
afterEach(() => {
  for (const [mm, p] of pins.splice(0)) mm.pageTable.unpin(p);
});
const pin = (mm: AddressSpace, page: number): void => {
  mm.pageTable.pin(page);
  pins.push([mm, page]);
};
const unpin = (mm: AddressSpace, page: number): void => {
  mm.pageTable.unpin(page);
  pins.splice(
    pins.findIndex(([m, p]) => m === mm && p === page),
    1,
  );
};

describe('fork copies the address space', () => {
  it('copies every VMA (prot, shared, huge, advice) and every page state, and the access bytes CPU threads read', async () => {
    const { mm: parent, ram } = makeFamily(4 << 20);
    const a = parent.mmap(4 * P); // rw private: RAM, zero page, untouched, untouched
    await parent.write(a, pattern(P, 1));
    await parent.read(a + P, 4);
    await parent.advise(a, 4 * P, { preferred: 'system', readMostly: true, accessedBy: [] });
    const r = parent.mmap(2 * P, { prot: 'r' });
    await parent.read(r, 4);
    const s = parent.mmap(2 * P, { shared: true });
    await parent.write(s, word(9));
    const h = parent.mmap(HUGE_SIZE, { huge: true });
    await parent.write(h + 5 * P, word(4));
    const n = parent.mmap(P, { prot: 'none' });
    const kindsBefore = [a, a + P, a + 2 * P, r, r + P, h, h + 5 * P].map((va) => kindAt(parent, va));
    // (the write to the huge mapping made its whole 2 MiB block a huge page in RAM)
    expect(kindsBefore).toEqual([Kind.Ram, Kind.Zero, Kind.None, Kind.Zero, Kind.None, Kind.Ram, Kind.Ram]);

    const child = await parent.fork();
    const vmas = [...parent.vmas.all()];
    expect([...child.vmas.all()]).toEqual(vmas);
    expect(vmas.find((v) => v.start === a / P)).toMatchObject({
      prot: 'rw',
      shared: false,
      huge: false,
      preferred: 'system',
      readMostly: true,
      accessedBy: [],
    });
    expect(child.vmaAt(s)).toMatchObject({ shared: true, prot: 'rw' });
    expect(child.vmaAt(h)).toMatchObject({ huge: true, start: h / P, end: h / P + 512 });
    expect(child.vmaAt(r)!.prot).toBe('r');
    expect(child.vmaAt(n)!.prot).toBe('none');
    for (const v of vmas)
      for (let p = v.start; p < v.end; p++) {
        expect(pte.kind(child.pageTable.get(p)), `page ${p}`).toBe(pte.kind(parent.pageTable.get(p)));
        expect(child.pageTable.access[p], `access byte of page ${p}`).toBe(parent.pageTable.access[p]);
      }
    expect(child.pageTable.access[s / P]).not.toBe(child.pageTable.access[a / P]); // shared is visible to threads
    expect(child.pageTable.access[n / P]).toBe(0);
    // page states stay what they were in the parent (shared pages aside, next test)
    expect([a, a + P, a + 2 * P, r, r + P, h, h + 5 * P].map((va) => kindAt(parent, va))).toEqual(kindsBefore);
    expect(frameAt(child, a)).toBe(frameAt(parent, a));
    expect(ram.refCount(frameAt(parent, a))).toBe(2);
    expect(ram.refCount(frameAt(parent, h + 5 * P))).toBe(2);
    // the VMAs are copies: changing one side leaves the other alone
    await child.mprotect(a, 4 * P, 'r');
    await parent.munmap(r, 2 * P);
    expect(parent.vmaAt(a)!.prot).toBe('rw');
    expect(child.vmaAt(r)!.prot).toBe('r');
    expect(child.pageTable.access[a / P]).not.toBe(parent.pageTable.access[a / P]);
    expect(u32(await child.read(h + 5 * P, 4))).toBe(4);
    expect(same(await child.read(a, P), pattern(P, 1))).toBe(true);
  });

  it('private frames are shared (refCount 2, nothing copied) until the first write on either side; then each side has its own data', async () => {
    const { mm: parent, ram, stats } = makeFamily();
    const va = parent.mmap(3 * P);
    const data = pattern(3 * P, 7);
    await parent.write(va, data);
    const frames = [0, 1, 2].map((i) => frameAt(parent, va + i * P));
    const free = ram.freeFrames;
    const child = await parent.fork();
    expect(stats.snapshot().forks).toBe(1);
    expect(ram.freeFrames).toBe(free);
    expect([0, 1, 2].map((i) => frameAt(child, va + i * P))).toEqual(frames);
    expect(frames.map((f) => ram.refCount(f))).toEqual([2, 2, 2]);
    // reads never copy
    expect(same(await child.read(va, 3 * P), data)).toBe(true);
    expect(same(await parent.read(va, 3 * P), data)).toBe(true);
    expect(cow(stats)).toBe(0);
    // the child writes page 0: it gets a copy (the rest of the page comes along), the parent keeps the frame
    await child.write(va + 8, word(111));
    expect(cow(stats)).toBe(1);
    expect(ram.freeFrames).toBe(free - 1);
    expect(frameAt(parent, va)).toBe(frames[0]);
    expect(frameAt(child, va)).not.toBe(frames[0]);
    expect([ram.refCount(frames[0]!), ram.refCount(frameAt(child, va))]).toEqual([1, 1]);
    const c0 = await child.read(va, P);
    expect(u32(c0, 8)).toBe(111);
    expect(c0.every((x, i) => (i >= 8 && i < 12) || x === data[i])).toBe(true);
    expect(same(await parent.read(va, P), data.subarray(0, P))).toBe(true);
    // the parent writes page 1: the copy is the parent's this time
    await parent.write(va + P + 4, word(222));
    expect(cow(stats)).toBe(2);
    expect(frameAt(child, va + P)).toBe(frames[1]);
    expect(u32(await child.read(va + P + 4, 4))).toBe(u32(data, P + 4));
    expect(u32(await parent.read(va + P + 4, 4))).toBe(222);
    // a second write to a page already copied copies nothing (refCount 1 on both sides)
    await parent.write(va + 8, word(333));
    await child.write(va + 12, word(444));
    expect(cow(stats)).toBe(2);
    expect(u32(await parent.read(va + 8, 4))).toBe(333);
    expect(u32(await child.read(va + 8, 8), 0)).toBe(111);
    expect(u32(await child.read(va + 8, 8), 4)).toBe(444);
    // page 2 is still shared; once the child is gone the parent writes it in place
    expect(ram.refCount(frames[2]!)).toBe(2);
    child.destroy();
    expect(ram.refCount(frames[2]!)).toBe(1);
    await parent.write(va + 2 * P, word(5));
    expect(frameAt(parent, va + 2 * P)).toBe(frames[2]);
    expect(cow(stats)).toBe(2);
  });

  it('zero-page and never-touched pages stay so in both; a write to them takes a fresh frame, not a copy', async () => {
    const { mm: parent, ram, stats } = makeFamily();
    const va = parent.mmap(2 * P);
    await parent.read(va, 4); // page 0: the zero page; page 1: never touched
    const free = ram.freeFrames;
    const child = await parent.fork();
    expect(ram.freeFrames).toBe(free);
    expect([kindAt(child, va), kindAt(child, va + P)]).toEqual([Kind.Zero, Kind.None]);
    expect([kindAt(parent, va), kindAt(parent, va + P)]).toEqual([Kind.Zero, Kind.None]);
    await child.write(va, word(1));
    await child.write(va + P, word(2));
    expect(cow(stats)).toBe(0);
    expect(ram.freeFrames).toBe(free - 2);
    expect([kindAt(parent, va), kindAt(parent, va + P)]).toEqual([Kind.Zero, Kind.None]);
    expect((await parent.read(va, 2 * P)).every((x) => x === 0)).toBe(true);
    expect(u32(await child.read(va + P, 4))).toBe(2);
  });

  it('a grandchild shares the frame three ways; each write breaks off one copy, and every side keeps its own bytes', async () => {
    const { mm: a, ram, stats } = makeFamily();
    const va = a.mmap(P);
    await a.write(va, word(1));
    const f = frameAt(a, va);
    const b = await a.fork();
    const c = await b.fork();
    expect(ram.refCount(f)).toBe(3);
    expect(b.family).toBe(a.family);
    expect(c.family).toBe(a.family);
    expect(a.family.size).toBe(3);
    await b.write(va, word(2));
    expect(ram.refCount(f)).toBe(2);
    await a.write(va, word(3));
    expect(ram.refCount(f)).toBe(1);
    expect(frameAt(c, va)).toBe(f); // the last one keeps the original frame
    await c.write(va, word(4));
    expect(cow(stats)).toBe(2);
    expect([u32(await a.read(va, 4)), u32(await b.read(va, 4)), u32(await c.read(va, 4))]).toEqual([3, 2, 4]);
  });

  it('a private read-only page made writable in the child is copied on the write; the parent keeps its bytes', async () => {
    const { mm: parent, stats } = makeFamily();
    const va = parent.mmap(P);
    await parent.write(va, word(10));
    await parent.mprotect(va, P, 'r');
    const child = await parent.fork();
    await throwsAsync('EPERM', () => child.write(va, word(1)));
    await child.mprotect(va, P, 'rw');
    await child.write(va, word(11));
    expect(cow(stats)).toBe(1);
    expect(u32(await parent.read(va, 4))).toBe(10);
    expect(u32(await child.read(va, 4))).toBe(11);
  });
});

describe('fork keeps shared mappings shared', () => {
  it('every page gets a frame at fork, untouched and zero pages included; both sides see each other\u2019s writes; nothing is copied', async () => {
    const { mm: parent, ram, stats } = makeFamily();
    const va = parent.mmap(3 * P, { shared: true });
    await parent.write(va, word(1)); // page 0: RAM
    await parent.read(va + P, 4); // page 1: the zero page; page 2: never touched
    const free = ram.freeFrames;
    const child = await parent.fork();
    expect(ram.freeFrames).toBe(free - 2);
    for (let i = 0; i < 3; i++) {
      expect(kindAt(parent, va + i * P)).toBe(Kind.Ram);
      expect(frameAt(child, va + i * P)).toBe(frameAt(parent, va + i * P));
      expect(ram.refCount(frameAt(parent, va + i * P))).toBe(2);
    }
    expect(u32(await child.read(va, 4))).toBe(1);
    await child.write(va + 2 * P + 4, word(2)); // a page neither side had touched
    expect(u32(await parent.read(va + 2 * P + 4, 4))).toBe(2);
    await parent.write(va + P + 8, word(3));
    expect(u32(await child.read(va + P + 8, 4))).toBe(3);
    await child.write(va, word(4));
    expect(u32(await parent.read(va, 4))).toBe(4);
    expect(cow(stats)).toBe(0);
    expect(ram.freeFrames).toBe(free - 2);
  });

  it('munmap on one side keeps the other side\u2019s data; the frames go back only with the last mapping', async () => {
    const { mm: parent, ram } = makeFamily();
    const start = ram.freeFrames;
    const va = parent.mmap(2 * P, { shared: true });
    await parent.write(va, pattern(2 * P, 4));
    const child = await parent.fork();
    await child.write(va + P, word(77));
    await parent.munmap(va, 2 * P);
    expect(ram.freeFrames).toBe(start - 2);
    await throwsAsync('EFAULT', () => parent.read(va, 4));
    const left = await child.read(va, 2 * P);
    expect(same(left.subarray(0, P), pattern(2 * P, 4).subarray(0, P))).toBe(true);
    expect(u32(left, P)).toBe(77);
    expect(ram.refCount(frameAt(child, va))).toBe(1);
    await child.write(va, word(5)); // still shared, but alone: written in place
    expect(ram.freeFrames).toBe(start - 2);
    await child.munmap(va, 2 * P);
    expect(ram.freeFrames).toBe(start);
  });
});

describe('fork failures leave the parent as it was', () => {
  it('ENOMEM (tiny RAM, a big untouched shared mapping) names fork; nothing changes; a later fork after munmap works', async () => {
    const { mm: parent, ram, stats, spawned } = makeFamily(8 * P);
    const priv = parent.mmap(P);
    await parent.write(priv, pattern(P, 3));
    const big = parent.mmap(16 * P, { shared: true });
    await parent.write(big, word(1)); // one page of it has a frame; 15 would be needed
    const free = ram.freeFrames;
    const vmas = [...parent.vmas.all()].map((v) => ({ ...v }));
    const e = await throwsAsync('ENOMEM', () => parent.fork());
    expect(e.message).toContain('fork');
    expect(e.message).toContain(`address space ${parent.id}`);
    expect(spawned()).toBe(0); // no child was made
    expect(ram.freeFrames).toBe(free);
    expect([...parent.vmas.all()]).toEqual(vmas);
    for (let i = 1; i < 16; i++) expect(kindAt(parent, big + i * P)).toBe(Kind.None);
    expect(ram.refCount(frameAt(parent, priv))).toBe(1);
    expect(Atomics.load(parent.pageTable.ctl, CTL_FORKING)).toBe(0);
    expect(stats.snapshot().forks).toBeUndefined();
    expect(parent.family.size).toBe(1);
    expect(same(await parent.read(priv, P), pattern(P, 3))).toBe(true);
    await parent.write(priv, word(2)); // still private: no copy
    expect(cow(stats)).toBe(0);
    // the fork flag was cleared: the next failure is ENOMEM again, not EBUSY
    await throwsAsync('ENOMEM', () => parent.fork());
    await parent.munmap(big, 16 * P);
    const child = await parent.fork();
    expect(spawned()).toBe(1);
    expect(Atomics.load(parent.pageTable.ctl, CTL_FORKING)).toBe(0);
    expect(u32(await child.read(priv, 4))).toBe(2);
  });

  it('fork while another fork is running is EBUSY; CTL_FORKING is 1 only while it runs; thread faults wait for it', async () => {
    const { mm: parent, ram, stats } = makeFamily();
    const va = parent.mmap(2 * P);
    await parent.write(va, pattern(2 * P, 6));
    pin(parent, va / P + 1); // a CPU thread inside an access: fork waits for it to leave
    let forked: AddressSpace | undefined;
    const first = parent.fork().then((c) => (forked = c));
    expect(Atomics.load(parent.pageTable.ctl, CTL_FORKING)).toBe(1);
    const e = await throwsAsync('EBUSY', () => parent.fork());
    expect(e.message).toContain('already forking');
    // a thread's slow path (a write to page 0) arrives during the fork and must wait for it
    let faulted = false;
    const fault = parent.threadFault(va + 4, 4, true).then(() => (faulted = true));
    await sleep(30);
    expect(forked).toBeUndefined();
    expect(faulted).toBe(false);
    expect(ram.refCount(frameAt(parent, va))).toBe(1); // nothing shared yet
    unpin(parent, va / P + 1);
    await first;
    await fault;
    expect(forked).toBeDefined();
    expect(Atomics.load(parent.pageTable.ctl, CTL_FORKING)).toBe(0);
    // the fault ran after the table was copied, so it broke copy-on-write for the thread
    expect(cow(stats)).toBe(1);
    expect(frameAt(parent, va)).not.toBe(frameAt(forked!, va));
    expect(frameAt(parent, va + P)).toBe(frameAt(forked!, va + P));
    // and forking works again
    const second = await parent.fork();
    expect(u32(await second.read(va + P, 4))).toBe(u32(pattern(2 * P, 6), P));
  });

  it('fork of a destroyed address space is EINVAL; so is fork of one built without spawn', async () => {
    const { mm } = makeFamily();
    mm.mmap(P);
    mm.destroy();
    const e = await throwsAsync('EINVAL', () => mm.fork());
    expect(e.message).toContain('destroyed');
    const lone = new AddressSpace(5, new SystemRam(16 * P), () => [], new Stats());
    const va = lone.mmap(P);
    await lone.write(va, word(1));
    const e2 = await throwsAsync('EINVAL', () => lone.fork());
    expect(e2.message).toContain('fork');
    expect(Atomics.load(lone.pageTable.ctl, CTL_FORKING)).toBe(0);
    expect(u32(await lone.read(va, 4))).toBe(1);
  });
});

// ---------------------------------------------------------------- property test

const MIN_PAGE = MMAP_MIN_ADDR / P; // 16: the first page mmap may use
const WIN_FIRST = MIN_PAGE - 1; // the window starts with a page that is never mapped
const WIN_PAGES = 12; // pages 15..26
const PRIV = { start: MIN_PAGE, n: 5 }; // 16..20 private; 21, 22 holes; 23..25 shared; 26 hole
const SHARED = { start: MIN_PAGE + 7, n: 3 };
const MAX_SPACES = 5;

type Op =
  | { t: 'write'; who: number; off: number; len: number; seed: number }
  | { t: 'read'; who: number; off: number; len: number }
  | { t: 'fork'; who: number }
  | { t: 'munmap'; who: number; page: number; n: number }
  | { t: 'mmap'; who: number; page: number; n: number; shared: boolean }
  | { t: 'destroy'; who: number };

const who = fc.nat({ max: MAX_SPACES - 1 });
const off = fc.integer({ min: 0, max: WIN_PAGES * P - 1 });
const len = fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 2 * P + 2 }));
const mapPage = fc.integer({ min: MIN_PAGE, max: WIN_FIRST + WIN_PAGES - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('write' as const), who, off, len, seed: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('read' as const), who, off, len }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('fork' as const), who }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('munmap' as const), who, page: mapPage, n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('mmap' as const), who, page: mapPage, n: fc.integer({ min: 1, max: 3 }), shared: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('destroy' as const), who }) },
);

/** The model's page: its bytes, and whether it belongs to a shared mapping (then fork shares the object). */
interface ModelPage {
  bytes: Uint8Array;
  shared: boolean;
}
interface Space {
  mm: AddressSpace;
  pages: Map<number, ModelPage>;
}

const seedBytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed + i * 31) & 0xff);
const firstUnmapped = (s: Space, va: number, n: number): number | null => {
  for (let p = Math.floor(va / P); p <= Math.floor((va + n - 1) / P); p++) if (!s.pages.has(p)) return Math.max(va, p * P);
  return null;
};

async function runOps(ops: Op[]): Promise<void> {
  const ram = new SystemRam(128 * P); // 5 spaces x 12 pages never run out
  const stats = new Stats();
  let next = 1;
  const make = (): AddressSpace => new AddressSpace(next++, ram, () => [], stats, make);
  const root = make();
  root.mmap(PRIV.n * P, { addr: PRIV.start * P });
  root.mmap(SHARED.n * P, { addr: SHARED.start * P, shared: true });
  const rootPages = new Map<number, ModelPage>();
  for (let p = PRIV.start; p < PRIV.start + PRIV.n; p++) rootPages.set(p, { bytes: new Uint8Array(P), shared: false });
  for (let p = SHARED.start; p < SHARED.start + SHARED.n; p++) rootPages.set(p, { bytes: new Uint8Array(P), shared: true });
  const spaces: Space[] = [{ mm: root, pages: rootPages }];

  for (const [step, op] of ops.entries()) {
    const s = spaces[op.who % spaces.length];
    if (!s) break; // every space was destroyed
    const where = `step ${step} ${JSON.stringify(op)}`;
    switch (op.t) {
      case 'write':
      case 'read': {
        const va = WIN_FIRST * P + op.off;
        const hole = firstUnmapped(s, va, op.len);
        const data = seedBytes(op.len, op.t === 'write' ? op.seed : 0);
        const call = op.t === 'write' ? s.mm.write(va, data) : s.mm.read(va, op.len);
        if (hole !== null) {
          const e = await call.then(
            () => null,
            (x: unknown) => x,
          );
          expect(e, where).toBeInstanceOf(HmmError);
          expect([(e as HmmError).code, (e as HmmError).address], where).toEqual(['EFAULT', hole]);
          break;
        }
        const got = await call;
        for (let i = 0; i < op.len; ) {
          const p = Math.floor((va + i) / P);
          const inPage = (va + i) % P;
          const n = Math.min(P - inPage, op.len - i);
          const page = s.pages.get(p)!;
          if (op.t === 'write') page.bytes.set(data.subarray(i, i + n), inPage);
          else {
            const want = page.bytes.subarray(inPage, inPage + n);
            const have = (got as Uint8Array).subarray(i, i + n);
            if (!same(have, want)) expect([...have], `${where}: bytes of page ${p} from ${inPage}`).toEqual([...want]);
          }
          i += n;
        }
        break;
      }
      case 'fork': {
        if (spaces.length >= MAX_SPACES) break;
        const child = await s.mm.fork();
        const pages = new Map<number, ModelPage>();
        for (const [p, mp] of s.pages) pages.set(p, mp.shared ? mp : { bytes: mp.bytes.slice(), shared: false });
        spaces.push({ mm: child, pages });
        break;
      }
      case 'munmap': {
        const n = Math.min(op.n, WIN_FIRST + WIN_PAGES - op.page);
        await s.mm.munmap(op.page * P, n * P);
        for (let p = op.page; p < op.page + n; p++) s.pages.delete(p);
        break;
      }
      case 'mmap': {
        const n = Math.min(op.n, WIN_FIRST + WIN_PAGES - op.page);
        expect(s.mm.mmap(n * P, { addr: op.page * P, shared: op.shared })).toBe(op.page * P);
        for (let p = op.page; p < op.page + n; p++) s.pages.set(p, { bytes: new Uint8Array(P), shared: op.shared });
        break;
      }
      case 'destroy':
        s.mm.destroy();
        spaces.splice(spaces.indexOf(s), 1);
        break;
    }
  }

  // Frame accounting: each frame's reference count is the number of entries that point at it,
  // and the frames in use are exactly those.
  const refs = new Map<number, number>();
  for (const { mm } of spaces)
    for (let p = WIN_FIRST; p < WIN_FIRST + WIN_PAGES; p++) {
      const e = mm.pageTable.get(p);
      if (pte.kind(e) === Kind.Ram) refs.set(pte.frame(e), (refs.get(pte.frame(e)) ?? 0) + 1);
    }
  for (const [f, n] of refs) expect(ram.refCount(f), `frame ${f}`).toBe(n);
  expect(ram.frameCount - ram.freeFrames).toBe(refs.size);
  // and every byte of every space still matches the model
  for (const s of spaces) {
    const all = await Promise.all([...s.pages].map(async ([p, mp]) => [p, same(await s.mm.read(p * P, P), mp.bytes)] as const));
    for (const [p, ok] of all) expect(ok, `space ${s.mm.id} page ${p}`).toBe(true);
  }
  for (const s of spaces) s.mm.destroy();
  expect(ram.freeFrames).toBe(ram.frameCount); // nothing leaked
}

describe('fork property test', () => {
  it('random write/read/fork/munmap/mmap/destroy over a family match a per-space page model; frames are counted exactly and none leak', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), runOps), { numRuns: 120 });
  });
});
