// Residency: where each page of a range lives right now, read from the CPU page table (the
// owner of that fact). One byte per page, for live residency maps in the demos and for tests.
// Unlike a mirror's snapshot (what one device may access, HMM_DMIRROR_PROT_*), this answers
// "RAM, device, both or exclusive" across every device at once.
//
//   low nibble: the state (Residence below)   high nibble: the device (DEVICE, COPY, EXCLUSIVE)

import { PAGE_SIZE } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';

/** Residence states: the low nibble of a {@link residency} byte. */
export const Residence = {
  /** No mapping covers the page. */
  UNMAPPED: 0,
  /** Mapped but never touched (or only read: the shared zero page); no memory behind it. */
  UNTOUCHED: 1,
  /** In system RAM only. */
  RAM: 2,
  /** Device-private on one device (high nibble). */
  DEVICE: 3,
  /** In RAM, with read-only copies on one or more devices (read duplication). */
  COPY: 4,
  /** In RAM, held writable or exclusive by a device (high nibble); CPU access revokes it first. */
  EXCLUSIVE: 5,
  /** Being migrated at this instant. */
  MIGRATING: 6,
  /** Its only copy was on a lost device (EPOISON). */
  POISONED: 7,
  /** In system RAM, pinned by mm.pin (pin_user_pages): it does not migrate. */
  PINNED: 8,
} as const;
export type ResidenceName = Lowercase<keyof typeof Residence>;

/** A residency byte's state ({@link Residence}). */
export const residenceState = (code: number): number => code & 0xf;
/** A residency byte's device (for DEVICE and EXCLUSIVE). */
export const residenceDevice = (code: number): number => code >>> 4;

const NAMES = Object.fromEntries(Object.entries(Residence).map(([k, v]) => [v, k.toLowerCase()])) as Record<number, ResidenceName>;
/** A residency byte's state name: 'ram', 'device', 'copy', ... */
export const residenceName = (code: number): ResidenceName => NAMES[residenceState(code)]!;

/**
 * One residence byte per page of [va, va + npages * 4096), across every device at once.
 * @throws {@link HmmError} EINVAL: `va` is not page-aligned, or `npages` is not a count.
 */
export function residency(mm: AddressSpace, va: number, npages: number): Uint8Array {
  if (!Number.isSafeInteger(va) || va < 0 || va % PAGE_SIZE !== 0) {
    throw new HmmError('EINVAL', `residency: address ${va} is not a page-aligned address`, va);
  }
  if (!Number.isSafeInteger(npages) || npages < 0) throw new HmmError('EINVAL', `residency: npages ${npages} is not a count of pages`, va);
  const out = new Uint8Array(npages);
  const first = va / PAGE_SIZE;
  for (let i = 0; i < npages; i++) out[i] = residenceOf(mm, first + i);
  return out;
}

function residenceOf(mm: AddressSpace, p: number): number {
  if (!mm.vmas.find(p)) return Residence.UNMAPPED;
  if (mm.poisoned(p)) return Residence.POISONED;
  const e = mm.pageTable.get(p);
  switch (pte.kind(e)) {
    case Kind.None:
    case Kind.Zero:
      return Residence.UNTOUCHED;
    case Kind.Ram:
      if (pte.isHeld(e)) return Residence.EXCLUSIVE | (pte.heldBy(e) << 4);
      if (pte.isDup(e)) return Residence.COPY;
      return mm.pins.isPinned(p) ? Residence.PINNED : Residence.RAM;
    case Kind.Device:
      return Residence.DEVICE | (pte.device(e) << 4);
    default:
      return Residence.MIGRATING;
  }
}

/** Counts per state name, e.g. { ram: 10, device: 54 } (states with no page left out). */
export function residencyCounts(codes: Uint8Array): Partial<Record<ResidenceName, number>> {
  const counts: Partial<Record<ResidenceName, number>> = {};
  for (const c of codes) {
    const name = residenceName(c);
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}
