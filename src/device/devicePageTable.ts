// DevicePageTable: one device's page table for one address space, resident on the GPU where
// kernels walk it (shaders/hmm.wgsl), with a host shadow that is the source of truth for
// the host. Two levels: 2048 directory entries of 2 MiB, each pointing at a 512-entry leaf.
// Changes are made to the shadow and uploaded in batches by flush(): one writeBuffer per
// touched leaf span, never one per page. On the GPU a leaf is 1536 words: its 512 entries, then
// 512 accessed words and 512 dirty-block words that kernels set (bit b of a dirty-block word:
// the 256-byte block b of the page was written). The host never uploads over those two: it
// zeroes them only for the pages it maps (a new mapping starts clean) and the accessed words of
// the pages given a second chance, so an upload loses no bit a kernel set (design-notes §20).

import { DIR_ENTRIES, PAGES_PER_HUGE } from '../constants.ts';

export const DIR_VALID = 1;
export const DIR_HUGE = 2;
export const DIR_WRITE = 4;
export const PTE_VALID = 1;
export const PTE_WRITE = 2;
/** Bits readGpuEntries adds to a valid entry: the GPU's accessed word is set / its dirty-block word is not 0. */
export const PTE_ACCESSED = 4;
export const PTE_DIRTY = 8;
/** A leaf on the GPU: entries, accessed words, dirty-block words (shaders/hmm.wgsl HMM_LEAF_*). */
export const LEAF_WORDS = 3 * PAGES_PER_HUGE;
const LEAF_ACCESSED = PAGES_PER_HUGE;
const LEAF_DIRTY = 2 * PAGES_PER_HUGE;
/** Every 256-byte block of a page: a dirty-block word that means "assume all of it written". */
export const ALL_BLOCKS = 0xffff;
/** Zeros for the status words' clears (one leaf's worth: a run never crosses a leaf). */
const ZEROS = new Uint32Array(PAGES_PER_HUGE);

/** What the GPU's table says of some pages: each entry with the accessed and dirty bits added (0 where unmapped), and its dirty-block word. */
export interface GpuPageState {
  entries: number[];
  blocks: number[];
}

export interface DeviceMapping {
  frame: number;
  write: boolean;
}

export class DevicePageTable {
  readonly dirBuffer: GPUBuffer;
  readonly leafBuffer: GPUBuffer;
  private readonly dir = new Uint32Array(new ArrayBuffer(DIR_ENTRIES * 4));
  private readonly leaves: Uint32Array<ArrayBuffer>;
  /** Valid entries per leaf, so an empty leaf goes back to the pool. */
  private readonly leafUse: Int32Array;
  private readonly freeLeaves: number[] = [];
  private dirDirty = false;
  /** Leaf index -> [lowest, highest] dirty entry. */
  private readonly dirtyLeaves = new Map<number, [number, number]>();
  /** Leaf entries (leaf * 512 + i) mapped since the last flush: their accessed and dirty-block words are zeroed. */
  private fresh: number[] = [];
  /** Leaf entries given a second chance since the last flush: their accessed words are zeroed. */
  private unaccessed: number[] = [];
  /**
   * Leaf entries unmapped since the last flush: a write-back may still read their dirty-block
   * words (statusWord), so a zeroing run never reaches over them (zeroRuns).
   */
  private retired: number[] = [];
  /** GPU words for flush's whole-leaf writes: per leaf its entries, then zeros (writeWholeLeaves). */
  private wholeLeaf: Uint32Array<ArrayBuffer> | undefined;
  validCount = 0;

  constructor(
    private readonly device: GPUDevice,
    label: string,
    readonly leafCapacity: number,
  ) {
    this.leaves = new Uint32Array(new ArrayBuffer(leafCapacity * PAGES_PER_HUGE * 4));
    this.leafUse = new Int32Array(leafCapacity);
    for (let i = leafCapacity - 1; i >= 0; i--) this.freeLeaves.push(i);
    this.dirBuffer = device.createBuffer({
      label: `${label} directory`,
      size: DIR_ENTRIES * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    this.leafBuffer = device.createBuffer({
      label: `${label} leaves`,
      size: leafCapacity * LEAF_WORDS * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
  }

  lookup(page: number): DeviceMapping | null {
    const d = this.dir[page >>> 9]!;
    if (!(d & DIR_VALID)) return null;
    if (d & DIR_HUGE) return { frame: (d >>> 8) + (page & 511), write: (d & DIR_WRITE) !== 0 };
    const e = this.leaves[(d >>> 8) * PAGES_PER_HUGE + (page & 511)]!;
    if (!(e & PTE_VALID)) return null;
    return { frame: e >>> 8, write: (e & PTE_WRITE) !== 0 };
  }

  /**
   * Is page p mapped (writable, with `write`)? lookup() without the object it returns: the fault
   * paths ask this of every page of a round.
   */
  has(page: number, write = false): boolean {
    const d = this.dir[page >>> 9]!;
    if (!(d & DIR_VALID)) return false;
    if (d & DIR_HUGE) return !write || (d & DIR_WRITE) !== 0;
    const e = this.leaves[(d >>> 8) * PAGES_PER_HUGE + (page & 511)]!;
    return (e & PTE_VALID) !== 0 && (!write || (e & PTE_WRITE) !== 0);
  }

  /** Is page mapped by a huge (2 MiB) directory entry? */
  isHuge(page: number): boolean {
    const d = this.dir[page >>> 9]!;
    return (d & DIR_VALID) !== 0 && (d & DIR_HUGE) !== 0;
  }

  /**
   * Map a whole 2 MiB block with one directory entry onto 512 consecutive frames from
   * `firstFrame`. The block must have no mappings yet.
   */
  mapHuge(block: number, firstFrame: number, write: boolean): void {
    if (this.dir[block]! & DIR_VALID) throw new Error(`DevicePageTable.mapHuge: block ${block} is already mapped`);
    this.dir[block] = ((firstFrame << 8) | DIR_VALID | DIR_HUGE | (write ? DIR_WRITE : 0)) >>> 0;
    this.dirDirty = true;
    this.validCount += PAGES_PER_HUGE;
  }

  /**
   * Turn a huge entry into a leaf of 512 small entries for the same frames, so part of the
   * block can be unmapped or re-protected. Without a free leaf the whole block is unmapped
   * instead (its pages stay where they are; the device simply faults them in again).
   */
  private split(di: number): void {
    const d = this.dir[di]!;
    const first = d >>> 8;
    const write = (d & DIR_WRITE) !== 0;
    this.dir[di] = 0;
    this.dirDirty = true;
    this.validCount -= PAGES_PER_HUGE;
    if (this.freeLeaves.length === 0) return;
    for (let i = 0; i < PAGES_PER_HUGE; i++) this.map(di * PAGES_PER_HUGE + i, first + i, write);
  }

  /** Map page -> frame. Returns false when no leaf table is free (the caller fails the page). */
  map(page: number, frame: number, write: boolean): boolean {
    const di = page >>> 9;
    if (this.isHuge(page)) this.split(di);
    let d = this.dir[di]!;
    if (!(d & DIR_VALID)) {
      const leaf = this.freeLeaves.pop();
      if (leaf === undefined) return false;
      d = ((leaf << 8) | DIR_VALID) >>> 0;
      this.dir[di] = d;
      this.dirDirty = true;
    }
    const leaf = d >>> 8;
    const li = leaf * PAGES_PER_HUGE + (page & 511);
    const old = this.leaves[li]!;
    if (!(old & PTE_VALID)) {
      this.leafUse[leaf]!++;
      this.validCount++;
    }
    this.leaves[li] = ((frame << 8) | PTE_VALID | (write ? PTE_WRITE : 0)) >>> 0;
    this.markDirty(leaf, page & 511);
    // A new mapping starts clean; the same frame mapped again (made writable, say) keeps the
    // blocks kernels dirtied through it: a held copy's write-back needs every one of them.
    if (!(old & PTE_VALID) || old >>> 8 !== frame) this.fresh.push(li);
    return true;
  }

  /** Unmap one page; returns the frame it mapped, or -1. */
  unmap(page: number): number {
    const di = page >>> 9;
    if (this.isHuge(page)) {
      const frame = (this.dir[di]! >>> 8) + (page & 511);
      this.split(di);
      if (!(this.dir[di]! & DIR_VALID)) return frame; // no leaf to split into: the whole block went
    }
    const d = this.dir[di]!;
    if (!(d & DIR_VALID)) return -1;
    const leaf = d >>> 8;
    const li = leaf * PAGES_PER_HUGE + (page & 511);
    const e = this.leaves[li]!;
    if (!(e & PTE_VALID)) return -1;
    this.leaves[li] = 0;
    this.validCount--;
    this.retired.push(li);
    this.markDirty(leaf, page & 511);
    if (--this.leafUse[leaf]! === 0) {
      this.dir[di] = 0;
      this.dirDirty = true;
      this.freeLeaves.push(leaf);
    }
    return e >>> 8;
  }

  /** Unmap every valid page in [start, end); calls back with (page, frame) for each. */
  unmapRange(start: number, end: number, each?: (page: number, frame: number) => void): void {
    for (let di = start >>> 9; di <= (end - 1) >>> 9; di++) {
      if (!(this.dir[di]! & DIR_VALID)) continue; // skip 2 MiB at a time
      const lo = Math.max(start, di * PAGES_PER_HUGE);
      const hi = Math.min(end, (di + 1) * PAGES_PER_HUGE);
      if (this.isHuge(lo)) {
        if (lo === di * PAGES_PER_HUGE && hi === (di + 1) * PAGES_PER_HUGE) {
          const first = this.dir[di]! >>> 8;
          this.dir[di] = 0;
          this.dirDirty = true;
          this.validCount -= PAGES_PER_HUGE;
          for (let i = 0; i < PAGES_PER_HUGE; i++) each?.(di * PAGES_PER_HUGE + i, first + i);
          continue;
        }
        // Part of the block: split it into a leaf first. Huge entries only ever map
        // device-private pages, so if no leaf is free and the whole block goes unmapped,
        // nothing is lost: its pages stay on the device and fault in again.
        this.split(di);
        if (!(this.dir[di]! & DIR_VALID)) continue;
      }
      for (let p = lo; p < hi; p++) {
        const f = this.unmap(p);
        if (f >= 0) each?.(p, f);
      }
    }
  }

  /** Every valid (page, frame) pair, lowest page first. */
  forEachMapped(each: (page: number, frame: number, write: boolean) => void): void {
    for (let di = 0; di < DIR_ENTRIES; di++) {
      const d = this.dir[di]!;
      if (!(d & DIR_VALID)) continue;
      if (d & DIR_HUGE) {
        for (let i = 0; i < PAGES_PER_HUGE; i++) each(di * PAGES_PER_HUGE + i, (d >>> 8) + i, (d & DIR_WRITE) !== 0);
        continue;
      }
      const base = (d >>> 8) * PAGES_PER_HUGE;
      for (let i = 0; i < PAGES_PER_HUGE; i++) {
        const e = this.leaves[base + i]!;
        if (e & PTE_VALID) each(di * PAGES_PER_HUGE + i, e >>> 8, (e & PTE_WRITE) !== 0);
      }
    }
  }

  /**
   * The GPU's own entries for `pages` (0 where unmapped), with PTE_ACCESSED and PTE_DIRTY added
   * from the accessed and dirty-block words kernels set. One readback of the leaf pool.
   */
  async readGpuEntries(pages: readonly number[], mapPending?: (buffer: GPUBuffer) => void): Promise<number[]> {
    return (await this.readGpuState(pages, mapPending)).entries;
  }

  /**
   * readGpuEntries, and each page's dirty-block word (0 where unmapped or mapped huge): one
   * readback of the span of leaf tables these pages use. Eviction reads these.
   */
  async readGpuState(pages: readonly number[], mapPending?: (buffer: GPUBuffer) => void): Promise<GpuPageState> {
    const leafOf = (p: number): number => {
      const d = this.dir[p >>> 9]!;
      return d & DIR_VALID && !(d & DIR_HUGE) ? d >>> 8 : -1;
    };
    const leaves = pages.map(leafOf);
    let lo = Infinity;
    let hi = -1;
    for (const l of leaves) {
      if (l < 0) continue;
      if (l < lo) lo = l;
      if (l > hi) hi = l;
    }
    if (hi < 0) return { entries: pages.map(() => 0), blocks: pages.map(() => 0) };
    const bytes = (hi - lo + 1) * LEAF_WORDS * 4;
    const rb = this.device.createBuffer({ label: 'page table readback', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder({ label: 'page table readback' });
    enc.copyBufferToBuffer(this.leafBuffer, lo * LEAF_WORDS * 4, rb, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    try {
      const mapped = rb.mapAsync(GPUMapMode.READ);
      mapPending?.(rb); // test hook (faultInjection.ts)
      await mapped;
      const gpu = new Uint32Array(rb.getMappedRange());
      const entries: number[] = new Array(pages.length);
      const blocks: number[] = new Array(pages.length);
      pages.forEach((p, k) => {
        const leaf = leaves[k]!;
        const at = (leaf - lo) * LEAF_WORDS + (p & 511);
        const e = leaf < 0 ? 0 : gpu[at]!;
        if (!(e & PTE_VALID)) {
          entries[k] = e;
          blocks[k] = 0;
          return;
        }
        const dirty = gpu[at + LEAF_DIRTY]!;
        entries[k] = (e | (gpu[at + LEAF_ACCESSED]! !== 0 ? PTE_ACCESSED : 0) | (dirty !== 0 ? PTE_DIRTY : 0)) >>> 0;
        blocks[k] = dirty;
      });
      return { entries, blocks };
    } finally {
      rb.destroy();
    }
  }

  /**
   * Where the GPU keeps page p's dirty-block word (a word index in the leaf buffer), or -1 when
   * p is not mapped by a leaf entry (unmapped, or mapped huge: no bits). Read it before p is
   * unmapped: an unmapped page's leaf may go back to the pool. The word itself stays until the
   * entry is mapped again, so a write-back reads it after unmapping (copyStatusWords).
   */
  statusWord(page: number): number {
    const d = this.dir[page >>> 9]!;
    if (!(d & DIR_VALID) || d & DIR_HUGE) return -1;
    const leaf = d >>> 8;
    if (!(this.leaves[leaf * PAGES_PER_HUGE + (page & 511)]! & PTE_VALID)) return -1;
    return leaf * LEAF_WORDS + LEAF_DIRTY + (page & 511);
  }

  /**
   * Clear the GPU's accessed bits of these pages (the clock hand's "second chance"), at the next
   * flush: only their accessed words are zeroed; their dirty blocks stay for the write-back.
   */
  clearAccessed(pages: readonly number[]): void {
    for (const p of pages) {
      const d = this.dir[p >>> 9]!;
      if (d & DIR_VALID && !(d & DIR_HUGE)) this.unaccessed.push((d >>> 8) * PAGES_PER_HUGE + (p & 511));
    }
  }

  /**
   * Upload every change since the last flush: the directory once, each touched span of leaf
   * entries once, and zeros into exactly the status words of the pages mapped (accessed and
   * dirty blocks) or given a second chance (accessed) since, one write per run of them.
   */
  flush(): number {
    let writes = 0;
    if (this.dirDirty) {
      this.device.queue.writeBuffer(this.dirBuffer, 0, this.dir.buffer, 0, this.dir.byteLength);
      this.dirDirty = false;
      writes++;
    }
    const whole = this.freshLeaves();
    for (const [leaf, [lo, hi]] of this.dirtyLeaves) {
      if (whole?.has(leaf)) continue; // below, with the other whole leaves
      this.device.queue.writeBuffer(this.leafBuffer, (leaf * LEAF_WORDS + lo) * 4, this.leaves.buffer, (leaf * PAGES_PER_HUGE + lo) * 4, (hi - lo + 1) * 4);
      writes++;
    }
    if (whole) writes += this.writeWholeLeaves(whole);
    this.dirtyLeaves.clear();
    if (this.fresh.length > 0) {
      const rest = whole ? this.fresh.filter((li) => !whole.has(Math.floor(li / PAGES_PER_HUGE))) : this.fresh;
      if (rest.length > 0) writes += this.zeroRuns(rest, LEAF_ACCESSED, LEAF_DIRTY);
      this.fresh = [];
    }
    if (this.unaccessed.length > 0) {
      writes += this.zeroRuns(this.unaccessed, LEAF_ACCESSED);
      this.unaccessed = [];
    }
    this.retired = [];
    return writes;
  }

  /**
   * The leaves whose every mapping was made since the last flush and which no page left since
   * (a write-back may still read a leaving page's dirty word): flush writes such a leaf whole,
   * entries and zeroed status words, in one write instead of three. Undefined when none.
   */
  /**
   * Leaves whose every mapping is new: their entries and all their status words (zeros), one
   * write per run of consecutive leaves (a fault round's pages spread over a few leaves, which
   * the pool hands out in order: one write, not one per leaf). Returns the writes made.
   */
  private writeWholeLeaves(whole: ReadonlySet<number>): number {
    const leaves = [...whole].sort((a, b) => a - b);
    let writes = 0;
    for (let i = 0; i < leaves.length; ) {
      let j = i + 1;
      while (j < leaves.length && leaves[j] === leaves[j - 1]! + 1) j++;
      const first = leaves[i]!;
      const words = (j - i) * LEAF_WORDS;
      // (each leaf's entries at the start of its slot; the status words after them are never
      // written, so they stay zero)
      if (!this.wholeLeaf || this.wholeLeaf.length < words) this.wholeLeaf = new Uint32Array(words);
      for (let k = i; k < j; k++)
        this.wholeLeaf.set(this.leaves.subarray(leaves[k]! * PAGES_PER_HUGE, (leaves[k]! + 1) * PAGES_PER_HUGE), (k - i) * LEAF_WORDS);
      this.device.queue.writeBuffer(this.leafBuffer, first * LEAF_WORDS * 4, this.wholeLeaf.buffer, 0, words * 4);
      writes++;
      i = j;
    }
    return writes;
  }

  private freshLeaves(): Set<number> | undefined {
    if (this.fresh.length === 0) return undefined;
    // (mapped in page order, as a batch usually is, they are sorted already)
    for (let i = 1; i < this.fresh.length; i++) {
      if (this.fresh[i]! < this.fresh[i - 1]!) {
        this.fresh.sort((a, b) => a - b);
        break;
      }
    }
    let out: Set<number> | undefined;
    const retired = this.retired.length > 0 ? new Set(this.retired.map((li) => Math.floor(li / PAGES_PER_HUGE))) : undefined;
    for (let i = 0; i < this.fresh.length; ) {
      const leaf = Math.floor(this.fresh[i]! / PAGES_PER_HUGE);
      let mapped = 0;
      let last = -1;
      for (; i < this.fresh.length && Math.floor(this.fresh[i]! / PAGES_PER_HUGE) === leaf; i++) {
        const li = this.fresh[i]!;
        if (li !== last && this.leaves[li]! & PTE_VALID) mapped++;
        last = li;
      }
      if (mapped > 0 && mapped === this.leafUse[leaf] && !retired?.has(leaf)) (out ??= new Set()).add(leaf);
    }
    return out;
  }

  /**
   * Zero the status words at `offsets` of the leaf entries in `at`, one write per run; the
   * writes made. A run of one leaf reaches over entries between them that hold no mapping (their
   * words mean nothing and are zeroed when one is made), but never over a mapped entry, nor one
   * unmapped since the last flush (a write-back reads its dirty blocks still): pages faulted in
   * scattered over a leaf cost one write per word kind, not one per page.
   */
  private zeroRuns(at: number[], ...offsets: number[]): number {
    for (let i = 1; i < at.length; i++) {
      if (at[i]! < at[i - 1]!) {
        at.sort((a, b) => a - b);
        break;
      }
    }
    const retired = this.retired.length > 0 ? new Set(this.retired) : undefined;
    const unmapped = (li: number): boolean => !(this.leaves[li]! & PTE_VALID) && !retired?.has(li);
    let writes = 0;
    for (let i = 0; i < at.length; ) {
      const first = at[i]!;
      const leaf = Math.floor(first / PAGES_PER_HUGE);
      let last = first;
      let j = i + 1;
      // a run: entries of one leaf, consecutive or with only unmapped entries between them
      for (; j < at.length; j++) {
        const next = at[j]!;
        if (Math.floor(next / PAGES_PER_HUGE) !== leaf) break;
        let gap = last + 1;
        while (gap < next && unmapped(gap)) gap++;
        if (gap < next) break;
        if (next > last) last = next;
      }
      const word = leaf * LEAF_WORDS + (first - leaf * PAGES_PER_HUGE);
      for (const off of offsets) this.device.queue.writeBuffer(this.leafBuffer, (word + off) * 4, ZEROS.buffer, 0, (last - first + 1) * 4);
      writes += offsets.length;
      i = j;
    }
    return writes;
  }

  private markDirty(leaf: number, i: number): void {
    const r = this.dirtyLeaves.get(leaf);
    if (!r) this.dirtyLeaves.set(leaf, [i, i]);
    else {
      if (i < r[0]) r[0] = i;
      if (i > r[1]) r[1] = i;
    }
  }

  destroy(): void {
    this.dirBuffer.destroy();
    this.leafBuffer.destroy();
  }
}
