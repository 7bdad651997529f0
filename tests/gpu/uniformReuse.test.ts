// Launch uniforms (src/device/launch.ts): a relaunch skips rewriting a pooled uniform buffer that
// already holds its bytes. What it compares against must be a copy of what was written: a caller
// that reuses one array and changes it between dispatches gets the new values on the GPU.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** Invocation 0 adds u.y to word 0 of the page at u.x. */
const ADD = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: vec4u;
fn kernel(gid: vec3u) {
  if (gid.x != 0u) { return; }
  hmm_store_u32(u.x, hmm_load_u32(u.x) + u.y);
}`;

describe('launch uniforms', () => {
  it('one uniforms array changed in place between dispatches: each dispatch sees its values', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(4 * P);
    const k = await dev.createKernel({ code: ADD, workgroupSize: 64 });
    const u = new Uint32Array([va, 1, 0, 0]);
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: u }); // faults, relaunches: +1
    u[1] = 10;
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: u }); // +10
    u[0] = va + 2 * P;
    u[1] = 100;
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: u }); // another page: faults again, +100
    const words = new Uint32Array((await mm.read(va, 4 * P)).buffer);
    expect(words[0]).toBe(11);
    expect(words[(2 * P) / 4]).toBe(100);
  });
});
