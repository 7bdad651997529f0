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
  notifier: NotifierSubscription;
  seq: number;
  /**
   * Pages to leave alone rather than fault (another device holds them for its relaunch): they
   * are reported as they are, without PFN_VALID if they are not valid for `owner`, and the
   * caller comes back for them later.
   */
  leave?: (page: number) => boolean;
}

export interface RangeFaultResult {
  flags: Uint8Array;
  /** The CPU page-table entry each flag was computed from. */
  entries: Uint32Array;
}

const MAX_WALKS = 64;

export async function rangeFault(mm: AddressSpace, req: RangeFaultRequest): Promise<RangeFaultResult> {
  const n = req.end - req.start;
  const flags = new Uint8Array(n);
  const entries = new Uint32Array(n);
  for (let walk = 0; walk < MAX_WALKS; walk++) {
    if (req.notifier.readRetry(req.seq, [req.start, req.end]))
      throw new HmmError('EBUSY', `rangeFault ${hex(req.start * PAGE_SIZE)}: range invalidated, restart from readBegin`, req.start * PAGE_SIZE);
    const needFault: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = req.start + i;
      const at = p * PAGE_SIZE;
      const vma = mm.vmas.find(p);
      if (!vma || !canRead(vma.prot)) {
        if (req.fault)
          throw new HmmError('EFAULT', `rangeFault: address ${hex(at)} is ${vma ? "mapped with prot 'none'" : 'not mapped'}`, at);
        flags[i] = PFN_ERROR;
        continue;
      }
      if (req.fault && req.write && !canWrite(vma.prot))
        throw new HmmError('EPERM', `rangeFault: write to read-only address ${hex(at)}`, at);
      const e = mm.pageTable.get(p);
      entries[i] = e;
      const w = canWrite(vma.prot) ? PFN_WRITE : 0;
      let f = 0;
      switch (pte.kind(e)) {
        case Kind.Zero:
          f = PFN_VALID | PFN_ZERO; // the zero page is never writable
          break;
        case Kind.Ram:
          // A write must first invalidate read-only device copies (their DUP flag), so a page
          // with copies is valid but not writable until faulted. A page the owner device holds
          // is valid only if the copy is this address space's: one held for a fork relative
          // (copyOwner) lives in that relative's mirror with writes of its own, and a second
          // copy taken from RAM now would be stale and overwrite them; the fault writes it back.
          if (!pte.isHeld(e) || (pte.heldBy(e) === req.owner && !mm.copyOwner.has(p))) f = PFN_VALID | (pte.isDup(e) ? 0 : w);
          break;
        case Kind.Device:
          if (pte.device(e) === req.owner) f = PFN_VALID | PFN_DEVICE_PRIVATE | w;
          break;
        default:
          break; // None, Migrating: faultable
      }
      flags[i] = f;
      const needs = req.fault && (!(f & PFN_VALID) || (req.write && !(f & PFN_WRITE)));
      if (needs && req.leave?.(p)) {
        flags[i] = f & ~PFN_VALID;
        continue;
      }
      if (needs) needFault.push(p);
    }
    if (needFault.length === 0) return { flags, entries };
    // handle_mm_fault: bring pages home from other devices, wait out migrations, then
    // demand-zero; then walk again, since anything may have changed while we waited.
    await mm.faultPagesOnce(needFault, req.write);
    mm.populate(needFault, req.write);
  }
  throw new HmmError('EBUSY', `rangeFault ${hex(req.start * PAGE_SIZE)}: pages kept changing under the walk`, req.start * PAGE_SIZE);
}
