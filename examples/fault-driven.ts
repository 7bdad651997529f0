// A fault-driven kernel: the CPU builds a linked list in shared virtual memory, a replayable
// kernel walks it with no declared ranges, faulting pages in on the GPU as it goes.
// Run: npx tsx examples/fault-driven.ts
import { createSystem } from 'webgpu-hmm';

const sys = await createSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
const mm = sys.createAddressSpace();
const dev = sys.devices[0]!;
const nodes = 256; // one node per page: { value, next }
const list = mm.mmap(nodes * 4096);
for (let i = 0; i < nodes; i++) {
  const next = i + 1 < nodes ? list + (i + 1) * 4096 : 0; // a CPU-built pointer
  await mm.write(list + i * 4096, new Uint8Array(new Uint32Array([i, next]).buffer));
}
const out = mm.mmap(4);

const walk = await dev.createKernel({
  label: 'walk',
  workgroupSize: 1,
  code: /* wgsl */ `
  @group(0) @binding(0) var<uniform> u: vec2u;   // head, out
  fn kernel(gid: vec3u) {
    var p = u.x;
    var sum = 0u;
    loop {
      if (p == 0u || !hmm_ok()) { break; }      // a fault: stop, the host services it, we replay
      sum += hmm_load_u32(p);
      p = hmm_load_u32(p + 4u);
    }
    hmm_store_u32(u.y, sum);
  }`,
});
const r = await dev.mirror(mm).dispatch(walk, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([list, out]) });
const sum = new Uint32Array((await mm.read(out, 4)).buffer)[0];
console.log(`sum ${sum} (expected ${(nodes * (nodes - 1)) / 2}) in ${r.rounds} rounds`);
const s = sys.stats();
console.log({
  gpuFaults: s.gpuFaults,
  faultsReported: s.faultsReported,
  prefetchedPages: s.prefetchedPages,
  pagesToDevice: s.pagesToDevice,
  pagesToSystem: s.pagesToSystem,
});
sys.destroy();
process.exitCode = sum === (nodes * (nodes - 1)) / 2 ? 0 : 1;
