// Bugs the differential fuzzers found in mremap, madvise and pins (issue 12), each as the
// smallest deterministic sequence that shows it. Each test names the fuzzer run that found it,
// what was observed, what the contract expects, and the cause; each failed before its fix.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, type HmmError } from '../../src/index.ts';
import { pte } from '../../src/mm/cpuPageTable.ts';
import { ADD_KERNEL } from '../fuzz/harness.ts';
import { failure, firstDiff, makeSystem, pattern } from './helpers.ts';

const P = PAGE_SIZE;

describe('fidelity regressions (found by the fuzzers)', () => {
  // Found by tests/fuzz/differential.test.ts, FUZZ_SEED=-2099757370 FUZZ_PATH=8 (FUZZ_RUNS=300
  // FUZZ_OPS=150), minimised to: mmap shared; fork; mremap of the shared pages to another
  // address; m.write through the new address; the relative reads the old address and gets the
  // frame's old bytes instead of the device's.
  //
  // Cause: sharing between fork relatives is keyed by address (AddressSpace.sharers(), the hold
  // registries, copyOwner, the shared write-backs look at the same page number in each relative),
  // so a shared frame mapped at two addresses was not seen as shared: the device's held copy was
  // flagged in the mover's entry only. Fix (design-notes §17): such a move is refused with EINVAL
  // naming the page, nothing moved; growing or shrinking in place, and moving once the relatives
  // no longer map the pages, work as before.
  it('mremap refuses to move a shared page a fork relative also maps; the relatives keep sharing it', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(2 * P, { shared: true });
    await parent.write(va, new Uint8Array(2 * P).fill(1));
    const child = await parent.fork(); // the shared frames are mapped by both now
    const target = va + 64 * P;
    const e = await failure(parent.mremap(va, 2 * P, 2 * P, { addr: target }));
    expect(e.code).toBe('EINVAL');
    expect(e.address).toBe(va);
    expect(e.message).toContain('also mapped by a fork relative');
    expect((await failure(parent.read(target, P))).code, 'nothing was mapped at the target').toBe('EFAULT');
    const data = pattern(2 * P, 7);
    await dev.mirror(parent).write(va, data); // a held device copy of the shared frames
    expect(firstDiff(await child.read(va, 2 * P), data), 'the relative sees the device write').toBe(-1);
    expect(firstDiff(await parent.read(va, 2 * P), data), 'the mover itself').toBe(-1);
    // once the relative lets go of the pages, they move (and keep their bytes)
    await child.munmap(va, 2 * P);
    expect(await parent.mremap(va, 2 * P, 2 * P, { addr: target })).toBe(target);
    expect(firstDiff(await parent.read(target, 2 * P), data), 'moved').toBe(-1);
  });

  // Found by tests/fuzz/concurrent.test.ts, FUZZ_SKIP=pin,unpin FUZZ_SEED=758106110
  // FUZZ_PATH=8, step 165: "mremap mm0 page 20 -> FIXED page 21" beside "mm.read mm0 page 21":
  // the read returned words 0x04380000 repeated, neither page's bytes nor EPOISON. Page 20 was
  // Ram|HELD by gpu0 (entry 0x2012), which had been lost at step 156: poisoned.
  //
  // Observed: mremap moves a poisoned page (the writable copy held by a lost device had the only
  // current data) as a plain RAM page: at its new address it reads the frame's stale bytes.
  // Expected: poison moves with the page (design-notes §14: every access is EPOISON until it is
  // unmapped), as it already does for a device-private page of the lost device (its Device entry
  // moves unchanged) and as Linux's mremap moves a hwpoison entry.
  // Cause (fixed): src/mm/addressSpace.ts moveEntries(): `case Kind.Ram: set(q, pte.plainRam(e))`
  // drops the HELD bits of a page held by a lost device (mremap's settle() and
  // anyHeldOrMoving() skip poisoned pages, so such an entry reaches moveEntries still held).
  it('mremap keeps a page poisoned whose held copy went with a lost device', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const va = mm.mmap(P, { shared: true }); // shared: devices work on held copies of it
    await mm.write(va, pattern(P, 1));
    await dev.mirror(mm).write(va, pattern(P, 2)); // the device's copy is newer than RAM
    dev.device.destroy();
    await dev.device.lost;
    expect(mm.poisoned(va / P), 'poisoned by the loss').toBe(true);
    expect((await failure(mm.read(va, P))).code).toBe('EPOISON');
    const target = va + 16 * P;
    expect(await mm.mremap(va, P, P, { addr: target })).toBe(target);
    const r = await mm.read(target, P).then(
      (bytes) => `ok, ${firstDiff(bytes, pattern(P, 1)) === -1 ? "RAM's stale bytes" : 'other bytes'}`,
      (e: HmmError) => e.code,
    );
    expect(r, 'a read at the new address').toBe('EPOISON');
  });

  // Found by tests/fuzz/concurrent.test.ts, FUZZ_SKIP_KNOWN=remapSharedFamily,remapPoisoned
  // FUZZ_SEED=1638571026 FUZZ_PATH=7, step 55: "mremap mm0 pages 32..33 -> FIXED pages 1..2
  // DONTUNMAP" beside "mm.read mm0 page 1" and "migrateToSystem gpu0 pages 1..4", page 1 held by
  // gpu0 (entry 0x1712): RAM frames leaked after the step (511 of 512 accounted for).
  //
  // Observed: a write-back of a device's held copy that is under way when MREMAP_FIXED replaces
  // its page leaves the page's old RAM frame allocated and unreferenced (a leak).
  // Expected: the frame is freed once the write-back lands (as after a plain munmap).
  // Cause (fixed): src/device/hmmDevice.ts, the end of the held copy's write-back (revoke):
  // `if (pte.kind(mm.pageTable.get(p)) !== Kind.Ram) mm.ram.free(ramFrames[i]!); // unmapped
  // meanwhile` takes any RAM entry for its own page, but mremap put ANOTHER page's frame there
  // (moveEntries after unmapPages); it should compare the frame (pte.frame(e) === ramFrames[i]).
  // The same test of kind alone may hide elsewhere (clearRelativesFlags / copyOwner on that page).
  it('a held copy written back while MREMAP_FIXED replaces its page frees the old frame', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const va = mm.mmap(2 * P, { shared: true }); // shared: the device works on a held copy
    const moved = pattern(P, 5);
    await mm.write(va, moved);
    await mm.write(va + P, pattern(P, 6));
    await dev.mirror(mm).write(va + P, pattern(P, 7)); // page 1 held by the device
    const reading = mm.read(va + P, P); // starts the held copy's write-back
    const remapping = mm.mremap(va, P, P, { addr: va + P }); // replaces page 1 meanwhile
    await Promise.all([reading, remapping]);
    expect(firstDiff(await mm.read(va + P, P), moved), 'the moved page at the target').toBe(-1);
    sys.ram.reap();
    expect(sys.ram.frameCount - sys.ram.freeFrames, 'RAM frames in use (only the moved page maps one)').toBe(1);
  });

  // Found while writing the fuzzers' model of madvise, then by tests/fuzz/concurrent.test.ts
  // (FUZZ_SKIP_KNOWN=remapSharedFamily,remapPoisoned,remapBeside FUZZ_CONCURRENT_RUNS=40
  // FUZZ_SEED=438633918 FUZZ_PATH=37, step 176: "mm0 page 21 is not EPOISON, the model says
  // otherwise" after "madvise mm0 page 21 dontneed"). Same family as the mremap poison bug above.
  //
  // Observed: madvise('dontneed') on a poisoned page of a shared mapping succeeds and un-poisons
  // it: a read then returns the frame's stale bytes (from before the lost device's write).
  // Expected: 'dontneed' keeps a shared mapping's data (the shared object's), and that data went
  // with the device: the page stays EPOISON (as Linux keeps a hwpoisoned page-cache page).
  // (A private poisoned page is dropped by 'dontneed' and reads zeros: that is right, and is
  // what the fuzzers' model expects.)
  // Cause (fixed): src/mm/addressSpace.ts zap() with keepShared: `if (pte.kind(e) === Kind.Ram)
  // this.pageTable.set(p, pte.plainRam(e))` clears the HELD bits of a page held by a lost device
  // (madvise's settle()/anyHeldOrMoving() skip poisoned pages, so it arrives still held).
  it("madvise('dontneed') keeps a poisoned shared page poisoned", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const va = mm.mmap(P, { shared: true });
    await mm.write(va, pattern(P, 1));
    await dev.mirror(mm).write(va, pattern(P, 2)); // a held copy, newer than RAM
    dev.device.destroy();
    await dev.device.lost;
    expect(mm.poisoned(va / P), 'poisoned by the loss').toBe(true);
    await mm.madvise(va, P, 'dontneed');
    const r = await mm.read(va, P).then(
      (bytes) => `ok, ${firstDiff(bytes, pattern(P, 1)) === -1 ? "RAM's stale bytes" : 'other bytes'}`,
      (e: HmmError) => e.code,
    );
    expect(r, 'a read after dontneed').toBe('EPOISON');
  });

  // Found by tests/fuzz/concurrent.test.ts (FUZZ_SKIP_KNOWN=remapSharedFamily,remapPoisoned,
  // remapBeside,dontneedPoisonedShared FUZZ_CONCURRENT_RUNS=40 FUZZ_SEED=1446749351
  // FUZZ_PATH=15, step 56: "madvise mm0 pages 11..12 willneed: EBUSY" beside a worker store, a
  // validated add kernel and m.write on the same pages).
  //
  // Observed: madvise('willneed') and a device's kernel (or m.write) on the same pages take the
  // pages from each other until one or both give up with EBUSY (here most rounds).
  // Expected: contention slows work down, it does not stop it (the concurrency contract; EBUSY is
  // never expected). And MADV_WILLNEED is advice: Linux never fails it for contention.
  // Cause (fixed): src/mm/addressSpace.ts madvise, 'willneed' branch: `await
  // this.faultPages(pages, false)` brings pages home without the protocol CPU accesses follow
  // (cpuAccess: waitForDeviceHolds first, then hold devices off with a CPU_HOLDER hold while
  // faulting), so it revokes what a device's fault service just mapped before the relaunch, round
  // after round. Waiting for device holds (or giving up quietly: it is only advice) would do.
  it("madvise('willneed') beside a device's kernel and write on the same pages: no EBUSY", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(3 * P);
    await mm.write(va, pattern(3 * P, 1));
    const kernel = await dev.createKernel({ code: ADD_KERNEL, workgroupSize: 64 });
    const words = (3 * P) / 4;
    const outcomes: string[] = [];
    const code = (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'ok',
        (e: HmmError) => e.code,
      );
    for (let round = 0; round < 5; round++) {
      const all = await Promise.all([
        code(
          m.dispatch(kernel, {
            mode: 'validated',
            workgroups: words / 64,
            uniforms: new Uint32Array([va, words, 1, 0]),
            ranges: [{ va, bytes: 3 * P, access: 'rw' }],
          }),
        ),
        code(m.write(va, pattern(2 * P, round))),
        code(mm.madvise(va, 2 * P, 'willneed')),
      ]);
      outcomes.push(`kernel ${all[0]}, m.write ${all[1]}, willneed ${all[2]}`);
    }
    expect(
      outcomes.filter((o) => o.includes('EBUSY')),
      'rounds with an EBUSY',
    ).toEqual([]);
  });

  // Found by tests/fuzz/concurrent.test.ts, FUZZ_RUNS=160 FUZZ_SEED=1030149739 FUZZ_PATH=30,
  // step 97: "mremap mm0 page 8 -> FIXED page 21 DONTUNMAP" failed with EINVAL "page 0x00108000
  // of a shared mapping is also mapped by a fork relative", where no live relative mapped it.
  //
  // Observed: a relative that let go of a shared page (munmap, MAP_FIXED, destroy) while it was
  // pinned leaves the frame's reference with the pinner until unpin (design-notes §17, pins);
  // mremap took any second reference for a relative's mapping and refused the move.
  // Expected: the move is refused only while a relative maps the page (§17); a pinner maps
  // nothing, so the page moves, as it does in an address space without relatives.
  // Cause (fixed): src/mm/addressSpace.ts mremap tested `ram.refCount(frame) > 1`, which also
  // counts a pinner's reference (and an unmapping's write-back in flight); it now asks whether
  // a live relative's entry at that page names the frame (relativeMaps).
  it('mremap moves a shared page a relative unmapped while a pinner still keeps its frame', async () => {
    const sys = await makeSystem();
    const parent = sys.createAddressSpace();
    const va = parent.mmap(2 * P, { shared: true });
    const data = pattern(2 * P, 3);
    await parent.write(va, data);
    const child = await parent.fork();
    const pin = await child.pin(va, 2 * P);
    await child.munmap(va, P); // page 0: the pinner keeps the frame; the child maps it no more
    const target = va + 32 * P;
    expect(await parent.mremap(va, P, P, { addr: target, dontUnmap: true }), 'page 0 moves').toBe(target);
    expect(firstDiff(await parent.read(target, P), data.subarray(0, P)), 'with its bytes').toBe(-1);
    // page 1 is still the child's too: that one stays refused
    const e = await failure(parent.mremap(va + P, P, P, { addr: target + P }));
    expect(e.code).toBe('EINVAL');
    expect(e.address).toBe(va + P);
    child.destroy(); // the pinner now keeps page 1's frame alone
    expect(await parent.mremap(va + P, P, P, { addr: target + P }), 'page 1 moves once the relative is gone').toBe(target + P);
    expect(firstDiff(await parent.read(target, 2 * P), data), 'both pages at the target').toBe(-1);
    pin.unpin();
  });

  // Found by tests/fuzz/differential.test.ts, FUZZ_RUNS=160 FUZZ_OPS=150 FUZZ_SEED=-1077265865
  // FUZZ_PATH=35, op 75: "frame 1 references after op 75 {op: mmap, s: 1, first: 4, n: 7, prot:
  // rw, shared: true}: expected 2 to be 1", minimised (FUZZ_REPLAY, FUZZ_MINIMISE) to: mmap 9
  // pages shared; fork; long-term pin of pages 2..5 in the parent; the parent unmaps pages 4..7;
  // a replayable kernel of the child's device writes page 4 (a held copy: no relative maps the
  // page any more, so it is not written back at the kernel's end); the child MAP_FIXED over 4..10.
  //
  // Not a leak: the frame's reference returns when the copy's write-back lands. MAP_FIXED cannot
  // wait for a device, so for a held page whose frame another holder keeps (here the pinner) it
  // starts the write-back, which takes the unmapped entry's reference until the device's bytes
  // are in the frame (startSharedWriteBacks). The sequential fuzzer checked the accounting before
  // it landed; it now waits for in-flight write-backs first (tests/fuzz/harness.ts quiesce), as
  // the concurrent fuzzer did. This test keeps what the write-back is for: the pinner's frame
  // gets the device's writes, and the reference goes once they are in.
  it("MAP_FIXED over a held page a pinner keeps: the device's writes reach the pinned frame, then its reference goes", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(2 * P, { shared: true });
    const child = await parent.fork();
    const pin = await parent.pin(va, P, { longterm: true });
    await parent.munmap(va, 2 * P); // the pinner keeps page 0's frame; only the child maps it
    const frame = pte.frame(child.pageTable.get(va / P));
    const kernel = await dev.createKernel({ code: ADD_KERNEL, workgroupSize: 64 });
    await dev.mirror(child).dispatch(kernel, { mode: 'replayable', workgroups: P / 4 / 64, uniforms: new Uint32Array([va, P / 4, 5, 0]) });
    expect(pte.isHeld(child.pageTable.get(va / P)), 'the device holds the written copy').toBe(true);
    child.mmap(2 * P, { addr: va, shared: true }); // replaces the held page at once
    expect(sys.ram.refCount(frame), "the pinner's and the write-back's").toBe(2);
    await Promise.all([...child.inflight.values()]);
    expect(sys.ram.refCount(frame), "the pinner's alone, once the write-back landed").toBe(1);
    expect([...new Uint32Array(sys.ram.frame(frame).slice().buffer)].filter((w) => w !== 5).length, "words of the pinned frame without the kernel's add").toBe(
      0,
    );
    expect(
      [...(await child.read(va, P))].some((b) => b !== 0),
      'the new mapping is demand-zero',
    ).toBe(false);
    pin.unpin();
    sys.ram.reap();
    expect(sys.ram.refCount(frame), 'freed at unpin').toBe(0);
  });

  // Found by tests/fuzz/concurrent.test.ts, FUZZ_RUNS=120 FUZZ_SEED=994010957 FUZZ_PATH=56,
  // step 96: "gpu0 maps mm2 page 31 (frame 4, read-only) but the CPU entry is 1102 and the
  // mapping is rw: a stale device mapping (invariant 2)". Page 31 was a shared page of three
  // fork relatives with read-only copies on gpu0 (DUP in every entry); at step 82 "madvise mm1
  // pages 30..32 dontneed" cleared mm1's flag only, and mm1's gpuWrite at step 96 then flagged
  // the page held in every relative without dropping mm2's read-only copy.
  //
  // Observed (smallest form): after 'dontneed' in one relative, its CPU write no longer finds the
  // read-only device copy the other relative made, and that relative's device reads stale bytes.
  // Expected: 'dontneed' on a shared mapping drops device copies and keeps the data (§17); the
  // read-only copies of a shared frame are flagged in every address space that maps it, so that a
  // write from any side invalidates them.
  // Cause (fixed): src/mm/addressSpace.ts zap() with keepShared set this side's entry to plain
  // RAM and invalidated this side's devices only; the relatives' copies stayed, flagged only
  // there. Now the relatives' read-only copies of the frame go too, flags with them.
  it("madvise('dontneed') in one fork relative drops the read-only device copies the others made of the shared frame", async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(P, { shared: true });
    await parent.write(va, pattern(P, 1));
    const child = await parent.fork();
    expect(firstDiff((await dev.mirror(parent).read(va, 1)).data, pattern(P, 1)), 'a read-only copy on the device').toBe(-1);
    await child.madvise(va, P, 'dontneed');
    await child.write(va, pattern(P, 2));
    expect(firstDiff(await parent.read(va, P), pattern(P, 2)), 'the parent on the CPU').toBe(-1);
    expect(firstDiff((await dev.mirror(parent).read(va, 1)).data, pattern(P, 2)), "the parent's device").toBe(-1);
  });
});
