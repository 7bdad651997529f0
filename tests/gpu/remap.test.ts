// mm.mremap (Linux mremap with MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP): resize in
// place, move with every page keeping its place (a device-private page stays on its device),
// devices told first, huge mappings kept huge where they can be, Linux's errors; and hmm-tests
// migrate_remap_fault: the data is right at the new address before and after a migration.
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, PAGE_SIZE, PROT } from '../../src/index.ts';
import { PTE_VALID } from '../../src/device/devicePageTable.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import { pageList } from '../../src/constants.ts';
import { failure, firstDiff, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

describe('mremap', () => {
  it('grows in place into free pages, and shrinks in place (the tail unmapped)', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(4 * P);
    await mm.write(va, pattern(4 * P, 1));
    expect(await mm.mremap(va, 4 * P, 6 * P)).toBe(va); // nothing after it: in place
    expect(mm.vmaAt(va)).toMatchObject({ start: va / P, end: va / P + 6 });
    expect(firstDiff(await mm.read(va, 4 * P), pattern(4 * P, 1))).toBe(-1);
    expect(await mm.read(va + 4 * P, 2 * P)).toEqual(new Uint8Array(2 * P)); // the new pages: demand-zero
    const free = sys.ram.freeFrames;
    expect(await mm.mremap(va, 6 * P, 2 * P)).toBe(va);
    expect(sys.ram.freeFrames).toBe(free + 2); // pages 2 and 3 had frames
    expect((await failure(mm.read(va + 2 * P, 4))).code).toBe('EFAULT');
  });

  it('moves when it cannot grow in place (mayMove), each page keeping its place: RAM, device-private, untouched', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    const blocker = mm.mmap(P, { addr: va + 4 * P }); // no room to grow
    const data = pattern(3 * P, 2);
    await mm.write(va, data);
    await m.migrateToDevice(va + P, 1); // page 1 on the device
    const devFrame = pte.frame(mm.pageTable.get(va / P + 1));
    expect((await failure(mm.mremap(va, 4 * P, 8 * P))).code).toBe('ENOMEM'); // no move allowed
    const ramFree = sys.ram.freeFrames;
    const nva = await mm.mremap(va, 4 * P, 8 * P, { mayMove: true });
    expect(nva).not.toBe(va);
    expect(mm.vmaAt(va)).toBeUndefined();
    expect(mm.vmaAt(blocker)).toBeDefined();
    // the device-private page stayed on its device, same frame, its entry at the new address
    const e = mm.pageTable.get(nva / P + 1);
    expect([pte.kind(e), pte.frame(e)]).toEqual([Kind.Device, devFrame]);
    expect(Array.from(await m.snapshot(nva, 4))).toEqual([PROT.WRITE, PROT.DEV_PRIVATE_LOCAL | PROT.WRITE, PROT.WRITE, PROT.NONE]);
    expect(sys.ram.freeFrames).toBe(ramFree); // nothing copied, nothing allocated
    // the device dropped its mapping of the old address first (invariant 2), in the GPU's table too
    const gpu = await m.table.readGpuEntries(pageList(va / P, 4));
    expect(gpu.every((x) => (x & PTE_VALID) === 0)).toBe(true);
    expect(firstDiff(await mm.read(nva, 3 * P), data)).toBe(-1); // page 1 faults home from the device
    expect((await m.read(nva, 3)).data).toEqual(data);
  });

  it('migrate_remap_fault: data is right at the new address before and after a migration, through the device and the CPU', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const n = 6;
    const va = mm.mmap(n * P);
    const data = pattern(n * P, 3);
    await mm.write(va, data);
    await m.migrateToDevice(va, n);
    const target = mm.mmap(n * P); // MREMAP_FIXED replaces it
    await mm.write(target, new Uint8Array(n * P).fill(0xee));
    const nva = await mm.mremap(va, n * P, n * P, { mayMove: true, addr: target });
    expect(nva).toBe(target);
    expect((await m.read(nva, n)).data).toEqual(data); // the device reads its own pages at the new address
    expect(firstDiff(await mm.read(nva, n * P), data)).toBe(-1); // the CPU faults them home
    await m.migrateToDevice(nva, n);
    expect((await m.read(nva, n)).data).toEqual(data);
  });

  it('dontUnmap leaves the old range mapped and demand-zero; the pages move', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(3 * P);
    await mm.write(va, pattern(3 * P, 4));
    const nva = await mm.mremap(va, 3 * P, 3 * P, { mayMove: true, dontUnmap: true });
    expect(nva).not.toBe(va);
    expect(firstDiff(await mm.read(nva, 3 * P), pattern(3 * P, 4))).toBe(-1);
    expect(await mm.read(va, 3 * P)).toEqual(new Uint8Array(3 * P));
    await mm.write(va, new Uint8Array([7]));
    expect((await mm.read(nva, 1))[0]).toBe(pattern(1, 4)[0]); // two separate mappings now
  });

  it('a huge mapping stays huge at a 2 MiB aligned address (PMD on the device), and is 4 KiB pages elsewhere', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(HUGE_SIZE, { huge: true });
    const data = pattern(HUGE_SIZE, 5);
    await mm.write(va, data);
    await m.migrateToDevice(va, 512);
    expect((await m.snapshot(va, 1))[0]! & PROT.PMD).toBe(PROT.PMD);
    const aligned = await mm.mremap(va, HUGE_SIZE, HUGE_SIZE, { mayMove: true });
    expect(aligned % HUGE_SIZE).toBe(0);
    expect(mm.vmaAt(aligned)!.huge).toBe(true);
    expect((await m.read(aligned, 2)).data).toEqual(data.subarray(0, 2 * P)); // faults it in: one PMD again
    expect(Array.from(await m.snapshot(aligned, 2))).toEqual([PROT.DEV_PRIVATE_LOCAL | PROT.WRITE | PROT.PMD, PROT.DEV_PRIVATE_LOCAL | PROT.WRITE | PROT.PMD]);
    const odd = await mm.mremap(aligned, HUGE_SIZE, HUGE_SIZE, { addr: aligned + HUGE_SIZE + P });
    expect(mm.vmaAt(odd)!.huge).toBe(false);
    expect((await m.snapshot(odd, 1))[0]! & PROT.PMD).toBe(0);
    expect(firstDiff(await mm.read(odd, HUGE_SIZE), data)).toBe(-1);
  });

  it('refuses what Linux refuses, with the argument or address named', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(4 * P);
    const e1 = await failure(mm.mremap(va + 1, P, 2 * P));
    expect(e1.code).toBe('EINVAL');
    expect((await failure(mm.mremap(va, 0, P))).message).toContain('oldLength');
    expect((await failure(mm.mremap(va, P, 0))).message).toContain('newLength');
    expect((await failure(mm.mremap(va, 4 * P, 4 * P, { addr: va + 2 * P }))).message).toContain('overlaps');
    expect((await failure(mm.mremap(va, 4 * P, 4 * P, { dontUnmap: true }))).code).toBe('EINVAL');
    expect((await failure(mm.mremap(va, 4 * P, 5 * P, { mayMove: true, dontUnmap: true }))).code).toBe('EINVAL');
    const beyond = await failure(mm.mremap(va, 6 * P, 8 * P, { mayMove: true }));
    expect([beyond.code, beyond.address]).toEqual(['EFAULT', va + 4 * P]);
    const hole = await failure(mm.mremap(va + 64 * P, P, 2 * P));
    expect([hole.code, hole.address]).toEqual(['EFAULT', va + 64 * P]);
    expect((await failure(mm.mremap(va, P, 2 * P, { mayMove: 1 as unknown as boolean }))).message).toContain('mayMove');
    // nothing changed
    expect(mm.vmaAt(va)).toMatchObject({ start: va / P, end: va / P + 4 });
  });
});
