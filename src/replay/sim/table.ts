// The simulator's device page table for one (device, address space), as the GPU sees it: each
// page's mapping (frame, writable) and the accessed and dirty bits kernels set on hits. It
// keeps the one side effect of the real table (src/device/devicePageTable.ts) that eviction can
// see: an upload rewrites each changed leaf's span [lowest, highest changed entry] from the
// host's shadow, which never holds those bits, so every page in that span loses them, changed
// or not. Changes wait for flush(), as uploads do; bits read before it are the old ones.
// (Replays of real runs match only with this modelled; should the real upload ever write just
// the changed entries, flush() here must clear just those.)

const PAGES_PER_LEAF = 512;
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
  /** Per leaf, the span of entries changed since the last upload. */
  private readonly pending = new Map<number, [number, number]>();

  lookup(page: number): SimMapping | undefined {
    return this.entries.get(page);
  }

  /** Pages mapped, any order. */
  pages(): IterableIterator<number> {
    return this.entries.keys();
  }

  map(page: number, frame: number, write: boolean): void {
    if (!this.entries.has(page)) this.leafUse.set(page >>> 9, (this.leafUse.get(page >>> 9) ?? 0) + 1);
    this.entries.set(page, { frame, write });
    this.mark(page);
  }

  /** Unmap one page; the frame it mapped, or -1. */
  unmap(page: number): number {
    const e = this.entries.get(page);
    if (!e) return -1;
    this.entries.delete(page);
    this.mark(page);
    const left = this.leafUse.get(page >>> 9)! - 1;
    if (left === 0) this.leafUse.delete(page >>> 9);
    else this.leafUse.set(page >>> 9, left);
    return e.frame;
  }

  /** Unmap every mapped page of [start, end), lowest first; `each` gets (page, frame). */
  unmapRange(start: number, end: number, each?: (page: number, frame: number) => void): void {
    for (let p = start; p < end; p++) {
      if (!this.entries.has(p)) continue;
      each?.(p, this.unmap(p));
    }
  }

  /** The second chance: these pages' entries are rewritten at the next upload (so are their spans'). */
  clearAccessed(pages: readonly number[]): void {
    for (const p of pages) if (this.leafUse.has(p >>> 9)) this.mark(p);
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

  /** Upload: every entry in a changed span is rewritten without bits. */
  flush(): void {
    for (const [leaf, [lo, hi]] of this.pending) for (let i = lo; i <= hi; i++) this.bits.delete(leaf * PAGES_PER_LEAF + i);
    this.pending.clear();
  }

  private mark(page: number): void {
    const leaf = page >>> 9;
    const i = page & 511;
    const r = this.pending.get(leaf);
    if (!r) this.pending.set(leaf, [i, i]);
    else {
      if (i < r[0]) r[0] = i;
      if (i > r[1]) r[1] = i;
    }
  }
}
