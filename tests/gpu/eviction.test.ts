// Oversubscription on a real adapter: working sets larger than device memory complete
// correctly, byte for byte, with clock eviction guided by the GPU-set accessed bits.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

// Invocation i adds i+1 to every word of page i.
const STREAM = /* wgsl */ `
@group(0) @binding(0) var<uniform> a: vec4u; // base, pages
fn kernel(gid: vec3u) {
  if (gid.x >= a.y) { return; }
  let page = a.x + gid.x * 4096u;
  for (var w = 0u; w < 1024u; w++) {
    let p = page + w * 4u;
    hmm_store_u32(p, hmm_load_u32(p) + gid.x + 1u);
  }
}`;

describe('oversubscription', () => {
  for (const evictionBytes of [4096, 65536, 2097152] as const) {
    it(`a stream over 2x the device pool completes byte for byte (eviction unit ${evictionBytes / 1024} KiB)`, async () => {
      const frames = 64;
      const pages = 2 * frames;
      const sys = await makeSystem({ devices: [{ memoryBytes: frames * P, evictionBytes }] });
      const dev = sys.devices[0]!;
      const mm = sys.createAddressSpace();
      const m = dev.mirror(mm);
      const va = mm.mmap(pages * P);
      const data = pattern(pages * P, 17);
      await mm.write(va, data);
      const k = await dev.createKernel({ code: STREAM, workgroupSize: 32, label: 'stream' });
      const r = await m.dispatch(k, { mode: 'replayable', workgroups: pages / 32, uniforms: new Uint32Array([va, pages, 0, 0]) });
      expect(sys.counters.get('evictions')).toBeGreaterThanOrEqual(pages - frames);
      const out = await mm.read(va, pages * P);
      const before = new Uint32Array(data.buffer);
      const after = new Uint32Array(out.buffer);
      for (let i = 0; i < after.length; i++) {
        const want = (before[i]! + Math.floor(i / 1024) + 1) >>> 0;
        if (after[i] !== want) throw new Error(`word ${i} (page ${Math.floor(i / 1024)}): ${after[i]} != ${want} after ${r.rounds} rounds`);
      }
    });
  }

  it('the clock gives recently accessed pages a second chance', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 32 * P, evictionBytes: 65536 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const a = mm.mmap(16 * P, { addr: 0x0100_0000 });
    const b = mm.mmap(16 * P, { addr: 0x0200_0000 });
    const c = mm.mmap(16 * P, { addr: 0x0300_0000 });
    await m.migrateToDevice(b, 16); // b first: oldest
    await m.migrateToDevice(a, 16);
    const touch = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) { hmm_store_u32(u.x + gid.x * 4096u, 1u); }',
      workgroupSize: 16,
    });
    await m.dispatch(touch, { workgroups: 1, uniforms: new Uint32Array([b, 0, 0, 0]), ranges: [{ va: b, bytes: 16 * P, access: 'rw' }] });
    // b was touched by a kernel, a was not: faulting c in must evict a, not b
    await m.migrateToDevice(c, 16).catch(() => undefined);
    await m.read(c, 16);
    expect(Array.from(await m.snapshot(a, 16))).toEqual(Array(16).fill(PROT.WRITE));
    expect(Array.from(await m.snapshot(b, 16))).toEqual(Array(16).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    expect(new Uint32Array((await mm.read(b, 4)).buffer)[0]).toBe(1);
  });

  it('validated ranges larger than the device are ENOMEM up front; bad evictionBytes EINVAL', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 8 * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const va = mm.mmap(16 * P);
    const k = await dev.createKernel({ code: STREAM, workgroupSize: 16 });
    await expect(
      dev.mirror(mm).dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 16, 0, 0]), ranges: [{ va, bytes: 16 * P, access: 'rw' }] }),
    ).rejects.toMatchObject({ code: 'ENOMEM' });
    await expect(makeSystem({ devices: [{ memoryBytes: 8 * P, evictionBytes: 8192 as 4096 }] })).rejects.toMatchObject({ code: 'EINVAL' });
  });
});
