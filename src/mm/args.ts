// Argument checks shared by every public entry point, so that bad input is refused the same
// way everywhere, before anything changes, with a message that names the argument and value.

import { PAGE_SIZE, VA_LIMIT, hex } from '../constants.ts';
import { HmmError } from '../errors.ts';

// Equivalent mutant (not disabled: that would hide this line's killed ones): `typeof` as true (isInteger refuses non-numbers) and `v > 0` (0 is a valid address, never shown)
const show = (v: unknown): string => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? hex(v) : String(v));

/** A byte address: an integer in [0, 4 GiB). */
export function checkAddress(what: string, va: unknown): number {
  // Equivalent mutant (not disabled: that would hide this line's killed ones): the `typeof` test as false; Number.isInteger refuses every non-number too
  if (typeof va !== 'number' || !Number.isInteger(va) || va < 0 || va >= VA_LIMIT)
    throw new HmmError('EINVAL', `${what}: address ${show(va)} is not an integer in [0, 4 GiB)`);
  return va;
}

/** A page-aligned byte address. */
export function checkPageAligned(what: string, va: unknown): number {
  const a = checkAddress(what, va);
  if (a % PAGE_SIZE !== 0) throw new HmmError('EINVAL', `${what}: address ${hex(a)} is not 4 KiB aligned`, a);
  return a;
}

/** A positive integer count (bytes or pages). */
export function checkCount(what: string, name: string, n: unknown): number {
  // Equivalent mutant (not disabled: that would hide this line's killed ones): the `typeof` test as false; Number.isInteger refuses every non-number too
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw new HmmError('EINVAL', `${what}: ${name} ${String(n)} is not a positive integer`);
  return n;
}

/** [va, va+len) must stay inside the 32-bit address space. */
export function checkRange(what: string, va: number, len: number): void {
  if (va + len > VA_LIMIT) throw new HmmError('EINVAL', `${what}: range ${hex(va)} + ${len} bytes runs past the end of the 4 GiB address space`, va);
}

/** Page-aligned start plus a page count, as the dmirror-style calls take them. */
export function checkPages(what: string, va: unknown, npages: unknown): { start: number; npages: number } {
  const start = checkPageAligned(what, va);
  const n = checkCount(what, 'npages', npages);
  checkRange(what, start, n * PAGE_SIZE);
  return { start: start / PAGE_SIZE, npages: n };
}
