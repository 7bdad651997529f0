// munmap, mprotect and CPU fault-back while migrations and kernels are in flight: no device
// entry outlives its notifier (invariant 2, checked in the GPU's own copy of the table), and
// a freed frame is reused only after the GPU work that could touch it has completed.
import { describe, expect, it } from 'vitest';
import { type HmmError, PAGE_SIZE } from '../../src/index.ts';
import { PTE_VALID, PTE_WRITE } from '../../src/device/devicePageTable.ts';
import { pageList } from '../../src/constants.ts';
import { firstDiff, makeSystem, pattern } from './helpers.ts';
import type { Mirror, System } from '../../src/index.ts';

const P = PAGE_SIZE;

/** Every page of each 4-byte slot gets `value`, one invocation per word; stores only after every load. */
const FILL = /* wgsl */ `
struct U { base: u32, words: u32, value: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.words) { return; }
  let va = u.base + gid.x * 4u;
  hmm_touch(va, true);
  hmm_store_u32(va, u.value + hmm_load_u32(va) * 0u);
}`;

/** Start FILL over `pages` pages at va with `value`; returns the dispatch (not awaited). */
async function startFill(m: Mirror, va: number, pages: number, value: number, mode: 'replayable' | 'validated' = 'replayable') {
  const k = await m.dev.createKernel({ code: FILL, workgroupSize: 64 });
  const words = pages * (P / 4);
  const uniforms = new Uint32Array([va, words, value, 0]);
  return mode === 'replayable'
    ? m.dispatch(k, { mode, prefetch: false, workgroups: words / 64, uniforms })
    : m.dispatch(k, { mode, workgroups: words / 64, uniforms, ranges: [{ va, bytes: pages * P, access: 'rw' }] });
}

/** Resolve once the system has launched `n` more kernels than it had. */
async function launched(sys: System, n = 1): Promise<void> {
  const start = sys.stats().dispatches ?? 0;
  while ((sys.stats().dispatches ?? 0) < start + n) await new Promise((r) => setImmediate(r));
}

const settled = <T>(p: Promise<T>) =>
  p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e: e as HmmError }),
  );

describe('concurrency: changes to the address space while the GPU works on it', () => {
  it('munmap during an in-flight migration: the pages are raced, no device entry and no frame is left behind', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    await mm.write(va, pattern(8 * P));
    const ramFree = sys.ram.freeFrames;
    const devFree = dev.memory.freeFrames;
    const moving = settled(m.migrateToDevice(va, 8));
    await mm.munmap(va + 4 * P, 4 * P); // runs while the copy is on the GPU
    const r = await moving;
    expect(r.ok).toBe(false); // dmirror: ENOENT, the unmapped half did not arrive
    expect(m.table.lookup(va / P + 5)).toBeNull();
    const gpu = await m.table.readGpuEntries(pageList(va / P, 8));
    for (let i = 4; i < 8; i++) expect(gpu[i]! & PTE_VALID).toBe(0);
    for (let i = 0; i < 4; i++) expect(gpu[i]! & PTE_VALID).toBe(PTE_VALID);
    expect(sys.ram.freeFrames).toBe(ramFree + 8); // 4 unmapped + 4 moved to the device
    expect(dev.memory.freeFrames).toBe(devFree - 4);
    expect(firstDiff(await mm.read(va, 4 * P), pattern(8 * P).subarray(0, 4 * P))).toBe(-1);
  });

  it('munmap while a replayable kernel is between rounds: ESEGV or done, and no stale entry on the GPU', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 32;
    const va = mm.mmap(pages * P);
    const run = settled(startFill(m, va, pages, 7));
    await launched(sys);
    await mm.munmap(va + 16 * P, 16 * P);
    const r = await run;
    if (!r.ok) expect(r.e.code).toBe('ESEGV');
    const gpu = await m.table.readGpuEntries(pageList(va / P, pages));
    for (let i = 16; i < pages; i++) expect(gpu[i]! & PTE_VALID).toBe(0);
    // nothing of the unmapped half survives anywhere: a new mapping there reads zeros
    const again = mm.mmap(16 * P, { addr: va + 16 * P });
    expect((await m.read(again, 16)).data.every((x) => x === 0)).toBe(true);
  });

  it('mprotect to read-only while a writing kernel runs: afterwards the GPU table has no writable entry there', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 32;
    const va = mm.mmap(pages * P);
    const run = settled(startFill(m, va, pages, 9));
    await launched(sys);
    await mm.mprotect(va, pages * P, 'r');
    const r = await run;
    const gpu = await m.table.readGpuEntries(pageList(va / P, pages));
    for (let i = 0; i < pages; i++) expect(gpu[i]! & PTE_WRITE).toBe(0);
    // As in some order of the two: the kernel finished first (every word 9), or the change came
    // first for the pages it had not written yet (EPERM; each page all 9 or all 0, never torn)
    const data = new Uint32Array((await mm.read(va, pages * P)).buffer);
    if (r.ok) expect(data.every((x) => x === 9)).toBe(true);
    else {
      expect(r.e.code).toBe('EPERM');
      for (let p = 0; p < pages; p++) {
        const page = data.subarray(p * (P / 4), (p + 1) * (P / 4));
        expect(page.every((x) => x === page[0]) && (page[0] === 0 || page[0] === 9), `page ${p}`).toBe(true);
      }
    }
  });

  it('CPU fault-back of pages a kernel is using: both see consistent data', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 16;
    const va = mm.mmap(pages * P);
    const run = startFill(m, va, pages, 5);
    await launched(sys);
    // The first launch faulted on every page and the service holds them until the relaunch: a
    // CPU read now waits for it, and sees every word stored (never the zeros of before)
    const mid = new Uint32Array((await mm.read(va, pages * P)).buffer);
    expect(mid.every((x) => x === 5)).toBe(true);
    await run;
    const end = new Uint32Array((await mm.read(va, pages * P)).buffer);
    expect(end.every((x) => x === 5)).toBe(true);
  });

  it('a CPU read during a fault service waits for the relaunch: the kernel is not made to fault again', async () => {
    // The read used to take the pages back under the service: the relaunch faulted again, and
    // the device mapped copies of pages the read still pinned, which the read revoked, round
    // after round, until EBUSY. Now it waits, like a CPU thread, for the relaunch.
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 16;
    const va = mm.mmap(pages * P);
    const k = await dev.createKernel({ code: FILL.replace('gid.x * 4u', '(gid.x / 64u) * 4096u'), workgroupSize: 64 }); // word 0 of each page
    // Issue the read exactly when the service takes its hold, before it maps anything.
    const hold = mm.holdForDevice.bind(mm);
    let reading: Promise<Uint8Array> | undefined;
    mm.holdForDevice = (device, held, ticket, opts) => {
      const h = hold(device, held, ticket, opts);
      if (held.length > 0 && !opts?.interest) reading ??= mm.read(va, pages * P); // the service's hold, not the dispatch's interest
      return h;
    };
    const r = await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: pages, uniforms: new Uint32Array([va, pages * 64, 5, 0]) });
    expect(r.rounds).toBe(2); // the faulting launch and one relaunch
    const seen = new Uint32Array((await reading!).buffer);
    for (let p = 0; p < pages; p++) expect(seen[p * (P / 4)], `page ${p}`).toBe(5); // read after the relaunch
  });

  it('a page that starts moving after a read faulted it in, before the read copies it, is faulted again: never read as zeros', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(2 * P).fill(0x5a));
    // Right after the read's fault pass resolves, the device starts taking a copy of page 1,
    // with a CPU thread inside that page (its pin). Before, the copy isolated the page and
    // waited for the thread with the entry Migrating, and the read, resuming, copied zeros.
    // Now the copy waits for the read's turn, and the read re-checks every page after its last
    // await anyway: either way it returns the bytes.
    const page = va / P + 1;
    const faultPages = mm.faultPages.bind(mm);
    let struck = false;
    mm.faultPages = async (pages, write) => {
      const done = await faultPages(pages, write);
      if (!struck) {
        struck = true;
        Atomics.add(mm.pageTable.pins, page, 1);
        void m.faults.mapCopies([page], true);
      }
      return done;
    };
    try {
      const out = await mm.read(va, 2 * P);
      expect(struck).toBe(true);
      expect(out.every((x) => x === 0x5a)).toBe(true);
    } finally {
      Atomics.sub(mm.pageTable.pins, page, 1);
    }
  });

  it("release() beside a kernel that takes a held copy meanwhile: the copy is written back, not dropped, and the kernel's adds are kept", async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 64 * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(2 * P).fill(1));
    await m.migrateToDevice(va, 1); // page 0: device-private, release migrates it home
    await mm.advise(va + P, P, { preferred: 'system' }); // page 1: the device works on it through held copies
    const k = await dev.createKernel({ code: FILL.replace('u.value + hmm_load_u32(va) * 0u', 'hmm_load_u32(va) + u.value'), workgroupSize: 64 });
    // release's first download waits until the kernel has taken and written its held copy
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const download = dev.download.bind(dev);
    dev.download = async (frames) => {
      const data = await download(frames);
      await gate;
      return data;
    };
    try {
      const releasing = dev.release();
      await m.dispatch(k, {
        mode: 'validated',
        workgroups: P / 4 / 64,
        uniforms: new Uint32Array([va + P, P / 4, 5, 0]),
        ranges: [{ va: va + P, bytes: P, access: 'rw' }],
      });
      open();
      await releasing;
    } finally {
      dev.download = download;
      open();
    }
    const words = new Uint32Array((await mm.read(va + P, P)).buffer);
    expect(words.every((x) => x === 0x01010101 + 5)).toBe(true);
    expect(dev.ownedFrames).toBe(0);
  });

  it('a frame freed under an in-flight kernel is handed out again only zeroed, after the kernel', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P }] }); // few frames: reuse is certain
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 8;
    const va = mm.mmap(pages * P);
    await m.migrateToDevice(va, pages);
    const run = settled(startFill(m, va, pages, 0xabcd, 'validated'));
    await launched(sys);
    await mm.munmap(va, pages * P); // frames freed while the kernel may still be writing them
    const fresh = mm.mmap(16 * P);
    await m.migrateToDevice(fresh, 16); // takes every device frame, those included
    expect((await m.read(fresh, 16)).data.every((x) => x === 0)).toBe(true);
    await run;
  });
});
