// The dmirror API on a real adapter: read/write through the device page table, migration
// both ways, snapshot states, release, and every error the calls can give.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE, PROT } from '../../src/index.ts';
import { makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

async function expectCode(p: Promise<unknown>, code: string, addr?: number): Promise<HmmError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HmmError);
  expect((e as HmmError).code).toBe(code);
  if (addr !== undefined) {
    expect((e as HmmError).address).toBe(addr);
    expect((e as HmmError).message).toContain(addr.toString(16));
  }
  return e as HmmError;
}

describe('Mirror read/write', () => {
  it('reads CPU-written pages on the GPU with one fault round, then none', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(8 * P);
    const data = pattern(8 * P, 3);
    await mm.write(va, data);
    const first = await m.read(va, 8);
    expect(first).toMatchObject({ cpages: 8, faults: 1 });
    expect(first.data).toEqual(data);
    const again = await m.read(va, 8);
    expect(again.faults).toBe(0);
    expect(again.data).toEqual(data);
  });

  it('device writes are seen by the CPU, which faults the pages home', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(4 * P);
    const data = pattern(4 * P, 9);
    const w = await m.write(va, data);
    expect(w).toEqual({ cpages: 4, faults: 1 });
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    const before = sys.counters.get('pagesToSystem');
    expect(await mm.read(va, 4 * P)).toEqual(data);
    expect(sys.counters.get('pagesToSystem') - before).toBe(4);
    expect(sys.counters.get('cpuFaults')).toBeGreaterThan(0);
  });

  it('a CPU write into the middle of device-private pages keeps every other byte', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(3 * P);
    const data = pattern(3 * P, 5);
    await m.write(va, data);
    await mm.write(va + P - 3, new Uint8Array([1, 2, 3, 4, 5, 6]));
    data.set([1, 2, 3, 4, 5, 6], P - 3);
    expect((await m.read(va, 3)).data).toEqual(data);
    expect(await mm.read(va, 3 * P)).toEqual(data);
  });

  it('never-touched pages read as zeros on the device without touching RAM', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(16 * P);
    const freeRam = sys.ram.freeFrames;
    const r = await m.read(va, 16);
    expect(r.data).toEqual(new Uint8Array(16 * P));
    expect(sys.ram.freeFrames).toBe(freeRam);
    expect(sys.counters.get('zeroPagesToDevice')).toBe(16);
    expect(sys.counters.get('bytesToDevice')).toBe(0);
  });

  it('read-only memory is readable on the device and a device write is EPERM, data unchanged', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P);
    await mm.write(va, data);
    await mm.mprotect(va, 2 * P, 'r');
    expect((await m.read(va, 2)).data).toEqual(data);
    expect(Array.from(await m.snapshot(va, 2))).toEqual([PROT.DEV_PRIVATE_LOCAL | PROT.READ, PROT.DEV_PRIVATE_LOCAL | PROT.READ]);
    await expectCode(m.write(va, new Uint8Array(2 * P).fill(0xee)), 'EPERM', va);
    expect(await mm.read(va, 2 * P)).toEqual(data);
  });

  it('prot none and holes fault with EFAULT naming the address', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(4 * P);
    await mm.mprotect(va + 2 * P, P, 'none');
    await expectCode(m.read(va, 4), 'EFAULT', va + 2 * P);
    await mm.munmap(va + 3 * P, P);
    await mm.mprotect(va + 2 * P, P, 'rw');
    await expectCode(m.read(va, 4), 'EFAULT', va + 3 * P);
    await expectCode(m.write(va + 3 * P, new Uint8Array(P)), 'EFAULT', va + 3 * P);
  });

  it('bad arguments are EINVAL and name the argument', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(P);
    await expectCode(m.read(va + 1, 1), 'EINVAL');
    await expectCode(m.read(va, 0), 'EINVAL');
    await expectCode(m.read(va, -1), 'EINVAL');
    await expectCode(m.read(va, 1.5), 'EINVAL');
    await expectCode(m.read(Number.NaN, 1), 'EINVAL');
    await expectCode(m.read(0xfffff000, 2), 'EINVAL');
    await expectCode(m.write(va, new Uint8Array(3)), 'EINVAL');
    await expectCode(m.write(va, new Uint8Array(0)), 'EINVAL');
    await expectCode(m.snapshot(va, 0), 'EINVAL');
    const e = await expectCode(m.migrateToDevice(va, 0), 'EINVAL');
    expect(e.message).toContain('npages');
  });
});

describe('migration', () => {
  it('migrate to device, fault back on a CPU touch, migrate again: bytes survive each step', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(32 * P);
    const data = pattern(32 * P, 11);
    await mm.write(va, data);
    for (let round = 0; round < 3; round++) {
      const r = await m.migrateToDevice(va, 32);
      expect(r.cpages).toBe(32);
      expect(Array.from(await m.snapshot(va, 32))).toEqual(Array(32).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
      // the device sees them with no fault: migration mapped them
      const g = await m.read(va, 32);
      expect(g.faults).toBe(0);
      expect(g.data).toEqual(data);
      // a CPU touch of one page brings that page home only
      expect(await mm.read(va + 5 * P + 17, 1)).toEqual(data.subarray(5 * P + 17, 5 * P + 18));
      const snap = await m.snapshot(va, 32);
      expect(snap[5]).toBe(PROT.WRITE);
      expect(snap[4]).toBe(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE);
      expect(await mm.read(va, 32 * P)).toEqual(data);
    }
  });

  it('migrateToSystem returns cpages and leaves pages in RAM', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(8 * P);
    const data = pattern(8 * P, 2);
    await mm.write(va, data);
    await m.migrateToDevice(va, 8);
    const freeDev = sys.devices[0]!.memory.freeFrames;
    const r = await m.migrateToSystem(va, 8);
    expect(r.cpages).toBe(8);
    expect(sys.devices[0]!.memory.freeFrames).toBe(freeDev + 8);
    expect(Array.from(await m.snapshot(va, 8))).toEqual(Array(8).fill(PROT.WRITE));
    expect(await mm.read(va, 8 * P)).toEqual(data);
    // nothing left to move: cpages 0
    expect((await m.migrateToSystem(va, 8)).cpages).toBe(0);
  });

  it('uses one batched upload for many pages, not one per page', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(64 * P);
    await mm.write(va, pattern(64 * P));
    const batches = sys.counters.get('copyBatches');
    const ptWrites = sys.counters.get('pageTableWrites');
    await m.migrateToDevice(va, 64);
    expect(sys.counters.get('copyBatches') - batches).toBe(1);
    // the directory, the span of leaf entries, and the fresh pages' accessed and dirty-block
    // words (two spans: the host zeroes them, never uploads over them, design-notes §20)
    expect(sys.counters.get('pageTableWrites') - ptWrites).toBeLessThanOrEqual(4);
    const before = sys.counters.get('copyBatches');
    await m.migrateToSystem(va, 64);
    expect(sys.counters.get('copyBatches') - before).toBe(1);
  });

  it('uploads into scattered device frames (the staging scatter path) keep every byte', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    // 64 pages take frames 0..63; sending every other page home frees every other frame, so
    // the next 32 pages land in 32 one-frame runs: too many to write directly.
    const a = mm.mmap(64 * P);
    await mm.write(a, pattern(64 * P, 5));
    await m.migrateToDevice(a, 64);
    for (let i = 0; i < 64; i += 2) await m.migrateToSystem(a + i * P, 1);
    const b = mm.mmap(32 * P);
    const data = pattern(32 * P, 9);
    await mm.write(b, data);
    const batches = sys.counters.get('copyBatches');
    await m.migrateToDevice(b, 32);
    expect(sys.counters.get('copyBatches') - batches).toBe(1);
    expect((await m.read(b, 32)).data).toEqual(data);
    expect(await mm.read(b, 32 * P)).toEqual(data);
    expect(await mm.read(a, 64 * P)).toEqual(pattern(64 * P, 5));
  });

  it('a hole in the range is EINVAL and moves nothing; shared pages are ENOENT', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(4 * P);
    await mm.write(va, pattern(4 * P));
    await mm.munmap(va + 2 * P, P);
    await expectCode(m.migrateToDevice(va, 4), 'EINVAL', va + 2 * P);
    expect(Array.from(await m.snapshot(va, 2))).toEqual([PROT.WRITE, PROT.WRITE]);
    const sh = mm.mmap(2 * P, { shared: true });
    await mm.write(sh, pattern(2 * P, 4));
    const e = await expectCode(m.migrateToDevice(sh, 2), 'ENOENT', sh);
    expect(e.message).toContain('shared');
    expect(Array.from(await m.snapshot(sh, 2))).toEqual([PROT.WRITE, PROT.WRITE]);
  });

  it('prot none is EINVAL for migrateToDevice', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P, { prot: 'none' });
    await expectCode(m.migrateToDevice(va, 2), 'EINVAL', va);
  });

  it('device memory exhausted: per-page ENOENT from migrate, ENOMEM from a fault, sources intact', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 4 * P }] });
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(6 * P);
    const data = pattern(6 * P, 8);
    await mm.write(va, data);
    const e = await expectCode(m.migrateToDevice(va, 6), 'ENOENT');
    expect(e.message).toContain('nomem');
    const snap = Array.from(await m.snapshot(va, 6));
    expect(snap.filter((s) => s === (PROT.DEV_PRIVATE_LOCAL | PROT.WRITE)).length).toBe(4);
    expect(snap.filter((s) => s === PROT.WRITE).length).toBe(2);
    expect(await mm.read(va, 6 * P)).toEqual(data);
    const big = mm.mmap(8 * P);
    await expectCode(m.read(big, 8), 'ENOMEM');
  });

  it('release() evicts everything to RAM; the CPU then reads it without faults', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(12 * P);
    const data = pattern(12 * P, 6);
    await m.write(va, data);
    const r = await dev.release();
    expect(r.pages).toBe(12);
    expect(dev.memory.freeFrames).toBe(dev.memory.frameCount);
    expect(Array.from(await m.snapshot(va, 12))).toEqual(Array(12).fill(PROT.WRITE));
    const faults = sys.counters.get('cpuFaults');
    expect(await mm.read(va, 12 * P)).toEqual(data);
    expect(sys.counters.get('cpuFaults')).toBe(faults);
  });
});

describe('snapshot', () => {
  it('shows every page state with the kernel values', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const [d0, d1] = sys.devices as [(typeof sys.devices)[0], (typeof sys.devices)[0]];
    const m0 = d0.mirror(mm);
    const m1 = d1.mirror(mm);
    const va = mm.mmap(9 * P);
    await mm.mprotect(va, P, 'none'); // 0: prot none -> ERROR
    await mm.munmap(va + P, P); // 1: hole -> ERROR
    // 2: never touched -> NONE
    await mm.read(va + 3 * P, 1); // 3: zero page -> ZERO | READ
    await mm.write(va + 4 * P, new Uint8Array([1])); // 4: RAM, rw -> WRITE
    await mm.write(va + 5 * P, new Uint8Array([1]));
    await mm.mprotect(va + 5 * P, P, 'r'); // 5: RAM, r -> READ
    await mm.write(va + 6 * P, new Uint8Array([1]));
    await m0.migrateToDevice(va + 6 * P, 1); // 6: local device-private rw
    await m1.migrateToDevice(va + 7 * P, 1); // 7: another device's page -> REMOTE
    await mm.write(va + 8 * P, new Uint8Array([1]));
    await m0.migrateToDevice(va + 8 * P, 1);
    await mm.mprotect(va + 8 * P, P, 'r'); // 8: local device-private, read-only
    expect(Array.from(await m0.snapshot(va, 9))).toEqual([
      PROT.ERROR,
      PROT.ERROR,
      PROT.NONE,
      PROT.ZERO | PROT.READ,
      PROT.WRITE,
      PROT.READ,
      PROT.DEV_PRIVATE_LOCAL | PROT.WRITE,
      PROT.DEV_PRIVATE_REMOTE,
      PROT.DEV_PRIVATE_LOCAL | PROT.READ,
    ]);
    expect((await m1.snapshot(va + 6 * P, 2))[0]).toBe(PROT.DEV_PRIVATE_REMOTE);
    expect((await m1.snapshot(va + 6 * P, 2))[1]).toBe(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE);
  });
});

describe('shared mappings', () => {
  it('the device reads them through a read-only copy; a CPU write invalidates it first', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P, { shared: true });
    const data = pattern(2 * P, 12);
    await mm.write(va, data);
    expect((await m.read(va, 2)).data).toEqual(data);
    expect(Array.from(await m.snapshot(va, 2))).toEqual([PROT.READ, PROT.READ]); // still in RAM, read-only while copied
    await mm.write(va + 8, new Uint8Array([0xab, 0xcd]));
    data.set([0xab, 0xcd], 8);
    const r = await m.read(va, 2);
    expect(r.faults).toBe(1); // the copy was invalidated, so the device faulted again
    expect(r.data).toEqual(data);
  });

  it('a device write holds the page; a CPU touch writes it back first', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P, { shared: true });
    const data = pattern(2 * P, 13);
    await m.write(va, data);
    expect(await mm.read(va, 2 * P)).toEqual(data);
    // and the device lost its copy, so its next access faults and sees the CPU's bytes
    await mm.write(va, new Uint8Array([7]));
    data[0] = 7;
    expect((await m.read(va, 2)).data).toEqual(data);
  });

  it('mprotect to read-only writes held pages back before the device loses write access', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(P, { shared: true });
    const data = pattern(P, 14);
    await m.write(va, data);
    await mm.mprotect(va, P, 'r');
    expect(await mm.read(va, P)).toEqual(data);
    await expectCode(m.write(va, data), 'EPERM', va);
  });
});

describe('device loss', () => {
  it('calls on a lost device are EDEVLOST; RAM pages stay readable', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P);
    await mm.write(va, data);
    dev.device.destroy();
    await dev.device.lost;
    await expectCode(m.read(va, 2), 'EDEVLOST');
    await expectCode(m.migrateToDevice(va, 2), 'EDEVLOST');
    expect(await mm.read(va, 2 * P)).toEqual(data);
  });
});
