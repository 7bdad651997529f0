// What one huge-page migration costs in units of work, not time (issue 15 item 8): a 2 MiB
// unit that moves whole is one allocation, one copy into RAM and one readback buffer, not 512
// of each. Counted on a real adapter by wrapping (and calling through) the methods that do them.
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, PAGE_SIZE } from '../../src/index.ts';
import { firstDiff, makeSystem, pattern } from './helpers.ts';

const N = HUGE_SIZE / PAGE_SIZE; // 512

async function hugeOnDevice() {
  const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
  const dev = sys.devices[0]!;
  const mm = sys.createAddressSpace();
  const m = dev.mirror(mm);
  const va = mm.mmap(HUGE_SIZE, { huge: true });
  const data = pattern(HUGE_SIZE, 31);
  await mm.write(va, data);
  return { sys, dev, mm, m, va, data };
}

/** Count calls of obj[name] while `f` runs (each call still goes through). */
async function counting<T extends object>(obj: T, name: keyof T & string, f: () => Promise<unknown>): Promise<number> {
  const real = (obj as Record<string, (...a: unknown[]) => unknown>)[name]!;
  let calls = 0;
  (obj as Record<string, unknown>)[name] = function (this: unknown, ...a: unknown[]) {
    calls++;
    return real.apply(this, a);
  };
  try {
    await f();
  } finally {
    (obj as Record<string, unknown>)[name] = real;
  }
  return calls;
}

describe('huge page migration cost', () => {
  it('every page of a unit that moved whole reports moved, not already (no second 4 KiB pass over them)', async () => {
    const { m, va } = await hugeOnDevice();
    const to = await m.migrateToDevice(va, N);
    expect(m.table.isHuge(va / PAGE_SIZE)).toBe(true);
    expect(to.cpages).toBe(N);
    expect(new Set(to.pages)).toEqual(new Set(['moved']));
  });

  it('the 4 KiB pass still takes the pages around a huge unit in the same call', async () => {
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: 8 << 20 }] });
    const mm = sys.createAddressSpace();
    const m = sys.devices[0]!.mirror(mm);
    const small = mm.mmap(HUGE_SIZE, { addr: 0x1000_0000 });
    const huge = mm.mmap(HUGE_SIZE, { addr: small + HUGE_SIZE, huge: true });
    await mm.write(small, pattern(2 * HUGE_SIZE, 5));
    const to = await m.migrateToDevice(small + HUGE_SIZE - 4 * PAGE_SIZE, N + 4);
    expect(to.cpages).toBe(N + 4);
    expect(to.pages.every((r) => r === 'moved')).toBe(true);
    expect(m.table.isHuge(huge / PAGE_SIZE)).toBe(true);
    expect(firstDiff(await mm.read(small, 2 * HUGE_SIZE), pattern(2 * HUGE_SIZE, 5))).toBe(-1);
  });

  it('coming home, a huge unit is one 2 MiB copy into a run of RAM that is not cleared first', async () => {
    const { mm, m, va, data } = await hugeOnDevice();
    await m.migrateToDevice(va, N);
    // RAM copies go through ram.bytes.set: clearing the run (a zero page per frame) and
    // per-page copies would each show as more calls
    const copies = await counting(mm.ram.bytes, 'set', () => m.migrateToSystem(va, N));
    expect(copies).toBe(1);
    expect(firstDiff(await mm.read(va, HUGE_SIZE), data)).toBe(-1);
  });

  it('a second trip home reuses the readback buffer the first one left', async () => {
    const { dev, mm, m, va, data } = await hugeOnDevice();
    await m.migrateToDevice(va, N);
    await m.migrateToSystem(va, N);
    await m.migrateToDevice(va, N);
    const created = await counting(dev.device, 'createBuffer', () => m.migrateToSystem(va, N));
    expect(created).toBe(0);
    expect(firstDiff(await mm.read(va, HUGE_SIZE), data)).toBe(-1);
  });
});
