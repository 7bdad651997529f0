// Huge pages on a real adapter: a huge mapping moves as one 2 MiB unit mapped by one
// directory entry; partial munmap/mprotect/CPU faults split it without losing data; with no
// 2 MiB device frame to be had, 4 KiB pages are used instead.
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, PAGE_SIZE, PROT } from '../../src/index.ts';
import { firstDiff, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;
const N = HUGE_SIZE / P; // 512
const HUGE_LOCAL = PROT.DEV_PRIVATE_LOCAL | PROT.WRITE | PROT.PMD;
const LOCAL = PROT.DEV_PRIVATE_LOCAL | PROT.WRITE;

async function hugeSetup(devBytes = 8 << 20, maxBufferBytes?: number) {
  const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: devBytes, ...(maxBufferBytes ? { maxBufferBytes } : {}) }] });
  const dev = sys.devices[0]!;
  const mm = sys.createAddressSpace();
  const m = dev.mirror(mm);
  const va = mm.mmap(HUGE_SIZE, { huge: true });
  const data = pattern(HUGE_SIZE, 23);
  await mm.write(va, data);
  return { sys, dev, mm, m, va, data };
}

describe('huge pages', () => {
  it('a device touch moves the whole 2 MiB block, mapped by one directory entry (PMD)', async () => {
    const { m, va, data } = await hugeSetup();
    const r = await m.read(va + 7 * P, 2);
    expect(r.data).toEqual(data.subarray(7 * P, 9 * P));
    expect(m.table.isHuge(va / P)).toBe(true);
    expect(Array.from(await m.snapshot(va, N))).toEqual(Array(N).fill(HUGE_LOCAL));
    expect(firstDiff((await m.read(va, N)).data, data)).toBe(-1);
  });

  it('kernels read and write through the huge entry', async () => {
    const { dev, mm, m, va, data } = await hugeSetup();
    await m.migrateToDevice(va, N);
    expect(m.table.isHuge(va / P)).toBe(true);
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { let p = a.x + gid.x * 4u; hmm_store_u32(p, hmm_load_u32(p) ^ 0x01010101u); }',
      workgroupSize: 64,
    });
    await m.dispatch(k, { workgroups: HUGE_SIZE / 4 / 64, uniforms: new Uint32Array([va, 0, 0, 0]), ranges: [{ va, bytes: HUGE_SIZE, access: 'rw' }] });
    const back = await mm.read(va, HUGE_SIZE);
    for (let i = 0; i < back.length; i++) if (back[i] !== (data[i]! ^ 1)) throw new Error(`byte ${i}`);
  });

  it('partial munmap splits the block; every other byte survives', async () => {
    const { mm, m, va, data } = await hugeSetup();
    await m.migrateToDevice(va, N);
    await mm.munmap(va + 100 * P, 3 * P);
    const snap = await m.snapshot(va, N);
    expect(snap[99]).toBe(LOCAL);
    expect(Array.from(snap.subarray(100, 103))).toEqual([PROT.ERROR, PROT.ERROR, PROT.ERROR]);
    expect(snap[103]).toBe(LOCAL);
    expect(m.table.isHuge(va / P)).toBe(false);
    expect(firstDiff(await mm.read(va, 100 * P), data.subarray(0, 100 * P))).toBe(-1);
    expect(firstDiff(await mm.read(va + 103 * P, (N - 103) * P), data.subarray(103 * P))).toBe(-1);
  });

  it('partial mprotect splits it: a device write there is EPERM, elsewhere fine, no data lost', async () => {
    const { mm, m, va, data } = await hugeSetup();
    await m.migrateToDevice(va, N);
    await mm.mprotect(va + 8 * P, 8 * P, 'r');
    await expect(m.write(va + 8 * P, new Uint8Array(P))).rejects.toMatchObject({ code: 'EPERM', address: va + 8 * P });
    await m.write(va, new Uint8Array(P).fill(0xaa));
    data.fill(0xaa, 0, P);
    expect((await m.snapshot(va + 8 * P, 1))[0]).toBe(PROT.DEV_PRIVATE_LOCAL | PROT.READ);
    expect(firstDiff(await mm.read(va, HUGE_SIZE), data)).toBe(-1);
  });

  it('a CPU touch brings one page home and leaves the rest of the block on the device', async () => {
    const { mm, m, va, data } = await hugeSetup();
    await m.migrateToDevice(va, N);
    expect(await mm.read(va + 300 * P + 5, 3)).toEqual(data.subarray(300 * P + 5, 300 * P + 8));
    const snap = await m.snapshot(va, N);
    expect(snap[300]).toBe(PROT.WRITE);
    expect(snap[299]).toBe(LOCAL);
    expect(firstDiff((await m.read(va, N)).data, data)).toBe(-1);
  });

  it('falls back to 4 KiB device pages when no 2 MiB device frame can be had', async () => {
    // memory buffers of 1 MiB cannot hold a 2 MiB frame
    const { m, va, data } = await hugeSetup(4 << 20, 1 << 20);
    await m.migrateToDevice(va, N);
    expect(m.table.isHuge(va / P)).toBe(false);
    expect(Array.from(await m.snapshot(va, N))).toEqual(Array(N).fill(LOCAL));
    expect(firstDiff((await m.read(va, N)).data, data)).toBe(-1);
  });

  it('a huge mapping faulted on a full device evicts to make room, all bytes intact', async () => {
    const { sys, mm, m, va, data } = await hugeSetup(4 << 20); // 1024 frames
    const other = mm.mmap(HUGE_SIZE, { huge: true });
    const otherData = pattern(HUGE_SIZE, 41);
    await mm.write(other, otherData);
    await m.migrateToDevice(va, N);
    await m.migrateToDevice(other, N);
    expect(sys.devices[0]!.memory.freeFrames).toBe(0);
    const third = mm.mmap(HUGE_SIZE, { huge: true });
    expect(firstDiff((await m.read(third, N)).data, new Uint8Array(HUGE_SIZE))).toBe(-1);
    expect(sys.counters.get('evictions')).toBeGreaterThanOrEqual(N);
    expect(firstDiff(await mm.read(va, HUGE_SIZE), data)).toBe(-1);
    expect(firstDiff(await mm.read(other, HUGE_SIZE), otherData)).toBe(-1);
  });

  it('falls back too when device memory is fragmented', async () => {
    const { sys, m, mm, va, data } = await hugeSetup(4 << 20);
    // scatter small pages over every 2 MiB run of device frames first
    const small = mm.mmap(8 * P);
    const dev = sys.devices[0]!;
    // take every frame, then give back 300 in each 2 MiB run: 600 free, no whole run free
    const hog = dev.allocFrames(dev.memory.frameCount);
    const back = hog.filter((f) => f % 512 < 300);
    dev.freeFrames(back);
    const kept = hog.filter((f) => f % 512 >= 300);
    await m.migrateToDevice(small, 8);
    expect(dev.allocHuge()).toBeNull();
    await m.migrateToDevice(va, N);
    expect(m.table.isHuge(va / P)).toBe(false);
    expect(firstDiff((await m.read(va, N)).data, data)).toBe(-1);
    dev.freeFrames(kept);
  });
});
