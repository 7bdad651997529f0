// rangeFault and pageFlags (src/hmm/rangeFault.ts) on the page states a device meets, without a
// GPU: pages another device holds, read-only device copies, copy-on-write sharing, a device's
// own private pages, huge pages in RAM (map order 9), pages left to another device's turn, and
// the bound on walks when the pages keep changing. The device states are written into the CPU
// page table as a device would leave them. Written while mutation testing (docs/testing.md)
// found these unchecked.
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, PAGE_SIZE } from '../../src/constants.ts';
import { HmmError } from '../../src/errors.ts';
import { pageFlags, PFN_DEVICE_PRIVATE, PFN_ERROR, PFN_VALID, PFN_WRITE, PFN_ZERO, rangeFault, type RangeFaultRequest } from '../../src/hmm/rangeFault.ts';
import type { AddressSpace } from '../../src/mm/addressSpace.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { NotifierSubscription } from '../../src/mm/notifier.ts';
import { hx, makeMm, throwsAsync } from './helpers.ts';

const P = PAGE_SIZE;
const BASE = 0x100000; // page 256
const page = BASE / P;

function req(mm: AddressSpace, va: number, npages: number, opts: Partial<RangeFaultRequest> = {}): RangeFaultRequest {
  const notifier: NotifierSubscription = opts.notifier ?? mm.notifier.insert(0, 1 << 20, () => {});
  return { start: va / P, end: va / P + npages, fault: false, write: false, owner: null, notifier, seq: notifier.readBegin(), ...opts };
}

/** An address space with one written rw page at BASE (and its frame). */
async function written(opts: { shared?: boolean } = {}) {
  const env = makeMm(8 << 20);
  env.mm.mmap(4 * P, { addr: BASE, prot: 'rw', ...opts });
  await env.mm.write(BASE, new Uint8Array([1]));
  const frame = pte.frame(env.mm.pageTable.get(page));
  return { ...env, frame };
}

describe('pageFlags: what a device may do with a page now', () => {
  it('a hole and a prot none page are errors', async () => {
    const { mm } = await written();
    mm.mmap(P, { addr: BASE + 5 * P, prot: 'none' });
    expect(pageFlags(mm, page + 4, 0)).toBe(PFN_ERROR);
    expect(pageFlags(mm, page + 5, 0)).toBe(PFN_ERROR);
  });

  it('a never-touched or migrating page is not valid, and not an error', async () => {
    const { mm } = await written();
    expect(pageFlags(mm, page + 1, 0)).toBe(0);
    mm.pageTable.set(page + 2, pte.migrating(mm.pageTable.get(page)));
    expect(pageFlags(mm, page + 2, 0)).toBe(0);
  });

  it('a RAM page another device holds is not valid; its holder may use it, unless a fork relative holds its copy', async () => {
    const { mm, frame } = await written();
    mm.pageTable.set(page, pte.withHeld(pte.ram(frame), 2));
    expect(pageFlags(mm, page, 1)).toBe(0);
    expect(pageFlags(mm, page, null)).toBe(0);
    expect(pageFlags(mm, page, 2)).toBe(PFN_VALID | PFN_WRITE);
    mm.copyOwner.set(page, mm);
    expect(pageFlags(mm, page, 2)).toBe(0);
  });

  it('a RAM page with read-only device copies is valid, but not writable until they go', async () => {
    const { mm, frame } = await written();
    mm.pageTable.set(page, pte.withDup(pte.ram(frame)));
    expect(pageFlags(mm, page, null)).toBe(PFN_VALID);
  });

  it('a private page shared copy-on-write is not writable; a shared mapping shared by fork is', async () => {
    const priv = await written();
    priv.ram.share(priv.frame);
    expect(pageFlags(priv.mm, page, null)).toBe(PFN_VALID);
    const shared = await written({ shared: true });
    shared.ram.share(shared.frame);
    expect(pageFlags(shared.mm, page, null)).toBe(PFN_VALID | PFN_WRITE);
    const alone = await written({ shared: true });
    expect(pageFlags(alone.mm, page, null)).toBe(PFN_VALID | PFN_WRITE);
  });

  it('a device-private page is valid for its own device only, writable as its VMA allows', async () => {
    const { mm } = await written();
    mm.pageTable.set(page + 1, pte.onDevice(3, 7));
    expect(pageFlags(mm, page + 1, 3)).toBe(PFN_VALID | PFN_DEVICE_PRIVATE | PFN_WRITE);
    expect(pageFlags(mm, page + 1, 1)).toBe(0);
    expect(pageFlags(mm, page + 1, null)).toBe(0);
    mm.mmap(P, { addr: BASE + 6 * P, prot: 'r' });
    mm.pageTable.set(page + 6, pte.onDevice(3, 8));
    expect(pageFlags(mm, page + 6, 3)).toBe(PFN_VALID | PFN_DEVICE_PRIVATE);
  });

  it('rangeFault reports a device-private page of its owner as it is, without faulting it home', async () => {
    const { mm } = await written();
    mm.pageTable.set(page + 1, pte.onDevice(3, 7));
    const res = await rangeFault(mm, req(mm, BASE, 2, { fault: true, owner: 3 }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_WRITE, PFN_VALID | PFN_DEVICE_PRIVATE | PFN_WRITE]);
    expect(res.entries[1]).toBe(pte.onDevice(3, 7));
  });
});

describe('huge pages in RAM', () => {
  async function huge() {
    const env = makeMm(8 << 20);
    const va = env.mm.mmap(HUGE_SIZE, { huge: true });
    await env.mm.write(va, new Uint8Array([1]));
    return { ...env, va, first: va / P };
  }

  it('every page of a 2 MiB huge page in RAM has map order 9; a 4 KiB page has 0', async () => {
    const { mm, va } = await huge();
    expect(mm.isRamHuge(va / HUGE_SIZE)).toBe(true);
    const res = await rangeFault(mm, req(mm, va, 3, { notifier: mm.notifier.insert(0, 1 << 20, () => {}) }));
    expect(Array.from(res.orders)).toEqual([9, 9, 9]);
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_WRITE, PFN_VALID | PFN_WRITE, PFN_VALID | PFN_WRITE]);
    mm.mmap(P, { addr: BASE, prot: 'rw' });
    await mm.write(BASE, new Uint8Array([1]));
    expect(Array.from((await rangeFault(mm, req(mm, BASE, 2))).orders)).toEqual([0, 0]);
  });

  it('a page of a huge page that is not valid for the device has no order', async () => {
    const { mm, first } = await huge();
    mm.pageTable.set(first + 1, pte.withHeld(mm.pageTable.get(first + 1), 1));
    const res = await rangeFault(mm, req(mm, first * P, 3, { owner: 2 }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_WRITE, 0, PFN_VALID | PFN_WRITE]);
    expect(Array.from(res.orders)).toEqual([9, 0, 9]);
  });
});

describe('leave: pages another device holds for its relaunch', () => {
  it('are reported without PFN_VALID and not faulted; the others are', async () => {
    const { mm } = makeMm();
    mm.mmap(3 * P, { addr: BASE, prot: 'rw' });
    const res = await rangeFault(mm, req(mm, BASE, 3, { fault: true, leave: (p) => p === page + 1 }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_ZERO, 0, PFN_VALID | PFN_ZERO]);
    expect([0, 1, 2].map((i) => pte.kind(mm.pageTable.get(page + i)))).toEqual([Kind.Zero, Kind.None, Kind.Zero]);
  });

  it('a page left alone that is valid already keeps its flags but PFN_VALID', async () => {
    const { mm } = await written();
    const res = await rangeFault(mm, req(mm, BASE, 1, { fault: true, write: true, leave: () => true }));
    expect(Array.from(res.flags)).toEqual([PFN_VALID | PFN_WRITE]); // nothing needed: not left
    mm.pageTable.set(page, pte.withDup(mm.pageTable.get(page)));
    const dup = await rangeFault(mm, req(mm, BASE, 1, { fault: true, write: true, leave: () => true }));
    expect(Array.from(dup.flags)).toEqual([0]); // a write needed the copies gone: left, as not valid
  });
});

describe('busy ranges', () => {
  it('EBUSY after an invalidation names the start of the range', async () => {
    const { mm } = await written();
    const sub = mm.notifier.insert(0, 1 << 20, () => {});
    const r = req(mm, BASE + P, 2, { notifier: sub });
    await mm.mprotect(BASE, 4 * P, 'r');
    const e = await throwsAsync('EBUSY', () => rangeFault(mm, r));
    expect(e.message).toBe(`EBUSY: rangeFault ${hx(BASE + P)}: range invalidated, restart from readBegin`);
  });

  it('gives up with EBUSY after 64 walks when the pages never settle, rather than spinning', async () => {
    let walks = 0;
    const unsettled = {
      vmas: { find: () => ({ start: 0, end: 1 << 20, prot: 'rw', shared: false, huge: false }) },
      pageTable: { get: () => pte.none },
      isRamHuge: () => false,
      copyOwner: new Map(),
      faultPagesOnce: async () => {
        walks++;
        return true;
      },
      populate: () => {},
    } as unknown as AddressSpace;
    const notifier = { readRetry: () => false } as unknown as NotifierSubscription;
    let err: unknown;
    try {
      await rangeFault(unsettled, { start: page, end: page + 2, fault: true, write: false, owner: null, notifier, seq: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HmmError);
    expect((err as HmmError).message).toBe(`EBUSY: rangeFault ${hx(BASE)}: pages kept changing under the walk`);
    expect((err as HmmError).address).toBe(BASE);
    expect(walks).toBe(64);
  });
});
