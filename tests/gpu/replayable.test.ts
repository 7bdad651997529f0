// Replayable mode on a real adapter: kernels fault on the GPU, the host services whole
// batches, and only unfinished invocations run again.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT, residency, residenceName } from '../../src/index.ts';
import { failure, makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

const CHASE = /* wgsl */ `
struct U { heads: u32, out: u32, n: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
// Each invocation walks its own CPU-built list; a node is { value, next }.
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  var p = hmm_load_u32(u.heads + gid.x * 4u);
  var sum = 0u;
  loop {
    if (p == 0u || !hmm_ok()) { break; }
    sum += hmm_load_u32(p);
    p = hmm_load_u32(p + 4u);
  }
  hmm_store_u32(u.out + gid.x * 4u, sum); // suppressed if anything above faulted
}`;

describe('replayable kernels', () => {
  it('chase CPU-built pointers through thousands of pages to the right answer', async () => {
    const sys = await makeSystem({ systemRamBytes: 32 << 20, devices: [{ memoryBytes: 16 << 20 }] });
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const lists = 128;
    const length = 24; // 3072 nodes, each on its own page
    const nodes = mm.mmap(lists * length * P);
    const heads = mm.mmap(lists * 4);
    const out = mm.mmap(lists * 4);
    // node (l, k) sits on a scattered page; the CPU writes VA pointers
    const pageOf = (l: number, k: number): number => (k * lists + ((l * 37) % lists)) % (lists * length);
    const expected = new Uint32Array(lists);
    const headWords = new Uint32Array(lists);
    for (let l = 0; l < lists; l++) {
      for (let k = 0; k < length; k++) {
        const va = nodes + pageOf(l, k) * P + ((l + k) % 8) * 16;
        const next = k + 1 < length ? nodes + pageOf(l, k + 1) * P + ((l + k + 1) % 8) * 16 : 0;
        const value = l * 1000 + k;
        expected[l] = (expected[l]! + value) >>> 0;
        await mm.write(va, new Uint8Array(new Uint32Array([value, next]).buffer));
      }
      headWords[l] = nodes + pageOf(l, 0) * P + (l % 8) * 16;
    }
    await mm.write(heads, new Uint8Array(headWords.buffer));
    const k = await dev.createKernel({ code: CHASE, workgroupSize: 64, label: 'chase' });
    // prefetch off: this test pins the replay mechanics (one round per list step)
    const r = await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: lists / 64, uniforms: new Uint32Array([heads, out, lists, 0]) });
    // one round per list step (plus the heads and the output), never one per page
    expect(r.rounds).toBeGreaterThanOrEqual(length);
    expect(r.rounds).toBeLessThanOrEqual(length + 3);
    expect(r.faultedPages).toBeGreaterThanOrEqual(lists * length);
    expect(new Uint32Array((await mm.read(out, lists * 4)).buffer)).toEqual(expected);
    expect(sys.counters.get('gpuFaults')).toBe(r.faults);
  });

  it('deduplicate on the GPU: many invocations missing one page queue it once', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(new Uint32Array([5]).buffer));
    const code = `@group(0) @binding(0) var<uniform> a: vec4u;
      fn kernel(gid: vec3u) { hmm_store_u32(a.y + (gid.x % 1024u) * 4u, hmm_load_u32(a.x) + gid.x % 1024u); }`;
    const k = await dev.createKernel({ code, workgroupSize: 64 });
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: 64, uniforms: new Uint32Array([va, va + P, 0, 0]) });
    expect(r.faultedPages).toBeLessThanOrEqual(3); // page 0 read, page 1 write (and page 1 read-then-write at most)
    expect(sys.counters.get('faultsReported')).toBeGreaterThanOrEqual(4096);
    expect(sys.counters.get('faultsDeduplicated')).toBe(sys.counters.get('faultsReported') - r.faultedPages);
    const words = new Uint32Array((await mm.read(va + P, P)).buffer);
    expect(words[0]).toBe(5);
    expect(words[1023]).toBe(5 + 1023);
  });

  it('replay only unfinished invocations: finished ones never run twice', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const n = 256;
    const data = mm.mmap(n * P); // one value per page
    const counter = mm.mmap(P);
    for (let i = 0; i < n; i++) await mm.write(data + i * P, new Uint8Array(new Uint32Array([i + 1]).buffer));
    // half the pages are already on the device, so half the invocations finish in round one
    for (let i = 0; i < n; i += 2) await m.migrateToDevice(data + i * P, 1);
    await m.migrateToDevice(counter, 1);
    const code = /* wgsl */ `
      @group(0) @binding(0) var<uniform> a: vec4u;
      fn kernel(gid: vec3u) {
        let p = a.x + gid.x * 4096u;
        // fault in everything first: no side effect may happen before a fault
        let ok = hmm_touch(p, false) & hmm_touch(a.y, true);
        if (!ok) { return; }
        hmm_atomic_add_u32(a.y, hmm_load_u32(p));
      }`;
    const k = await dev.createKernel({ code, workgroupSize: 64 });
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: n / 64, uniforms: new Uint32Array([data, counter, 0, 0]) });
    expect(r.rounds).toBe(2);
    const sum = new Uint32Array((await mm.read(counter, 4)).buffer)[0];
    expect(sum).toBe((n * (n + 1)) / 2);
  });

  it('every dispatch starts with a clear done bitmap: a second one runs every invocation again', async () => {
    // The done bitmap is cleared by each dispatch's first launch; a bit left over from the
    // last dispatch would skip that invocation.
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const n = 128;
    const out = mm.mmap(n * 4);
    const code = /* wgsl */ `
      @group(0) @binding(0) var<uniform> a: vec4u;
      fn kernel(gid: vec3u) {
        if (gid.x >= a.y) { return; }
        hmm_store_u32(a.x + gid.x * 4u, a.z + gid.x);
      }`;
    const k = await dev.createKernel({ code, workgroupSize: 64 });
    for (const base of [1000, 5000]) {
      await m.dispatch(k, { mode: 'replayable', workgroups: n / 64, uniforms: new Uint32Array([out, n, base, 0]) });
      const got = new Uint32Array((await mm.read(out, n * 4)).buffer);
      expect(Array.from(got)).toEqual(Array.from({ length: n }, (_, i) => base + i));
    }
  });

  it('first touch of never-touched memory makes zeroed device pages, RAM untouched', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const va = mm.mmap(32 * P);
    const free = sys.ram.freeFrames;
    const code = `@group(0) @binding(0) var<uniform> a: vec4u;
      fn kernel(gid: vec3u) { let p = a.x + gid.x * 4096u; hmm_store_u32(p + 4u, hmm_load_u32(p) + gid.x); }`;
    const k = await dev.createKernel({ code, workgroupSize: 32 });
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 0, 0, 0]) });
    expect(sys.ram.freeFrames).toBe(free);
    expect(sys.counters.get('zeroPagesToDevice')).toBe(32);
    expect(Array.from(await m.snapshot(va, 32))).toEqual(Array(32).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    const words = new Uint32Array((await mm.read(va, 32 * P)).buffer);
    for (let i = 0; i < 32; i++) expect([words[i * 1024], words[i * 1024 + 1]]).toEqual([0, i]);
  });

  it('a touch of an unmapped address is ESEGV; a write to read-only memory is EPERM', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const ro = mm.mmap(P, { prot: 'r' });
    const code = `@group(0) @binding(0) var<uniform> a: vec4u;
      fn kernel(gid: vec3u) { hmm_store_u32(a.x, 1u); }`;
    const k = await dev.createKernel({ code, workgroupSize: 1, label: 'poke' });
    const seg = await failure(m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([0x5000_0000, 0, 0, 0]) }));
    expect(seg.code).toBe('ESEGV');
    expect(seg.address).toBe(0x5000_0000);
    expect(seg.message).toContain("'poke'");
    const perm = await failure(m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([ro, 0, 0, 0]) }));
    expect(perm.code).toBe('EPERM');
    expect(perm.address).toBe(ro);
    expect((await mm.read(ro, 4))[0]).toBe(0);
  });

  it('past the round bound, EBUSY names the pages still failing', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const m = dev.mirror(mm);
    const nodes = mm.mmap(6 * P);
    for (let i = 0; i < 6; i++) await mm.write(nodes + i * P, new Uint8Array(new Uint32Array([1, i < 5 ? nodes + (i + 1) * P : 0]).buffer));
    const heads = mm.mmap(P);
    const out = mm.mmap(P);
    await mm.write(heads, new Uint8Array(new Uint32Array([nodes]).buffer));
    const k = await dev.createKernel({ code: CHASE, workgroupSize: 1 });
    const e = await failure(m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, maxRounds: 3, uniforms: new Uint32Array([heads, out, 1, 0]) }));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toContain('after 3 rounds');
    expect(e.address).toBe(nodes + P); // round 1 faults the head, round 2 node 0, round 3 node 1
  });

  it('a fault round is progress only when a faulted page is mapped, not a prefetched one', async () => {
    // Pages 0-3 cannot migrate (preferred location: system RAM), so they are served as device
    // copies; pages 4-15 are their prefetched company and migrate. Service returning once the
    // company is mapped would replay into the same faults; under eviction pressure, forever.
    const sys = await makeSystem({ systemRamBytes: 4 << 20, devices: [{ memoryBytes: 1 << 20 }] });
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(16 * P);
    await mm.write(va, new Uint8Array(16 * P).fill(7));
    await mm.advise(va, 4 * P, { preferred: 'system' });
    const first = va / P;
    const pages = Array.from({ length: 16 }, (_, i) => first + i);
    await m.faults.faultInPages(pages, false, { keep: new Set(pages), progress: new Set(pages.slice(0, 4)) });
    const where = [...residency(mm, va, 16)].map(residenceName);
    expect(where).toEqual([...Array(4).fill('copy'), ...Array(12).fill('device')]);
    expect(sys.stats().deviceCopies).toBe(4);
    expect(sys.stats().pagesToDevice).toBe(12);
    sys.destroy();
  });
});
