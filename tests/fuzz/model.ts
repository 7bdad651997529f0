// The reference model for differential fuzzing: what every operation must do to the bytes and
// which error it must raise, with no pages, frames, devices or policy at all. Address spaces
// are arrays over a small window of pages; a page is its VMA's prot and shared flag plus a
// data object (shared mappings share the object across fork, private pages own theirs).
// A data object's bytes are never changed in place: a write gives it a new array. So copies
// of a whole model (the concurrent fuzzer keeps many, tests/fuzz/linearize.ts) share every
// page's bytes and cost a few small objects each.

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

  write(va: number, data: Uint8Array): void {
    this.each(va, data.length, (_, off, at, n, page) => {
      const next = page.data.bytes.slice();
      next.set(data.subarray(at, at + n), off);
      page.data.bytes = next;
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
    const child = new ModelSpace(this.pages.map((p) => (p ? { ...p, data: p.shared ? p.data : { bytes: p.data.bytes } } : null)));
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
      const copy = new ModelSpace(m.pages.map((p) => (p ? { prot: p.prot, shared: p.shared, data: dataOf(p.data) } : null)));
      for (const i of m.poisoned) copy.poisoned.add(i);
      return copy;
    });
  }

  /** Window indices of [va, va+len) that are mapped with all of `prots`. */
  all(va: number, len: number, ok: (p: Page | null) => boolean): boolean {
    for (let i = ModelSpace.index(va); i <= ModelSpace.index(va + len - 1); i++) if (!ok(this.pages[i] ?? null)) return false;
    return true;
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
