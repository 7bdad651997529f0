// The reference model for differential fuzzing: what every operation must do to the bytes and
// which error it must raise, with no pages, frames, devices or policy at all. Address spaces
// are arrays over a small window of pages; a page is its VMA's prot and shared flag plus a
// data object (shared mappings share the object across fork, private pages own theirs).
// A data object's bytes are never changed in place: a write gives it a new array. So copies
// of a whole model (the concurrent fuzzer keeps many, tests/fuzz/linearize.ts) share every
// page's bytes and cost a few small objects each.
//
// Mappings. The system merges equal neighbouring VMAs (VmaList), so a "mapping" here is a run
// of consecutive mapped pages with the same prot, shared flag and advice tag (mremap's old range
// must lie inside one). Nothing is ever mapped outside the window: the fuzzers keep mremap's
// moves and growth inside it.
//
// madvise('free'). A private page given it may be dropped (read as zeros from then on) at the
// call (a device-private page) or whenever RAM runs short, until it is written, unmapped or
// remapped. The model does not know which, so such a page carries `free`: 'marked' (it may
// still be dropped) or 'unknown' (decided, but not observed: a remap, fork or write fault ended
// the mark). A read decides it (observeRead): zeros where the old bytes are not zeros mean it was
// dropped; old bytes of an 'unknown' page mean it was not. Per page, never a mix.

export const PAGE = 4096;
/** The window every fuzz operation works in: pages [BASE_PAGE, BASE_PAGE + WINDOW_PAGES). */
export const BASE_PAGE = 0x100;
export const WINDOW_PAGES = 40;
export const BASE_VA = BASE_PAGE * PAGE;

export type Prot = 'none' | 'r' | 'rw';
export interface ModelError {
  code: string;
  /** The address the error names, where the contract fixes it. */
  address?: number;
}

export interface Data {
  /** Treated as immutable: writes replace the array (see the header). */
  bytes: Uint8Array;
}
export interface Page {
  prot: Prot;
  shared: boolean;
  data: Data;
  /** Placement advice of its VMA (mm.advise), as a tag: equal tags merge (see the header). */
  advice?: string;
  /** madvise('free'): see the header. Absent when the page's bytes are exactly `data`. */
  free?: 'marked' | 'unknown';
}

/** A new page of the mapping `like` belongs to: demand-zero, nothing else carried over. */
const freshLike = (like: Page): Page => ({
  prot: like.prot,
  shared: like.shared,
  data: { bytes: new Uint8Array(PAGE) },
  ...(like.advice !== undefined ? { advice: like.advice } : {}),
});
const sameMapping = (a: Page | null | undefined, b: Page | null | undefined): boolean =>
  !!a && !!b && a.prot === b.prot && a.shared === b.shared && (a.advice ?? '') === (b.advice ?? '');
const isZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

export interface MremapOptions {
  /** MREMAP_FIXED: window index of the new range. */
  to?: number;
  mayMove?: boolean;
  dontUnmap?: boolean;
  /** Does another live address space of the family map page i's data (a shared page after fork)? */
  sharedElsewhere?: (i: number) => boolean;
}

/** sharedElsewhere for space `s` of a family whose live spaces are `spaces` (null: destroyed). */
export function sharedElsewhereIn(spaces: readonly (ModelSpace | null)[], s: number): (i: number) => boolean {
  return (i) => {
    const data = spaces[s]?.pages[i]?.data;
    return !!data && spaces.some((other, j) => j !== s && !!other && other.pages.some((p) => p?.data === data));
  };
}
export type MadviseKind = 'dontneed' | 'free' | 'willneed';
/** mm.advise's placement advice (src/mm/vmaList.ts Advice), as the model needs it. */
export interface PlacementAdvice {
  preferred?: 'system' | number | null;
  readMostly?: boolean;
  accessedBy?: readonly number[];
}

export class ModelSpace {
  readonly pages: (Page | null)[];
  /** Pages whose only copy was on a lost device: every access is EPOISON until unmapped. */
  readonly poisoned = new Set<number>();

  constructor(pages?: (Page | null)[]) {
    this.pages = pages ?? new Array<Page | null>(WINDOW_PAGES).fill(null);
  }

  /** Window page index of a VA. */
  static index(va: number): number {
    return Math.floor(va / PAGE) - BASE_PAGE;
  }

  mmap(first: number, n: number, prot: Prot, shared: boolean): void {
    for (let i = first; i < first + n; i++) {
      this.pages[i] = { prot, shared, data: { bytes: new Uint8Array(PAGE) } };
      this.poisoned.delete(i);
    }
  }

  munmap(first: number, n: number): void {
    for (let i = first; i < first + n; i++) {
      this.pages[i] = null;
      this.poisoned.delete(i);
    }
  }

  /** Window index one past the mapping (equal-VMA run) that page i is in; i itself when unmapped. */
  mappingEnd(i: number): number {
    const p = this.pages[i];
    let end = i;
    while (end < WINDOW_PAGES && sameMapping(this.pages[end], p)) end++;
    return end;
  }

  /**
   * Where mremap would put the range without a fixed address: `first` when it stays (same
   * length, a shrink, or growth into holes), -1 when it would need to move (the fuzzers give
   * mayMove without `to` only when it stays: a move would leave the window). Errors aside.
   */
  remapsInPlace(first: number, oldN: number, newN: number): boolean {
    if (newN <= oldN) return true;
    for (let i = first + oldN; i < first + newN; i++) if (i >= WINDOW_PAGES || this.pages[i]) return false;
    return true;
  }

  /**
   * mremap of window pages [first, first+oldN) to newN pages (src/mm/addressSpace.ts mremap):
   * the error it gives, or the window index of the new range. Pages keep their data, poison
   * and placement when they move; new pages are demand-zero; MREMAP_FIXED replaces the target.
   */
  mremap(first: number, oldN: number, newN: number, opts: MremapOptions): { error: ModelError; to?: undefined } | { error: null; to: number } {
    const va = (BASE_PAGE + first) * PAGE;
    const fixed = opts.to;
    const mayMove = opts.mayMove === true || fixed !== undefined;
    if (opts.dontUnmap && (!mayMove || newN !== oldN)) return { error: { code: 'EINVAL', address: va } };
    if (fixed !== undefined && fixed < first + oldN && first < fixed + newN) return { error: { code: 'EINVAL', address: (BASE_PAGE + fixed) * PAGE } };
    const v = this.pages[first];
    if (!v) return { error: { code: 'EFAULT', address: va } };
    const end = this.mappingEnd(first);
    if (end < first + oldN) return { error: { code: 'EFAULT', address: (BASE_PAGE + end) * PAGE } };
    if (fixed === undefined && !opts.dontUnmap) {
      if (newN < oldN) this.munmap(first + newN, oldN - newN);
      else if (newN > oldN) {
        if (!this.remapsInPlace(first, oldN, newN)) {
          if (!mayMove) return { error: { code: 'ENOMEM', address: va } };
          throw new Error('model: mremap would move out of the window (the fuzzer must not ask for this)');
        }
        for (let i = first + oldN; i < first + newN; i++) this.pages[i] = freshLike(v);
      }
      return { error: null, to: first };
    }
    if (fixed === undefined) throw new Error('model: mremap would move out of the window (the fuzzer must not ask for this)');
    const n = Math.min(oldN, newN);
    // a shared page a fork relative also maps does not move (src/mm/addressSpace.ts mremap)
    for (let k = 0; k < n; k++)
      if (v.shared && opts.sharedElsewhere?.(first + k)) return { error: { code: 'EINVAL', address: (BASE_PAGE + first + k) * PAGE } };
    const moving = Array.from({ length: n }, (_, k) => ({ page: this.pages[first + k]!, poisoned: this.poisoned.has(first + k) }));
    this.munmap(fixed, newN); // MREMAP_FIXED replaces what is there
    moving.forEach(({ page, poisoned }, k) => {
      // the madvise('free') mark ends with the move: dropped or not is decided now
      const free = page.free === 'marked' ? 'unknown' : page.free;
      this.pages[fixed + k] = { ...freshLike(v), data: page.data, ...(free ? { free } : {}) };
      if (poisoned) this.poisoned.add(fixed + k);
    });
    for (let k = n; k < newN; k++) this.pages[fixed + k] = freshLike(v);
    if (newN < oldN) this.munmap(first + newN, oldN - newN);
    for (let k = 0; k < n; k++) {
      this.poisoned.delete(first + k);
      this.pages[first + k] = opts.dontUnmap ? freshLike(v) : null;
    }
    return { error: null, to: fixed };
  }

  /**
   * madvise over window pages [first, first+n): ENOMEM at the first hole; 'free' on a shared
   * mapping EINVAL at its first page; 'willneed' EPOISON at the first poisoned page (it brings
   * pages home). 'dontneed' makes private pages demand-zero (their poison gone with them) and
   * keeps shared ones (their data is the shared object's, poison included); 'free' marks
   * private pages (see the header). The fuzzers keep 'free' off poisoned pages (a poisoned page
   * is dropped or stays poisoned depending on where it was).
   */
  madvise(first: number, n: number, advice: MadviseKind): ModelError | null {
    for (let i = first; i < first + n; i++) if (!this.pages[i]) return { code: 'ENOMEM', address: (BASE_PAGE + i) * PAGE };
    if (advice === 'free') for (let i = first; i < first + n; i++) if (this.pages[i]!.shared) return { code: 'EINVAL', address: (BASE_PAGE + i) * PAGE };
    if (advice === 'willneed') return this.poisonError((BASE_PAGE + first) * PAGE, n * PAGE);
    for (let i = first; i < first + n; i++) {
      const p = this.pages[i]!;
      if (p.shared) continue;
      if (advice === 'dontneed') {
        this.pages[i] = freshLike(p);
        this.poisoned.delete(i);
      } else if (!isZero(p.data.bytes) || p.free) this.pages[i] = { ...p, free: 'marked' };
    }
    return null;
  }

  /** Pages of [va, va+len) whose bytes the model does not know for sure (madvise 'free'). */
  undecided(va: number, len: number): number[] {
    const out: number[] = [];
    for (let i = ModelSpace.index(va); i <= ModelSpace.index(va + len - 1); i++) if (this.pages[i]?.free) out.push(i);
    return out;
  }

  /** The madvise('free') mark of page i ended without a look at its bytes (a write fault, a long-term pin): decided, unknown. */
  endMark(i: number): void {
    const p = this.pages[i];
    if (p?.free === 'marked') this.pages[i] = { ...p, free: 'unknown' };
  }

  /**
   * A read of [va, va+len) gave `got`: check it, and decide the pages it shows whether they
   * were dropped. Index of the first byte no possible state explains, -1 when all fit.
   */
  observeRead(va: number, got: Uint8Array): number {
    let at = 0;
    while (at < got.length) {
      const i = ModelSpace.index(va + at);
      const off = (va + at) % PAGE;
      const n = Math.min(PAGE - off, got.length - at);
      const p = this.pages[i]!;
      const part = got.subarray(at, at + n);
      const old = p.data.bytes.subarray(off, off + n);
      const asOld = diffIndex(part, old);
      if (!p.free) {
        if (asOld >= 0) return at + asOld;
      } else {
        const zeros = isZero(part);
        if (asOld >= 0 && !zeros) return at + asOld;
        if (asOld >= 0)
          this.pages[i] = { prot: p.prot, shared: p.shared, data: { bytes: new Uint8Array(PAGE) }, ...(p.advice !== undefined ? { advice: p.advice } : {}) }; // dropped
        else if (!zeros && p.free === 'unknown')
          this.pages[i] = { prot: p.prot, shared: p.shared, data: p.data, ...(p.advice !== undefined ? { advice: p.advice } : {}) }; // kept
      }
      at += n;
    }
    return -1;
  }

  /** mprotect: ENOMEM at the first hole, and then nothing changes. */
  mprotect(first: number, n: number, prot: Prot): ModelError | null {
    for (let i = first; i < first + n; i++) if (!this.pages[i]) return { code: 'ENOMEM', address: (BASE_PAGE + i) * PAGE };
    for (let i = first; i < first + n; i++) this.pages[i] = { ...this.pages[i]!, prot };
    return null;
  }

  /** The error of a CPU access to [va, va+len): pages in order, the first bad one decides. */
  accessError(va: number, len: number, write: boolean): ModelError | null {
    const first = ModelSpace.index(va);
    const last = ModelSpace.index(va + len - 1);
    for (let i = first; i <= last; i++) {
      const at = Math.max(va, (BASE_PAGE + i) * PAGE);
      const p = this.pages[i];
      if (!p || p.prot === 'none') return { code: 'EFAULT', address: at };
      if (write && p.prot === 'r') return { code: 'EPERM', address: at };
    }
    return null;
  }

  /** Poisoned pages in [va, va+len), first one. */
  poisonError(va: number, len: number): ModelError | null {
    const first = ModelSpace.index(va);
    const last = ModelSpace.index(va + len - 1);
    for (let i = first; i <= last; i++) if (this.poisoned.has(i)) return { code: 'EPOISON', address: (BASE_PAGE + i) * PAGE };
    return null;
  }

  read(va: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.each(va, len, (bytes, off, at, n) => out.set(bytes.subarray(off, off + n), at));
    return out;
  }

  /** A write: the pages written are no longer madvise('free') (callers decide undecided pages first, or write them whole). */
  write(va: number, data: Uint8Array): void {
    this.each(va, data.length, (_, off, at, n, page) => {
      const next = page.data.bytes.slice();
      next.set(data.subarray(at, at + n), off);
      page.data.bytes = next;
      delete page.free;
    });
  }

  /** Add `value` to each u32 word of [va, va + 4*words) (the fuzz kernel). */
  addWords(va: number, words: number, value: number): void {
    const cur = this.read(va, words * 4);
    const w = new Uint32Array(cur.buffer);
    for (let i = 0; i < words; i++) w[i] = (w[i]! + value) >>> 0;
    this.write(va, cur);
  }

  /** A child: private pages copied, shared pages' data shared. */
  fork(): ModelSpace {
    // A madvise('free') page: the child's copy is decided at the fork (dropped before it, or not); the parent's may still go.
    const child = new ModelSpace(
      this.pages.map((p) => (p ? { ...p, data: p.shared ? p.data : { bytes: p.data.bytes }, ...(p.free ? { free: 'unknown' as const } : {}) } : null)),
    );
    for (const i of this.poisoned) child.poisoned.add(i);
    return child;
  }

  /**
   * Independent copies of several related spaces (a fork family): data objects shared between
   * them stay shared between the copies, and none is shared with the originals. Bytes are
   * shared (they are never changed in place).
   */
  static cloneAll(spaces: readonly ModelSpace[]): ModelSpace[] {
    const copies = new Map<Data, Data>();
    const dataOf = (d: Data): Data => {
      let c = copies.get(d);
      if (!c) copies.set(d, (c = { bytes: d.bytes }));
      return c;
    };
    return spaces.map((m) => {
      const copy = new ModelSpace(m.pages.map((p) => (p ? { ...p, data: dataOf(p.data) } : null)));
      for (const i of m.poisoned) copy.poisoned.add(i);
      return copy;
    });
  }

  /** Window indices of [va, va+len) that are mapped with all of `prots`. */
  all(va: number, len: number, ok: (p: Page | null) => boolean): boolean {
    for (let i = ModelSpace.index(va); i <= ModelSpace.index(va + len - 1); i++) if (!ok(this.pages[i] ?? null)) return false;
    return true;
  }

  /**
   * mm.advise over mapped pages [first, first+n): each field of the advice replaces that field
   * of the pages' VMA advice (null / false / [] clear it), as VmaList.advise does; the tag is
   * the canonical form, so equal advice merges. ENOMEM at the first hole.
   */
  advise(first: number, n: number, advice: PlacementAdvice): ModelError | null {
    for (let i = first; i < first + n; i++) if (!this.pages[i]) return { code: 'ENOMEM', address: (BASE_PAGE + i) * PAGE };
    for (let i = first; i < first + n; i++) {
      const p = this.pages[i]!;
      const f: { preferred?: string | number; readMostly?: boolean; accessedBy?: number[] } = p.advice ? JSON.parse(p.advice) : {};
      if (advice.preferred !== undefined) {
        if (advice.preferred === null) delete f.preferred;
        else f.preferred = advice.preferred;
      }
      if (advice.readMostly !== undefined) {
        if (advice.readMostly) f.readMostly = true;
        else delete f.readMostly;
      }
      if (advice.accessedBy !== undefined) {
        if (advice.accessedBy.length > 0) f.accessedBy = [...advice.accessedBy].sort((a, b) => a - b);
        else delete f.accessedBy;
      }
      const tag = Object.keys(f).length > 0 ? JSON.stringify({ preferred: f.preferred, readMostly: f.readMostly, accessedBy: f.accessedBy }) : undefined;
      const { advice: _old, ...rest } = p;
      this.pages[i] = tag !== undefined ? { ...rest, advice: tag } : rest;
    }
    return null;
  }

  private each(va: number, len: number, f: (bytes: Uint8Array, off: number, at: number, n: number, page: Page) => void): void {
    let at = 0;
    while (at < len) {
      const i = ModelSpace.index(va + at);
      const off = (va + at) % PAGE;
      const n = Math.min(PAGE - off, len - at);
      const page = this.pages[i]!;
      f(page.data.bytes, off, at, n, page);
      at += n;
    }
  }
}

function diffIndex(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
