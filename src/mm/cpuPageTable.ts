// CpuPageTable: one 32-bit entry per virtual page of an address space, in a SharedArrayBuffer
// so that Web Workers can read it. It owns only the entry encoding; deciding what an entry
// should become belongs to AddressSpace (CPU faults) and hmm/migrate (migration). Beside the
// entries the same buffer holds, for CPU threads: pin counts, one access byte per page (the
// VMA's permissions, which threads cannot look up themselves) and a few control words.
//
//   bits 0-2  kind   NONE (never touched) | ZERO (read-mapped zero page) | RAM | DEVICE | MIGRATING
//   bits 3-7  RAM:    bit 3 DUP  = some device holds a read-only copy (a CPU write revokes it)
//                     bit 4 HELD = a device holds the page writable or exclusive (any CPU touch
//                                  revokes it); bits 5-7 the holding device
//             DEVICE: bits 3-7 the owning device id
//   bits 8-31 frame  RAM frame or device frame

import { VA_PAGES } from '../constants.ts';

export enum Kind {
  None = 0,
  Zero = 1,
  Ram = 2,
  Device = 3,
  Migrating = 4,
}

const KIND_MASK = 0x7;
const DUP = 1 << 3;
const HELD = 1 << 4;
export const MAX_DEVICES = 8;

export const pte = {
  kind: (e: number): Kind => (e & KIND_MASK) as Kind,
  frame: (e: number): number => e >>> 8,
  device: (e: number): number => (e >>> 3) & 0x1f,
  isDup: (e: number): boolean => (e & KIND_MASK) === Kind.Ram && (e & DUP) !== 0,
  isHeld: (e: number): boolean => (e & KIND_MASK) === Kind.Ram && (e & HELD) !== 0,
  heldBy: (e: number): number => (e >>> 5) & 0x7,
  none: 0,
  zero: Kind.Zero as number,
  ram: (frame: number): number => ((frame << 8) | Kind.Ram) >>> 0,
  onDevice: (dev: number, frame: number): number => ((frame << 8) | (dev << 3) | Kind.Device) >>> 0,
  migrating: (prev: number): number => ((prev & ~KIND_MASK) | Kind.Migrating) >>> 0,
  withDup: (e: number): number => (e | DUP) >>> 0,
  withHeld: (e: number, dev: number): number => ((e & ~(0x7 << 5)) | HELD | (dev << 5)) >>> 0,
  plainRam: (e: number): number => (e & ~(DUP | HELD | (0x7 << 5))) >>> 0,
};

/** Access byte per page: what the VMA allows (0: no VMA). */
export const ACCESS_READ = 1;
export const ACCESS_WRITE = 2;
/** A shared mapping: writes go to the frame even when other address spaces map it. */
export const ACCESS_SHARED = 4;

/** Control words (Int32) after the access bytes. */
export const CTL_FORKING = 0; // non-zero while fork() copies the table: threads take the slow path
const CTL_WORDS = 16;

export class CpuPageTable {
  readonly buffer: SharedArrayBuffer;
  readonly entries: Uint32Array;
  /** Per-page count of in-flight CPU accesses; a pinned page does not migrate. */
  readonly pins: Int32Array;
  /** Per-page ACCESS_* bits, kept equal to the VMAs by AddressSpace. */
  readonly access: Uint8Array;
  readonly ctl: Int32Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(VA_PAGES * 9 + CTL_WORDS * 4);
    this.entries = new Uint32Array(this.buffer, 0, VA_PAGES);
    this.pins = new Int32Array(this.buffer, VA_PAGES * 4, VA_PAGES);
    this.access = new Uint8Array(this.buffer, VA_PAGES * 8, VA_PAGES);
    this.ctl = new Int32Array(this.buffer, VA_PAGES * 9, CTL_WORDS);
  }

  get(page: number): number {
    return Atomics.load(this.entries, page);
  }
  set(page: number, entry: number): void {
    Atomics.store(this.entries, page, entry);
  }
  isPinned(page: number): boolean {
    return Atomics.load(this.pins, page) > 0;
  }
  pin(page: number): void {
    Atomics.add(this.pins, page, 1);
  }
  unpin(page: number): void {
    Atomics.sub(this.pins, page, 1);
  }
}
