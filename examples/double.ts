// Double u32 values in place through one shared address space: the CPU writes them, a
// validated kernel doubles them by virtual address on the GPU, the CPU reads them back.
// Run: npm run example   (in Node the library finds SwiftShader by itself if there is no GPU)
import { createSystem } from 'webgpu-hmm';

const sys = await createSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 4 << 20 }] });
const mm = sys.createAddressSpace(); // a "process": one 32-bit virtual address space
const dev = sys.devices[0]!;
const m = dev.mirror(mm); // the device's view of mm (dmirror)

const n = 4096; // 16 KiB: four pages
const va = mm.mmap(n * 4, { prot: 'rw' });
await mm.write(va, new Uint8Array(Uint32Array.from({ length: n }, (_, i) => i).buffer));

const double = await dev.createKernel({
  label: 'double',
  code: /* wgsl */ `
  struct Args { va: u32, n: u32 }
  @group(0) @binding(0) var<uniform> u: Args;
  fn kernel(gid: vec3u) {
    if (gid.x >= u.n) { return; }
    let p = u.va + gid.x * 4u;
    hmm_store_u32(p, hmm_load_u32(p) * 2u);
  }`,
});
// validated: the declared range is faulted in (migrated to the GPU) and mapped, then launched
await m.dispatch(double, { workgroups: n / 64, uniforms: new Uint32Array([va, n]), mode: 'validated', ranges: [{ va, bytes: n * 4, access: 'rw' }] });

const out = new Uint32Array((await mm.read(va, n * 4)).buffer); // CPU fault: pages come home
const ok = out.every((v, i) => v === 2 * i);
console.log(`${ok ? 'ok' : 'WRONG'}: out[${n - 1}] = ${out[n - 1]} on ${dev.adapterName}`, sys.stats());
sys.destroy();
process.exitCode = ok ? 0 : 1;
