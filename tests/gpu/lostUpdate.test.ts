// The load test's lost update (docs/concurrency.md, "The lost update under load"), pinned down
// deterministically. dmirror's migrateToDevice collects a page that is already on the device
// as 'already', then waits for the copy of the other pages; a CPU fault meanwhile brings that
// page home. The device must not map it afterwards: its CPU entry now names a RAM frame, and
// mapping that number as a device frame sent the kernel's writes to some other page's frame
// (or past the pool), while CPU threads kept writing RAM undisturbed.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE, PROT } from '../../src/index.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import { makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** One invocation per counter: counter i is the word at base + i*stride. */
const ADD = /* wgsl */ `
struct U { base: u32, count: u32, stride: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.count) { return; }
  hmm_atomic_add_u32(u.base + gid.x * u.stride, 1u);
}`;

const settled = <T>(p: Promise<T>) =>
  p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e: e as HmmError }),
  );

describe('lost update: a device mapping made from a stale migration result', () => {
  it("a page collected as 'already' and taken back by the CPU before the batch ends is not mapped: the kernel's add reaches it", async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 8 * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(2 * P);
    const a = va / P;
    await mm.write(va, new Uint8Array(new Uint32Array([1000]).buffer)); // page A: 1000 at offset 0
    await mm.write(va + P, new Uint8Array(4)); // page B: in RAM, so the next batch has a copy to wait for
    await m.migrateToDevice(va, 1); // A is device-private now
    // Orchestrate the interleaving: the batch's copy may finish only once the CPU has A back.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const settle = dev.settle.bind(dev);
    dev.settle = async () => {
      await settle();
      await gate;
    };
    let r: Awaited<ReturnType<typeof settled<{ cpages: number; pages: string[] }>>>;
    try {
      const moving = settled(m.migrateToDevice(va, 2)); // A: 'already' (collected now); B: copying, held at the gate
      const cpu = new DataView((await mm.read(va, 4)).buffer); // a CPU fault brings A home meanwhile
      expect(cpu.getUint32(0, true)).toBe(1000);
      expect(pte.kind(mm.pageTable.get(a))).toBe(Kind.Ram);
      open();
      r = await moving;
    } finally {
      dev.settle = settle;
      open();
    }
    // dmirror's contract: ENOENT when a page is not on the device afterwards, naming it
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.e).toBeInstanceOf(HmmError);
      expect(r.e.code).toBe('ENOENT');
      expect(r.e.address).toBe(va);
    }
    // A stays a plain RAM page with no device mapping; B moved and is mapped
    expect(pte.kind(mm.pageTable.get(a))).toBe(Kind.Ram);
    expect(m.table.lookup(a)).toBeNull();
    expect((await m.snapshot(va, 2))[0]).toBe(PROT.WRITE);
    expect(m.table.lookup(a + 1)).not.toBeNull();
    // and the kernel's add lands in A (it faults A in: no mapping to a stranger's frame)
    const k = await dev.createKernel({ code: ADD, workgroupSize: 64, label: 'add' });
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 2, P, 0]) });
    const after = new DataView((await mm.read(va, 2 * P)).buffer);
    expect(after.getUint32(0, true)).toBe(1001);
    expect(after.getUint32(P, true)).toBe(1);
  });
});
