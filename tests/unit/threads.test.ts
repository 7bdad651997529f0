// CPU threads without a GPU: real worker_threads (tests/workers/memWorker.ts) load and store
// through the shared CPU page table and come to the main thread through the Atomics fault
// mailbox. What they see must agree byte for byte with AddressSpace.read/write; their errors
// arrive as HmmErrors with code and address; copy-on-write, destroy, concurrent atomics and the
// pin protocol (deferred frees, isPinned) behave as src/workers and src/mm promise.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_SIZE, VA_LIMIT } from '../../src/constants.ts';
import { HmmError, type HmmErrorCode } from '../../src/errors.ts';
import { AddressSpace } from '../../src/mm/addressSpace.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';
import { Stats } from '../../src/trace/stats.ts';
import { mailboxStats, spawnThread, threadHandle, type SpawnedThread } from '../../src/workers/threads.ts';
import { freeSlots, SLOTS } from '../../src/workers/mailbox.ts';
import type { MemWorker } from '../workers/memWorker.ts';
import { hx, pattern, throwsAsync } from './helpers.ts';

const P = PAGE_SIZE;

let threads: SpawnedThread<MemWorker>[] = [];
beforeAll(async () => {
  threads = await Promise.all([0, 1].map(() => spawnThread<MemWorker>(new URL('../workers/memWorker.ts', import.meta.url))));
}, 60_000);
afterAll(async () => {
  await Promise.all(threads.map((t) => t.terminate()));
});
const w = (i: number) => threads[i]!.api;

/** Address spaces made by a test; destroyed after it so their mailbox servers stop. */
const made: AddressSpace[] = [];
afterEach(() => {
  for (const mm of made.splice(0)) mm.destroy();
});

interface Env {
  mm: AddressSpace;
  ram: SystemRam;
  stats: Stats;
}
/** An address space with no devices whose fork() works (children share RAM and stats). */
function makeEnv(ramBytes = 1 << 20): Env {
  const ram = new SystemRam(ramBytes);
  const stats = new Stats();
  let next = 1;
  const make = (): AddressSpace => {
    const mm = new AddressSpace(next++, ram, () => [], stats, make);
    made.push(mm);
    return mm;
  };
  return { mm: make(), ram, stats };
}

const kindAt = (mm: AddressSpace, va: number): Kind => pte.kind(mm.pageTable.get(Math.floor(va / P)));
const frameAt = (mm: AddressSpace, va: number): number => pte.frame(mm.pageTable.get(Math.floor(va / P)));
const u32 = (b: Uint8Array, at = 0): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const f32 = (b: Uint8Array, at = 0): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getFloat32(at, true);
const word = (v: number): Uint8Array => new Uint8Array(new Uint32Array([v >>> 0]).buffer);
const float = (v: number): Uint8Array => new Uint8Array(new Float32Array([v]).buffer);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The HmmError a worker call (or a main-thread call) rejects with; checks the code and the one "CODE: " prefix. */
async function failure(code: HmmErrorCode, p: Promise<unknown>): Promise<HmmError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, `expected HmmError ${code}, the call succeeded`).not.toBeNull();
  expect(e, `expected HmmError ${code}, got ${String(e)}`).toBeInstanceOf(HmmError);
  const he = e as HmmError;
  expect(he.code, he.message).toBe(code);
  expect(he.message.startsWith(`${code}: `), he.message).toBe(true);
  expect(he.message.startsWith(`${code}: ${code}`), he.message).toBe(false);
  return he;
}

describe('worker loads and stores agree with the main thread', () => {
  it('load/store/loadU32/storeU32/loadF32/storeF32/atomicAddU32 see the bytes mm.read/mm.write see, across page boundaries', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(4 * P);
    const data = pattern(3 * P, 11);
    await mm.write(va, data);
    await w(0).attach(threadHandle(mm));

    // main -> worker: byte loads anywhere, including one spanning three pages
    expect([...(await w(0).load(va + P - 100, 200))]).toEqual([...data.subarray(P - 100, P + 100)]);
    expect([...(await w(0).load(va + 5, 3 * P - 10))]).toEqual([...data.subarray(5, 3 * P - 5)]);
    expect(await w(0).loadU32(va + P - 4)).toBe(u32(data, P - 4));
    expect(await w(0).loadU32(va + P)).toBe(u32(data, P));
    // a load running from a RAM page into a never-touched one: the rest reads zero
    expect([...(await w(0).load(va + 3 * P - 4, 8))]).toEqual([...data.subarray(3 * P - 4), 0, 0, 0, 0]);

    // worker -> main: a byte store across a page boundary, little-endian words
    await w(0).store(va + 2 * P - 3, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    expect([...(await mm.read(va + 2 * P - 4, 10))]).toEqual([data[2 * P - 4], 1, 2, 3, 4, 5, 6, 7, 8, data[2 * P + 5]]);
    await w(0).storeU32(va + P - 4, 0x11223344);
    await w(0).storeU32(va + P, 0xfedcba98);
    expect([...(await mm.read(va + P - 4, 8))]).toEqual([0x44, 0x33, 0x22, 0x11, 0x98, 0xba, 0xdc, 0xfe]);
    expect(await w(0).loadU32(va + P)).toBe(0xfedcba98);

    // main writes a word, the worker reads it, and the other way round
    await mm.write(va + 64, word(0xcafef00d));
    expect(await w(0).loadU32(va + 64)).toBe(0xcafef00d);

    // floats: the same IEEE bits on both sides
    await w(0).storeF32(va + 128, -2.25);
    expect(f32(await mm.read(va + 128, 4))).toBe(-2.25);
    await mm.write(va + 132, float(Math.fround(0.1)));
    expect(await w(0).loadF32(va + 132)).toBe(Math.fround(0.1));
    await w(0).storeF32(va + 136, 1e-3);
    expect(await w(0).loadF32(va + 136)).toBe(Math.fround(1e-3)); // stored as f32, not f64

    // atomics: the old value back, u32 wrap-around, negative addends subtract
    await mm.write(va + 256, word(0xffffffff));
    expect(await w(0).atomicAddU32(va + 256, 2)).toBe(0xffffffff);
    expect(u32(await mm.read(va + 256, 4))).toBe(1);
    expect(await w(0).atomicAddU32(va + 256, -1)).toBe(1);
    expect(u32(await mm.read(va + 256, 4))).toBe(0);

    // everything else is untouched: only the bytes written above differ from the pattern
    const back = await mm.read(va, 3 * P);
    const changed = new Set<number>();
    for (const [at, n] of [
      [2 * P - 3, 8],
      [P - 4, 8],
      [64, 4],
      [128, 12],
      [256, 4],
    ] as const)
      for (let i = 0; i < n; i++) changed.add(at + i);
    for (let i = 0; i < 3 * P; i++) if (!changed.has(i) && back[i] !== data[i]) throw new Error(`byte ${i} changed: ${back[i]} != ${data[i]}`);
  });

  it('a never-touched page reads 0 from a worker and maps the zero page (no frame); the next load takes the fast path', async () => {
    const { mm, ram, stats } = makeEnv();
    const va = mm.mmap(3 * P);
    await w(0).attach(threadHandle(mm));
    const free = ram.freeFrames;
    expect(kindAt(mm, va)).toBe(Kind.None);
    expect(await w(0).loadU32(va + 8)).toBe(0);
    expect(kindAt(mm, va)).toBe(Kind.Zero);
    expect(ram.freeFrames).toBe(free);
    expect(stats.get('threadFaults')).toBe(1);
    expect(mailboxStats(mm)).toEqual({ served: 1, failed: 0 });
    // the zero page is now in the table: the worker needs the main thread no more for reads
    expect(await w(0).loadF32(va + 12)).toBe(0);
    expect([...(await w(0).load(va + 100, 8))]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(await w(0).counters()).toEqual({ accesses: 3, slowPaths: 1 });
    expect(stats.get('threadFaults')).toBe(1);
    // a load over two untouched pages maps both; the main thread reads zeros too
    expect((await w(0).load(va + P, 2 * P)).every((x) => x === 0)).toBe(true);
    expect([kindAt(mm, va + P), kindAt(mm, va + 2 * P)]).toEqual([Kind.Zero, Kind.Zero]);
    expect(ram.freeFrames).toBe(free);
    // a store to the zero page gets a zeroed frame through the mailbox
    await w(0).storeU32(va + 8, 99);
    expect(kindAt(mm, va)).toBe(Kind.Ram);
    expect(ram.freeFrames).toBe(free - 1);
    const page = await mm.read(va, P);
    expect(u32(page, 8)).toBe(99);
    expect(page.every((x, i) => (i >= 8 && i < 12) || x === 0)).toBe(true);
  });

  it('addresses above 2 GiB survive the mailbox (u32 in i32 words): data, and the address of an error', async () => {
    const { mm } = makeEnv();
    const top = VA_LIMIT - 2 * P;
    mm.mmap(P, { addr: top });
    await w(0).attach(threadHandle(mm));
    await w(0).storeU32(top + 8, 0x80000001); // first touch: slow path with va >= 2^31
    expect(u32(await mm.read(top + 8, 4))).toBe(0x80000001);
    const e = await failure('EFAULT', w(0).loadU32(VA_LIMIT - 4));
    expect(e.address).toBe(VA_LIMIT - 4);
    expect(e.message).toContain(hx(VA_LIMIT - 4));
    const m = await failure('EFAULT', mm.read(VA_LIMIT - 4, 4));
    expect(m.address).toBe(e.address);
  });
});

describe('worker errors arrive in the main thread as HmmError with code and address', () => {
  it('read-only mapping: loads work, every kind of store is EPERM at the first read-only byte and changes nothing', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(3 * P);
    const data = pattern(3 * P, 5);
    await mm.write(va, data);
    await mm.mprotect(va + P, 2 * P, 'r');
    await w(1).attach(threadHandle(mm));
    expect([...(await w(1).load(va + P - 2, 8))]).toEqual([...data.subarray(P - 2, P + 6)]);
    expect(await w(1).loadU32(va + P + 16)).toBe(u32(data, P + 16));
    expect(await w(1).loadF32(va + 2 * P)).toBe(f32(data, 2 * P));
    for (const [name, call] of [
      ['storeU32', () => w(1).storeU32(va + P + 16, 1)],
      ['storeF32', () => w(1).storeF32(va + P + 16, 1.5)],
      ['atomicAddU32', () => w(1).atomicAddU32(va + P + 16, 1)],
      ['store', () => w(1).store(va + P + 16, new Uint8Array([1, 2]))],
    ] as const) {
      const e = await failure('EPERM', call());
      expect(e.address, name).toBe(va + P + 16);
      expect(e.message).toContain(hx(va + P + 16));
      expect(e.message).toContain('read-only');
    }
    // a store that starts on the writable page and runs into the read-only one: EPERM naming
    // the first read-only byte, and not even the writable part is written
    const e = await failure('EPERM', w(1).store(va + P - 2, new Uint8Array([9, 9, 9, 9])));
    expect(e.address).toBe(va + P);
    expect((await failure('EPERM', mm.write(va + P - 2, new Uint8Array(4)))).address).toBe(e.address);
    const back = await mm.read(va, 3 * P);
    expect(back.every((x, i) => x === data[i])).toBe(true);
    // a never-touched read-only page reads zero from a worker
    const ro = mm.mmap(P, { prot: 'r' });
    expect(await w(1).loadU32(ro)).toBe(0);
  });

  it("prot 'none' is EFAULT for loads and stores, with the address", async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(2 * P);
    await mm.write(va, pattern(2 * P, 3));
    await mm.mprotect(va + P, P, 'none');
    await w(0).attach(threadHandle(mm));
    for (const call of [
      () => w(0).loadU32(va + P + 4),
      () => w(0).storeU32(va + P + 4, 1),
      () => w(0).load(va + P + 4, 4),
      () => w(0).atomicAddU32(va + P + 4, 1),
    ]) {
      const e = await failure('EFAULT', call());
      expect(e.address).toBe(va + P + 4);
      expect(e.message).toContain("prot 'none'");
    }
    const e = await failure('EFAULT', w(0).load(va + P - 4, 8)); // from a readable page into the none page
    expect(e.address).toBe(va + P);
    expect((await failure('EFAULT', mm.read(va + P - 4, 8))).address).toBe(va + P);
  });

  it('holes are EFAULT naming the first unmapped address; a store into a hole writes nothing', async () => {
    const { mm, ram } = makeEnv();
    const va = mm.mmap(P);
    await mm.write(va, pattern(P, 8));
    await w(0).attach(threadHandle(mm));
    const hole = va + P;
    const free = ram.freeFrames;
    for (const call of [() => w(0).loadU32(hole + 12), () => w(0).storeU32(hole + 12, 1), () => w(0).loadF32(hole + 12), () => w(0).load(hole + 12, 3)]) {
      const e = await failure('EFAULT', call());
      expect(e.address).toBe(hole + 12);
      expect(e.message).toContain(hx(hole + 12));
      expect(e.message).toContain('not mapped');
    }
    // starting in the mapping and running into the hole: the hole's first byte is named
    const e = await failure('EFAULT', w(0).store(va + P - 2, new Uint8Array([1, 2, 3, 4])));
    expect(e.address).toBe(hole);
    expect(e.message).toContain(hx(hole));
    expect((await failure('EFAULT', w(0).load(va + P - 2, 4))).address).toBe(hole);
    expect((await failure('EFAULT', mm.write(va + P - 2, new Uint8Array(4)))).address).toBe(hole);
    expect((await mm.read(va, P)).every((x, i) => x === pattern(P, 8)[i])).toBe(true);
    expect((await failure('EFAULT', w(0).loadU32(0))).address).toBe(0); // VA 0 is never mapped
    expect(ram.freeFrames).toBe(free);
    expect(mailboxStats(mm).failed).toBeGreaterThan(0);
  });

  it('unaligned u32/f32 accesses are EINVAL with the address and touch nothing', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(P);
    await mm.write(va, new Uint8Array(16).fill(0xaa));
    await w(1).attach(threadHandle(mm));
    for (const [at, call] of [
      [va + 2, () => w(1).loadU32(va + 2)],
      [va + 1, () => w(1).storeU32(va + 1, 0)],
      [va + 3, () => w(1).atomicAddU32(va + 3, 1)],
      [va + 6, () => w(1).loadF32(va + 6)],
      [va + 5, () => w(1).storeF32(va + 5, 0)],
    ] as const) {
      const e = await failure('EINVAL', call());
      expect(e.address).toBe(at);
      expect(e.message).toContain('4-byte aligned');
      expect(e.message).toContain(hx(at));
    }
    expect((await mm.read(va, 16)).every((x) => x === 0xaa)).toBe(true);
    expect(await w(1).counters()).toEqual({ accesses: 0, slowPaths: 0 }); // refused before any page was looked at
  });

  it('zero, negative, NaN, fractional and too-long lengths and bad addresses are EINVAL, as on the main thread', async () => {
    const { mm } = makeEnv();
    const top = VA_LIMIT - 2 * P;
    mm.mmap(2 * P, { addr: top });
    const va = mm.mmap(P);
    await w(0).attach(threadHandle(mm));
    for (const n of [0, -4, Number.NaN, 1.5, Number.POSITIVE_INFINITY]) {
      const e = await failure('EINVAL', w(0).load(va, n));
      expect(e.message).toContain('length');
      await failure('EINVAL', mm.read(va, n));
    }
    const long = await failure('EINVAL', w(0).load(top, 3 * P)); // runs past 4 GiB
    expect(long.message).toContain('past the end');
    expect(long.address).toBe(top);
    expect((await failure('EINVAL', mm.read(top, 3 * P))).address).toBe(top);
    await failure('EINVAL', w(0).store(top + P, new Uint8Array(P + 1)));
    await failure('EINVAL', w(0).store(va, new Uint8Array(0)));
    await failure('EINVAL', mm.write(va, new Uint8Array(0)));
    await failure('EINVAL', w(0).loadU32(VA_LIMIT - 2)); // aligned check or range check: either way EINVAL, never a wrap to 0
    for (const bad of [-4, VA_LIMIT, Number.NaN, 2.5]) {
      await failure('EINVAL', w(0).loadU32(bad));
      await failure('EINVAL', w(0).load(bad, 4));
      await failure('EINVAL', mm.read(bad, 4));
    }
    // nothing of this reached the mailbox: every check is made in the worker first
    expect(mailboxStats(mm).served).toBe(0);
  });
});

describe('copy-on-write and destroy through the mailbox', () => {
  it('a worker store to a page shared copy-on-write after fork breaks COW through the mailbox; the child keeps the old bytes', async () => {
    const { mm: parent, ram, stats } = makeEnv();
    const va = parent.mmap(2 * P);
    const data = pattern(2 * P, 21);
    await parent.write(va, data);
    await w(0).attach(threadHandle(parent));
    const child = await parent.fork();
    const [f0, f1] = [frameAt(parent, va), frameAt(parent, va + P)];
    expect([ram.refCount(f0), ram.refCount(f1)]).toEqual([2, 2]);
    // loads share the frame: fast path, no mailbox
    expect(await w(0).loadU32(va + P + 8)).toBe(u32(data, P + 8));
    expect(mailboxStats(parent).served).toBe(0);
    // one store across both pages: one trip to the mailbox, two copies
    await w(0).store(va + P - 2, new Uint8Array([1, 2, 3, 4]));
    expect(mailboxStats(parent)).toEqual({ served: 1, failed: 0 });
    expect(stats.snapshot().cowBreaks).toBe(2);
    expect(frameAt(parent, va)).not.toBe(f0);
    expect(frameAt(parent, va + P)).not.toBe(f1);
    expect([frameAt(child, va), frameAt(child, va + P)]).toEqual([f0, f1]);
    expect([ram.refCount(f0), ram.refCount(f1)]).toEqual([1, 1]);
    // the child is unchanged; the parent has the copy plus the store
    expect((await child.read(va, 2 * P)).every((x, i) => x === data[i])).toBe(true);
    const mine = await parent.read(va, 2 * P);
    expect([...mine.subarray(P - 2, P + 2)]).toEqual([1, 2, 3, 4]);
    expect(mine.every((x, i) => (i >= P - 2 && i < P + 2) || x === data[i])).toBe(true);
    // after the break the page is private again: atomics stay on the fast path
    const before = (await w(0).counters()).slowPaths;
    expect(await w(0).atomicAddU32(va + 16, 1)).toBe(u32(data, 16));
    expect((await w(0).counters()).slowPaths).toBe(before);
    expect(u32(await child.read(va + 16, 4))).toBe(u32(data, 16));
  });

  it('after mm.destroy() the next worker access fails with EINVAL naming the destroyed address space, quickly', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(P);
    await mm.write(va, word(7));
    await w(0).attach(threadHandle(mm));
    expect(await w(0).loadU32(va)).toBe(7);
    mm.destroy();
    const t0 = Date.now();
    for (const call of [() => w(0).loadU32(va), () => w(0).storeU32(va, 1), () => w(0).load(va, 4), () => w(0).atomicAddU32(va, 1)]) {
      const e = await failure('EINVAL', call());
      expect(e.message).toContain('destroyed');
      expect(e.address).toBe(va);
    }
    expect(Date.now() - t0).toBeLessThan(5_000);
    await throwsAsync('EINVAL', () => threadHandle(mm));
  });

  it('a worker blocked in the mailbox when mm.destroy() runs wakes with EINVAL instead of hanging', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(P); // never touched: the first load must ask the main thread
    const h = threadHandle(mm);
    await w(1).attach(h);
    const mailbox = new Int32Array(h.mailbox);
    const bell = Atomics.load(mailbox, 0); // the doorbell word
    const pending = w(1).loadU32(va);
    // Keep the main thread busy (so the server cannot answer) until the worker has rung.
    const deadline = Date.now() + 10_000;
    while (Atomics.load(mailbox, 0) === bell && Date.now() < deadline);
    expect(Atomics.load(mailbox, 0)).not.toBe(bell);
    mm.destroy();
    const t0 = Date.now();
    const e = await failure('EINVAL', pending);
    expect(e.message).toContain('destroyed');
    expect(e.address).toBe(va);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(mailboxStats(mm).served).toBe(0);
  });
});

describe('a fault that times out', () => {
  it('gives its mailbox slot back, whether the main thread had taken the request or not', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap((SLOTS + 4) * P); // never touched: each first load must ask the main thread
    // Long enough that the main thread has surely taken the request when the thread gives up.
    const h = { ...threadHandle(mm), faultTimeoutMs: 1000 };
    await w(1).attach(h);
    // A device holds the page for its relaunch: the main thread takes the request and waits.
    const hold = mm.holdForDevice(0, [va / P]);
    const e = await failure('EBUSY', w(1).loadU32(va));
    expect(e.message).toContain('did not serve the fault within 1000 ms');
    expect(freeSlots(h.mailbox)).toBe(SLOTS - 1); // still being served: the server frees it
    hold.release();
    const deadline = Date.now() + 10_000;
    while (freeSlots(h.mailbox) < SLOTS && Date.now() < deadline) await sleep(1);
    expect(freeSlots(h.mailbox)).toBe(SLOTS);
    // More timeouts than there are slots leave every slot free, and the next access works.
    await w(1).attach({ ...h, faultTimeoutMs: 10 });
    for (let i = 1; i <= SLOTS + 2; i++) {
      const held = mm.holdForDevice(0, [va / P + i]);
      await failure('EBUSY', w(1).loadU32(va + i * P));
      held.release();
    }
    while (freeSlots(h.mailbox) < SLOTS && Date.now() < deadline) await sleep(1);
    expect(freeSlots(h.mailbox)).toBe(SLOTS);
    expect(await w(1).loadU32(va + (SLOTS + 3) * P)).toBe(0);
  }, 30_000);
});

describe('concurrent workers', () => {
  it('two workers doing many atomicAddU32 on the same words lose no update; their slow paths were all served', async () => {
    const { mm, stats } = makeEnv();
    const va = mm.mmap(3 * P); // never touched: first touches race to the mailbox
    const vas = [va, va + 4, va + P + 60, va + 2 * P + P - 4];
    const h = threadHandle(mm);
    await Promise.all([w(0).attach(h), w(1).attach(h)]);
    const ROUNDS = 20_000;
    const [a, b] = await Promise.all([w(0).addLoop(vas, ROUNDS), w(1).addLoop(vas, ROUNDS)]);
    expect(a.ops + b.ops).toBe(2 * ROUNDS * vas.length);
    const out = await mm.read(va, 3 * P);
    for (const x of vas) expect(u32(out, x - va), hx(x)).toBe(2 * ROUNDS);
    const c = [await w(0).counters(), await w(1).counters()];
    const slow = c[0]!.slowPaths + c[1]!.slowPaths;
    expect(c[0]!.accesses + c[1]!.accesses).toBe(2 * ROUNDS * vas.length);
    expect(slow).toBeGreaterThanOrEqual(3); // at least the first touch of each page
    expect(mailboxStats(mm)).toEqual({ served: slow, failed: 0 });
    expect(stats.get('threadFaults')).toBe(slow);
  });

  it('forks during the adds force slow paths (fork hold-off, copy-on-write) and still no update is lost; each child holds a snapshot', async () => {
    const { mm: parent } = makeEnv(4 << 20);
    const va = parent.mmap(2 * P);
    await parent.write(va, new Uint8Array(2 * P));
    const vas = [va + 8, va + P + 8];
    const h = threadHandle(parent);
    await Promise.all([w(0).attach(h), w(1).attach(h)]);
    let done = false;
    const work = Promise.all([w(0).addFor(vas, 400), w(1).addFor(vas, 400)]).finally(() => (done = true));
    const children: AddressSpace[] = [];
    while (!done && children.length < 40) {
      children.push(await parent.fork());
      await sleep(5);
    }
    const rounds = (await work).reduce((x, y) => x + y, 0);
    const out = await parent.read(va, 2 * P);
    for (const x of vas) expect(u32(out, x - va)).toBe(rounds);
    expect(children.length).toBeGreaterThan(1);
    // the first fork came before the workers were done: its child kept an older value than
    // the parent's (no store after the fork reached the child's frames)
    const first = await children[0]!.read(va, 2 * P);
    expect(vas.some((x) => u32(first, x - va) < rounds)).toBe(true);
    let prev = [0, 0];
    for (const c of children) {
      const snap = await c.read(va, 2 * P);
      const now = vas.map((x) => u32(snap, x - va));
      for (let i = 0; i < now.length; i++) {
        expect(now[i]).toBeGreaterThanOrEqual(prev[i]!);
        expect(now[i]).toBeLessThanOrEqual(rounds);
      }
      prev = now;
    }
    const c = [await w(0).counters(), await w(1).counters()];
    const slow = c[0]!.slowPaths + c[1]!.slowPaths;
    expect(slow).toBeGreaterThan(0);
    expect(mailboxStats(parent)).toEqual({ served: slow, failed: 0 });
  });
});

describe('fork holds CPU threads off', () => {
  it('a worker store that arrives while fork copies the table (CTL_FORKING) waits for it and lands after: the child keeps the old value', async () => {
    const { mm: parent, stats } = makeEnv();
    const va = parent.mmap(2 * P);
    await parent.write(va, word(1)); // page 0 is plain private RAM: the fast path could store at once
    await parent.write(va + P, word(2));
    await w(0).attach(threadHandle(parent));
    parent.pageTable.pin(va / P + 1); // another thread is inside page 1: fork waits for it
    let child: AddressSpace | undefined;
    const forking = parent.fork().then((c) => (child = c));
    const store = w(0).storeU32(va, 10);
    await sleep(50);
    expect(child).toBeUndefined();
    expect(u32(await parent.read(va, 4))).toBe(1); // the worker is held off
    parent.pageTable.unpin(va / P + 1);
    await forking;
    await store;
    expect(u32(await child!.read(va, 4))).toBe(1);
    expect(u32(await parent.read(va, 4))).toBe(10);
    expect(stats.snapshot().cowBreaks).toBe(1);
    expect(await w(0).counters()).toEqual({ accesses: 1, slowPaths: 1 });
  });
});

describe('CPU-thread pins', () => {
  it('munmap of a page pinned in the shared table does not free its frame (nor hand it out) until unpin and the next populate', async () => {
    const { mm, ram } = makeEnv(8 * P);
    const a = mm.mmap(P);
    const data = pattern(P, 33);
    await mm.write(a, data);
    const fa = frameAt(mm, a);
    const b = mm.mmap(8 * P);
    mm.pageTable.pin(a / P); // a CPU thread is inside an access to page a
    await mm.munmap(a, P);
    expect(kindAt(mm, a)).toBe(Kind.None); // the entry goes at once...
    expect(ram.freeFrames).toBe(7); // ...the frame does not
    expect(ram.refCount(fa)).toBe(1);
    // every other frame can be used, never page a's: its bytes stay what the thread may read
    await mm.write(b, pattern(7 * P, 2));
    expect(ram.freeFrames).toBe(0);
    expect(ram.frame(fa).every((x, i) => x === data[i])).toBe(true);
    await throwsAsync('ENOMEM', () => mm.write(b + 7 * P, word(1)));
    mm.pageTable.unpin(a / P);
    expect(ram.freeFrames).toBe(0); // not yet: freed when the address space next reaps
    await mm.write(b + 7 * P, word(1)); // populate reaps page a's frame and takes it
    expect(ram.freeFrames).toBe(0);
    expect(frameAt(mm, b + 7 * P)).toBe(fa);
    expect(u32(await mm.read(b + 7 * P, 4))).toBe(1);
    expect((await mm.read(b + 7 * P + 4, P - 4)).every((x) => x === 0)).toBe(true); // zeroed before reuse
  });

  it('a deferred frame is reaped by a later munmap too, and only the unmapped frame is freed, not a new one at the same page', async () => {
    const { mm, ram } = makeEnv(16 * P);
    const a = mm.mmap(P);
    await mm.write(a, word(1));
    const other = mm.mmap(P);
    await mm.write(other, word(2));
    const free = ram.freeFrames;
    mm.pageTable.pin(a / P);
    await mm.munmap(a, P);
    expect(ram.freeFrames).toBe(free);
    // the page is mapped and written again while the old frame still waits for the thread
    expect(mm.mmap(P, { addr: a })).toBe(a);
    await mm.write(a, word(3));
    expect(ram.freeFrames).toBe(free - 1);
    await mm.munmap(other, P); // reaps nothing while pinned
    expect(ram.freeFrames).toBe(free);
    mm.pageTable.unpin(a / P);
    const third = mm.mmap(P);
    await mm.munmap(third, P); // any munmap reaps
    expect(ram.freeFrames).toBe(free + 1);
    expect(u32(await mm.read(a, 4))).toBe(3); // the new frame at page a was kept
    await mm.munmap(a, P);
    expect(ram.freeFrames).toBe(free + 2);
  });

  it('isPinned counts thread pins (shared table) and main-thread pins (a read or write in flight)', async () => {
    const { mm } = makeEnv();
    const va = mm.mmap(3 * P);
    const p = va / P;
    expect([mm.isPinned(p), mm.isPinned(p + 1), mm.isPinned(p + 2)]).toEqual([false, false, false]);
    // a main-thread write in flight pins every page of its range, in the address space only
    const wr = mm.write(va + P - 2, new Uint8Array(P + 4)); // pages p, p+1, p+2
    expect([mm.isPinned(p), mm.isPinned(p + 1), mm.isPinned(p + 2)]).toEqual([true, true, true]);
    expect(mm.pageTable.isPinned(p)).toBe(false);
    // a thread pin on top of it
    mm.pageTable.pin(p + 1);
    await wr;
    expect([mm.isPinned(p), mm.isPinned(p + 1), mm.isPinned(p + 2)]).toEqual([false, true, false]);
    mm.pageTable.unpin(p + 1);
    expect(mm.isPinned(p + 1)).toBe(false);
    // A read waiting for another page of its range (here: a page "migrating", as a device would
    // leave it) keeps its other pages pinned the whole time; pins of two reads nest.
    await mm.write(va + 2 * P, word(5));
    const f = frameAt(mm, va + 2 * P);
    let endMigration!: () => void;
    mm.inflight.set(p + 2, new Promise<void>((r) => (endMigration = r)));
    mm.pageTable.set(p + 2, pte.migrating(pte.ram(f)));
    const slow = mm.read(va + P, 2 * P); // pages p+1 and p+2: waits for the migration
    const quick = mm.read(va + P + 8, 4); // page p+1 only
    expect(mm.isPinned(p + 1)).toBe(true);
    await quick;
    await sleep(10);
    expect(mm.isPinned(p + 1)).toBe(true); // still held by the waiting read
    expect(mm.isPinned(p + 2)).toBe(true);
    expect(mm.pageTable.isPinned(p + 1)).toBe(false); // main-thread pins never show in the shared table
    mm.pageTable.set(p + 2, pte.ram(f));
    mm.inflight.delete(p + 2);
    endMigration();
    expect(u32(await slow, P)).toBe(5);
    expect([mm.isPinned(p), mm.isPinned(p + 1), mm.isPinned(p + 2)]).toEqual([false, false, false]);
  });

  it('a failed main-thread access leaves no pin behind', async () => {
    const { mm } = makeEnv(2 * P);
    const va = mm.mmap(4 * P);
    const p = va / P;
    await throwsAsync('ENOMEM', () => mm.write(va, new Uint8Array(4 * P))); // fails inside the pinned section
    await throwsAsync('EFAULT', () => mm.read(va + 3 * P, 2 * P)); // refused before pinning
    for (let i = 0; i < 4; i++) expect(mm.isPinned(p + i)).toBe(false);
  });
});

describe('device holds: a fault batch keeps CPU threads off its pages until the relaunch', () => {
  it('a thread fault on a held page waits for the release; other pages are served at once', async () => {
    const ram = new SystemRam(16 * PAGE_SIZE);
    const mm = new AddressSpace(1, ram, () => [], new Stats());
    const va = mm.mmap(2 * PAGE_SIZE);
    const hold = mm.holdForDevice(0, [va / PAGE_SIZE]);
    let served = false;
    const held = mm.threadFault(va, 4, true).then(() => (served = true));
    await mm.threadFault(va + PAGE_SIZE, 4, true); // not held: no wait
    await new Promise((r) => setTimeout(r, 20));
    expect(served).toBe(false);
    hold.release();
    await held;
    expect(served).toBe(true);
  });
});
