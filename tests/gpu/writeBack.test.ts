// Write-back in dirty blocks, and copies made writable in place (issue 15 item 6, design-notes
// §20), on the real adapter. Kernels set a dirty-block word per page (bit b: the 256-byte block b
// was stored to); held copies coming home write only those blocks into RAM, and a read-only copy
// a write fault wants becomes writable without a second upload. Every byte is checked.
import { describe, expect, it, vi } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { PTE_ACCESSED, PTE_DIRTY } from '../../src/device/devicePageTable.ts';
import { makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

/** Adds 1 to the word at each byte offset in `offs` (uniform: base va, count, then the offsets). */
const POKE = /* wgsl */ `
struct U { va: u32, n: u32, pad0: u32, pad1: u32, offs: array<vec4u, 4> }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  let a = u.va + u.offs[gid.x / 4u][gid.x % 4u];
  hmm_store_u32(a, hmm_load_u32(a) + 1u);
}`;

function pokeArgs(va: number, offs: number[]): Uint32Array {
  const u = new Uint32Array(4 + 16);
  u.set([va, offs.length]);
  u.set(offs, 4);
  return u;
}

/** `data` with 1 added to the little-endian word at each offset. */
function poked(data: Uint8Array, offs: number[]): Uint8Array {
  const out = data.slice();
  const words = new Uint32Array(out.buffer);
  for (const o of offs) words[o / 4]! += 1;
  return out;
}

async function scene() {
  const sys = await makeSystem();
  const dev = sys.devices[0]!;
  const mm = sys.createAddressSpace();
  const m = dev.mirror(mm);
  const va = mm.mmap(4 * P);
  const data = pattern(4 * P, 3);
  await mm.write(va, data);
  // pages that stay in RAM: the device works on copies of them
  await mm.advise(va, 4 * P, { preferred: 'system' });
  const k = await dev.createKernel({ code: POKE, workgroupSize: 16, label: 'poke' });
  return { sys, dev, mm, m, va, data, k };
}

describe('held copies come home in dirty blocks', () => {
  // block 3 of page 0, blocks 0 and 15 of page 1, two words in block 7 of page 2; page 3 untouched
  const OFFS = [3 * 256 + 8, P, P + 15 * 256 + 252, 2 * P + 7 * 256, 2 * P + 7 * 256 + 4];
  const DIRTY_BLOCKS = 4;

  it('a load then a store on a copy: one upload, the read-only copy made writable in place', async () => {
    const { sys, m, va, k } = await scene();
    const c = sys.counters;
    const before = { copies: c.get('deviceCopies'), upgrades: c.get('copyUpgrades'), pages: c.get('pagesToDevice') };
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: pokeArgs(va, OFFS) });
    // the loads fault first (a store after a faulted load does not run), then the stores
    expect(c.get('deviceCopies') - before.copies).toBe(3);
    expect(c.get('copyUpgrades') - before.upgrades).toBe(3);
    expect(c.get('pagesToDevice') - before.pages).toBe(0);
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.WRITE)); // still in RAM
  });

  it('a page faulted for a load and a store in the same round is uploaded once, writable', async () => {
    const { sys, mm, m, va, data } = await scene();
    // invocation 0 loads page 0, invocation 1 stores to it (and the same for page 1): both miss in the first launch
    const k = await sys.devices[0]!.createKernel({
      code: '@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) { let page = u.x + (gid.x / 2u) * 4096u; if (gid.x % 2u == 0u) { _ = hmm_load_u32(page); } else { hmm_store_u32(page + 1024u, 77u); } }',
      workgroupSize: 4,
    });
    const c = sys.counters;
    const before = { copies: c.get('deviceCopies'), upgrades: c.get('copyUpgrades'), rounds: c.get('gpuFaults') };
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, 0, 0, 0]) });
    expect(c.get('gpuFaults') - before.rounds).toBe(1);
    expect(c.get('deviceCopies') - before.copies).toBe(2);
    expect(c.get('copyUpgrades') - before.upgrades).toBe(0);
    const want = data.slice();
    for (const at of [1024, P + 1024]) want.set(new Uint8Array(new Uint32Array([77]).buffer), at);
    expect(await mm.read(va, 4 * P)).toEqual(want);
  });

  it('a CPU touch after the kernel: only the dirtied blocks cross and are written, every byte right', async () => {
    const { sys, mm, m, va, data, k } = await scene();
    const c = sys.counters;
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: pokeArgs(va, OFFS) });
    const before = { back: c.get('bytesWrittenBack'), stored: c.get('bytesStored'), toSystem: c.get('bytesToSystem') };
    // the CPU writes another block of page 0 (block 5): its held copy goes home first
    const cpu = new Uint8Array(64).fill(0xab);
    await mm.write(va + 5 * 256, cpu);
    const want = poked(data, OFFS);
    want.set(cpu, 5 * 256);
    expect(await mm.read(va, 4 * P)).toEqual(want); // (and the others now)
    expect(c.get('bytesWrittenBack') - before.back).toBe(DIRTY_BLOCKS * 256);
    expect(c.get('bytesStored') - before.stored).toBe(DIRTY_BLOCKS * 256);
    // the launch read the held copies' dirty blocks back: only those crossed
    expect(c.get('bytesToSystem') - before.toSystem).toBe(DIRTY_BLOCKS * 256);
  });

  it('after another launch the dirty blocks are read with the pages: whole pages cross, only dirtied blocks are written', async () => {
    const { sys, dev, mm, m, va, data, k } = await scene();
    const c = sys.counters;
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: pokeArgs(va, OFFS) });
    // a launch in another address space: what the first launch read of the blocks is stale now
    const other = sys.createAddressSpace();
    const ova = other.mmap(P);
    await dev.mirror(other).dispatch(k, { workgroups: 1, uniforms: pokeArgs(ova, [0]), ranges: [{ va: ova, bytes: P, access: 'rw' }] });
    const before = { back: c.get('bytesWrittenBack'), stored: c.get('bytesStored'), toSystem: c.get('bytesToSystem') };
    expect(await mm.read(va, 4 * P)).toEqual(poked(data, OFFS));
    expect(c.get('bytesWrittenBack') - before.back).toBe(DIRTY_BLOCKS * 256);
    expect(c.get('bytesStored') - before.stored).toBe(DIRTY_BLOCKS * 256);
    expect(c.get('bytesToSystem') - before.toSystem).toBe(3 * P); // the three held pages, whole, with their words
  });

  it('eviction writes held copies back in dirty blocks too, and the stream stays right', async () => {
    // 16 frames, pages evicted one at a time: copies of 48 RAM pages stream through
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 48;
    const va = mm.mmap(pages * P);
    const data = pattern(pages * P, 9);
    await mm.write(va, data);
    await mm.advise(va, pages * P, { preferred: 'system' });
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) { if (gid.x >= u.y) { return; } let a = u.x + gid.x * 4096u + 512u; hmm_store_u32(a, hmm_load_u32(a) + 1u); }',
      workgroupSize: 16,
    });
    const c = sys.counters;
    const before = { back: c.get('bytesWrittenBack'), evictions: c.get('evictions') };
    await m.dispatch(k, { mode: 'replayable', workgroups: pages / 16, prefetch: false, uniforms: new Uint32Array([va, pages, 0, 0]) });
    expect(c.get('evictions') - before.evictions).toBeGreaterThan(0);
    const evictedBack = c.get('bytesWrittenBack') - before.back;
    expect(evictedBack).toBeGreaterThan(0);
    expect(evictedBack % 256).toBe(0);
    expect(evictedBack).toBeLessThan((c.get('evictions') - before.evictions) * P); // one block of each, not whole pages
    expect(await mm.read(va, pages * P)).toEqual(
      poked(
        data,
        Array.from({ length: pages }, (_, i) => i * P + 512),
      ),
    );
  });
});

describe('a lost device', () => {
  it('a held copy whose dirty-block word, read after the last launch, is 0 lets go; a written one is EPOISON', async () => {
    const { dev, mm, m, va, data, k } = await scene();
    await m.makeExclusive(va + 3 * P, 1); // held, and no kernel will write it
    await m.dispatch(k, { workgroups: 1, uniforms: pokeArgs(va, [0]), ranges: [{ va, bytes: P, access: 'rw' }] }); // page 0: held and written
    dev.device.destroy();
    await dev.device.lost;
    await vi.waitFor(() => expect(dev.lostReason).toBeDefined()); // the device has taken its loss in
    expect(await mm.read(va + 3 * P, P)).toEqual(data.subarray(3 * P, 4 * P));
    const e = await mm.read(va, 4).then(
      () => null,
      (err: unknown) => err as { code?: string },
    );
    expect(e?.code).toBe('EPOISON');
  });
});

describe('device-private pages', () => {
  it('come home whole; what kernels stored on them is counted in blocks', async () => {
    const { sys, dev, mm, va, data, k } = await scene();
    await mm.advise(va, 4 * P, { preferred: null });
    const m = dev.mirror(mm);
    await m.migrateToDevice(va, 2);
    await m.dispatch(k, { workgroups: 1, uniforms: pokeArgs(va, [3 * 256, P + 256, P + 256 + 4]), ranges: [{ va, bytes: 2 * P, access: 'rw' }] });
    const c = sys.counters;
    const before = { back: c.get('bytesWrittenBack'), stored: c.get('bytesStored') };
    await m.migrateToSystem(va, 2);
    expect(c.get('bytesWrittenBack') - before.back).toBe(2 * P);
    expect(c.get('bytesStored') - before.stored).toBe(2 * 256);
    expect(await mm.read(va, 4 * P)).toEqual(poked(data, [3 * 256, P + 256, P + 256 + 4]));
  });
});

describe('accessed and dirty-block words', () => {
  it('a page-table upload for other pages of the leaf keeps the bits a kernel set on a page between them; eviction sees them', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(3 * P);
    await mm.write(va, pattern(3 * P));
    await m.migrateToDevice(va, 3);
    const k = await dev.createKernel({ code: POKE, workgroupSize: 16 });
    await m.dispatch(k, { workgroups: 1, uniforms: pokeArgs(va + P, [5 * 256]), ranges: [{ va: va + P, bytes: P, access: 'rw' }] });
    // pages 0 and 2 go home and come back together: their entries are uploaded as one span,
    // over page 1's entry
    await m.migrateToSystem(va, 1);
    await m.migrateToSystem(va + 2 * P, 1);
    await m.migrateToDevice(va, 3);
    const { entries, blocks } = await m.table.readGpuState([va / P, va / P + 1, va / P + 2]);
    expect(entries[1]! & (PTE_ACCESSED | PTE_DIRTY)).toBe(PTE_ACCESSED | PTE_DIRTY);
    expect(blocks[1]).toBe(1 << 5);
    // the pages mapped again start clean
    expect(entries[0]! & (PTE_ACCESSED | PTE_DIRTY)).toBe(0);
    expect(blocks[2]).toBe(0);
  });

  it('a page unmapped in the same flush as scattered new mappings keeps its dirty-block word for its write-back', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    await m.migrateToDevice(va + 4 * P, 1);
    const k = await dev.createKernel({ code: POKE, workgroupSize: 16 });
    await m.dispatch(k, { workgroups: 1, uniforms: pokeArgs(va + 4 * P, [9 * 256]), ranges: [{ va: va + 4 * P, bytes: P, access: 'rw' }] });
    // what a write-back does: note the word, unmap; then, before the flush, pages on both sides are mapped
    const t = m.table;
    const page = va / P + 4;
    const word = t.statusWord(page);
    expect(word).toBeGreaterThanOrEqual(0);
    const frame = t.unmap(page);
    expect(t.map(page - 3, frame, true)).toBe(true);
    expect(t.map(page + 3, frame, true)).toBe(true);
    t.flush();
    const rb = dev.device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = dev.device.createCommandEncoder();
    enc.copyBufferToBuffer(t.leafBuffer, word * 4, rb, 0, 4);
    dev.device.queue.submit([enc.finish()]);
    await rb.mapAsync(GPUMapMode.READ);
    expect(new Uint32Array(rb.getMappedRange())[0]).toBe(1 << 9);
    rb.destroy();
    t.unmap(page - 3);
    t.unmap(page + 3);
    t.flush();
  });
});
