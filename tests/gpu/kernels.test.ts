// Validated kernels on a real adapter: user WGSL following CPU-built pointers through the
// device page table, and every way a launch can fail.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { failure, makeSystem, DOUBLE_KERNEL } from './helpers.ts';

const P = PAGE_SIZE;

const DOUBLE = DOUBLE_KERNEL;

describe('validated kernels', () => {
  it('run over CPU-written memory; the CPU reads the result back', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const n = 5000; // spans 5 pages, last one partly
    const va = mm.mmap(n * 4);
    await mm.write(va, new Uint8Array(Uint32Array.from({ length: n }, (_, i) => i + 1).buffer));
    const k = await dev.createKernel({ code: DOUBLE, workgroupSize: 64, label: 'double' });
    const r = await m.dispatch(k, { workgroups: Math.ceil(n / 64), uniforms: new Uint32Array([va, n]), ranges: [{ va, bytes: n * 4, access: 'rw' }] });
    expect(r.faults).toBe(0);
    const out = new Uint32Array((await mm.read(va, n * 4)).buffer);
    for (let i = 0; i < n; i++) if (out[i] !== (i + 1) * 2) throw new Error(`element ${i}: ${out[i]}`);
    expect(dev.uncaptured).toEqual([]);
  });

  it('follow a CPU-built linked list across pages and address-space holes', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    // two VMAs with an unmapped gap between them; nodes alternate between them
    const a = mm.mmap(8 * P);
    await mm.munmap(a + 4 * P, 2 * P);
    const nodes = 40;
    const addr = (i: number): number => (i % 2 === 0 ? a : a + 6 * P) + Math.floor(i / 2) * 96 + (i % 3) * 4;
    for (let i = 0; i < nodes; i++) {
      const next = i + 1 < nodes ? addr(i + 1) : 0;
      await mm.write(addr(i), new Uint8Array(new Uint32Array([i * 3, next]).buffer));
    }
    const out = mm.mmap(P);
    const code = /* wgsl */ `
      struct U { head: u32, out: u32 }
      @group(0) @binding(0) var<uniform> u: U;
      fn kernel(gid: vec3u) {
        var p = u.head;
        var sum = 0u;
        var count = 0u;
        loop {
          if (p == 0u) { break; }
          sum += hmm_load_u32(p);
          p = hmm_load_u32(p + 4u);
          count += 1u;
        }
        hmm_store_u32(u.out, sum);
        hmm_store_u32(u.out + 4u, count);
      }`;
    const k = await dev.createKernel({ code, workgroupSize: 1, label: 'walk' });
    await m.dispatch(k, {
      workgroups: 1,
      uniforms: new Uint32Array([addr(0), out]),
      ranges: [
        { va: a, bytes: 4 * P },
        { va: a + 6 * P, bytes: 2 * P },
        { va: out, bytes: 8, access: 'rw' },
      ],
    });
    const res = new Uint32Array((await mm.read(out, 8)).buffer);
    expect(res[1]).toBe(nodes);
    expect(res[0]).toBe((3 * nodes * (nodes - 1)) / 2);
  });

  it('uniforms shorter than their 16-byte slot read zeros there, launch after launch', async () => {
    // Launches reuse uniform buffers: a shorter upload must not show the last launch's words.
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const out = mm.mmap(P);
    const code = /* wgsl */ `
      struct U { out: u32, a: u32, b: u32, c: u32 }
      @group(0) @binding(0) var<uniform> u: U;
      fn kernel(gid: vec3u) {
        hmm_store_u32(u.out, u.a);
        hmm_store_u32(u.out + 4u, u.b);
        hmm_store_u32(u.out + 8u, u.c);
      }`;
    const k = await dev.createKernel({ code, workgroupSize: 1, label: 'uniform words' });
    const ranges = [{ va: out, bytes: 12, access: 'rw' as const }];
    await m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([out, 7, 8, 9]), ranges });
    expect(Array.from(new Uint32Array((await mm.read(out, 12)).buffer))).toEqual([7, 8, 9]);
    await m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([out, 5]), ranges });
    expect(Array.from(new Uint32Array((await mm.read(out, 12)).buffer))).toEqual([5, 0, 0]);
    expect(dev.uncaptured).toEqual([]);
  });

  it('a touch of an unmapped address is ESEGV naming the address and kernel', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(P);
    const k = await dev.createKernel({ code: DOUBLE, label: 'double' });
    const bad = 0x7000_0000;
    const e = await failure(m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([bad, 4]), ranges: [{ va, bytes: P, access: 'rw' }] }));
    expect(e.code).toBe('ESEGV');
    expect(e.address).toBe(bad);
    expect(e.message).toContain('0x70000000');
    expect(e.message).toContain("'double'");
  });

  it('a touch outside the declared ranges is reported, never a silent zero', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va + P, new Uint8Array([5, 0, 0, 0]));
    const k = await dev.createKernel({ code: DOUBLE, label: 'double' });
    const e = await failure(m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va + P, 1]), ranges: [{ va, bytes: P, access: 'rw' }] }));
    expect(e.code).toBe('EFAULT');
    expect(e.address).toBe(va + P);
    expect(e.message).toContain('declared');
    expect((await mm.read(va + P, 4))[0]).toBe(5);
  });

  it('a write to a range declared read-only is EPERM and the page is not written', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(P);
    await mm.write(va, new Uint8Array([3, 0, 0, 0]));
    await mm.mprotect(va, P, 'r');
    const k = await dev.createKernel({ code: DOUBLE, label: 'double' });
    const declaredRw = await failure(m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 1]), ranges: [{ va, bytes: 4, access: 'rw' }] }));
    expect(declaredRw.code).toBe('EPERM');
    const declaredR = await failure(m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 1]), ranges: [{ va, bytes: 4, access: 'r' }] }));
    expect(declaredR.code).toBe('EPERM');
    expect((await mm.read(va, 4))[0]).toBe(3);
  });

  it('compile errors point at the user line, not the prelude', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const code = 'fn kernel(gid: vec3u) {\n  let x: u32 = 1u;\n  let y = x + undefined_thing;\n}';
    const e = await failure(dev.createKernel({ code, label: 'broken' }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("kernel 'broken' does not compile");
    expect(e.message).toMatch(/line 3:\d+/);
    expect(e.message).not.toContain('prelude line');
  });

  it('rejects bad kernel and dispatch arguments with EINVAL', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(P);
    expect((await failure(dev.createKernel({ code: 'fn main() {}' }))).code).toBe('EINVAL');
    expect((await failure(dev.createKernel({ code: DOUBLE, workgroupSize: 0 }))).code).toBe('EINVAL');
    expect((await failure(dev.createKernel({ code: DOUBLE, workgroupSize: [64, 64, 64] }))).code).toBe('EINVAL');
    const k = await dev.createKernel({ code: DOUBLE });
    const tooMany = await failure(m.dispatch(k, { workgroups: 1 << 20, uniforms: new Uint32Array([va, 1]), ranges: [] }));
    expect(tooMany.code).toBe('EINVAL');
    expect(tooMany.message).toContain('workgroups[0]');
    expect((await failure(m.dispatch(k, { workgroups: 1, ranges: [{ va, bytes: 0 }] }))).code).toBe('EINVAL');
    expect((await failure(m.dispatch(k, { workgroups: 1, ranges: [{ va: 0xffff_f000, bytes: 2 * P }] }))).code).toBe('EINVAL');
    expect((await failure(m.dispatch(k, { workgroups: 1, mode: 'bogus' as 'validated', ranges: [] }))).code).toBe('EINVAL');
    // a range over a hole fails before launch, naming the hole
    const hole = await failure(m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 1]), ranges: [{ va, bytes: 2 * P }] }));
    expect(hole.code).toBe('EFAULT');
    expect(hole.address).toBe(va + P);
  });

  it('leave the pages device-private until the CPU touches them', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(2 * P).fill(1));
    const k = await dev.createKernel({ code: DOUBLE });
    await m.dispatch(k, { workgroups: 32, uniforms: new Uint32Array([va, 2048]), ranges: [{ va, bytes: 2 * P, access: 'rw' }] });
    expect(Array.from(await m.snapshot(va, 2))).toEqual([PROT.DEV_PRIVATE_LOCAL | PROT.WRITE, PROT.DEV_PRIVATE_LOCAL | PROT.WRITE]);
    const words = new Uint32Array((await mm.read(va, 2 * P)).buffer);
    expect(words.every((w) => w === 0x02020202)).toBe(true);
  });
});

describe('device page table bits', () => {
  it('the GPU sets accessed on loads and accessed+dirty on stores, in its own table', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(3 * P);
    await m.migrateToDevice(va, 3); // mapped, never accessed by a kernel yet
    const page = va / P;
    const bits = async (): Promise<number[]> => (await m.table.readGpuEntries([page, page + 1, page + 2])).map((e) => e & 0xf);
    expect(await bits()).toEqual([0x3, 0x3, 0x3]); // valid | write
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { hmm_store_u32(a.y, hmm_load_u32(a.x)); }',
      workgroupSize: 1,
    });
    await m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, va + P, 0, 0]), ranges: [{ va, bytes: 2 * P, access: 'rw' }] });
    expect(await bits()).toEqual([0x7, 0xf, 0x3]); // read: +accessed; written: +accessed +dirty; untouched
  });
});
