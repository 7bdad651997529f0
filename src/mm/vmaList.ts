// VmaList: the sorted, non-overlapping virtual memory areas of one address space, with the
// kernel's split and merge rules. Ranges here are in pages, [start, end). Pure data: no
// frames, no devices; AddressSpace decides what happens to the pages.

import { HmmError } from '../errors.ts';
import { PAGE_SIZE, hex } from '../constants.ts';

export type Prot = 'none' | 'r' | 'rw';

export interface Vma {
  start: number; // first page
  end: number; // one past the last page
  prot: Prot;
  shared: boolean;
  huge: boolean;
  /** Advice (as madvise flags live on the kernel's VMAs): where the pages should live. */
  preferred?: Preferred;
  /** Advice: reads anywhere make read-only copies; a write invalidates the others. */
  readMostly?: boolean;
  /** Advice: devices that read the range through copies instead of pulling it to themselves. */
  accessedBy?: readonly number[];
}

/** A preferred location: system RAM, or a device id. */
export type Preferred = 'system' | number;

export interface Advice {
  preferred?: Preferred | null;
  readMostly?: boolean;
  accessedBy?: readonly number[];
}

export const canRead = (p: Prot): boolean => p !== 'none';
export const canWrite = (p: Prot): boolean => p === 'rw';

const sameKind = (a: Vma, b: Vma): boolean =>
  a.prot === b.prot &&
  a.shared === b.shared &&
  a.huge === b.huge &&
  (a.preferred ?? null) === (b.preferred ?? null) &&
  (a.readMostly ?? false) === (b.readMostly ?? false) &&
  (a.accessedBy ?? []).join() === (b.accessedBy ?? []).join();

export class VmaList {
  private vmas: Vma[] = [];

  all(): readonly Vma[] {
    return this.vmas;
  }

  /** The VMA holding page p, or undefined for a hole. Binary search. */
  find(p: number): Vma | undefined {
    let lo = 0;
    let hi = this.vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.vmas[mid]!;
      if (p < v.start) hi = mid - 1;
      else if (p >= v.end) lo = mid + 1;
      else return v;
    }
    return undefined;
  }

  /** VMAs overlapping [start, end), clipped to it, in order. */
  overlapping(start: number, end: number): Vma[] {
    const out: Vma[] = [];
    for (const v of this.vmas) {
      if (v.end <= start) continue;
      if (v.start >= end) break;
      out.push({ ...v, start: Math.max(v.start, start), end: Math.min(v.end, end) });
    }
    return out;
  }

  /** The first page of [start, end) not covered by a VMA, or -1. */
  firstHole(start: number, end: number): number {
    let p = start;
    for (const v of this.overlapping(start, end)) {
      if (v.start > p) return p;
      p = v.end;
    }
    return p < end ? p : -1;
  }

  /** Lowest free gap of n pages at or above `min`, aligned to `align` pages; -1 if none. */
  findFree(n: number, min: number, limit: number, align: number): number {
    let cand = Math.ceil(min / align) * align;
    for (const v of this.vmas) {
      // Stryker disable next-line EqualityOperator: `<`; a VMA ending at cand moves cand to ceil(cand / align) * align, itself
      if (v.end <= cand) continue;
      if (v.start >= cand + n) break;
      cand = Math.ceil(v.end / align) * align;
    }
    return cand + n <= limit ? cand : -1;
  }

  insert(vma: Vma): void {
    if (this.overlapping(vma.start, vma.end).length > 0) throw new Error(`VmaList.insert: ${hex(vma.start * PAGE_SIZE)} overlaps an existing mapping`);
    let i = 0;
    // Equivalent mutant (not disabled: that would hide this line's killed ones): `<=`; no VMA starts where a non-overlapping new one does
    while (i < this.vmas.length && this.vmas[i]!.start < vma.start) i++;
    this.vmas.splice(i, 0, { ...vma });
    this.mergeAround(i);
  }

  /** Remove [start, end) from every VMA, splitting the ones that straddle its edges. */
  remove(start: number, end: number): void {
    const out: Vma[] = [];
    for (const v of this.vmas) {
      // Stryker disable next-line EqualityOperator: `<` and `>`; a VMA that only touches [start, end) is split into itself
      if (v.end <= start || v.start >= end) {
        out.push(v);
        continue;
      }
      if (v.start < start) out.push({ ...v, end: start });
      if (v.end > end) out.push({ ...v, start: end });
    }
    this.vmas = out;
  }

  /** Change prot over [start, end), which must be fully mapped. */
  protect(start: number, end: number, prot: Prot): void {
    const hole = this.firstHole(start, end);
    if (hole >= 0) throw new HmmError('ENOMEM', `mprotect: page at ${hex(hole * PAGE_SIZE)} is not mapped`, hole * PAGE_SIZE);
    const pieces = this.overlapping(start, end);
    this.remove(start, end);
    for (const p of pieces) this.insert({ ...p, prot });
  }

  /** Apply advice over [start, end), which must be fully mapped (ENOMEM names the hole, as madvise). */
  advise(start: number, end: number, advice: Advice): void {
    const hole = this.firstHole(start, end);
    if (hole >= 0) throw new HmmError('ENOMEM', `advise: page at ${hex(hole * PAGE_SIZE)} is not mapped`, hole * PAGE_SIZE);
    const pieces = this.overlapping(start, end);
    this.remove(start, end);
    for (const p of pieces) {
      const v: Vma = { ...p };
      if (advice.preferred !== undefined) {
        if (advice.preferred === null) delete v.preferred;
        else v.preferred = advice.preferred;
      }
      if (advice.readMostly !== undefined) v.readMostly = advice.readMostly;
      if (advice.accessedBy !== undefined) v.accessedBy = [...advice.accessedBy].sort((a, b) => a - b);
      this.insert(v);
    }
  }

  /** Merge vma i with equal neighbours, as the kernel's vma_merge does. */
  private mergeAround(i: number): void {
    const cur = this.vmas[i]!;
    const next = this.vmas[i + 1];
    if (next && next.start === cur.end && sameKind(cur, next)) {
      cur.end = next.end;
      this.vmas.splice(i + 1, 1);
    }
    const prev = this.vmas[i - 1];
    if (prev && prev.end === cur.start && sameKind(prev, cur)) {
      prev.end = cur.end;
      this.vmas.splice(i, 1);
    }
  }
}
