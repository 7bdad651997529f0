// rangeFault: hmm_range_fault. Snapshot the CPU page table for a range, or fault pages in so
// a device may map them. Request flags in (fault, write), per-page state flags out, errors as
// the kernel gives them: EFAULT (hole, no read permission), EPERM (write to read-only), EBUSY
// (the range was invalidated meanwhile: start again from readBegin). Device-private pages of
// `owner` are reported as they are, never faulted; another device's are brought back to RAM.

import { PAGE_SIZE, hex } from '../constants.ts';
import { HmmError } from '../errors.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import type { NotifierSubscription } from '../mm/notifier.ts';
import type { Cause } from '../trace/provenance.ts';
import { canRead, canWrite } from '../mm/vmaList.ts';

// Output flags, one set per page (hmm_pfns).
export const PFN_VALID = 1; // readable by the device now
export const PFN_WRITE = 2; // writable by the device now
export const PFN_ERROR = 4; // can never be made valid (hole, prot none)
export const PFN_ZERO = 8; // the shared zero page
export const PFN_DEVICE_PRIVATE = 16; // a device-private page of `owner`

export interface RangeFaultRequest {
  start: number; // first page
  end: number; // one past the last page
  /** REQ_FAULT: make every page valid, or fail. Without it: snapshot only. */
  fault: boolean;
  /** REQ_WRITE: make every page writable (with fault). */
  write: boolean;
  /** dev_private_owner: this device's private pages are reported, not faulted. */
  owner: number | null;
  /** A subscription covering the range (`mm.notifier.insert(start, end, callback)`). */
  notifier: NotifierSubscription;
  /** `notifier.readBegin()`, taken before the call: an invalidation since then is EBUSY. */
  seq: number;
  /**
   * Pages to leave alone rather than fault (another device holds them for its relaunch): they
   * are reported as they are, without PFN_VALID if they are not valid for `owner`, and the
   * caller comes back for them later.
   * @internal
   */
  leave?: (page: number) => boolean;
  /** Why the device is faulting (provenance of the pages the fault brings home from elsewhere). */
  cause?: Cause;
}

export interface RangeFaultResult {
  flags: Uint8Array;
  /** The CPU page-table entry each flag was computed from. */
  entries: Uint32Array;
  /**
   * The order of the mapping each page is part of (hmm_pfn_to_map_order): 9 for a page of a
   * 2 MiB huge page in system RAM, 0 otherwise.
   */
  orders: Uint8Array;
}

/** mm.isRamHuge, remembered per block for one walk over many pages (it looks at 512 entries). */
export function ramHugeBlocks(mm: AddressSpace): (block: number) => boolean {
  const known = new Map<number, boolean>();
  return (b) => {
    let h = known.get(b);
    // Stryker disable next-line ConditionalExpression: the test as true; asking isRamHuge again gives the same answer within a walk
    if (h === undefined) known.set(b, (h = mm.isRamHuge(b)));
    return h;
  };
}

/**
 * What the CPU page table says `owner` may do with page p now, as result flags (no fault):
 * PFN_ERROR for a hole or prot 'none'; the zero page is valid, never writable; a RAM page is
 * valid unless another device holds it (or `owner` holds it for a fork relative, whose copy
 * has writes of its own), and writable only if its VMA allows it, no device has a read-only
 * copy (a write must invalidate those first) and no fork relative shares it copy-on-write (a
 * write must copy it first); `owner`'s device-private pages are valid; nothing else is.
 * Mirror.snapshot reports the same facts as HMM_DMIRROR_PROT_* bytes.
 */
export function pageFlags(mm: AddressSpace, p: number, owner: number | null): number {
  const vma = mm.vmas.find(p);
  if (!vma || !canRead(vma.prot)) return PFN_ERROR;
  const e = mm.pageTable.get(p);
  const w = canWrite(vma.prot) ? PFN_WRITE : 0;
  switch (pte.kind(e)) {
    case Kind.Zero:
      return PFN_VALID | PFN_ZERO;
    case Kind.Ram: {
      if (pte.isHeld(e) && (pte.heldBy(e) !== owner || mm.copyOwner.has(p))) return 0;
      const cowShared = !vma.shared && mm.ram.refCount(pte.frame(e)) > 1;
      return PFN_VALID | (pte.isDup(e) || cowShared ? 0 : w);
    }
    case Kind.Device:
      return pte.device(e) === owner ? PFN_VALID | PFN_DEVICE_PRIVATE | w : 0;
    default:
      return 0; // None, Migrating: faultable
  }
}

const MAX_WALKS = 64;

/**
 * hmm_range_fault: the PFN_* flags (and the entry and map order) of pages [start, end) of `mm`
 * for device `owner`; with `fault`, first make every page valid (writable with `write`) or fail.
 * Start again from `notifier.readBegin()` on EBUSY.
 * @throws {@link HmmError} EFAULT: (fault) a page is not mapped, or mapped with prot 'none'.
 * @throws {@link HmmError} EPERM: (fault, write) a page is mapped read-only.
 * @throws {@link HmmError} EBUSY: the range was invalidated since `seq`, or kept changing under the walk.
 * @throws {@link HmmError} ENOMEM: (fault) system RAM is exhausted.
 * @throws {@link HmmError} EPOISON: (fault) a page's only current data was on a lost device.
 */
export async function rangeFault(mm: AddressSpace, req: RangeFaultRequest): Promise<RangeFaultResult> {
  const n = req.end - req.start;
  const flags = new Uint8Array(n);
  const entries = new Uint32Array(n);
  const orders = new Uint8Array(n);
  for (let walk = 0; walk < MAX_WALKS; walk++) {
    const hugeBlock = ramHugeBlocks(mm);
    if (req.notifier.readRetry(req.seq, [req.start, req.end]))
      throw new HmmError('EBUSY', `rangeFault ${hex(req.start * PAGE_SIZE)}: range invalidated, restart from readBegin`, req.start * PAGE_SIZE);
    const needFault: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = req.start + i;
      const at = p * PAGE_SIZE;
      const vma = mm.vmas.find(p);
      if (!vma || !canRead(vma.prot)) {
        if (req.fault) throw new HmmError('EFAULT', `rangeFault: address ${hex(at)} is ${vma ? "mapped with prot 'none'" : 'not mapped'}`, at);
        flags[i] = PFN_ERROR;
        continue;
      }
      if (req.fault && req.write && !canWrite(vma.prot)) throw new HmmError('EPERM', `rangeFault: write to read-only address ${hex(at)}`, at);
      const e = mm.pageTable.get(p);
      entries[i] = e;
      // (A page with read-only device copies, or shared copy-on-write, is valid but not
      // writable: the fault below invalidates the copies or copies the frame first, as
      // hmm_range_fault with HMM_PFN_REQ_WRITE does through the fault handler.)
      const f = pageFlags(mm, p, req.owner);
      flags[i] = f;
      // Equivalent mutant (not disabled: that would hide this line's killed ones): the RAM test as true; a huge block's 512 entries are all RAM
      orders[i] = f & PFN_VALID && pte.kind(e) === Kind.Ram && hugeBlock(p >>> 9) ? 9 : 0;
      const needs = req.fault && (!(f & PFN_VALID) || (req.write && !(f & PFN_WRITE)));
      if (needs && req.leave?.(p)) {
        flags[i] = f & ~PFN_VALID;
        continue;
      }
      if (needs) needFault.push(p);
    }
    if (needFault.length === 0) return { flags, entries, orders };
    // handle_mm_fault: bring pages home from other devices, wait out migrations, then
    // demand-zero; then walk again, since anything may have changed while we waited.
    await mm.faultPagesOnce(needFault, req.write, req.cause);
    mm.populate(needFault, req.write);
  }
  throw new HmmError('EBUSY', `rangeFault ${hex(req.start * PAGE_SIZE)}: pages kept changing under the walk`, req.start * PAGE_SIZE);
}
