// CPU threads on a real device: workers load and store through the shared page table, fault
// device-private pages home through the Atomics mailbox, and never lose an update to a
// migration running beside them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { mailboxStats, spawnThread, threadHandle, type SpawnedThread } from '../../src/workers/threads.ts';
import type { MemWorker } from '../workers/memWorker.ts';
import { failure, makeSystem, pattern, firstDiff } from './helpers.ts';

const WORKERS = 4;
let threads: SpawnedThread<MemWorker>[] = [];

beforeAll(async () => {
  threads = await Promise.all(Array.from({ length: WORKERS }, () => spawnThread<MemWorker>(new URL('../workers/memWorker.ts', import.meta.url))));
}, 60_000);

afterAll(async () => {
  await Promise.all(threads.map((t) => t.terminate()));
});

const w = (i: number) => threads[i]!.api;

describe('CPU threads share the address space', () => {
  it('a worker reads what the main thread wrote and the main thread reads what the worker wrote', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(4 * PAGE_SIZE);
    const data = pattern(2 * PAGE_SIZE, 3);
    await mm.write(va, data);
    await w(0).attach(threadHandle(mm));
    expect(firstDiff(await w(0).load(va, 2 * PAGE_SIZE), data)).toBe(-1);
    await w(0).storeU32(va + 2 * PAGE_SIZE + 8, 0xdeadbeef); // a never-touched page: frame through the mailbox
    await w(0).storeF32(va + 12, 1.5);
    await w(0).store(va + PAGE_SIZE - 3, new Uint8Array([1, 2, 3, 4, 5, 6])); // across a page boundary
    const back = await mm.read(va, 3 * PAGE_SIZE);
    expect(new DataView(back.buffer).getUint32(2 * PAGE_SIZE + 8, true)).toBe(0xdeadbeef);
    expect(new DataView(back.buffer).getFloat32(12, true)).toBe(1.5);
    expect([...back.subarray(PAGE_SIZE - 3, PAGE_SIZE + 3)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await w(0).loadU32(va + 3 * PAGE_SIZE)).toBe(0); // an untouched page reads zero
    expect(await w(0).loadF32(va + 12)).toBe(1.5);
  });

  it('a worker touching a device-private page blocks until it is migrated home, and sees the device data', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * PAGE_SIZE);
    const data = pattern(2 * PAGE_SIZE, 9);
    await m.write(va, data); // the device writes it: the pages are device-private now
    expect(mm.pageTable.get(va / PAGE_SIZE) & 7).toBe(3);
    await w(1).attach(threadHandle(mm));
    const before = sys.stats();
    expect(firstDiff(await w(1).load(va, 2 * PAGE_SIZE), data)).toBe(-1);
    const after = sys.stats();
    expect(after.pagesToSystem! - (before.pagesToSystem ?? 0)).toBe(2);
    expect(after.threadFaults! - (before.threadFaults ?? 0)).toBe(1);
    // and a worker store invalidates the device's view: the device reads the new value
    await w(1).storeU32(va, 77);
    const r = await m.read(va, 1);
    expect(new DataView(r.data.buffer).getUint32(0, true)).toBe(77);
  });

  it('many workers faulting the same device-private page cause one migration', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(PAGE_SIZE);
    await m.write(va, pattern(PAGE_SIZE, 5));
    const h = threadHandle(mm);
    await Promise.all(threads.map((t) => t.api.attach(h)));
    const before = sys.stats().pagesToSystem ?? 0;
    const values = await Promise.all(threads.map((t) => t.api.loadU32(va + 64)));
    expect(new Set(values).size).toBe(1);
    expect(values[0]).toBe(new DataView(pattern(PAGE_SIZE, 5).buffer).getUint32(64, true));
    expect((sys.stats().pagesToSystem ?? 0) - before).toBe(1);
  });

  it('worker errors carry their code and address: EFAULT, EPERM, EINVAL', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const va = mm.mmap(PAGE_SIZE, { prot: 'r' });
    await w(2).attach(threadHandle(mm));
    const unmapped = va + 16 * PAGE_SIZE;
    const e1 = await failure(w(2).loadU32(unmapped));
    expect(e1.code).toBe('EFAULT');
    expect(e1.address).toBe(unmapped);
    expect(e1.message).toContain(unmapped.toString(16));
    const e2 = await failure(w(2).storeU32(va, 1));
    expect(e2.code).toBe('EPERM');
    expect((await failure(w(2).loadU32(va + 2))).code).toBe('EINVAL'); // unaligned word
    expect((await failure(w(2).load(va, 0))).code).toBe('EINVAL');
    expect((await failure(w(2).load(-4, 4))).code).toBe('EINVAL');
    expect((await failure(w(2).load(0, 4))).code).toBe('EFAULT'); // VA 0 is never mapped
    expect(await w(2).loadU32(va)).toBe(0); // and the read-only page still reads
  });

  it('no update is lost while the page migrates to the device and back under the workers', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const va = mm.mmap(2 * PAGE_SIZE);
    await mm.write(va, new Uint8Array(8));
    const h = threadHandle(mm);
    await Promise.all(threads.map((t) => t.api.attach(h)));
    const vas = [va, va + PAGE_SIZE + 4];
    // The workers add until told to stop: at least 8 migration rounds and 1.5 s, however slow
    // the machine (a fixed time would give a loaded machine too few rounds to mean anything).
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const work = Promise.all(threads.map((t) => t.api.addUntil(vas, stop)));
    let migrations = 0;
    let pinned = 0;
    const start = performance.now();
    while (migrations < 8 || performance.now() - start < 1500) {
      const r = await m.migrateToDevice(va, 2).catch((e) => ({ cpages: -1, pages: [String(e.code)] }));
      migrations++;
      pinned += r.pages.filter((x) => x === 'pinned').length;
      await m.read(va, 2); // the device reads it too (mapping, or copies of pinned pages)
    }
    Atomics.store(stop, 0, 1);
    const rounds = (await work).reduce((a, b) => a + b, 0);
    const out = await mm.read(va, 2 * PAGE_SIZE);
    const dv = new DataView(out.buffer);
    expect(dv.getUint32(0, true)).toBe(rounds);
    expect(dv.getUint32(PAGE_SIZE + 4, true)).toBe(rounds);
    expect(mailboxStats(mm).served).toBeGreaterThan(0);
    console.log(
      `[threads] ${rounds} adds per word, ${migrations} migration rounds, ${pinned} pinned page results, mailbox ${JSON.stringify(mailboxStats(mm))}, pagesToDevice ${sys.stats().pagesToDevice}`,
    );
  });
});
