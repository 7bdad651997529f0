// The simulator's device page table for one (device, address space), as the GPU sees it: each
// page's mapping (frame, writable) and the accessed and dirty bits kernels set on hits. As on
// the device (src/device/devicePageTable.ts, design-notes §20), the GPU keeps those bits in words
// of their own that an upload of the entries never overwrites: the host zeroes both for a page
// it maps to a new frame (a new mapping starts clean; the same frame mapped again, a read-only
// copy made writable, keeps them) and the accessed one for a page given a second chance, and
// nothing else clears them. Changes wait for flush(), as uploads do; bits read before it
// are the old ones. (A page unmapped and uploaded reads as no bits, as an invalid entry does.)

export const ACCESSED = 1;
export const DIRTY = 2;

export interface SimMapping {
  frame: number;
  write: boolean;
}

export class SimTable {
  private readonly entries = new Map<number, SimMapping>();
  /** Bits the GPU set (ACCESSED, DIRTY), by page. */
  private readonly bits = new Map<number, number>();
  /** Valid entries per leaf (2 MiB block): a leaf exists while it has one. */
  private readonly leafUse = new Map<number, number>();
  /** Bits the next upload zeroes, by page: both for a page mapped or unmapped since the last, ACCESSED for a second chance. */
  private readonly pending = new Map<number, number>();

  lookup(page: number): SimMapping | undefined {
    return this.entries.get(page);
  }

  /** Pages mapped, any order. */
  pages(): IterableIterator<number> {
    return this.entries.keys();
  }

  map(page: number, frame: number, write: boolean): void {
    const old = this.entries.get(page);
    // Stryker disable next-line ArithmeticOperator,LogicalOperator: leafUse only gates clearAccessed, which changes no bits of a page in a leaf with nothing mapped (they went at its unmap's upload); the test as true is equivalent too
    if (!old) this.leafUse.set(page >>> 9, (this.leafUse.get(page >>> 9) ?? 0) + 1);
    this.entries.set(page, { frame, write });
    // a new mapping starts clean; the same frame mapped again (a copy made writable) keeps its bits
    if (old?.frame !== frame) this.pending.set(page, ACCESSED | DIRTY);
  }

  /** Unmap one page; the frame it mapped, or -1. */
  unmap(page: number): number {
    const e = this.entries.get(page);
    if (!e) return -1;
    this.entries.delete(page);
    this.pending.set(page, ACCESSED | DIRTY);
    // Stryker disable next-line ArithmeticOperator: leafUse only gates clearAccessed, which changes no bits of a page in a leaf with nothing mapped
    const left = this.leafUse.get(page >>> 9)! - 1;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: leafUse only gates clearAccessed, which changes no bits of a page in a leaf with nothing mapped
    if (left === 0) this.leafUse.delete(page >>> 9);
    else this.leafUse.set(page >>> 9, left);
    return e.frame;
  }

  /** Unmap every mapped page of [start, end), lowest first; `each` gets (page, frame). */
  unmapRange(start: number, end: number, each?: (page: number, frame: number) => void): void {
    for (let p = start; p < end; p++) {
      if (!this.entries.has(p)) continue;
      // Stryker disable next-line OptionalChaining: every caller passes `each`
      each?.(p, this.unmap(p));
    }
  }

  /** The second chance: these pages' accessed bits are zeroed at the next upload (their dirty bits stay). */
  clearAccessed(pages: readonly number[]): void {
    // Stryker disable next-line ConditionalExpression: the leaf test as true; a page in a leaf with nothing mapped has no bits to clear
    for (const p of pages) if (this.leafUse.has(p >>> 9)) this.pending.set(p, (this.pending.get(p) ?? 0) | ACCESSED);
  }

  /** The GPU's bits for a page, as a readback would find them now. */
  bitsOf(page: number): number {
    return this.bits.get(page) ?? 0;
  }

  /** A kernel asks for (page, access): a hit sets the bits (true), a miss faults (false). */
  touch(page: number, write: boolean): boolean {
    const e = this.entries.get(page);
    if (!e || (write && !e.write)) return false;
    const want = write ? ACCESSED | DIRTY : ACCESSED;
    this.bits.set(page, (this.bits.get(page) ?? 0) | want);
    return true;
  }

  /** Upload: the pages mapped or unmapped since start clean, the second chances lose their accessed bit; no other page's bits change. */
  flush(): void {
    for (const [p, clear] of this.pending) {
      const left = (this.bits.get(p) ?? 0) & ~clear;
      // Stryker disable next-line ConditionalExpression: the test as false; a page with no bits reads 0 either way
      if (left === 0) this.bits.delete(p);
      else this.bits.set(p, left);
    }
    this.pending.clear();
  }
}
