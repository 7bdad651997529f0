// The device page table's upload after a fault round (src/device/devicePageTable.ts flush,
// design-notes §20 "Host cost"): leaves whose every mapping is new go up, entries and zeroed
// status words, in one write per run of consecutive leaves, not one per leaf; the kernel then
// finds every page it faulted on.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** Invocation i adds 1 to word 0 of the page at va + i * stride (uniforms: va, n, stride). */
const STRIDED = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: vec4u;
fn kernel(gid: vec3u) {
  if (gid.x >= u.y) { return; }
  let a = u.x + gid.x * u.z;
  hmm_store_u32(a, hmm_load_u32(a) + 1u);
}`;

describe('page-table upload of a fault round', () => {
  it('pages scattered over four fresh consecutive leaves go up in one leaf write, and the kernel finds them all', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 4 << 20, faultBufferPages: 256 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    // 32 pages one per 256 KiB: 8 in each of four 2 MiB blocks, so four leaves, all new
    const n = 32;
    const stride = 64 * P;
    const va = mm.mmap(n * stride, { addr: 0x1000_0000 });
    for (let i = 0; i < n; i++) await mm.write(va + i * stride, new Uint8Array(new Uint32Array([i * 10]).buffer));
    const k = await dev.createKernel({ code: STRIDED, workgroupSize: 64 });
    const writes = sys.counters.get('pageTableWrites');
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, n, stride, 0]) });
    expect(r.faultedPages).toBeGreaterThanOrEqual(n);
    // the directory and one write for the four leaves (one per leaf would be five)
    expect(sys.counters.get('pageTableWrites') - writes).toBeLessThanOrEqual(2);
    for (let i = 0; i < n; i++) {
      const word = new Uint32Array((await mm.read(va + i * stride, 4)).buffer)[0];
      expect(word, `page ${i}`).toBe(i * 10 + 1);
    }
  });
});
