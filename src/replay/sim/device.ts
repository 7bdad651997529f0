// The simulator's device: its frames (a free list handing frames out as the real allocator
// does: last freed, first taken, each batch sorted), the reverse map (which page of which
// address space each frame holds, a copy or not, when it arrived and was last seen accessed),
// the clock hand, the launch count (the clock `arrived` and `lastAccess` are on), and a page
// table per address space. Pure data; moves.ts and evict.ts change it as the mechanism would.

import type { TraceDevice } from '../format.ts';
import { SimTable } from './table.ts';

export class SimDevice {
  readonly id: number;
  readonly name: string;
  readonly frameCount: number;
  /** Eviction unit in pages. */
  readonly unit: number;
  /** Free frames; the top of the stack (its end) goes first. */
  private readonly stack: number[];
  readonly rmapSpace: Int32Array;
  readonly rmapPage: Int32Array;
  readonly rmapCopy: Uint8Array;
  readonly arrivedAt: Float64Array;
  readonly lastAccess: Float64Array;
  clockHand: number;
  launches: number;
  /** The real device's launch count at the end of the last recorded dispatch (launches between dispatches move the clock). */
  recordedLaunches: number;
  private readonly tables = new Map<number, SimTable>();

  constructor(d: TraceDevice) {
    this.id = d.id;
    this.name = d.name;
    this.frameCount = d.frames;
    this.unit = d.evictionPages;
    this.stack = [...d.initial.freeOrder].reverse();
    this.rmapSpace = new Int32Array(d.frames).fill(-1);
    this.rmapPage = new Int32Array(d.frames).fill(-1);
    this.rmapCopy = new Uint8Array(d.frames);
    this.arrivedAt = new Float64Array(d.frames);
    this.lastAccess = new Float64Array(d.frames);
    this.clockHand = d.initial.clockHand;
    this.launches = d.initial.launches;
    this.recordedLaunches = d.initial.launches;
    for (const f of d.initial.frames) {
      this.rmapSpace[f.frame] = f.space;
      this.rmapPage[f.frame] = f.page;
      this.rmapCopy[f.frame] = f.copy ? 1 : 0;
      this.arrivedAt[f.frame] = f.arrived;
      this.lastAccess[f.frame] = f.lastAccess;
      this.table(f.space).map(f.page, f.frame, f.write);
    }
    for (const t of this.tables.values()) t.flush();
  }

  table(space: number): SimTable {
    let t = this.tables.get(space);
    if (!t) this.tables.set(space, (t = new SimTable()));
    return t;
  }

  get freeFrames(): number {
    return this.stack.length;
  }

  /** Up to n frames, sorted (DeviceMemory.allocUpTo). */
  take(n: number): number[] {
    const out: number[] = [];
    while (out.length < n && this.stack.length > 0) out.push(this.stack.pop()!);
    return out.sort((a, b) => a - b);
  }

  /** Frames go back, in this order (the last one is the next taken). */
  free(frames: readonly number[]): void {
    for (const f of frames) this.stack.push(f);
  }

  /** A page moved here: owned, arrived now, mapped. */
  adopt(space: number, pages: readonly number[], frames: readonly number[], writable: readonly boolean[]): void {
    const t = this.table(space);
    pages.forEach((p, i) => {
      const f = frames[i]!;
      this.rmapSpace[f] = space;
      this.rmapPage[f] = p;
      this.rmapCopy[f] = 0;
      this.arrivedAt[f] = this.launches;
      this.lastAccess[f] = 0;
      t.map(p, f, writable[i]!);
    });
    t.flush();
  }

  /** A copy of a RAM page now lives in frame f. */
  ownCopy(f: number, space: number, page: number): void {
    this.rmapSpace[f] = space;
    this.rmapPage[f] = page;
    this.rmapCopy[f] = 1;
    this.arrivedAt[f] = this.launches;
    this.lastAccess[f] = 0;
  }

  disown(frames: readonly number[]): void {
    for (const f of frames) {
      this.rmapSpace[f] = -1;
      this.rmapPage[f] = -1;
      this.rmapCopy[f] = 0;
    }
  }

  /** The address spaces with a table here. */
  spaces(): IterableIterator<number> {
    return this.tables.keys();
  }
}
