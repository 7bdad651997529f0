// Prefetch on a real adapter: the density prefetcher cuts replay rounds for dense access,
// and explicit prefetch moves ranges ahead of a kernel.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

const WALK = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: vec4u; // head, out
fn kernel(gid: vec3u) {
  var p = u.x;
  var n = 0u;
  loop {
    if (p == 0u || !hmm_ok()) { break; }
    n += hmm_load_u32(p);
    p = hmm_load_u32(p + 4u);
  }
  hmm_store_u32(u.y, n);
}`;

/** A list through `pages` consecutive pages in order, one node per page. */
async function buildList(mm: { write(va: number, d: Uint8Array): Promise<void> }, base: number, pages: number): Promise<void> {
  for (let i = 0; i < pages; i++) {
    const next = i + 1 < pages ? base + (i + 1) * P : 0;
    await mm.write(base + i * P, new Uint8Array(new Uint32Array([1, next]).buffer));
  }
}

describe('density prefetch', () => {
  it('a walk through a 2 MiB block takes far fewer rounds with prefetch, same answer', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
    const dev = sys.devices[0]!;
    const k = await dev.createKernel({ code: WALK, workgroupSize: 1, label: 'walk' });
    const rounds: Record<string, number> = {};
    for (const prefetch of [false, true]) {
      const mm = sys.createAddressSpace();
      const m = dev.mirror(mm);
      const list = mm.mmap(2 << 20, { addr: 0x0400_0000 });
      const out = mm.mmap(P);
      await buildList(mm, list, 512);
      const r = await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch, uniforms: new Uint32Array([list, out, 0, 0]) });
      expect(new Uint32Array((await mm.read(out, 4)).buffer)[0]).toBe(512);
      rounds[String(prefetch)] = r.rounds;
      mm.destroy();
    }
    expect(rounds.false).toBeGreaterThanOrEqual(512);
    expect(rounds.true! * 10).toBeLessThan(rounds.false!);
    expect(sys.counters.get('prefetchedPages')).toBeGreaterThan(400);
  });

  it('never prefetches into a shared mapping or across a hole', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const base = 0x0800_0000;
    const list = mm.mmap(8 * P, { addr: base });
    const shared = mm.mmap(8 * P, { addr: base + 8 * P, shared: true });
    await mm.write(shared, new Uint8Array([1]));
    const out = mm.mmap(P, { addr: base + 32 * P });
    await buildList(mm, list, 8);
    const k = await dev.createKernel({ code: WALK, workgroupSize: 1 });
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: { threshold: 0 }, uniforms: new Uint32Array([list, out, 0, 0]) });
    expect(new Uint32Array((await mm.read(out, 4)).buffer)[0]).toBe(8);
    // still in RAM (page 0 written, the rest never touched): nothing became device-private
    expect(Array.from(await m.snapshot(shared, 8))).toEqual([PROT.WRITE, ...Array(7).fill(PROT.NONE)]);
    expect(Array.from(await m.snapshot(base + 16 * P, 2))).toEqual([PROT.ERROR, PROT.ERROR]); // the hole stays a hole
  });

  it('rejects bad prefetch settings', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const k = await dev.createKernel({ code: WALK, workgroupSize: 1 });
    await expect(dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: { threshold: 101 } })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: { upgradePages: 3 } })).rejects.toMatchObject({ code: 'EINVAL' });
  });
});

describe('explicit prefetch', () => {
  it('to the device before a kernel (no faults), and back to system RAM', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const list = mm.mmap(16 * P);
    const out = mm.mmap(P);
    await buildList(mm, list, 16);
    expect((await m.prefetch(list, 16 * P, 'device')).pages).toBe(16);
    await m.prefetch(out, 4, 'device');
    const k = await dev.createKernel({ code: WALK, workgroupSize: 1 });
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([list, out, 0, 0]) });
    expect(r).toMatchObject({ rounds: 1, faults: 0 });
    expect((await m.prefetch(list, 16 * P, 'system')).pages).toBe(16);
    expect(Array.from(await m.snapshot(list, 16))).toEqual(Array(16).fill(PROT.WRITE));
    expect(new Uint32Array((await mm.read(out, 4)).buffer)[0]).toBe(16);
  });

  it('a hole is EFAULT and bad arguments EINVAL', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.munmap(va + P, P);
    await expect(m.prefetch(va, 2 * P, 'device')).rejects.toMatchObject({ code: 'EFAULT', address: va + P });
    await expect(m.prefetch(va, 0, 'device')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(m.prefetch(va, P, 'gpu' as 'device')).rejects.toMatchObject({ code: 'EINVAL' });
  });
});
