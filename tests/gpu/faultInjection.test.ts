// Fault injection on the real adapter (issue 4, item 5). Device loss is real: the test hook
// (src/device/faultInjection.ts) calls destroy() on the HmmDevice's own GPUDevice at a named
// point of a migration, copy or launch; mapAsync rejection is real: the hook destroys the
// buffer whose mapAsync is pending; exhaustion is real: tiny pools. Nothing is mocked.
//
// What must hold (docs/design-notes.md, "Failure model"): a failure before a migration's
// commit leaves the source intact; pages whose only data was on a lost device report EPOISON
// page by page (never zeros); everything else keeps working.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE, PROT, type AddressSpace, type HmmDevice, type System } from '../../src/index.ts';
import { abortMap, failAt, loseDevice, type FaultPoint } from '../../src/device/faultInjection.ts';
import { failure, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;
const hexOf = (va: number): string => `0x${va.toString(16).padStart(8, '0')}`;

/** Wait until the system has seen the loss (device.lost resolved). */
async function lost(dev: HmmDevice): Promise<void> {
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000));
  expect(await Promise.race([dev.device.lost.then(() => 'lost'), timeout]), 'the device was never lost').toBe('lost');
  expect(dev.lostReason).toBeDefined();
}

/** Every page of [va, va+n pages) reports EPOISON naming itself, on CPU read and write, every time. */
async function expectPoisoned(mm: AddressSpace, va: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const at = va + i * P;
    for (const attempt of [1, 2]) {
      const r = await failure(mm.read(at + 8, 16));
      expect(r.code, `read of ${hexOf(at)}, attempt ${attempt}: ${r.message}`).toBe('EPOISON');
      expect(r.address).toBe(at);
      expect(r.message).toContain(hexOf(at));
    }
    const w = await failure(mm.write(at, new Uint8Array([1, 2, 3])));
    expect(w.code).toBe('EPOISON');
    expect(w.address).toBe(at);
  }
}

/** Every page reads back exactly `data`, page by page. */
async function expectIntact(mm: AddressSpace, va: number, data: Uint8Array): Promise<void> {
  for (let i = 0; i < data.length / P; i++) expect(await mm.read(va + i * P, P), `page ${i}`).toEqual(data.subarray(i * P, (i + 1) * P));
}

/** Poisoned pages can be unmapped; a fresh mapping there reads zeros and moves normally. */
async function expectReusable(sys: System, mm: AddressSpace, va: number, n: number): Promise<void> {
  await mm.munmap(va, n * P);
  const again = mm.mmap(n * P, { addr: va });
  expect(again).toBe(va);
  expect(await mm.read(va, n * P)).toEqual(new Uint8Array(n * P));
  const fresh = pattern(n * P, 99);
  await mm.write(va, fresh);
  const survivor = sys.devices.find((d) => d.lostReason === undefined);
  if (survivor) {
    const m = survivor.mirror(mm);
    await m.migrateToDevice(va, n);
    expect((await m.read(va, n)).data).toEqual(fresh);
  }
  expect(await mm.read(va, n * P)).toEqual(fresh);
}

const twoDevices = { devices: [{ memoryBytes: 64 * P }, { memoryBytes: 64 * P }] };

describe('device lost during migrateToDevice (RAM -> device)', () => {
  // Before the commit the source is intact (invariant 3). The commit follows the settle with
  // no await in between, so a loss the system has not seen yet when it commits (injected at
  // 'beforeCommit', in that same tick) is, for everyone, a loss just after the commit: the
  // pages are the lost device's, and poisoned.
  const cases: { point: FaultPoint | 'before'; outcome: 'intact' | 'poisoned' }[] = [
    { point: 'before', outcome: 'intact' },
    { point: 'isolated', outcome: 'intact' },
    { point: 'allocated', outcome: 'intact' },
    { point: 'uploadSubmitted', outcome: 'intact' },
    { point: 'settling', outcome: 'intact' },
    { point: 'beforeCommit', outcome: 'poisoned' },
    { point: 'committed', outcome: 'poisoned' },
    { point: 'finalized', outcome: 'poisoned' },
  ];
  for (const { point, outcome } of cases) {
    it(`lost at '${point}': ${outcome}`, async () => {
      const sys = await makeSystem(twoDevices);
      const [d0, d1] = sys.devices as [HmmDevice, HmmDevice];
      const mm = sys.createAddressSpace();
      const m0 = d0.mirror(mm);
      const m1 = d1.mirror(mm);
      const va = mm.mmap(4 * P);
      const other = mm.mmap(2 * P);
      const data = pattern(4 * P, 3);
      const otherData = pattern(2 * P, 4);
      await mm.write(va, data);
      await mm.write(other, otherData);
      const inj = point === 'before' ? undefined : failAt(point, loseDevice, { match: (c) => c.direction === 'toDevice' });
      d0.faultInjection = inj;
      if (!inj) {
        d0.device.destroy();
        await lost(d0);
      }
      const res = await m0.migrateToDevice(va, 4).then(
        (r) => r,
        (e: unknown) => e as HmmError,
      );
      if (inj) expect(inj.fired).toBe(true);
      await lost(d0);
      if (outcome === 'intact') {
        expect(res).toBeInstanceOf(HmmError);
        expect((res as HmmError).code).toBe('EDEVLOST');
        expect(Array.from(await m1.snapshot(va, 4))).toEqual(Array(4).fill(PROT.WRITE));
        await expectIntact(mm, va, data);
      } else {
        expect((res as { cpages: number }).cpages).toBe(4); // it committed before the loss was seen
        expect(Array.from(await m1.snapshot(va, 4))).toEqual(Array(4).fill(PROT.ERROR));
        await expectPoisoned(mm, va, 4);
        await expectReusable(sys, mm, va, 4);
      }
      await expectIntact(mm, other, otherData);
      expect(d0.uncaptured).toEqual([]);
    });
  }
});

describe('device lost during migrateToSystem (device -> RAM): explicit, and CPU fault-back', () => {
  // Until the downloaded bytes are in hand, the device holds the only copy: a loss poisons the
  // pages. From 'beforeCommit' on, the bytes are on the CPU side and nothing is lost.
  const cases: { point: FaultPoint; outcome: 'intact' | 'poisoned' }[] = [
    { point: 'isolated', outcome: 'poisoned' },
    { point: 'downloadSubmitted', outcome: 'poisoned' },
    { point: 'mapPending', outcome: 'poisoned' },
    { point: 'beforeCommit', outcome: 'intact' },
    { point: 'committed', outcome: 'intact' },
    { point: 'finalized', outcome: 'intact' },
  ];
  for (const how of ['migrateToSystem', 'CPU fault'] as const) {
    for (const { point, outcome } of cases) {
      it(`${how}, lost at '${point}': ${outcome}`, async () => {
        const sys = await makeSystem(twoDevices);
        const [d0, d1] = sys.devices as [HmmDevice, HmmDevice];
        const mm = sys.createAddressSpace();
        const m0 = d0.mirror(mm);
        const m1 = d1.mirror(mm);
        const va = mm.mmap(4 * P);
        const inRam = mm.mmap(2 * P);
        const data = pattern(4 * P, 5);
        const ramData = pattern(2 * P, 6);
        await mm.write(va, data);
        await mm.write(inRam, ramData);
        await m0.migrateToDevice(va, 4);
        const inj = failAt(point, loseDevice, { match: (c) => c.direction !== 'toDevice' });
        d0.faultInjection = inj;
        if (how === 'migrateToSystem') {
          const res = await m0.migrateToSystem(va, 4).then(
            (r) => r,
            (e: unknown) => e as HmmError,
          );
          if (outcome === 'poisoned') expect((res as HmmError).code).toBe('EDEVLOST');
          else expect((res as { cpages: number }).cpages).toBe(4);
        } else {
          const res = await mm.read(va, 4 * P).then(
            (r) => r,
            (e: unknown) => e as HmmError,
          );
          if (outcome === 'poisoned') {
            expect((res as HmmError).code).toBe('EPOISON');
            expect((res as HmmError).address).toBe(va);
          } else expect(res).toEqual(data);
        }
        expect(inj.fired).toBe(true);
        await lost(d0);
        if (outcome === 'poisoned') {
          expect(Array.from(await m1.snapshot(va, 4))).toEqual(Array(4).fill(PROT.ERROR));
          await expectPoisoned(mm, va, 4);
          await expectReusable(sys, mm, va, 4);
        } else {
          expect(Array.from(await m1.snapshot(va, 4))).toEqual(Array(4).fill(PROT.WRITE));
          await expectIntact(mm, va, data);
        }
        await expectIntact(mm, inRam, ramData);
        expect(d0.uncaptured).toEqual([]);
      });
    }
  }
});

describe('device lost during eviction', () => {
  // A 4-frame device holds pages 0-3; a fault on pages 4-7 evicts 0-3 first (migrateToSystem).
  const cases: { point: FaultPoint; what?: 'pageTable' | 'download'; poisoned: boolean }[] = [
    { point: 'mapPending', what: 'pageTable', poisoned: true }, // reading the accessed bits
    { point: 'isolated', poisoned: true }, // the evicted pages were only on the device
    { point: 'mapPending', what: 'download', poisoned: true },
    { point: 'beforeCommit', poisoned: false }, // their bytes were already back
  ];
  for (const { point, what, poisoned } of cases) {
    it(`lost at '${point}'${what ? ` (${what})` : ''}: ${poisoned ? 'evicted pages poisoned' : 'nothing lost'}; the faulting pages stay intact`, async () => {
      const sys = await makeSystem({ devices: [{ memoryBytes: 4 * P, evictionBytes: 4096 }, { memoryBytes: 16 * P }] });
      const [d0, d1] = sys.devices as [HmmDevice, HmmDevice];
      const mm = sys.createAddressSpace();
      const m0 = d0.mirror(mm);
      const va = mm.mmap(8 * P);
      const data = pattern(8 * P, 7);
      await mm.write(va, data);
      expect((await m0.read(va, 4)).data).toEqual(data.subarray(0, 4 * P));
      const inj = failAt(point, loseDevice, { match: (c) => (what ? c.what === what : c.direction === 'toSystem') });
      d0.faultInjection = inj;
      const e = await failure(m0.read(va + 4 * P, 4));
      expect(e.code).toBe('EDEVLOST');
      expect(inj.fired).toBe(true);
      await lost(d0);
      const snap = Array.from(await d1.mirror(mm).snapshot(va, 8));
      expect(snap).toEqual([...Array(4).fill(poisoned ? PROT.ERROR : PROT.WRITE), ...Array(4).fill(PROT.WRITE)]);
      if (poisoned) await expectPoisoned(mm, va, 4);
      else await expectIntact(mm, va, data.subarray(0, 4 * P));
      await expectIntact(mm, va + 4 * P, data.subarray(4 * P));
    });
  }
});

// dst[i] = src[i] + sh[i % 1024]: src and dst are private (they migrate), sh is shared (it is
// read through a read-only device copy and stays in RAM).
const ADD = /* wgsl */ `
struct U { src: u32, dst: u32, sh: u32, n: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  hmm_store_u32(u.dst + gid.x * 4u, hmm_load_u32(u.src + gid.x * 4u) + hmm_load_u32(u.sh + (gid.x % 1024u) * 4u));
}`;

describe('device lost during a replayable dispatch', () => {
  const cases: { name: string; point: FaultPoint; nth: number; what?: 'launch'; moved: boolean }[] = [
    { name: 'first launch submitted', point: 'launchSubmitted', nth: 1, moved: false },
    { name: 'first status readback pending', point: 'mapPending', nth: 1, what: 'launch', moved: false },
    { name: 'fault service copying pages in', point: 'uploadSubmitted', nth: 1, moved: false },
    { name: 'replay launched after the service', point: 'launchSubmitted', nth: 2, moved: true }, // src had moved in
  ];
  for (const c of cases) {
    it(`lost at ${c.name}: EDEVLOST; ${c.moved ? 'the pages it had moved are poisoned' : 'nothing had moved, nothing lost'}; RAM pages intact`, async () => {
      const sys = await makeSystem(twoDevices);
      const [d0, d1] = sys.devices as [HmmDevice, HmmDevice];
      const mm = sys.createAddressSpace();
      const m0 = d0.mirror(mm);
      const src = mm.mmap(2 * P);
      const dst = mm.mmap(2 * P);
      const sh = mm.mmap(P, { shared: true });
      const keep = mm.mmap(2 * P);
      const [srcData, dstData, shData, keepData] = [pattern(2 * P, 8), pattern(2 * P, 9), pattern(P, 10), pattern(2 * P, 11)];
      await mm.write(src, srcData);
      await mm.write(dst, dstData);
      await mm.write(sh, shData);
      await mm.write(keep, keepData);
      const k = await d0.createKernel({ code: ADD, workgroupSize: 64, label: 'add' });
      const inj = failAt(c.point, loseDevice, { nth: c.nth, match: (x) => !c.what || x.what === c.what });
      d0.faultInjection = inj;
      const e = await failure(m0.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 32, uniforms: new Uint32Array([src, dst, sh, 2048]) }));
      expect(e.code).toBe('EDEVLOST');
      expect(inj.fired).toBe(true);
      await lost(d0);
      const m1 = d1.mirror(mm);
      if (c.moved) {
        expect(Array.from(await m1.snapshot(src, 2))).toEqual([PROT.ERROR, PROT.ERROR]);
        await expectPoisoned(mm, src, 2);
        await expectReusable(sys, mm, src, 2);
      } else await expectIntact(mm, src, srcData);
      // dst never moved: round 1 faulted on src only (a faulted invocation queues no more faults)
      await expectIntact(mm, dst, dstData);
      await expectIntact(mm, sh, shData); // its device copy was read-only: RAM is current
      await expectIntact(mm, keep, keepData);
      // the other device runs the same kernel to the right answer
      const k1 = await d1.createKernel({ code: ADD, workgroupSize: 64, label: 'add' });
      const s2 = mm.mmap(2 * P);
      const d2 = mm.mmap(2 * P);
      await mm.write(s2, srcData);
      await m1.dispatch(k1, { mode: 'replayable', workgroups: 32, uniforms: new Uint32Array([s2, d2, sh, 2048]) });
      const out = new Uint32Array((await mm.read(d2, 2 * P)).buffer);
      const a = new Uint32Array(srcData.buffer);
      const b = new Uint32Array(shData.buffer);
      for (let i = 0; i < 2048; i++) if (out[i] !== (a[i]! + b[i % 1024]!) >>> 0) throw new Error(`word ${i}: ${out[i]}`);
    });
  }
});

describe('after a device is lost, the rest of the system keeps serving', () => {
  async function scenario(observeFirst: boolean): Promise<void> {
    const sys = await makeSystem(twoDevices);
    const [d0, d1] = sys.devices as [HmmDevice, HmmDevice];
    const mm = sys.createAddressSpace();
    const m0 = d0.mirror(mm);
    const m1 = d1.mirror(mm);
    // a: 0,1 only on d0 | 2 RAM | 3 held by d0, clean (exclusive, no kernel since) | 4 RAM | 5 on d1 | 6 RAM | 7 never touched
    const a = mm.mmap(8 * P);
    const data = pattern(7 * P, 12);
    await mm.write(a, data);
    // s: 0 read-only copy on d0 | 1 held by d0 and written by a d0 kernel (only current data on d0)
    const s = mm.mmap(2 * P, { shared: true });
    const sData = pattern(2 * P, 13);
    await mm.write(s, sData);
    await m0.migrateToDevice(a, 2);
    await m1.migrateToDevice(a + 5 * P, 1);
    expect((await m0.read(s, 1)).data).toEqual(sData.subarray(0, P));
    const written = pattern(P, 14);
    await m0.write(s + P, written);
    await m0.makeExclusive(a + 3 * P, 1); // the last thing d0 does: no launch follows
    expect(Array.from(await m1.snapshot(s, 2))).toEqual([PROT.READ, PROT.NONE]); // read-only while d0 has a copy
    expect(Array.from(await m1.snapshot(a, 2))).toEqual([PROT.DEV_PRIVATE_REMOTE, PROT.DEV_PRIVATE_REMOTE]);

    d0.device.destroy();
    if (observeFirst) await lost(d0);
    else {
      // the first touch finds out by itself (its readback fails), before device.lost was handled here
      const first = await failure(mm.read(a + P, 8));
      expect(first.code).toBe('EPOISON');
      expect(first.address).toBe(a + P);
      expect(await mm.read(a + 3 * P, P)).toEqual(data.subarray(3 * P, 4 * P)); // clean held copy
      await lost(d0);
    }

    // the surviving device: errors for poisoned pages, everything else as it was
    expect(Array.from(await m1.snapshot(a, 8))).toEqual([
      PROT.ERROR,
      PROT.ERROR,
      PROT.WRITE,
      PROT.WRITE,
      PROT.WRITE,
      PROT.DEV_PRIVATE_LOCAL | PROT.WRITE,
      PROT.WRITE,
      PROT.NONE,
    ]);
    expect(Array.from(await m1.snapshot(s, 2))).toEqual([PROT.READ, PROT.ERROR]); // the dead copy's flag goes at the next write
    // pages only on d0: EPOISON, page by page, on every touch; never zeros
    await expectPoisoned(mm, a, 2);
    await expectPoisoned(mm, s + P, 1);
    // a range read names its first poisoned page; its other pages still read alone
    const r = await failure(mm.read(a, 8 * P));
    expect([r.code, r.address]).toEqual(['EPOISON', a]);
    for (const i of [2, 3, 4, 5, 6]) expect(await mm.read(a + i * P, P)).toEqual(data.subarray(i * P, (i + 1) * P));
    expect(await mm.read(a + 7 * P, P)).toEqual(new Uint8Array(P));
    expect(await mm.read(s, P)).toEqual(sData.subarray(0, P)); // read-only copy: RAM was current
    await mm.write(s, new Uint8Array([7])); // and it is writable (the dead copy is dropped)
    expect((await mm.read(s, 1))[0]).toBe(7);
    const viaD1 = await failure(m1.read(a + P, 1));
    expect([viaD1.code, viaD1.address]).toEqual(['EPOISON', a + P]);
    expect((await m1.read(a + 2 * P, 5)).data).toEqual(data.subarray(2 * P, 7 * P));
    await m1.migrateToDevice(a + 6 * P, 1);
    // mprotect over a poisoned held page works; the page stays poisoned
    await mm.mprotect(s, 2 * P, 'r');
    await expectPoisonedRead(mm, s + P);
    // the lost device refuses calls
    expect((await failure(m0.read(a + 2 * P, 1))).code).toBe('EDEVLOST');
    expect(() => d0.mirror(sys.createAddressSpace())).toThrow(/EDEVLOST/);
    // new mappings and address spaces work
    const fresh = mm.mmap(3 * P);
    const freshData = pattern(3 * P, 15);
    await mm.write(fresh, freshData);
    await m1.migrateToDevice(fresh, 3);
    expect(await mm.read(fresh, 3 * P)).toEqual(freshData);
    const mm2 = sys.createAddressSpace();
    const b = mm2.mmap(2 * P);
    expect((await d1.mirror(mm2).read(b, 2)).data).toEqual(new Uint8Array(2 * P));
    // poisoned pages unmap, and the addresses are reusable
    await expectReusable(sys, mm, a, 2);
    await mm.munmap(s, 2 * P);
    expect(d1.uncaptured).toEqual([]);
  }

  async function expectPoisonedRead(mm: AddressSpace, at: number): Promise<void> {
    const e = await failure(mm.read(at, 1));
    expect([e.code, e.address]).toEqual(['EPOISON', at]);
  }

  it('once the loss was seen', () => scenario(true));
  it('when a CPU touch is the first to find out', () => scenario(false));
});

describe('mapAsync rejected on a live device', () => {
  it('CPU fault-back: EBUSY, the page stays on the device intact, and a retry works', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(3 * P);
    const data = pattern(3 * P, 20);
    await mm.write(va, data);
    await m.migrateToDevice(va, 3);
    dev.faultInjection = failAt('mapPending', abortMap, { match: (c) => c.what === 'download' });
    const e = await failure(mm.read(va, 3 * P));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/mapAsync/);
    expect(dev.lostReason).toBeUndefined();
    expect(Array.from(await m.snapshot(va, 3))).toEqual(Array(3).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    expect((await m.read(va, 3)).data).toEqual(data); // the device still serves it
    expect(await mm.read(va, 3 * P)).toEqual(data); // the retry
    expect(Array.from(await m.snapshot(va, 3))).toEqual(Array(3).fill(PROT.WRITE));
    expect(dev.uncaptured).toEqual([]);
  });

  it('explicit migrateToSystem: EBUSY, nothing moved, a retry moves it', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    const data = pattern(2 * P, 21);
    await mm.write(va, data);
    await m.migrateToDevice(va, 2);
    const freeRam = sys.ram.freeFrames;
    dev.faultInjection = failAt('mapPending', (c) => c.buffer!.unmap(), { match: (c) => c.what === 'download' });
    expect((await failure(m.migrateToSystem(va, 2))).code).toBe('EBUSY');
    expect(sys.ram.freeFrames).toBe(freeRam); // the RAM frames it took went back
    expect(Array.from(await m.snapshot(va, 2))).toEqual(Array(2).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    expect((await m.migrateToSystem(va, 2)).cpages).toBe(2);
    expect(await mm.read(va, 2 * P)).toEqual(data);
  });

  it('held copy written by the device: EBUSY, still held (never the stale RAM bytes), a retry writes it back', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(P, { shared: true });
    await mm.write(va, pattern(P, 22));
    const written = pattern(P, 23);
    await m.write(va, written); // the device holds the page; RAM is stale until written back
    dev.faultInjection = failAt('mapPending', abortMap, { match: (c) => c.what === 'download' });
    expect((await failure(mm.read(va, P))).code).toBe('EBUSY');
    expect(Array.from(await m.snapshot(va, 1))).toEqual([PROT.WRITE]);
    expect((await m.read(va, 1)).data).toEqual(written); // still mapped on the device, no new fault
    expect(await mm.read(va, P)).toEqual(written);
  });

  it('device reads and kernel status readbacks: EBUSY, and a retry works', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const src = mm.mmap(2 * P);
    const dst = mm.mmap(2 * P);
    const sh = mm.mmap(P, { shared: true });
    const data = pattern(2 * P, 24);
    await mm.write(src, data);
    dev.faultInjection = failAt('mapPending', abortMap, { match: (c) => c.what === 'mirror' });
    expect((await failure(m.read(src, 2))).code).toBe('EBUSY');
    expect((await m.read(src, 2)).data).toEqual(data);
    const k = await dev.createKernel({ code: ADD, workgroupSize: 64, label: 'add' });
    dev.faultInjection = failAt('mapPending', abortMap, { match: (c) => c.what === 'launch' });
    const e = await failure(m.dispatch(k, { mode: 'replayable', workgroups: 32, uniforms: new Uint32Array([src, dst, sh, 2048]) }));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toContain("kernel 'add'");
    await m.dispatch(k, { mode: 'replayable', workgroups: 32, uniforms: new Uint32Array([src, dst, sh, 2048]) });
    expect(await mm.read(dst, 2 * P)).toEqual(data); // sh is zeros
    expect(dev.lostReason).toBeUndefined();
    expect(dev.uncaptured).toEqual([]);
  });

  it("eviction's accessed-bit readback: EBUSY, nothing moved or lost, a retry evicts", async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 4 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    const data = pattern(8 * P, 25);
    await mm.write(va, data);
    await m.migrateToDevice(va, 4);
    dev.faultInjection = failAt('mapPending', abortMap, { match: (c) => c.what === 'pageTable' });
    const e = await failure(m.read(va + 4 * P, 4));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toContain('eviction');
    expect(Array.from(await m.snapshot(va, 8))).toEqual([...Array(4).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE), ...Array(4).fill(PROT.WRITE)]);
    expect((await m.read(va + 4 * P, 4)).data).toEqual(data.subarray(4 * P));
    await expectIntact(mm, va, data);
    expect(dev.uncaptured).toEqual([]);
  });
});

describe('exhaustion', () => {
  it('device memory: ENOMEM naming what it was for; nothing lost; other pages still served', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 4 * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    const data = pattern(8 * P, 30);
    await mm.write(va, data);
    // one device access needing more than the whole pool
    const e = await failure(m.read(va, 8));
    expect(e.code).toBe('ENOMEM');
    expect(e.message).toMatch(/device memory exhausted \(4 frames\) faulting in 0x/);
    expect(e.address).toBeGreaterThanOrEqual(va);
    // a validated dispatch declaring more than the pool
    const k = await dev.createKernel({ code: ADD, workgroupSize: 64, label: 'add' });
    const d = await failure(m.dispatch(k, { workgroups: 1, ranges: [{ va, bytes: 8 * P }] }));
    expect(d.code).toBe('ENOMEM');
    expect(d.message).toContain("dispatch 'add'");
    // explicit migration of more than fits: the rest stays in RAM, named as 'nomem'
    const n = await failure(m.migrateToDevice(va, 8));
    expect(n.message).toContain('nomem');
    await expectIntact(mm, va, data);
    expect((await m.read(va + 4 * P, 4)).data).toEqual(data.subarray(4 * P));
    expect((await m.read(va, 2)).data).toEqual(data.subarray(0, 2 * P));
    await expectIntact(mm, va, data);
  });

  it('system RAM: ENOMEM naming what it was for; nothing lost; device pages wait on the device', async () => {
    const sys = await makeSystem({ systemRamBytes: 8 * P, devices: [{ memoryBytes: 16 * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * P);
    const data = pattern(8 * P, 31);
    await mm.write(va, data); // RAM is full
    const more = mm.mmap(4 * P);
    const w = await failure(mm.write(more, new Uint8Array(P).fill(1)));
    expect(w.code).toBe('ENOMEM');
    expect(w.message).toMatch(/system RAM exhausted.*writing 4096 bytes at 0x/);
    expect(await mm.read(more, 4 * P)).toEqual(new Uint8Array(4 * P)); // the zero page needs no frame
    // move half to the device, fill RAM again: the device pages cannot come back yet
    await m.migrateToDevice(va, 4);
    await mm.write(more, pattern(4 * P, 32));
    const r = await failure(mm.read(va, P));
    expect(r.code).toBe('ENOMEM');
    expect(r.message).toMatch(/system RAM exhausted.*migrating 1 pages from gpu0 at 0x/);
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    expect((await m.read(va, 4)).data).toEqual(data.subarray(0, 4 * P)); // the device still serves them
    expect(await mm.read(va + 4 * P, 4 * P)).toEqual(data.subarray(4 * P)); // RAM pages too
    await mm.munmap(more, 4 * P);
    await expectIntact(mm, va, data);
  });
});
