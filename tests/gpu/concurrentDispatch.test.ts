// Dispatches in flight at once (invariant 7): several on one mirror, both modes mixed, and two
// devices contending for the same pages while the main thread reads and writes them. Each must
// end as in some sequential order: every invocation runs exactly once, every add is counted.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import type { HmmKernel, Mirror } from '../../src/index.ts';
import { makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** One invocation per page: touch the page for writing, then add 1 to its word 0 (restartable). */
const COUNT = /* wgsl */ `
struct U { base: u32, pages: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.pages) { return; }
  let p = u.base + gid.x * 4096u;
  hmm_touch(p, true);
  if (!hmm_ok()) { return; }
  hmm_atomic_add_u32(p, 1u);
}`;

function countOn(m: Mirror, k: HmmKernel, va: number, pages: number, mode: 'replayable' | 'validated') {
  return m.dispatch(k, {
    mode,
    workgroups: Math.ceil(pages / 64),
    uniforms: new Uint32Array([va, pages, 0, 0]),
    ranges: mode === 'validated' ? [{ va, bytes: pages * P, access: 'rw' }] : undefined,
  });
}

/** Word 0 of each of `pages` pages from va. */
async function counters(read: (va: number, n: number) => Promise<Uint8Array>, va: number, pages: number): Promise<number[]> {
  const bytes = await read(va, pages * P);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  return Array.from({ length: pages }, (_, i) => words[i * (P / 4)]!);
}

describe('dispatches in flight at once', () => {
  it('two replayable dispatches on one mirror, on two arrays: every invocation of each runs exactly once', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: COUNT, label: 'count' });
    const pages = 64;
    const a = mm.mmap(pages * P);
    const b = mm.mmap(pages * P);
    await Promise.all([countOn(m, k, a, pages, 'replayable'), countOn(m, k, b, pages, 'replayable')]);
    expect(await counters((va, n) => mm.read(va, n), a, pages)).toEqual(new Array(pages).fill(1));
    expect(await counters((va, n) => mm.read(va, n), b, pages)).toEqual(new Array(pages).fill(1));
  });

  it('replayable, validated and replayable at once on the same pages: every counter ends at 3', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: COUNT, label: 'count' });
    const pages = 64;
    const va = mm.mmap(pages * P);
    await Promise.all([countOn(m, k, va, pages, 'replayable'), countOn(m, k, va, pages, 'validated'), countOn(m, k, va, pages, 'replayable')]);
    expect(await counters((x, n) => mm.read(x, n), va, pages)).toEqual(new Array(pages).fill(3));
  });

  it('validated dispatches that together need more than the device: each runs in turn, none misses a declared page', async () => {
    // 16 frames; A declares 16 pages in two ranges, B and C 8 each: whoever faults in later
    // evicts what an earlier one mapped, unless that one is older (it then waits its turn).
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: COUNT, label: 'count' });
    const a = mm.mmap(16 * P);
    const b = mm.mmap(8 * P);
    const c = mm.mmap(8 * P);
    const two = (va: number) => [
      { va, bytes: 8 * P, access: 'rw' as const },
      { va: va + 8 * P, bytes: 8 * P, access: 'rw' as const },
    ];
    const run = (va: number, pages: number, ranges = [{ va, bytes: pages * P, access: 'rw' as const }]) =>
      m.dispatch(k, { mode: 'validated', workgroups: 1, uniforms: new Uint32Array([va, pages, 0, 0]), ranges });
    for (let i = 0; i < 3; i++) await Promise.all([run(a, 16, two(a)), run(b, 8), run(c, 8), run(a, 16, two(a))]);
    expect(await counters((x, n) => mm.read(x, n), a, 16)).toEqual(new Array(16).fill(6));
    expect(await counters((x, n) => mm.read(x, n), b, 8)).toEqual(new Array(8).fill(3));
    expect(await counters((x, n) => mm.read(x, n), c, 8)).toEqual(new Array(8).fill(3));
  });

  it('replayable kernels of two devices on the same pages while the main thread reads and writes them: every add counted', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }, { memoryBytes: 1 << 20 }] });
    const [d0, d1] = sys.devices as [(typeof sys.devices)[0], (typeof sys.devices)[0]];
    const mm = sys.createAddressSpace();
    const k0 = await d0!.createKernel({ code: COUNT, label: 'count gpu0' });
    const k1 = await d1!.createKernel({ code: COUNT, label: 'count gpu1' });
    const m0 = d0!.mirror(mm);
    const m1 = d1!.mirror(mm);
    const pages = 64;
    const va = mm.mmap(pages * P);
    const kernels = 4;
    let cpuWrites = 0;
    let stop = false;
    // The main thread keeps reading and writing word 1 of some of those pages meanwhile.
    const cpu = (async () => {
      for (let i = 0; !stop; i++) {
        const at = va + (i % pages) * P + 4;
        await mm.write(at, new Uint8Array(new Uint32Array([i]).buffer));
        const back = new Uint32Array((await mm.read(at, 4)).slice().buffer)[0];
        expect(back).toBe(i);
        cpuWrites++;
        // yield to I/O: reads and writes of RAM pages complete in microtasks alone, and a loop of
        // them would starve the GPU callbacks the kernels wait for
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      const runs: Promise<unknown>[] = [];
      for (let i = 0; i < kernels; i++) {
        runs.push(countOn(m0, k0, va, pages, 'replayable'));
        runs.push(countOn(m1, k1, va, pages, 'replayable'));
      }
      await Promise.all(runs);
    } finally {
      stop = true;
      await cpu;
    }
    expect(cpuWrites).toBeGreaterThan(0);
    expect(await counters((x, n) => mm.read(x, n), va, pages)).toEqual(new Array(pages).fill(2 * kernels));
  });
});
