// Advice and thrashing on a real adapter: where pages live when the user says how they are
// used, and what happens to pages that bounce between the CPU and a device.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;
const LOCAL = PROT.DEV_PRIVATE_LOCAL | PROT.WRITE;

describe('advice', () => {
  it('read-mostly: every reader keeps a read-only copy; a write invalidates the others', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const m0 = sys.devices[0]!.mirror(mm);
    const m1 = sys.devices[1]!.mirror(mm);
    const va = mm.mmap(4 * P);
    const data = pattern(4 * P, 31);
    await mm.write(va, data);
    await mm.advise(va, 4 * P, { readMostly: true });
    expect((await m0.read(va, 4)).data).toEqual(data);
    expect((await m1.read(va, 4)).data).toEqual(data);
    // the pages stayed in RAM: both devices and the CPU read their own copies, no migration
    // (read-only while devices have copies: a write must invalidate them first)
    expect(Array.from(await m0.snapshot(va, 4))).toEqual(Array(4).fill(PROT.READ));
    expect(sys.counters.get('pagesToDevice')).toBe(0);
    const cpuFaults = sys.counters.get('cpuFaults');
    expect(await mm.read(va, 4 * P)).toEqual(data);
    expect(sys.counters.get('cpuFaults')).toBe(cpuFaults);
    expect((await m0.read(va, 4)).faults).toBe(0);
    // a device write takes the page (migrates to the writer) and drops every other copy
    await m0.write(va, new Uint8Array(P).fill(0x77));
    data.fill(0x77, 0, P);
    expect((await m0.snapshot(va, 1))[0]).toBe(LOCAL);
    const again = await m1.read(va, 4);
    expect(again.faults).toBe(1);
    expect(again.data).toEqual(data);
    // a CPU write drops the device copies too
    await mm.write(va + 2 * P, new Uint8Array([1, 2, 3]));
    data.set([1, 2, 3], 2 * P);
    expect((await m1.read(va, 4)).data).toEqual(data);
  });

  it("preferred location 'system': a fault-driven kernel uses copies, pages never leave RAM", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    await mm.write(va, new Uint8Array(8 * P).fill(2));
    await mm.advise(va, 8 * P, { preferred: 'system' });
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { let p = a.x + gid.x * 4096u; hmm_store_u32(p, hmm_load_u32(p) * 3u); }',
      workgroupSize: 8,
    });
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 0, 0, 0]) });
    expect(sys.counters.get('pagesToDevice')).toBe(0);
    expect(Array.from(await m.snapshot(va, 8))).toEqual(Array(8).fill(PROT.WRITE));
    const words = new Uint32Array((await mm.read(va, 8 * P)).buffer);
    for (let i = 0; i < 8; i++) expect(words[i * 1024]).toBe(0x02020202 * 3);
    expect(sys.counters.get('pagesToSystem')).toBe(0);
  });

  it('accessed-by: a device that only accesses a range preferred elsewhere reads copies', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const m0 = sys.devices[0]!.mirror(mm);
    const m1 = sys.devices[1]!.mirror(mm);
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P, 5);
    await mm.write(va, data);
    await mm.advise(va, 2 * P, { preferred: 1, accessedBy: [0] });
    expect((await m0.read(va, 2)).data).toEqual(data);
    expect(Array.from(await m0.snapshot(va, 2))).toEqual([PROT.READ, PROT.READ]); // not pulled to device 0: read-only copies
    expect((await m1.read(va, 2)).data).toEqual(data);
    expect(Array.from(await m1.snapshot(va, 2))).toEqual([LOCAL, LOCAL]); // the preferred device takes it
  });

  it('advice keeps through mprotect, merges back, and is checked', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(4 * P);
    await mm.advise(va + P, P, { readMostly: true });
    expect(mm.vmas.all().length).toBe(3);
    await mm.mprotect(va + P, P, 'r');
    expect(mm.vmaAt(va + P)!.readMostly).toBe(true);
    await mm.mprotect(va + P, P, 'rw');
    await mm.advise(va + P, P, { readMostly: false });
    expect(mm.vmas.all().length).toBe(1);
    await mm.munmap(va + 3 * P, P);
    await expect(mm.advise(va, 4 * P, { readMostly: true })).rejects.toMatchObject({ code: 'ENOMEM', address: va + 3 * P });
    await expect(mm.advise(va, P, { preferred: 7 })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(mm.advise(va, P, { accessedBy: [0, 3] })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(mm.advise(va + 1, P, { readMostly: true })).rejects.toMatchObject({ code: 'EINVAL' });
  });
});

describe('thrashing', () => {
  async function pingPong(thrashing: boolean) {
    const sys = await makeSystem({ thrashing: { enabled: thrashing, windowMs: 10_000 } });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { let p = a.x + gid.x * 4096u; hmm_store_u32(p, hmm_load_u32(p) + 1u); }',
      workgroupSize: 4,
    });
    for (let turn = 1; turn <= 8; turn++) {
      await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, 0, 0, 0]) });
      const words = new Uint32Array((await mm.read(va, 4 * P)).buffer);
      for (let i = 0; i < 4; i++) expect(words[i * 1024]).toBe(turn * 2 - 1);
      await mm.write(va, new Uint8Array(new Uint32Array([turn * 2]).buffer)); // the CPU's turn
      for (let i = 1; i < 4; i++) await mm.write(va + i * P, new Uint8Array(new Uint32Array([turn * 2]).buffer));
    }
    return { sys, m, va };
  }

  it('pages bouncing between CPU and GPU are detected and pinned in RAM; data stays right', async () => {
    const { sys, m, va } = await pingPong(true);
    expect(sys.counters.get('thrashEvents')).toBe(4);
    expect(
      sys
        .trace()
        .events()
        .some((e) => e.kind === 'thrash'),
    ).toBe(true);
    // Nobody else was using the pages when the GPU faulted on them (the CPU's turns come between
    // dispatches): a nap would only have added latency, so the service took none (design-notes §20).
    expect(sys.counters.get('throttledBatches')).toBe(0);
    // pinned pages are used through copies now, so the pages stay in system RAM
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.WRITE));
    const migrations = sys.counters.get('pagesToDevice') + sys.counters.get('pagesToSystem');
    const { sys: plain } = await pingPong(false);
    const plainMigrations = plain.counters.get('pagesToDevice') + plain.counters.get('pagesToSystem');
    expect(plain.counters.get('thrashEvents')).toBe(0);
    expect(plain.counters.get('throttledBatches')).toBe(0);
    expect(migrations).toBeLessThan(plainMigrations / 2);
  });

  it('a load fault on a thrashing page maps a writable copy: the store after it needs no second round, no second copy', async () => {
    const { sys, m, va } = await pingPong(true);
    const k = await sys.devices[0]!.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { let p = a.x + gid.x * 4096u; hmm_store_u32(p, hmm_load_u32(p) + 1u); }',
      workgroupSize: 4,
    });
    const c = sys.counters;
    const before = { copies: c.get('deviceCopies'), upgrades: c.get('copyUpgrades'), back: c.get('bytesWrittenBack'), toSystem: c.get('bytesToSystem') };
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, 0, 0, 0]) });
    expect(r.rounds).toBe(2); // the loads' round, then the finishing launch
    expect(c.get('deviceCopies') - before.copies).toBe(4);
    expect(c.get('copyUpgrades') - before.upgrades).toBe(0);
    // the CPU's turn: each copy comes home in the one block the kernel stored to
    const words = new Uint32Array((await m.mm.read(va, 4 * P)).buffer);
    for (let i = 0; i < 4; i++) expect(words[i * 1024]).toBe(8 * 2 + 1);
    expect(c.get('bytesWrittenBack') - before.back).toBe(4 * 256);
    expect(c.get('bytesToSystem') - before.toSystem).toBe(4 * 256);
  });

  it('the fault service naps before a thrashing page only while someone else is using it (here a pin), and the data stays right', async () => {
    const { sys, m, va } = await pingPong(true);
    const mm = m.mm;
    const k = await sys.devices[0]!.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { let p = a.x + gid.x * 4096u; hmm_store_u32(p, hmm_load_u32(p) + 1u); }',
      workgroupSize: 4,
    });
    const naps = sys.counters.get('throttledBatches');
    const pin = await mm.pin(va, P); // another user (DMA, say) holds the first page right now
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, 0, 0, 0]) });
    expect(sys.counters.get('throttledBatches') - naps).toBeGreaterThan(0);
    pin.unpin();
    const words = new Uint32Array((await mm.read(va, 4 * P)).buffer);
    for (let i = 0; i < 4; i++) expect(words[i * 1024]).toBe(8 * 2 + 1);
  });
});
