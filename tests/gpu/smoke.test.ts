import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT } from '../../src/index.ts';
import { makeSystem, pattern } from './helpers.ts';

describe('smoke', () => {
  it('mirrors CPU-written memory onto the device and back', async () => {
    const sys = await makeSystem();
    const mm = sys.createAddressSpace();
    const dev = sys.devices[0]!;
    const va = mm.mmap(4 * PAGE_SIZE);
    const data = pattern(4 * PAGE_SIZE);
    await mm.write(va, data);
    const m = dev.mirror(mm);
    const r = await m.read(va, 4);
    expect(r.cpages).toBe(4);
    expect(r.faults).toBe(1);
    expect(r.data).toEqual(data);
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE));
    expect(await mm.read(va, 4 * PAGE_SIZE)).toEqual(data);
    expect(Array.from(await m.snapshot(va, 4))).toEqual(Array(4).fill(PROT.WRITE));
  });
});
