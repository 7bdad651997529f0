// rangeFault (hmm_range_fault) with no devices: snapshot flags, fault-in, and the errors.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/constants.ts';
import { PFN_ERROR, PFN_VALID, PFN_WRITE, PFN_ZERO, rangeFault, type RangeFaultRequest } from '../../src/hmm/rangeFault.ts';
import type { AddressSpace } from '../../src/mm/addressSpace.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { NotifierSubscription } from '../../src/mm/notifier.ts';
import { hx, makeMm, throwsAsync } from './helpers.ts';

const P = PAGE_SIZE;
const BASE = 0x100000; // page 256

/** A subscription over everything and a request bound to its current sequence. */
function req(mm: AddressSpace, va: number, npages: number, opts: Partial<RangeFaultRequest> = {}): RangeFaultRequest {
  const notifier: NotifierSubscription = opts.notifier ?? mm.notifier.insert(0, 1 << 20, () => {});
  return {
    start: va / P,
    end: va / P + npages,
    fault: false,
    write: false,
    owner: null,
    notifier,
    seq: notifier.readBegin(),
    ...opts,
  };
}

/**
 * Pages from BASE: 0 rw never touched, 1 rw zero page, 2 rw written, 3 r written,
 * 4 hole, 5 prot none, 6 r never touched.
 */
async function layout() {
  const env = makeMm();
  const { mm } = env;
  mm.mmap(4 * P, { addr: BASE, prot: 'rw' });
  await mm.read(BASE + P, 1);
  await mm.write(BASE + 2 * P, new Uint8Array([1]));
  await mm.write(BASE + 3 * P, new Uint8Array([2]));
  await mm.mprotect(BASE + 3 * P, P, 'r');
  mm.mmap(P, { addr: BASE + 5 * P, prot: 'none' });
  mm.mmap(P, { addr: BASE + 6 * P, prot: 'r' });
  return env;
}

describe('rangeFault snapshot (fault: false)', () => {
  it('reports each page as it is, without changing anything', async () => {
    const env = await layout();
    const { mm, ram } = env;
    const free = ram.freeFrames;
    const before = Array.from({ length: 7 }, (_, i) => mm.pageTable.get(BASE / P + i));
    const res = await rangeFault(mm, req(mm, BASE, 7));
    expect(Array.from(res.flags)).toEqual([
      0, // never touched: faultable, not valid
      PFN_VALID | PFN_ZERO, // the zero page is never writable
      PFN_VALID | PFN_WRITE,
      PFN_VALID, // written, but the VMA is read-only
      PFN_ERROR, // hole
      PFN_ERROR, // prot none
      0,
    ]);
    expect(pte.kind(res.entries[2]!)).toBe(Kind.Ram);
    expect(res.entries[2]).toBe(before[2]);
    expect(Array.from({ length: 7 }, (_, i) => mm.pageTable.get(BASE / P + i))).toEqual(before);
    expect(ram.freeFrames).toBe(free);
  });

  it('a snapshot with write set neither faults nor fails on read-only pages', async () => {
    const { mm } = await layout();
    const res = await rangeFault(mm, req(mm, BASE + 3 * P, 1, { write: true }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID]);
  });
});

describe('rangeFault fault mode', () => {
  it('EFAULT on a hole, naming its address', async () => {
    const { mm } = await layout();
    const e = await throwsAsync('EFAULT', () => rangeFault(mm, req(mm, BASE + 2 * P, 3, { fault: true })));
    expect(e.address).toBe(BASE + 4 * P);
    expect(e.message).toContain(hx(BASE + 4 * P));
    expect(e.message).toContain('not mapped');
  });

  it("EFAULT on prot 'none'", async () => {
    const { mm } = await layout();
    const e = await throwsAsync('EFAULT', () => rangeFault(mm, req(mm, BASE + 5 * P, 1, { fault: true })));
    expect(e.message).toContain("prot 'none'");
    expect(e.address).toBe(BASE + 5 * P);
  });

  it('EPERM on a write fault of a read-only page', async () => {
    const { mm } = await layout();
    const e = await throwsAsync('EPERM', () => rangeFault(mm, req(mm, BASE + 2 * P, 2, { fault: true, write: true })));
    expect(e.address).toBe(BASE + 3 * P);
    expect(e.message).toContain(hx(BASE + 3 * P));
  });

  it('a read fault of never-touched pages maps the zero page, allocating nothing', async () => {
    const { mm, ram } = await layout();
    const free = ram.freeFrames;
    const res = await rangeFault(mm, req(mm, BASE, 4, { fault: true }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_ZERO, PFN_VALID | PFN_ZERO, PFN_VALID | PFN_WRITE, PFN_VALID]);
    expect(pte.kind(mm.pageTable.get(BASE / P))).toBe(Kind.Zero);
    expect(ram.freeFrames).toBe(free);
    // Read-only never-touched pages too.
    const r = await rangeFault(mm, req(mm, BASE + 6 * P, 1, { fault: true }));
    expect(Array.from(r.flags)).toEqual([PFN_VALID | PFN_ZERO]);
  });

  it('a write fault allocates a zeroed frame for never-touched and zero pages', async () => {
    const { mm, ram } = await layout();
    const free = ram.freeFrames;
    const res = await rangeFault(mm, req(mm, BASE, 3, { fault: true, write: true }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_WRITE, PFN_VALID | PFN_WRITE, PFN_VALID | PFN_WRITE]);
    expect(ram.freeFrames).toBe(free - 2); // page 2 already had its frame
    for (let i = 0; i < 3; i++) {
      expect(pte.kind(mm.pageTable.get(BASE / P + i))).toBe(Kind.Ram);
      expect(res.entries[i]).toBe(mm.pageTable.get(BASE / P + i));
    }
    expect(await mm.read(BASE, 3 * P)).toEqual(Uint8Array.from({ length: 3 * P }, (_, i) => (i === 2 * P ? 1 : 0)));
  });

  it('a write fault with no RAM left is ENOMEM and maps nothing', async () => {
    const { mm, ram } = makeMm(P);
    mm.mmap(2 * P, { addr: BASE });
    const e = await throwsAsync('ENOMEM', () => rangeFault(mm, req(mm, BASE, 2, { fault: true, write: true })));
    expect(e.message).toMatch(/exhausted/);
    expect(ram.freeFrames).toBe(1);
    expect(pte.kind(mm.pageTable.get(BASE / P))).toBe(Kind.None);
  });
});

describe('rangeFault and the notifier sequence', () => {
  it('EBUSY when an overlapping invalidation happened since readBegin', async () => {
    const { mm } = await layout();
    const sub = mm.notifier.insert(BASE / P, BASE / P + 4, () => {});
    const r = req(mm, BASE, 3, { notifier: sub, fault: true });
    await mm.mprotect(BASE + 2 * P, P, 'rw'); // overlaps the subscription
    const e = await throwsAsync('EBUSY', () => rangeFault(mm, r));
    expect(e.message).toContain('readBegin');
    expect(e.address).toBe(BASE);
    // Snapshots obey the rule too.
    await throwsAsync('EBUSY', () => rangeFault(mm, { ...r, fault: false }));
    // A fresh sequence works.
    const ok = await rangeFault(mm, { ...r, seq: sub.readBegin() });
    expect(ok.flags[2]).toBe(PFN_VALID | PFN_WRITE);
  });

  it('an invalidation outside the subscription does not make it busy', async () => {
    const { mm } = await layout();
    const sub = mm.notifier.insert(BASE / P, BASE / P + 3, () => {});
    const r = req(mm, BASE, 3, { notifier: sub });
    await mm.munmap(BASE + 6 * P, P);
    const res = await rangeFault(mm, r);
    expect(res.flags[2]).toBe(PFN_VALID | PFN_WRITE);
  });
});
