// Two GPUDevices mirroring one address space, and device memory split over several buffers.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE, PROT } from '../../src/index.ts';
import { makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

describe('two devices', () => {
  it('each sees the other’s pages as remote and faults them across, bytes intact', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    expect(sys.devices[0]!.device).not.toBe(sys.devices[1]!.device);
    const mm = sys.createAddressSpace();
    const m0 = sys.devices[0]!.mirror(mm);
    const m1 = sys.devices[1]!.mirror(mm);
    const va = mm.mmap(16 * P);
    const data = pattern(16 * P, 21);
    await mm.write(va, data);
    await m0.migrateToDevice(va, 16);
    expect(Array.from(await m1.snapshot(va, 16))).toEqual(Array(16).fill(PROT.DEV_PRIVATE_REMOTE));
    // device 1 reads: the pages come home from device 0 and move to device 1
    const r = await m1.read(va, 16);
    expect(r.data).toEqual(data);
    expect(r.faults).toBe(1);
    expect(Array.from(await m1.snapshot(va, 16))).toEqual(Array(16).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    expect(Array.from(await m0.snapshot(va, 16))).toEqual(Array(16).fill(PROT.DEV_PRIVATE_REMOTE));
    expect(sys.devices[0]!.memory.freeFrames).toBe(sys.devices[0]!.memory.frameCount);
    // device 0 writes half, device 1 reads everything back
    const half = pattern(8 * P, 22);
    await m0.write(va, half);
    data.set(half, 0);
    expect((await m1.read(va, 16)).data).toEqual(data);
    expect(await mm.read(va, 16 * P)).toEqual(data);
  });

  it('migrating another device’s pages is ENOENT, as the kernel’s migrate_mixed', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const m0 = sys.devices[0]!.mirror(mm);
    const m1 = sys.devices[1]!.mirror(mm);
    const va = mm.mmap(4 * P);
    await mm.write(va, pattern(4 * P));
    await m1.migrateToDevice(va + 2 * P, 2);
    const e = await m0.migrateToDevice(va, 4).catch((x: unknown) => x as HmmError);
    expect(e).toBeInstanceOf(HmmError);
    expect((e as HmmError).code).toBe('ENOENT');
    expect((e as HmmError).address).toBe(va + 2 * P);
    expect((e as HmmError).message).toContain('remote');
    expect(Array.from(await m0.snapshot(va, 4))).toEqual([
      PROT.DEV_PRIVATE_LOCAL | PROT.WRITE,
      PROT.DEV_PRIVATE_LOCAL | PROT.WRITE,
      PROT.DEV_PRIVATE_REMOTE,
      PROT.DEV_PRIVATE_REMOTE,
    ]);
  });

  it('release on one device leaves the other’s pages where they are', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const [d0, d1] = sys.devices as [(typeof sys.devices)[0], (typeof sys.devices)[0]];
    const va = mm.mmap(4 * P);
    const data = pattern(4 * P, 3);
    await mm.write(va, data);
    await d0.mirror(mm).migrateToDevice(va, 2);
    await d1.mirror(mm).migrateToDevice(va + 2 * P, 2);
    await d0.release();
    expect(Array.from(await d0.mirror(mm).snapshot(va, 4))).toEqual([PROT.WRITE, PROT.WRITE, PROT.DEV_PRIVATE_REMOTE, PROT.DEV_PRIVATE_REMOTE]);
    expect(await mm.read(va, 4 * P)).toEqual(data);
  });
});

describe('device memory in several buffers', () => {
  it('frames in every buffer are reached by kernels and copies', async () => {
    // 16 frames in buffers of 4 frames: four storage buffers
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P, maxBufferBytes: 4 * P }] });
    const dev = sys.devices[0]!;
    expect(dev.memory.buffers.length).toBe(4);
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(16 * P);
    const data = pattern(16 * P, 31);
    await mm.write(va, data);
    await m.migrateToDevice(va, 16);
    expect(dev.memory.freeFrames).toBe(0);
    expect((await m.read(va, 16)).data).toEqual(data);
    const k = await dev.createKernel({
      code: `@group(0) @binding(0) var<uniform> base: vec4u;
             fn kernel(gid: vec3u) { let a = base.x + gid.x * 4u; hmm_store_u32(a, hmm_load_u32(a) ^ 0xffffffffu); }`,
      workgroupSize: 64,
    });
    await m.dispatch(k, { workgroups: (16 * P) / 4 / 64, uniforms: new Uint32Array([va, 0, 0, 0]), ranges: [{ va, bytes: 16 * P, access: 'rw' }] });
    const back = await mm.read(va, 16 * P);
    for (let i = 0; i < back.length; i++) if (back[i] !== (~data[i]! & 0xff)) throw new Error(`byte ${i}`);
  });

  it('a pool larger than four buffers is refused with EINVAL', async () => {
    await expect(makeSystem({ devices: [{ memoryBytes: 20 * P, maxBufferBytes: 4 * P }] })).rejects.toMatchObject({ code: 'EINVAL' });
  });
});
