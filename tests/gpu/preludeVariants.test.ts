// The prelude's variants (shaders/hmm.wgsl, design-notes §7): a kernel without atomics gets
// plain device memory, one with hmm_atomic_* or hmm_store_u8 gets atomic memory, and each
// mode has its own pipeline. Wrong choices show here: a plain read-modify-write loses updates
// under contention (SwiftShader runs lanes in lockstep, so it loses them every time), and an
// atomic kernel compiled without the atomic functions does not compile at all.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { DOUBLE_KERNEL, makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** Every invocation adds 1 to one of `counters` words, one page apart: a whole workgroup to the same one. */
const COUNT = /* wgsl */ `
struct U { base: u32, n: u32, counters: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  hmm_atomic_add_u32(u.base + ((gid.x / 64u) % u.counters) * 4096u, 1u);
}`;

/** Invocation i stores byte i of [base, base + n): four invocations share each word. */
const BYTES = /* wgsl */ `
struct U { base: u32, n: u32, seed: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  hmm_store_u8(u.base + gid.x, (gid.x * 7u + u.seed) & 0xffu);
}`;

describe('prelude variants', () => {
  it('a kernel without atomics runs on plain memory and computes right, over one memory buffer and over four, in both modes', async () => {
    // device 1 splits its 4 MiB pool over four 1 MiB buffers: the prelude's switch picks the buffer
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 4 << 20 }, { memoryBytes: 4 << 20, maxBufferBytes: 1 << 20 }] });
    expect(sys.devices.map((d) => d.memory.buffers.length)).toEqual([1, 4]);
    for (const dev of sys.devices) {
      const mm = sys.createAddressSpace();
      const m = dev.mirror(mm);
      const n = (3 << 20) / 4; // 3 MiB: 768 pages, more than two of device 1's buffers hold
      const va = mm.mmap(n * 4);
      await mm.write(va, new Uint8Array(Uint32Array.from({ length: n }, (_, i) => i * 3 + 1).buffer));
      const k = await dev.createKernel({ code: DOUBLE_KERNEL, workgroupSize: 64, label: 'double' });
      expect(k.atomicMemory).toBe(false);
      await m.dispatch(k, { workgroups: n / 64, uniforms: new Uint32Array([va, n]), ranges: [{ va, bytes: n * 4, access: 'rw' }] });
      // replayable: the kernel's second pipeline; the pages are resident, so one round
      const r = await m.dispatch(k, { mode: 'replayable', workgroups: n / 64, uniforms: new Uint32Array([va, n]) });
      expect(r.rounds).toBe(1);
      const out = new Uint32Array((await mm.read(va, n * 4)).buffer);
      const bad = out.findIndex((w, i) => w !== ((i * 3 + 1) * 4) >>> 0);
      expect(bad, `${dev.name}: word ${bad} = ${out[bad]}`).toBe(-1);
      expect(dev.uncaptured).toEqual([]);
    }
  });

  it('hmm_atomic_add_u32 keeps atomic semantics under contention, validated and replayable', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const counters = 4;
    const n = 64 * 64;
    const va = mm.mmap(counters * P);
    const k = await dev.createKernel({ code: COUNT, workgroupSize: 64, label: 'count' });
    expect(k.atomicMemory).toBe(true);
    const uniforms = new Uint32Array([va, n, counters, 0]);
    await m.dispatch(k, { workgroups: n / 64, uniforms, ranges: [{ va, bytes: counters * P, access: 'rw' }] });
    await mm.munmap(va, counters * P);
    // replayable, from nothing resident: the adds that fault are dropped and replayed, never doubled
    const vb = mm.mmap(counters * P);
    await m.dispatch(k, { mode: 'replayable', workgroups: n / 64, uniforms: new Uint32Array([vb, n, counters, 0]) });
    await m.dispatch(k, { mode: 'replayable', workgroups: n / 64, uniforms: new Uint32Array([vb, n, counters, 0]) });
    for (let c = 0; c < counters; c++) {
      const w = new Uint32Array((await mm.read(vb + c * P, 4)).buffer)[0];
      expect(w, `counter ${c}`).toBe((2 * n) / counters);
    }
  });

  it('byte stores into the same words from neighbouring invocations keep every byte', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const n = 2 * P;
    const va = mm.mmap(n);
    await mm.write(va, new Uint8Array(n).fill(0xee));
    const k = await dev.createKernel({ code: BYTES, workgroupSize: 64, label: 'bytes' });
    expect(k.atomicMemory).toBe(true);
    await m.dispatch(k, { workgroups: n / 64, uniforms: new Uint32Array([va, n, 11, 0]), ranges: [{ va, bytes: n, access: 'rw' }] });
    const out = await mm.read(va, n);
    const bad = out.findIndex((b, i) => b !== ((i * 7 + 11) & 0xff));
    expect(bad, `byte ${bad} = ${out[bad]}`).toBe(-1);
  });
});
