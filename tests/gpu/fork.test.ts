// Several address spaces on one device: isolation, fork with copy-on-write (device-private
// pages included), and shared mappings that both sides see and that never migrate.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { spawnThread, threadHandle, type SpawnedThread } from '../../src/workers/threads.ts';
import type { MemWorker } from '../workers/memWorker.ts';
import { failure, firstDiff, makeSystem, pattern } from './helpers.ts';

const u32 = (b: Uint8Array, at = 0) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);
const word = (v: number) => new Uint8Array(new Uint32Array([v]).buffer);

let thread: SpawnedThread<MemWorker>;
beforeAll(async () => {
  thread = await spawnThread<MemWorker>(new URL('../workers/memWorker.ts', import.meta.url));
}, 60_000);
afterAll(async () => thread.terminate());

describe('several address spaces on one device', () => {
  it('are isolated: same VA, own data, own device page tables; frames come back zeroed', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const a = sys.createAddressSpace();
    const b = sys.createAddressSpace();
    const va = a.mmap(4 * PAGE_SIZE);
    expect(b.mmap(4 * PAGE_SIZE, { addr: va })).toBe(va);
    const ma = dev.mirror(a);
    const mb = dev.mirror(b);
    await ma.write(va, pattern(4 * PAGE_SIZE, 1));
    await mb.write(va, pattern(4 * PAGE_SIZE, 2));
    expect(firstDiff((await ma.read(va, 4)).data, pattern(4 * PAGE_SIZE, 1))).toBe(-1);
    expect(firstDiff(await b.read(va, 4 * PAGE_SIZE), pattern(4 * PAGE_SIZE, 2))).toBe(-1);
    // a's device frames are freed, b takes frames again: never a's old bytes
    await a.munmap(va, 4 * PAGE_SIZE);
    const vb2 = b.mmap(4 * PAGE_SIZE);
    await mb.migrateToDevice(vb2, 4);
    expect((await mb.read(vb2, 4)).data.every((x) => x === 0)).toBe(true);
  });
});

describe('fork', () => {
  it('shares private pages copy-on-write: after a write by either side each sees its own data', async () => {
    const sys = await makeSystem();
    const parent = sys.createAddressSpace();
    const va = parent.mmap(3 * PAGE_SIZE);
    await parent.write(va, pattern(3 * PAGE_SIZE, 4));
    const freeBefore = sys.ram.freeFrames;
    const child = await parent.fork();
    expect(sys.ram.freeFrames).toBe(freeBefore); // nothing copied yet
    expect(firstDiff(await child.read(va, 3 * PAGE_SIZE), pattern(3 * PAGE_SIZE, 4))).toBe(-1);
    await child.write(va + 8, word(111));
    await parent.write(va + PAGE_SIZE + 8, word(222));
    expect(u32(await parent.read(va + 8, 4))).toBe(u32(pattern(3 * PAGE_SIZE, 4), 8));
    expect(u32(await child.read(va + PAGE_SIZE + 8, 4))).toBe(u32(pattern(3 * PAGE_SIZE, 4), PAGE_SIZE + 8));
    expect(u32(await child.read(va + 8, 4))).toBe(111);
    expect(u32(await parent.read(va + PAGE_SIZE + 8, 4))).toBe(222);
    expect(sys.stats().cowBreaks).toBe(2);
    expect(sys.ram.freeFrames).toBe(freeBefore - 2);
    await parent.munmap(va, 3 * PAGE_SIZE); // the child keeps the frames it still shares
    expect(firstDiff(await child.read(va + 2 * PAGE_SIZE, PAGE_SIZE), pattern(3 * PAGE_SIZE, 4).subarray(2 * PAGE_SIZE))).toBe(-1);
  });

  it('brings device-private pages home first; both sides then see the device data and diverge on write', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(2 * PAGE_SIZE);
    const mp = dev.mirror(parent);
    await mp.write(va, pattern(2 * PAGE_SIZE, 6)); // device-private now
    const child = await parent.fork();
    const mc = dev.mirror(child);
    expect(firstDiff((await mc.read(va, 2)).data, pattern(2 * PAGE_SIZE, 6))).toBe(-1);
    // the child's device writes its copy; the parent's device writes its own
    await mc.write(va, new Uint8Array(PAGE_SIZE).fill(7));
    await mp.write(va + PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(9));
    expect((await parent.read(va, PAGE_SIZE)).every((x, i) => x === pattern(2 * PAGE_SIZE, 6)[i])).toBe(true);
    expect((await child.read(va, PAGE_SIZE)).every((x) => x === 7)).toBe(true);
    expect((await child.read(va + PAGE_SIZE, PAGE_SIZE)).every((x, i) => x === pattern(2 * PAGE_SIZE, 6)[PAGE_SIZE + i])).toBe(true);
    expect((await parent.read(va + PAGE_SIZE, PAGE_SIZE)).every((x) => x === 9)).toBe(true);
  });

  it('a CPU thread of the child breaks copy-on-write through the mailbox; the parent keeps its data', async () => {
    const sys = await makeSystem();
    const parent = sys.createAddressSpace();
    const va = parent.mmap(PAGE_SIZE);
    await parent.write(va, word(5));
    const child = await parent.fork();
    await thread.api.attach(threadHandle(child));
    expect(await thread.api.loadU32(va)).toBe(5); // reads share the frame
    await thread.api.storeU32(va, 6);
    expect(u32(await parent.read(va, 4))).toBe(5);
    expect(u32(await child.read(va, 4))).toBe(6);
  });

  it('keeps shared mappings shared: both sides see writes, devices too, and they refuse migration', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const parent = sys.createAddressSpace();
    const va = parent.mmap(2 * PAGE_SIZE, { shared: true });
    await parent.write(va, word(1));
    const child = await parent.fork();
    await child.write(va + 4, word(2));
    expect(u32(await parent.read(va + 4, 4))).toBe(2);
    await parent.write(va + PAGE_SIZE, word(3)); // a page never touched before the fork
    expect(u32(await child.read(va + PAGE_SIZE, 4))).toBe(3);
    // devices: read copies in the child, then a CPU write in the parent must reach them
    const mc = dev.mirror(child);
    expect(u32((await mc.read(va, 1)).data)).toBe(1);
    await parent.write(va, word(10));
    expect(u32((await mc.read(va, 1)).data)).toBe(10);
    // a device write through the parent is seen by the child's CPU (written back first)
    const mp = dev.mirror(parent);
    await mp.write(va, new Uint8Array(PAGE_SIZE).fill(0x42));
    expect(u32(await child.read(va, 4))).toBe(0x42424242);
    // and shared pages never migrate
    const e = await failure(mc.migrateToDevice(va, 1));
    expect(e.code).toBe('ENOENT');
  });

  it('waits for CPU threads inside the address space and loses none of their updates', async () => {
    const sys = await makeSystem();
    const parent = sys.createAddressSpace();
    const va = parent.mmap(PAGE_SIZE);
    await parent.write(va, word(0));
    await thread.api.attach(threadHandle(parent));
    const work = thread.api.addFor([va], 400);
    // fork once the thread is adding (however slow the machine is to start it)
    await vi.waitFor(async () => expect(u32(await parent.read(va, 4))).toBeGreaterThan(0), { timeout: 30_000, interval: 5 });
    const child = await parent.fork();
    const adds = await work;
    const atFork = u32(await child.read(va, 4));
    expect(u32(await parent.read(va, 4))).toBe(adds);
    expect(atFork).toBeGreaterThan(0);
    expect(atFork).toBeLessThanOrEqual(adds);
  });
});
