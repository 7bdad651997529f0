// Nothing leaks (invariant 9, docs/contract.md): destroying an address space gives back its mirrors'
// GPU buffers (after the operations still in flight on them), the system forgets it, and a
// migration whose download fails for a page unmapped meanwhile gives its device frame back.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE } from '../../src/index.ts';
import { abortMap, failAt } from '../../src/device/faultInjection.ts';
import { makeSystem, trackBuffers } from './helpers.ts';

const P = PAGE_SIZE;

const FILL = /* wgsl */ `
struct U { va: u32, words: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.words) { return; }
  hmm_store_u32(u.va + gid.x * 4u, 7u);
}`;

describe('nothing leaks', () => {
  it('an address space destroyed while a kernel faults on it: the dispatch fails with EINVAL, then its mirror buffers are all gone', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const live = trackBuffers(dev);
    const k = await dev.createKernel({ code: FILL, label: 'fill' });
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    const run = m.dispatch(k, { mode: 'replayable', workgroups: (8 * P) / 4 / 64, uniforms: new Uint32Array([va, (8 * P) / 4, 0, 0]) }).then(
      () => null,
      (e: unknown) => e,
    );
    // destroy as soon as the first launch has reported its faults
    const start = sys.stats().dispatches ?? 0;
    while ((sys.stats().dispatches ?? 0) === start) await new Promise((r) => setImmediate(r));
    mm.destroy();
    const e = await run;
    expect(e).toBeInstanceOf(HmmError);
    expect((e as HmmError).code).toBe('EINVAL');
    const left = [...live].map((b) => b.label).filter((l) => l.includes(`mm${mm.id} `));
    expect(left).toEqual([]);
    expect(dev.uncaptured).toEqual([]);
    expect(sys.addressSpaces).not.toContain(mm);
    expect(dev.memory.freeFrames).toBe(dev.memory.frameCount);
  });

  it('the system keeps only live address spaces', async () => {
    const sys = await makeSystem();
    const a = sys.createAddressSpace();
    const b = await a.fork();
    expect(sys.addressSpaces).toEqual([a, b]);
    a.destroy();
    expect(sys.addressSpaces).toEqual([b]);
  });

  it('a download that fails for a page unmapped meanwhile gives its device frame back', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(2 * P).fill(3));
    await m.migrateToDevice(va, 2);
    // the download's map is refused (the device stays alive), and the first page is unmapped
    // while the pages are isolated
    dev.faultInjection = failAt(
      'mapPending',
      (ctx) => {
        void mm.munmap(va, P);
        abortMap(ctx);
      },
      { match: (c) => c.what === 'download' },
    );
    const e = await m.migrateToSystem(va, 2).then(
      () => null,
      (x: unknown) => x,
    );
    dev.faultInjection = undefined;
    expect((e as HmmError).code).toBe('EBUSY');
    expect(dev.memory.freeFrames + dev.ownedFrames).toBe(dev.memory.frameCount);
    expect(dev.ownedFrames).toBe(1); // the page still mapped stays on the device, intact
    expect((await mm.read(va + P, 4))[0]).toBe(3);
  });
});
