// residency(): one byte per page saying where it lives, read from the CPU page table. Device
// states are written straight into the table here (no GPU); tests/gpu covers the real moves.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/constants.ts';
import { AddressSpace } from '../../src/mm/addressSpace.ts';
import { pte } from '../../src/mm/cpuPageTable.ts';
import type { DevicePagemap } from '../../src/mm/pagemap.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';
import { Stats } from '../../src/trace/stats.ts';
import { Residence, residency, residencyCounts, residenceDevice, residenceName } from '../../src/trace/residency.ts';
import { makeMm, throwsSync } from './helpers.ts';

describe('residency', () => {
  it('tells unmapped, untouched, RAM, device, copy and exclusive pages apart', async () => {
    // Two live devices (ids 1 and 2) that are never asked to move anything here.
    const live = (id: number): DevicePagemap => ({
      id,
      name: `dev${id}`,
      migrateToRam: async () => {},
      revoke: async () => {},
      discard: () => {},
      moved: () => {},
    });
    const mm = new AddressSpace(1, new SystemRam(1 << 20), () => [undefined, live(1), live(2)], new Stats());
    const va = mm.mmap(8 * PAGE_SIZE);
    await mm.write(va + PAGE_SIZE, new Uint8Array([1])); // page 1: RAM
    await mm.read(va + 2 * PAGE_SIZE, 4); // page 2: read only, the zero page
    const p = va / PAGE_SIZE;
    mm.pageTable.set(p + 3, pte.onDevice(2, 7));
    await mm.write(va + 4 * PAGE_SIZE, new Uint8Array([1]));
    mm.pageTable.set(p + 4, pte.withDup(mm.pageTable.get(p + 4)));
    await mm.write(va + 5 * PAGE_SIZE, new Uint8Array([1]));
    mm.pageTable.set(p + 5, pte.withHeld(mm.pageTable.get(p + 5), 1));
    mm.pageTable.set(p + 6, pte.migrating(mm.pageTable.get(p + 1)));

    const codes = residency(mm, va - PAGE_SIZE, 10); // one page before, one after the mapping
    expect([...codes].map(residenceName)).toEqual([
      'unmapped',
      'untouched',
      'ram',
      'untouched',
      'device',
      'copy',
      'exclusive',
      'migrating',
      'untouched',
      'unmapped',
    ]);
    expect(residenceDevice(codes[4]!)).toBe(2);
    expect(residenceDevice(codes[6]!)).toBe(1);
    expect(residencyCounts(codes)).toEqual({ unmapped: 2, untouched: 3, ram: 1, device: 1, copy: 1, exclusive: 1, migrating: 1 });
    expect(codes[0]).toBe(Residence.UNMAPPED);
    mm.pageTable.set(p + 3, pte.none); // leave the table consistent for destroy
    mm.pageTable.set(p + 6, mm.pageTable.get(p + 1));
  });

  it('rejects an unaligned address and a bad page count, naming them', () => {
    const { mm } = makeMm();
    expect(throwsSync('EINVAL', () => residency(mm, 4097, 1)).message).toContain('4097');
    expect(throwsSync('EINVAL', () => residency(mm, 4096, -1)).message).toContain('-1');
    expect(throwsSync('EINVAL', () => residency(mm, 4096, 1.5)).message).toContain('1.5');
  });
});
