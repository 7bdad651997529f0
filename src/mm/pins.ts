// PagePins: the pins an address space's users take on its pages, as the kernel's
// pin_user_pages does for DMA by another device or a driver (FOLL_LONGTERM for pins that last).
// A pinned page keeps its frame: migration refuses it per page ('pinned'), and devices serve
// it through copies. This module owns the bookkeeping only: which handles pin which pages.
// AddressSpace decides what a pin does to a page (src/mm/addressSpace.ts, pin()).
//
// A pin belongs to the mapping it was taken on: munmap (or MAP_FIXED, mremap) of the page ends
// it for that address, while the frame stays alive for the holder until unpin() (the pinner
// still has the memory, as a GUP reference keeps a page).

/** A pin from `mm.pin(va, length)` (pin_user_pages): the pages stay put until `unpin()`. */
export class PinHandle {
  private released = false;

  private pageList: number[];

  /**
   * Pins are taken with `mm.pin`.
   * @internal
   */
  constructor(
    private readonly owner: PagePins,
    pages: readonly number[],
    /** pin_user_pages(FOLL_LONGTERM): device-private pages were brought to RAM first. */
    readonly longterm: boolean,
  ) {
    this.pageList = [...pages];
  }

  /** The pages pinned (VA page numbers; mremap moves them). */
  get pages(): readonly number[] {
    return this.pageList;
  }

  /**
   * (PagePins.move) page `from` now lives at `to`.
   * @internal
   */
  moved(from: number, to: number): void {
    const i = this.pageList.indexOf(from);
    if (i >= 0) this.pageList[i] = to;
  }

  /** Let go of the pages (idempotent). */
  unpin(): void {
    // Stryker disable next-line ConditionalExpression: the test as false; releasing a handle twice removes nothing the second time
    if (this.released) return;
    this.released = true;
    this.owner.release(this);
  }

  /** Whether unpin() ran. */
  get isReleased(): boolean {
    return this.released;
  }
}

export class PagePins {
  private readonly byPage = new Map<number, Set<PinHandle>>();
  /** Pages pinned now (a page pinned twice counts once). */
  get pinnedPages(): number {
    return this.byPage.size;
  }

  /** Pin `pages` (each must be in RAM, or untouched, at this moment: the caller checks). */
  pin(pages: readonly number[], longterm: boolean): PinHandle {
    const h = new PinHandle(this, pages, longterm);
    for (const p of pages) {
      let set = this.byPage.get(p);
      if (!set) this.byPage.set(p, (set = new Set()));
      set.add(h);
    }
    return h;
  }

  isPinned(p: number): boolean {
    return this.byPage.has(p);
  }

  /** The handles pinning page p (a frame unmapped under them stays alive until they let go). */
  holders(p: number): PinHandle[] {
    return [...(this.byPage.get(p) ?? [])];
  }

  /** mremap moved page from[i] to to[i]: its pins go with it. */
  move(from: readonly number[], to: readonly number[]): void {
    const moving = from.map((p) => this.byPage.get(p));
    for (const p of from) this.byPage.delete(p);
    moving.forEach((set, i) => {
      if (!set) return;
      this.byPage.set(to[i]!, set);
      for (const h of set) h.moved(from[i]!, to[i]!);
    });
  }

  /** The mapping of [start, end) went: its pins end for those addresses. */
  drop(start: number, end: number): void {
    for (const p of [...this.byPage.keys()]) if (p >= start && p < end) this.byPage.delete(p);
  }

  release(h: PinHandle): void {
    for (const p of h.pages) {
      const set = this.byPage.get(p);
      if (!set) continue;
      set.delete(h);
      if (set.size === 0) this.byPage.delete(p);
    }
  }
}
