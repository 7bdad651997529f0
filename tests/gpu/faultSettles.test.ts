// A CPU fault that fails on one page must not return while its other pages are still moving,
// and a range names its first poisoned page. Both found by the differential fuzzer once it could
// lose devices: a fork over a page poisoned by a lost device and a page on a live device
// returned EPOISON at once, with the live device's page still Migrating (any failing page did
// that: ENOMEM too); and a read over a poisoned held copy and a poisoned device-private page
// after it named the second.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import { failure, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

describe('a failing CPU fault settles before it returns', () => {
  it('a read over a page that cannot come home (ENOMEM) and a page that can: the error comes after the other page is home', async () => {
    const sys = await makeSystem({ systemRamBytes: 4 * P, devices: [{ memoryBytes: 16 * P }, { memoryBytes: 16 * P }] });
    const [d0, d1] = sys.devices as [(typeof sys.devices)[0], (typeof sys.devices)[0]];
    const mm = sys.createAddressSpace();
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P, 5);
    await mm.write(va, data);
    await d0.mirror(mm).migrateToDevice(va, 1);
    await d1.mirror(mm).migrateToDevice(va + P, 1);
    const filler = mm.mmap(3 * P);
    await mm.write(filler, new Uint8Array(3 * P).fill(1)); // one RAM frame left: page 0 gets it, page 1 cannot
    expect(sys.ram.freeFrames).toBe(1);
    const e = await failure(mm.read(va, 2 * P));
    expect(e.code).toBe('ENOMEM');
    // at the moment the error is returned, nothing is left in flight
    expect(pte.kind(mm.pageTable.get(va / P))).toBe(Kind.Ram);
    expect(pte.kind(mm.pageTable.get(va / P + 1))).toBe(Kind.Device);
    expect(mm.inflight.size).toBe(0);
    expect(await mm.read(va, P)).toEqual(data.subarray(0, P));
  });

  it('a read and a fork over a poisoned page and a page on a live device: EPOISON, and nothing left Migrating', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P }, { memoryBytes: 16 * P }] });
    const [d0, d1] = sys.devices as [(typeof sys.devices)[0], (typeof sys.devices)[0]];
    const mm = sys.createAddressSpace();
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P, 5);
    await mm.write(va, data);
    await d0.mirror(mm).migrateToDevice(va, 1); // page 0: only on d0
    await d1.mirror(mm).migrateToDevice(va + P, 1); // page 1: on d1, which stays alive
    d0.device.destroy();
    await d0.device.lost;
    const e = await failure(mm.read(va, 2 * P));
    expect([e.code, e.address]).toEqual(['EPOISON', va]);
    expect(pte.kind(mm.pageTable.get(va / P + 1))).not.toBe(Kind.Migrating);
    expect(mm.inflight.size).toBe(0);
    expect(await mm.read(va + P, P)).toEqual(data.subarray(P));
    await d1.mirror(mm).migrateToDevice(va + P, 1);
    const f = await failure(mm.fork());
    expect(f.code).toBe('EPOISON');
    expect(pte.kind(mm.pageTable.get(va / P + 1))).not.toBe(Kind.Migrating);
    expect(mm.inflight.size).toBe(0);
  });

  it('a range over a poisoned held copy and a poisoned device-private page after it names the first page', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P }] });
    const d0 = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = d0.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va, pattern(2 * P, 9));
    await m.makeExclusive(va, 1); // page 0: held by d0
    await m.migrateToDevice(va + P, 1); // page 1: private to d0
    await m.write(va, new Uint8Array(8).fill(7)); // a kernel writes the held copy: RAM is stale
    d0.device.destroy();
    await d0.device.lost;
    expect([mm.poisoned(va / P), mm.poisoned(va / P + 1)]).toEqual([true, true]);
    for (let i = 0; i < 3; i++) {
      const e = await failure(mm.read(va, 2 * P));
      expect([e.code, e.address]).toEqual(['EPOISON', va]);
    }
    const e1 = await failure(mm.read(va + P, 4));
    expect([e1.code, e1.address]).toEqual(['EPOISON', va + P]);
  });
});
