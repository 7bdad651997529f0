// Device-exclusive access (make_device_exclusive) on a real adapter: the device takes pages
// for atomics, a CPU touch revokes it, and checkExclusive tells which happened.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { failure, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

const ADD = /* wgsl */ `
@group(0) @binding(0) var<uniform> a: vec4u;
fn kernel(gid: vec3u) { hmm_atomic_add_u32(a.x + (gid.x % 4u) * 4096u, 1u); }`;

describe('exclusive access', () => {
  it('device atomics on exclusive pages; a CPU read revokes and sees them', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    const data = pattern(4 * P, 2);
    data.set([0, 0, 0, 0], 0);
    for (let i = 1; i < 4; i++) data.set([0, 0, 0, 0], i * P);
    await mm.write(va, data);
    expect((await m.makeExclusive(va, 4)).cpages).toBe(4);
    const e = await failure(m.checkExclusive(va, 4));
    expect(e.code).toBe('EPERM');
    expect(e.address).toBe(va);
    // pages stay in RAM (not device-private) while the device holds them
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.WRITE));
    const k = await dev.createKernel({ code: ADD, workgroupSize: 64 });
    await m.dispatch(k, { workgroups: 4, uniforms: new Uint32Array([va, 0, 0, 0]), ranges: [{ va, bytes: 4 * P, access: 'rw' }] });
    const back = await mm.read(va, 4 * P); // revokes: the device writes the pages back first
    for (let i = 0; i < 4; i++) {
      expect(new Uint32Array(back.buffer, i * P, 1)[0]).toBe(64);
      expect(back.subarray(i * P + 4, (i + 1) * P)).toEqual(data.subarray(i * P + 4, (i + 1) * P));
    }
    await m.checkExclusive(va, 4); // no longer exclusive
  });

  it('a CPU write revokes exclusive access to that page only', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P);
    await m.makeExclusive(va, 2);
    await mm.write(va + P + 8, new Uint8Array([1, 2, 3]));
    await m.checkExclusive(va + P, 1);
    expect((await failure(m.checkExclusive(va, 2))).address).toBe(va);
    expect(Array.from(await mm.read(va + P + 7, 5))).toEqual([0, 1, 2, 3, 0]);
  });

  it('after mprotect to read-only a device write is EPERM, and the data survived', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(P);
    await mm.write(va, new Uint8Array([9, 0, 0, 0]));
    await m.makeExclusive(va, 1);
    const k = await dev.createKernel({ code: ADD, workgroupSize: 1 });
    await m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 0, 0, 0]), ranges: [{ va, bytes: 4, access: 'rw' }] });
    await mm.mprotect(va, P, 'r');
    await m.checkExclusive(va, 1);
    const e = await failure(m.write(va, new Uint8Array(4)));
    expect(e.code).toBe('EPERM');
    expect((await mm.read(va, 4))[0]).toBe(10);
  });

  it('takes pages back from device memory first, and refuses bad mappings', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const m0 = sys.devices[0]!.mirror(mm);
    const m1 = sys.devices[1]!.mirror(mm);
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P, 7);
    await mm.write(va, data);
    await m1.migrateToDevice(va, 2);
    await m0.makeExclusive(va, 2);
    expect(Array.from(await m1.snapshot(va, 2))).toEqual([PROT.NONE, PROT.NONE]); // held by device 0
    expect(await mm.read(va, 2 * P)).toEqual(data);
    const ro = mm.mmap(P, { prot: 'r' });
    expect((await failure(m0.makeExclusive(ro, 1))).code).toBe('EPERM');
    const sh = mm.mmap(P, { shared: true });
    expect((await failure(m0.makeExclusive(sh, 1))).code).toBe('EINVAL');
    await mm.munmap(ro, P);
    expect((await failure(m0.makeExclusive(ro, 1))).code).toBe('EFAULT');
  });
});
