// Kernel fidelity: madvise (dontneed, free, willneed), huge pages in RAM (hmm-tests compound,
// migration as one unit both ways, splits), the 4 KiB fallback when a 2 MiB allocation fails
// (migrate_anon_huge_err, migrate_anon_huge_zero_err), exact snapshots, rangeFault breaking
// copy-on-write for a write, and long-term pins (hmm_gup_test).
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, PAGE_SIZE, PFN_VALID, PFN_WRITE, PROT, rangeFault, residency, residenceName } from '../../src/index.ts';
import { failAt, refuseAlloc } from '../../src/device/faultInjection.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { AddressSpace, Mirror } from '../../src/index.ts';
import { failure, firstDiff, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

/** rangeFault's snapshot flags (no fault) for `n` pages, as the device with id `owner` sees them. */
async function flagsOf(mm: AddressSpace, m: Mirror, va: number, n: number) {
  const sub = mm.notifier.insert(0, 1 << 20, () => {});
  try {
    return await rangeFault(mm, { start: va / P, end: va / P + n, fault: false, write: false, owner: m.dev.id, notifier: sub, seq: sub.readBegin() });
  } finally {
    sub.remove();
  }
}

describe('madvise', () => {
  it("'dontneed' drops RAM and device frames (device mappings first); the next touch is demand-zero", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    await mm.write(va, pattern(4 * P, 1));
    await m.migrateToDevice(va + 2 * P, 2);
    const ram = sys.ram.freeFrames;
    const devFree = dev.memory.freeFrames;
    await mm.madvise(va, 4 * P, 'dontneed');
    expect(sys.ram.freeFrames).toBe(ram + 2);
    expect(dev.memory.freeFrames).toBe(devFree + 2);
    expect(m.table.lookup(va / P + 2)).toBeNull();
    expect(await mm.read(va, 4 * P)).toEqual(new Uint8Array(4 * P));
    expect((await m.read(va, 4)).data).toEqual(new Uint8Array(4 * P));
  });

  it("'dontneed' on a shared mapping keeps its data (the shared object's) and drops only the device copies", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(P, { shared: true });
    await parent.write(va, new Uint8Array([9]));
    const child = await parent.fork();
    const m = dev.mirror(parent);
    await m.write(va, new Uint8Array([4, 0, 0, 0])); // a held copy, written back when the write ends
    await m.read(va, 1); // a read-only copy
    await parent.madvise(va, P, 'dontneed');
    expect(m.table.lookup(va / P)).toBeNull();
    expect((await parent.read(va, 1))[0]).toBe(4);
    expect((await child.read(va, 1))[0]).toBe(4);
    await child.write(va, new Uint8Array([5]));
    expect((await parent.read(va, 1))[0]).toBe(5); // still one shared page
  });

  it("'free': a read sees the old bytes until RAM runs short, then zeros; a page written after the advice is kept", async () => {
    const sys = await makeSystem({ systemRamBytes: 64 * P });
    const mm = sys.createAddressSpace();
    const va = mm.mmap(8 * P);
    await mm.write(va, pattern(8 * P, 2));
    await mm.madvise(va, 8 * P, 'free');
    expect(firstDiff(await mm.read(va, 8 * P), pattern(8 * P, 2))).toBe(-1); // nothing dropped yet
    await mm.write(va + 3 * P, new Uint8Array([0xaa])); // written: no longer free
    // pressure: fill the rest of RAM, and more
    const filler = mm.mmap(60 * P);
    await mm.write(filler, new Uint8Array(60 * P).fill(1));
    const after = await mm.read(va, 8 * P);
    const expect3 = pattern(8 * P, 2).subarray(3 * P, 4 * P);
    expect3[0] = 0xaa;
    expect(firstDiff(after.subarray(3 * P, 4 * P), expect3)).toBe(-1);
    const dropped = [0, 1, 2, 4, 5, 6, 7].filter((i) => after.subarray(i * P, (i + 1) * P).every((x) => x === 0));
    expect(dropped.length).toBeGreaterThanOrEqual(4); // 64 frames: 8 + 60 > 64, so at least 4 went
    for (const i of [0, 1, 2, 4, 5, 6, 7]) {
      const page = after.subarray(i * P, (i + 1) * P);
      if (!dropped.includes(i)) expect(firstDiff(page, pattern(8 * P, 2).subarray(i * P, (i + 1) * P)), `page ${i}`).toBe(-1);
    }
  });

  it("'willneed' brings device-private pages home; errors name the advice or the hole", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const va = mm.mmap(2 * P);
    await mm.write(va, pattern(2 * P, 3));
    await dev.mirror(mm).migrateToDevice(va, 2);
    await mm.madvise(va, 2 * P, 'willneed');
    expect([0, 1].map((i) => pte.kind(mm.pageTable.get(va / P + i)))).toEqual([Kind.Ram, Kind.Ram]);
    expect((await failure(mm.madvise(va, P, 'sequential' as 'free'))).message).toContain('sequential');
    const hole = await failure(mm.madvise(va, 4 * P, 'dontneed'));
    expect([hole.code, hole.address]).toEqual(['ENOMEM', va + 2 * P]);
    const shared = mm.mmap(P, { shared: true });
    expect((await failure(mm.madvise(shared, P, 'free'))).code).toBe('EINVAL');
    expect((await failure(mm.madvise(va + 1, P, 'free'))).code).toBe('EINVAL');
  });
});

describe('huge pages in RAM', () => {
  it('compound: a written huge mapping is one huge page in RAM (WRITE|PMD), READ|PMD after mprotect to read-only; rangeFault reports order 9', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20 });
    const m = sys.devices[0]!.mirror(sys.createAddressSpace());
    const mm = m.mm;
    const va = mm.mmap(HUGE_SIZE, { huge: true });
    await mm.write(va + 7 * P, new Uint8Array([1])); // one write: the whole block
    const first = pte.frame(mm.pageTable.get(va / P));
    expect(first % 512).toBe(0);
    for (let i = 0; i < 512; i++) expect(pte.frame(mm.pageTable.get(va / P + i))).toBe(first + i);
    expect(new Set(await m.snapshot(va, 512))).toEqual(new Set([PROT.WRITE | PROT.PMD]));
    const flags = await flagsOf(mm, m, va, 512);
    expect(flags.orders.every((o) => o === 9)).toBe(true);
    expect(flags.flags.every((f) => f === (PFN_VALID | PFN_WRITE))).toBe(true);
    await mm.mprotect(va, HUGE_SIZE, 'r');
    expect(new Set(await m.snapshot(va, 512))).toEqual(new Set([PROT.READ | PROT.PMD]));
  });

  it('migrates to the device as one unit and back to RAM as one huge page again, every byte intact', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(HUGE_SIZE, { huge: true });
    const data = pattern(HUGE_SIZE, 4);
    await mm.write(va, data);
    await m.migrateToDevice(va, 512);
    expect(m.table.isHuge(va / P)).toBe(true);
    expect(new Set(await m.snapshot(va, 512))).toEqual(new Set([PROT.DEV_PRIVATE_LOCAL | PROT.WRITE | PROT.PMD]));
    await m.migrateToSystem(va, 512);
    expect(mm.isRamHuge(va / P / 512)).toBe(true);
    expect(firstDiff(await mm.read(va, HUGE_SIZE), data)).toBe(-1);
  });

  it('a partial munmap, a partial mprotect and a copy-on-write break each split it, losing nothing', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20 });
    const mm = sys.createAddressSpace();
    const make = async (seed: number) => {
      const va = mm.mmap(HUGE_SIZE, { huge: true });
      await mm.write(va, pattern(HUGE_SIZE, seed));
      expect(mm.isRamHuge(va / P / 512)).toBe(true);
      return va;
    };
    const a = await make(5);
    await mm.munmap(a + 100 * P, P);
    expect(mm.isRamHuge(a / P / 512)).toBe(false);
    expect(firstDiff(await mm.read(a, 100 * P), pattern(HUGE_SIZE, 5).subarray(0, 100 * P))).toBe(-1);
    const b = await make(6);
    await mm.mprotect(b, 8 * P, 'r');
    expect(mm.isRamHuge(b / P / 512)).toBe(false);
    expect(firstDiff(await mm.read(b, HUGE_SIZE), pattern(HUGE_SIZE, 6))).toBe(-1);
    const c = await make(7);
    const child = await mm.fork();
    expect(child.isRamHuge(c / P / 512)).toBe(true); // shared copy-on-write, whole
    await child.write(c + 3 * P, new Uint8Array([0xee]));
    expect(child.isRamHuge(c / P / 512)).toBe(false); // the writer's copy of one page split it
    expect(mm.isRamHuge(c / P / 512)).toBe(true);
    expect(firstDiff(await mm.read(c, HUGE_SIZE), pattern(HUGE_SIZE, 7))).toBe(-1);
    expect((await child.read(c + 3 * P, 1))[0]).toBe(0xee);
  });

  for (const zero of [false, true])
    it(`${zero ? 'migrate_anon_huge_zero_err' : 'migrate_anon_huge_err'}: a refused 2 MiB allocation moves the block as 4 KiB pages, both ways, every byte right`, async () => {
      const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
      const dev = sys.devices[0]!;
      const mm = sys.createAddressSpace();
      const m = dev.mirror(mm);
      const va = mm.mmap(HUGE_SIZE, { huge: true });
      const data = zero ? new Uint8Array(HUGE_SIZE) : pattern(HUGE_SIZE, 8);
      if (!zero) await mm.write(va, data);
      const toDevice = failAt('allocHuge', refuseAlloc, { match: (c) => c.direction === 'toDevice' });
      dev.faultInjection = toDevice;
      await m.migrateToDevice(va, 512);
      expect(toDevice.fired).toBe(true);
      expect(m.table.isHuge(va / P)).toBe(false); // 4 KiB frames, 512 entries
      expect((await m.snapshot(va, 1))[0]).toBe(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE);
      expect(firstDiff((await m.read(va, 512)).data, data)).toBe(-1);
      const toSystem = failAt('allocHuge', refuseAlloc, { match: (c) => c.direction === 'toSystem' });
      dev.faultInjection = toSystem;
      await m.migrateToSystem(va, 512);
      dev.faultInjection = undefined;
      expect(toSystem.fired).toBe(true);
      expect(mm.isRamHuge(va / P / 512)).toBe(false);
      expect(firstDiff(await mm.read(va, HUGE_SIZE), data)).toBe(-1);
    });
});

describe('exact snapshots and rangeFault', () => {
  it('a page the device has a read-only copy of is READ, a page shared copy-on-write after fork is READ; the flags agree', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(3 * P);
    await mm.write(va, pattern(3 * P, 9));
    await mm.advise(va, P, { readMostly: true });
    await m.read(va, 1); // page 0: a read-only copy
    const child = await mm.fork(); // pages 1, 2: shared copy-on-write
    await mm.write(va + 2 * P, new Uint8Array([1])); // page 2: the parent's own again
    expect(Array.from(await m.snapshot(va, 3))).toEqual([PROT.READ, PROT.READ, PROT.WRITE]);
    const f = await flagsOf(mm, m, va, 3);
    expect(Array.from(f.flags)).toEqual([PFN_VALID, PFN_VALID, PFN_VALID | PFN_WRITE]);
    expect(Array.from(await dev.mirror(child).snapshot(va, 3))).toEqual([PROT.READ, PROT.READ, PROT.WRITE]);
  });

  it('rangeFault with a write request breaks copy-on-write first: the fork relative keeps its frame and bytes', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(P);
    await parent.write(va, new Uint8Array([3]));
    const child = await parent.fork();
    const shared = pte.frame(child.pageTable.get(va / P));
    const sub = child.notifier.insert(0, 1 << 20, () => {});
    const r = await rangeFault(child, { start: va / P, end: va / P + 1, fault: true, write: true, owner: dev.id, notifier: sub, seq: sub.readBegin() });
    sub.remove();
    expect(r.flags[0]).toBe(PFN_VALID | PFN_WRITE);
    expect(pte.frame(child.pageTable.get(va / P))).not.toBe(shared);
    expect(pte.frame(parent.pageTable.get(va / P))).toBe(shared);
    expect(sys.ram.refCount(shared)).toBe(1);
    expect((await child.read(va, 1))[0]).toBe(3);
  });
});

describe('pins (pin_user_pages)', () => {
  it('hmm_gup_test: a long-term pin brings device pages to RAM first; while pinned they do not migrate and the device uses copies', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    const data = pattern(4 * P, 10);
    await mm.write(va, data);
    await m.migrateToDevice(va, 4);
    const pin = await mm.pin(va, 4 * P, { longterm: true });
    expect([...residency(mm, va, 4)].map(residenceName)).toEqual(['pinned', 'pinned', 'pinned', 'pinned']);
    expect(sys.stats().pinnedPages).toBe(4);
    const frames = [0, 1, 2, 3].map((i) => pte.frame(mm.pageTable.get(va / P + i)));
    const e = await failure(m.migrateToDevice(va, 4));
    expect(e.code).toBe('ENOENT');
    expect(e.message).toContain('pinned');
    expect((await m.read(va, 4)).data).toEqual(data); // through copies
    await m.write(va, new Uint8Array(4).fill(6)); // a held copy, written back to the pinned frame
    expect((await mm.read(va, 1))[0]).toBe(6);
    expect([0, 1, 2, 3].map((i) => pte.frame(mm.pageTable.get(va / P + i)))).toEqual(frames);
    pin.unpin();
    pin.unpin(); // idempotent
    expect([...residency(mm, va, 1)].map(residenceName)).toEqual(['ram']);
    await m.migrateToDevice(va, 4);
    expect(pte.kind(mm.pageTable.get(va / P))).toBe(Kind.Device);
  });

  it('a plain pin pins the RAM pages where they are and leaves device pages alone', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(3 * P);
    await mm.write(va, pattern(3 * P, 11));
    await m.migrateToDevice(va + P, 1);
    const pin = await mm.pin(va, 3 * P);
    expect(pin.pages).toEqual([va / P, va / P + 2]);
    expect([...residency(mm, va, 3)].map(residenceName)).toEqual(['pinned', 'device', 'pinned']);
    pin.unpin();
  });

  it('munmap of a pinned page keeps its frame for the pinner until unpin; fork copies a pinned page for the child', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(2 * P);
    await mm.write(va, pattern(2 * P, 12));
    const pin = await mm.pin(va, 2 * P, { longterm: true });
    const frame = pte.frame(mm.pageTable.get(va / P + 1));
    const child = await mm.fork();
    expect(pte.frame(child.pageTable.get(va / P + 1))).not.toBe(frame); // the child got a copy
    await mm.write(va + P, new Uint8Array([0x55])); // no copy-on-write break: the pinned frame is written
    expect(pte.frame(mm.pageTable.get(va / P + 1))).toBe(frame);
    expect((await child.read(va + P, 1))[0]).toBe(pattern(2 * P, 12)[P]);
    const free = sys.ram.freeFrames;
    await mm.munmap(va, 2 * P);
    expect(sys.ram.freeFrames).toBe(free); // held for the pinner
    const e = await failure(mm.pin(va, P));
    expect([e.code, e.address]).toEqual(['EFAULT', va]);
    pin.unpin();
    await mm.write(mm.mmap(P), new Uint8Array([1])); // the next allocation reaps them
    expect(sys.ram.freeFrames).toBe(free + 2 - 1);
    expect((await failure(mm.pin(va + 8 * P, P, { longterm: 'yes' as unknown as boolean }))).message).toContain('longterm');
  });
});
