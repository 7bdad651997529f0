// Record a fault trace to replay against other policies without a GPU.
//   npx tsx examples/record-trace.ts [trace.json]
//   npm run replay -- trace.json --policy examples/policies/lru.ts --policy examples/policies/stride.ts
// A small fault-driven workload on a 1 MiB device: a kernel walks 400 pages (1.6 MiB) with a
// stride of 3 pages, four times at shifted offsets, and the CPU reads and writes some pages in
// between (bringing them home), so the trace has fault rounds, prefetches, evictions and CPU
// faults. Everything between startRecording() and stop() is in the trace.
import { writeFileSync } from 'node:fs';
import { createSystem } from 'webgpu-hmm';

const file = process.argv[2] ?? 'trace.json';
const sys = await createSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 1 << 20 }] });
const mm = sys.createAddressSpace();
const dev = sys.devices[0]!;
const pages = 400;
const va = mm.mmap(pages * 4096);
await mm.write(va, new Uint8Array(pages * 4096).fill(1));

// invocation (x, y) adds 1 to word y of page offset + x * stride
const stride = await dev.createKernel({
  label: 'stride',
  workgroupSize: [64, 4],
  code: /* wgsl */ `
  struct Args { va: u32, stride: u32, offset: u32, n: u32 }
  @group(0) @binding(0) var<uniform> u: Args;
  fn kernel(gid: vec3u) {
    if (gid.x >= u.n) { return; }
    let a = u.va + (u.offset + gid.x * u.stride) * 4096u + gid.y * 4u;
    hmm_store_u32(a, hmm_load_u32(a) + 1u);
  }`,
});

const recording = sys.startRecording();
for (let d = 0; d < 4; d++) {
  const n = Math.floor((pages - d) / 3);
  const r = await dev.mirror(mm).dispatch(stride, { mode: 'replayable', workgroups: Math.ceil(n / 64), uniforms: new Uint32Array([va, 3, d, n]) });
  console.log(`dispatch ${d}: ${r.rounds} launches, ${r.faults} fault rounds, ${r.faultedPages} faulted pages`);
  await mm.read(va + d * 28 * 4096, 20 * 4096); // CPU faults: these pages come home
  await mm.write(va + (100 + d * 30) * 4096, new Uint8Array(10 * 4096).fill(5));
}
const trace = recording.stop();
writeFileSync(file, JSON.stringify(trace));
console.log(`wrote ${file}: ${trace.events.length} events, real`, trace.real);
console.log(`replay it: npm run replay -- ${file} --policy examples/policies/lru.ts`);
sys.destroy();
