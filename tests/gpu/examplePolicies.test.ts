// The example policies (examples/policies/) on the real adapter, plugged in as a user would:
// per device in createSystem, or per dispatch. Each does what its header says, the mechanism
// records its decisions (sys.stats(), sys.explain), and every byte survives.
import { describe, expect, it } from 'vitest';
import { accessCountPlacement } from '../../examples/policies/accessCount.ts';
import { fifoEviction } from '../../examples/policies/fifo.ts';
import { lruEviction } from '../../examples/policies/lru.ts';
import stride from '../../examples/policies/stride.ts';
import { PAGE_SIZE, residenceName, residency, type AddressSpace, type EvictionPolicy } from '../../src/index.ts';
import { firstDiff, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

/** Adds 1 to word 0 of each listed page (up to 16 page indices from `base`); restartable: touch first. */
const BUMP = /* wgsl */ `
struct U { base: u32, n: u32, pad0: u32, pad1: u32, idx: array<vec4u, 4> }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  let p = u.base + u.idx[gid.x / 4u][gid.x % 4u] * 4096u;
  hmm_touch(p, true);
  if (!hmm_ok()) { return; }
  hmm_atomic_add_u32(p, 1u);
}`;

/** `walkers` invocations side by side, each walking `steps` pages: walker w writes i + 1 to page i * stride, i = w + j * walkers, in order; it stops at its first fault. */
const WALK = /* wgsl */ `
struct U { base: u32, walkers: u32, steps: u32, stride: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.walkers) { return; }
  for (var j = 0u; j < u.steps; j++) {
    let i = gid.x + j * u.walkers;
    hmm_store_u32(u.base + i * u.stride * 4096u, i + 1u);
    if (!hmm_ok()) { return; }
  }
}`;

const bumpArgs = (va: number, pages: readonly number[]): Uint32Array => {
  const u = new Uint32Array(20);
  u.set([va, pages.length]);
  u.set(pages, 4);
  return u;
};
const where = (mm: AddressSpace, va: number, n: number): string[] => Array.from(residency(mm, va, n), (c) => residenceName(c));
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('example policies on the GPU', () => {
  it('stride prefetch: four walkers at stride 2 take 2 rounds instead of one per step, and the pages between stay put', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20 }] });
    const dev = sys.devices[0]!;
    const k = await dev.createKernel({ code: WALK, label: 'walk' });
    const run = async (policy?: typeof stride) => {
      const mm = sys.createAddressSpace();
      const va = mm.mmap(32 * P);
      const before = sys.stats().prefetchedPages ?? 0;
      // prefetch: false turns the built-in density prefetcher off; a dispatch's own policy goes over it
      const r = await dev
        .mirror(mm)
        .dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 4, 4, 2]), ...(policy ? { policy } : {}) });
      return { mm, va, r, prefetched: (sys.stats().prefetchedPages ?? 0) - before };
    };
    const none = await run();
    expect(none.r.rounds).toBe(5); // one round per step
    expect(none.prefetched).toBe(0);
    const strided = await run(stride); // the module's PolicySet, as the bench and the lab load it
    expect(strided.r.rounds).toBe(2); // the first batch, pages 0 2 4 6, shows the stride: 8..30 come with it
    expect(strided.prefetched).toBe(12);
    expect(where(strided.mm, strided.va, 32)).toEqual(range(0, 32).map((i) => (i % 2 === 0 ? 'device' : 'untouched')));
    expect(sys.explain(strided.mm, strided.va + 8 * P).history).toMatchObject([
      { move: 'to-device', cause: { kind: 'prefetch', policy: 'stride(16)', round: 1 } },
    ]);
    expect(sys.explain(strided.mm, strided.va + 8 * P).history[0]!.why).toContain("prefetch by 'stride(16)' with kernel 'walk'");
    // every byte: page i*2 holds i + 1 in word 0, the rest is zero
    const want = new Uint8Array(32 * P);
    for (let i = 0; i < 16; i++) new DataView(want.buffer).setUint32(i * 2 * P, i + 1, true);
    for (const { mm, va } of [none, strided]) expect(firstDiff(await mm.read(va, 32 * P), want)).toBe(-1);
  });

  it('LRU keeps the pages the last kernel used; FIFO, on the same run, evicts them; every byte intact', async () => {
    // 16 frames, 1-page eviction units. A (pages 0-7) and B (8-15) fill the device; C (16-19)
    // evicts four of A, the oldest (all were used since no sweep). Then a kernel uses the rest of
    // A again, and D (20-23) needs four more frames: LRU takes B's (unused since the last sweep),
    // FIFO takes A's (the oldest arrivals) although they were just used.
    const scenario = async (eviction: EvictionPolicy) => {
      const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P, evictionBytes: 4096, policy: { eviction } }] });
      const dev = sys.devices[0]!;
      const mm = sys.createAddressSpace();
      const m = dev.mirror(mm);
      const k = await dev.createKernel({ code: BUMP, label: 'bump' });
      const va = mm.mmap(24 * P);
      const data = pattern(24 * P, 5);
      await mm.write(va, data);
      const bumps = new Array<number>(24).fill(0);
      const bump = async (pages: number[]) => {
        await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: bumpArgs(va, pages) });
        for (const p of pages) bumps[p]!++;
      };
      await bump(range(0, 8));
      await bump(range(8, 8));
      await bump(range(16, 4));
      const evictedA = range(0, 8).filter((p) => where(mm, va + p * P, 1)[0] === 'ram');
      expect(evictedA).toHaveLength(4);
      expect(where(mm, va + 8 * P, 8)).toEqual(new Array(8).fill('device'));
      const hotA = range(0, 8).filter((p) => !evictedA.includes(p));
      await bump(hotA); // resident: no fault, but their accessed bits are set again
      await bump(range(20, 4));
      const after = where(mm, va, 24);
      const stats = sys.stats();
      // every byte: the pattern, word 0 of each page bumped once per kernel that touched it
      const want = data.slice();
      const view = new DataView(want.buffer);
      bumps.forEach((n, p) => view.setUint32(p * P, (view.getUint32(p * P, true) + n) >>> 0, true));
      expect(firstDiff(await mm.read(va, 24 * P), want)).toBe(-1);
      return { sys, mm, va, hotA, after, evictions: stats.evictions };
    };

    const lru = await scenario(lruEviction());
    expect(lru.hotA.map((p) => lru.after[p])).toEqual(['device', 'device', 'device', 'device']);
    expect(range(8, 8).filter((p) => lru.after[p] === 'ram')).toHaveLength(4); // four of B went
    expect(lru.after.slice(16)).toEqual(new Array(8).fill('device'));
    expect(lru.evictions).toBe(8);
    const evictedB = range(8, 8).find((p) => lru.after[p] === 'ram')!;
    const story = lru.sys.explain(lru.mm, lru.va + evictedB * P);
    expect(story.history.map((e) => e.move)).toEqual(['to-device', 'to-system']);
    expect(story.history[1]).toMatchObject({ move: 'to-system', cause: { kind: 'eviction', policy: 'lru' } });
    expect(story.history[1]!.why).toContain("by 'lru' to make room for dispatch 'bump' round 1");

    const fifo = await scenario(fifoEviction());
    expect(fifo.hotA.map((p) => fifo.after[p])).toEqual(['ram', 'ram', 'ram', 'ram']);
    expect(fifo.after.slice(8, 16)).toEqual(new Array(8).fill('device'));
    expect(fifo.sys.explain(fifo.mm, fifo.va + fifo.hotA[0]! * P).history.at(-1)).toMatchObject({ cause: { kind: 'eviction', policy: 'fifo' } });
  });

  it('access-count placement copies a page for its first faults and migrates it at the third; advice system keeps it a copy', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20, policy: { placement: accessCountPlacement({ migrateAfter: 3 }) } }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(8 * P);
    await mm.advise(va + 4 * P, 4 * P, { preferred: 'system' }); // pages 4-7: RAM is their home
    const seen: { toDevice: number; copies: number; now: string[] }[] = [];
    for (let i = 0; i < 3; i++) {
      // the kernel faults on all 8 pages (the CPU took them back after the last one)
      await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: bumpArgs(va, range(0, 8)) });
      const s = sys.stats();
      seen.push({ toDevice: s.pagesToDevice ?? 0, copies: s.deviceCopies ?? 0, now: where(mm, va, 8) });
      await mm.read(va, 8 * P); // CPU touch: held copies are written back, device pages come home
    }
    expect(seen.map((s) => s.toDevice)).toEqual([0, 0, 4]); // pages 0-3 migrate at their third fault
    expect(seen.map((s) => s.copies)).toEqual([8, 16, 20]); // copies until then, and pages 4-7 always
    expect(seen[0]!.now).toEqual(new Array(8).fill('exclusive')); // held copies: the page stays in RAM
    expect(seen[2]!.now).toEqual([...new Array(4).fill('device'), ...new Array(4).fill('exclusive')]);
    const story = sys.explain(mm, va);
    expect(story.history.map((e) => [e.move, e.placement])).toEqual([
      ['copy', 'accessCount(3): copy'],
      ['write-back', undefined],
      ['copy', 'accessCount(3): copy'],
      ['write-back', undefined],
      ['to-device', 'accessCount(3): migrate'],
      ['to-system', undefined],
    ]);
    expect(story.history[4]!.why).toContain("GPU fault: kernel 'bump'");
    expect(story.history[5]!.why).toBe('CPU fault (main thread)');
    expect(
      sys
        .explain(mm, va + 4 * P)
        .history.filter((e) => e.placement)
        .map((e) => e.placement),
    ).toEqual(new Array(3).fill('accessCount(3): copy'));
    const words = new Uint32Array((await mm.read(va, 8 * P)).slice().buffer).filter((_, i) => i % 1024 === 0);
    expect(Array.from(words)).toEqual(new Array(8).fill(3));
  });
});
