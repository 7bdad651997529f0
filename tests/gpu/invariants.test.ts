// Invariants 1–5 (docs/contract.md), each checked on a real adapter.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE, PROT } from '../../src/index.ts';
import { pageOf } from '../../src/constants.ts';
import { makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

describe('invariant 1: one VA, one content', () => {
  it('a page valid on the device is invalid on the CPU, and the reverse after a CPU fault', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P);
    await m.write(va, pattern(2 * P));
    // device holds it: the CPU entry is device-private (not a RAM frame)
    expect(m.table.lookup(pageOf(va))).not.toBeNull();
    expect(mm.pageTable.get(pageOf(va)) & 7).toBe(3);
    await mm.read(va, 1);
    // CPU holds it: the device entry is gone
    expect(m.table.lookup(pageOf(va))).toBeNull();
    expect(mm.pageTable.get(pageOf(va)) & 7).toBe(2);
  });
});

describe('invariant 2: no device entry survives its notifier', () => {
  it('munmap and mprotect invalidate device mappings before they return', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    await m.write(va, pattern(4 * P));
    for (let i = 0; i < 4; i++) expect(m.table.lookup(pageOf(va) + i)).not.toBeNull();
    const freeBefore = dev.memory.freeFrames;
    const unmapping = mm.munmap(va, P);
    expect(m.table.lookup(pageOf(va))).toBeNull(); // synchronously, before the promise settles
    await unmapping;
    expect(dev.memory.freeFrames).toBe(freeBefore + 1); // the device-private frame went back
    await mm.mprotect(va + P, P, 'r');
    expect(m.table.lookup(pageOf(va) + 1)).toBeNull();
    expect(m.table.lookup(pageOf(va) + 2)).not.toBeNull();
    // and a kernel now sees the unmapped page as unmapped: ESEGV, not stale data
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { hmm_store_u32(a.y, hmm_load_u32(a.x)); }',
      workgroupSize: 1,
    });
    const e = await m
      .dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, va + 2 * P, 0, 0]), ranges: [{ va: va + 2 * P, bytes: 4, access: 'rw' }] })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HmmError);
    expect((e as HmmError).code).toBe('ESEGV');
  });

  it('a CPU write to a page the device holds invalidates the device entry first', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(P);
    await m.write(va, new Uint8Array(P).fill(1));
    const seqBefore = mm.notifier.invalidations;
    await mm.write(va, new Uint8Array([2]));
    expect(mm.notifier.invalidations).toBeGreaterThan(seqBefore);
    expect(m.table.lookup(pageOf(va))).toBeNull();
    expect((await m.read(va, 1)).data[0]).toBe(2);
  });
});

describe('invariant 3: commit only after the copy', () => {
  it('a device lost before the commit leaves every source page intact in RAM', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    const data = pattern(8 * P, 41);
    await mm.write(va, data);
    const moving = m.migrateToDevice(va, 8).catch((x: unknown) => x);
    dev.device.destroy(); // lost while the copy is in flight
    const e = await moving;
    expect(e).toBeInstanceOf(HmmError);
    expect((e as HmmError).code).toBe('EDEVLOST');
    expect(Array.from(await m.snapshot(va, 8))).toEqual(Array(8).fill(PROT.WRITE));
    expect(await mm.read(va, 8 * P)).toEqual(data);
  });
});

describe('invariant 4: pinned pages do not migrate', () => {
  it('a page pinned by an in-flight CPU access fails that page only, and moves once unpinned', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(3 * P);
    const data = pattern(3 * P, 5);
    await mm.write(va, data);
    mm.pageTable.pin(pageOf(va) + 1);
    const e = await m.migrateToDevice(va, 3).catch((x: unknown) => x as HmmError);
    expect(e).toBeInstanceOf(HmmError);
    expect((e as HmmError).code).toBe('ENOENT');
    expect((e as HmmError).address).toBe(va + P);
    expect((e as HmmError).message).toContain('pinned');
    expect(Array.from(await m.snapshot(va, 3))).toEqual([PROT.DEV_PRIVATE_LOCAL | PROT.WRITE, PROT.WRITE, PROT.DEV_PRIVATE_LOCAL | PROT.WRITE]);
    mm.pageTable.unpin(pageOf(va) + 1);
    expect((await m.migrateToDevice(va, 3)).cpages).toBe(3);
    expect(await mm.read(va, 3 * P)).toEqual(data);
  });

  it('a real in-flight CPU write pins its pages while it faults them home', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P);
    await m.write(va, new Uint8Array(2 * P).fill(9));
    // the write waits on migrate_to_ram for page 0; meanwhile page 1 must refuse to migrate
    const writing = mm.write(va + P - 2, new Uint8Array([1, 2, 3, 4]));
    expect(mm.isPinned(pageOf(va) + 1)).toBe(true);
    await writing;
    expect(mm.isPinned(pageOf(va) + 1)).toBe(false);
    const bytes = await mm.read(va, 2 * P);
    expect(Array.from(bytes.subarray(P - 3, P + 3))).toEqual([9, 1, 2, 3, 4, 9]);
  });
});

describe('invariant 5: frames are zeroed before reuse', () => {
  it('a second address space never reads the first one’s device or RAM frames', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 * P, devices: [{ memoryBytes: 8 * P }] });
    const dev = sys.devices[0]!;
    const a = sys.createAddressSpace();
    const va = a.mmap(8 * P);
    await a.write(va, new Uint8Array(8 * P).fill(0x5a));
    await dev.mirror(a).migrateToDevice(va, 4); // 4 pages on the device, 4 in RAM
    await a.munmap(va, 8 * P);
    expect(dev.memory.freeFrames).toBe(8);
    const b = sys.createAddressSpace();
    const vb = b.mmap(16 * P);
    const mb = dev.mirror(b);
    // device frames: never-touched pages of b land in a's old device frames
    expect((await mb.read(vb, 8)).data.every((x) => x === 0)).toBe(true);
    // RAM frames: b writes one byte per page, so it gets a's old RAM frames
    for (let i = 8; i < 16; i++) await b.write(vb + i * P, new Uint8Array([1]));
    const bytes = await b.read(vb + 8 * P, 8 * P);
    for (let i = 0; i < 8; i++) {
      expect(bytes[i * P]).toBe(1);
      expect(bytes.subarray(i * P + 1, (i + 1) * P).every((x) => x === 0)).toBe(true);
    }
  });

  it('read-only pages are never written from the GPU', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(P, { prot: 'r' });
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { hmm_store_u32(a.x, 77u); }',
      workgroupSize: 1,
    });
    const e = await m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 0, 0, 0]), ranges: [{ va, bytes: 4 }] }).catch((x: unknown) => x);
    expect((e as HmmError).code).toBe('EPERM');
    expect((await m.read(va, 1)).data[0]).toBe(0);
    expect((await mm.read(va, 4))[0]).toBe(0);
  });
});

describe('mixed VMAs with holes', () => {
  it('rw, r, shared and huge mappings side by side, with holes, keep every byte across moves', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const rw = mm.mmap(6 * P);
    await mm.munmap(rw + 2 * P, P); // hole inside
    const ro = mm.mmap(3 * P);
    const sh = mm.mmap(2 * P, { shared: true });
    const huge = mm.mmap(P, { huge: true });
    expect(huge % (2 << 20)).toBe(0);
    expect(mm.vmaAt(huge)!.end - mm.vmaAt(huge)!.start).toBe(512);
    const regions: [number, number][] = [
      [rw, 2 * P],
      [rw + 3 * P, 3 * P],
      [ro, 3 * P],
      [sh, 2 * P],
      [huge, 8 * P],
    ];
    const contents = regions.map(([, len], i) => pattern(len, 50 + i));
    for (let i = 0; i < regions.length; i++) await mm.write(regions[i]![0], contents[i]!);
    await mm.mprotect(ro, 3 * P, 'r');
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < regions.length; i++) {
        const [va, len] = regions[i]!;
        expect((await m.read(va, len / P)).data).toEqual(contents[i]);
      }
      for (let i = 0; i < regions.length; i++) {
        const [va, len] = regions[i]!;
        expect(await mm.read(va, len)).toEqual(contents[i]);
      }
    }
    const snap = await m.snapshot(rw, 6);
    expect(snap[2]).toBe(PROT.ERROR);
  });
});
