// CpuThread: synchronous loads and stores at virtual addresses, for code running in a Web
// Worker or a Node worker_thread. It owns the thread side of CPU access: the fast path reads
// the shared CPU page table and touches system RAM directly; anything else (a device-private
// page, a held copy, a page never touched, a copy-on-write break, a bad address) goes to the
// main thread through the fault mailbox, and the thread blocks until it has been served.
//
// The rule that keeps this safe against migration on the main thread: a thread pins every
// page of an access, then reads the entries (sequentially consistent atomics); the main thread
// marks an entry (Migrating, a device-copy flag, none) and then reads the pin. At least one
// sees the other, so a page is never moved, copied or freed under an access that found it
// present. Pins are held only while the thread touches memory, never while it waits.
//
// The main thread may not use this class: it must never block (use AddressSpace.read/write).

import { PAGE_SIZE, hex } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { checkAddress, checkCount, checkRange } from '../mm/args.ts';
import { ACCESS_READ, ACCESS_SHARED, ACCESS_WRITE, CTL_FORKING, CpuPageTable, Kind, pte } from '../mm/cpuPageTable.ts';
import { requestFault } from './mailbox.ts';

/** Everything a thread needs to reach one address space: shared memory only, so it can be posted. */
export interface ThreadHandle {
  readonly mm: number;
  readonly ram: SharedArrayBuffer;
  readonly frameRefs: SharedArrayBuffer;
  readonly pageTable: SharedArrayBuffer;
  readonly mailbox: SharedArrayBuffer;
  /** How long a fault may wait for the main thread before EBUSY (default THREAD_FAULT_TIMEOUT_MS, 30 s). */
  readonly faultTimeoutMs?: number;
}

/** Slow-path trips one access may take before EBUSY (each one may be raced by the GPU again). */
const MAX_TRIPS = 64;

/**
 * Synchronous loads and stores at virtual addresses, in a worker (a Web Worker or a Node
 * worker_thread), through the shared CPU page table. A touch the thread cannot make by itself
 * (a device-private or held page, an untouched page, a copy-on-write break) blocks on the fault
 * mailbox until the main thread has served it. Errors are those of `mm.read` / `mm.write`.
 * Never on the main thread: it must not block.
 */
export class CpuThread {
  private readonly ram: Uint8Array;
  private readonly ramWords: Uint32Array;
  private readonly ramFloats: Float32Array;
  private readonly refs: Int32Array;
  private readonly table: CpuPageTable;
  private readonly mailbox: Int32Array;
  /** Frame per page of the access being made (-1: the zero page). */
  private frames: number[] = [];
  /** Accesses served, and how many needed the main thread. */
  accesses = 0;
  /** Accesses that went to the main thread (the slow path). */
  slowPaths = 0;

  /**
   * Attach to the address space `handle` (from `threadHandle(mm)` on the main thread) names.
   * @throws {@link HmmError} EINVAL: the handle is not one threadHandle made.
   */
  constructor(readonly handle: ThreadHandle) {
    if (
      !handle ||
      !(handle.ram instanceof SharedArrayBuffer) ||
      !(handle.pageTable instanceof SharedArrayBuffer) ||
      !(handle.mailbox instanceof SharedArrayBuffer)
    )
      throw new HmmError('EINVAL', 'CpuThread: the handle must come from threadHandle(mm)');
    this.ram = new Uint8Array(handle.ram);
    this.ramWords = new Uint32Array(handle.ram);
    this.ramFloats = new Float32Array(handle.ram);
    this.refs = new Int32Array(handle.frameRefs);
    this.table = new CpuPageTable(handle.pageTable);
    this.mailbox = new Int32Array(handle.mailbox);
  }

  // ------------------------------------------------------------------ public accesses

  /**
   * A u32 at `va` (4-byte aligned).
   * @throws {@link HmmError} EINVAL: an address that is not a 4-byte aligned address below 4 GiB, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  loadU32(va: number): number {
    let v = 0;
    this.access('loadU32', va, 4, false, true, () => {
      const at = this.offset(va);
      v = at < 0 ? 0 : Atomics.load(this.ramWords, at >> 2);
    });
    return v;
  }

  /**
   * Store a u32 at `va` (4-byte aligned).
   * @throws {@link HmmError} EINVAL: an address that is not a 4-byte aligned address below 4 GiB, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: an address is mapped read-only.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  storeU32(va: number, value: number): void {
    this.access('storeU32', va, 4, true, true, () => Atomics.store(this.ramWords, this.offset(va) >> 2, value >>> 0));
  }

  /**
   * Atomic add; returns the old value. Exact against other threads and the main thread.
   * @throws {@link HmmError} EINVAL: an address that is not a 4-byte aligned address below 4 GiB, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: an address is mapped read-only.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  atomicAddU32(va: number, value: number): number {
    let old = 0;
    this.access('atomicAddU32', va, 4, true, true, () => (old = Atomics.add(this.ramWords, this.offset(va) >> 2, value >>> 0)));
    return old;
  }

  /**
   * An f32 at `va` (4-byte aligned).
   * @throws {@link HmmError} EINVAL: an address that is not a 4-byte aligned address below 4 GiB, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  loadF32(va: number): number {
    let v = 0;
    this.access('loadF32', va, 4, false, true, () => {
      const at = this.offset(va);
      v = at < 0 ? 0 : this.ramFloats[at >> 2]!;
    });
    return v;
  }

  /**
   * Store an f32 at `va` (4-byte aligned).
   * @throws {@link HmmError} EINVAL: an address that is not a 4-byte aligned address below 4 GiB, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: an address is mapped read-only.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  storeF32(va: number, value: number): void {
    this.access('storeF32', va, 4, true, true, () => (this.ramFloats[this.offset(va) >> 2] = value));
  }

  /**
   * `length` bytes from va (any alignment, across pages).
   * @throws {@link HmmError} EINVAL: a bad address or length, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  load(va: number, length: number): Uint8Array {
    const out = new Uint8Array(length > 0 && Number.isInteger(length) ? length : 0);
    this.access('load', va, length, false, false, () => this.copy(va, length, (from, at, n) => out.set(this.ram.subarray(from, from + n), at)));
    return out;
  }

  /**
   * Write bytes at va (any alignment, across pages); EINVAL also when data is not a Uint8Array.
   * @throws {@link HmmError} EINVAL: a bad address or length, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: an address is mapped read-only.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted serving the fault.
   * @throws {@link HmmError} EBUSY: the main thread did not serve the fault in time (`faultTimeoutMs`), or the pages kept moving away.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  store(va: number, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new HmmError('EINVAL', `store: data at ${String(va)} is not a Uint8Array`);
    this.access('store', va, data.length, true, false, () => this.copy(va, data.length, (from, at, n) => this.ram.set(data.subarray(at, at + n), from)));
  }

  // ------------------------------------------------------------------ the access protocol

  /** Pin, check, access, unpin; or unpin and ask the main thread, then try again. */
  private access(what: string, va: number, length: number, write: boolean, word: boolean, run: () => void): void {
    checkAddress(what, va);
    checkCount(what, 'length', length);
    checkRange(what, va, length);
    if (word && va % 4 !== 0) throw new HmmError('EINVAL', `${what}: address ${hex(va)} is not 4-byte aligned`, va);
    const first = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + length - 1) / PAGE_SIZE);
    let pinnedForUs = false; // the main thread answers a fault with the pages pinned for us
    for (let trip = 0; trip < MAX_TRIPS; trip++) {
      if (!pinnedForUs) for (let p = first; p <= last; p++) this.table.pin(p);
      pinnedForUs = false;
      let ok = Atomics.load(this.table.ctl, CTL_FORKING) === 0;
      this.frames.length = 0;
      for (let p = first; ok && p <= last; p++) ok = this.present(p, write);
      if (ok) {
        try {
          run();
        } finally {
          for (let p = first; p <= last; p++) this.table.unpin(p);
        }
        this.accesses++;
        return;
      }
      for (let p = first; p <= last; p++) this.table.unpin(p);
      this.slowPaths++;
      requestFault(this.mailbox, write, va, length, this.handle.faultTimeoutMs); // throws the main thread's error
      pinnedForUs = true;
    }
    if (pinnedForUs) for (let p = first; p <= last; p++) this.table.unpin(p);
    throw new HmmError('EBUSY', `${what} at ${hex(va)}: pages kept moving away between the fault and the access`, va);
  }

  /** May this thread touch page p now, for a read or a write? Records its frame. */
  private present(p: number, write: boolean): boolean {
    const a = Atomics.load(this.table.access, p);
    if (!(a & ACCESS_READ) || (write && !(a & ACCESS_WRITE))) return false;
    const e = this.table.get(p);
    switch (pte.kind(e)) {
      case Kind.Zero:
        if (write) return false;
        this.frames.push(-1);
        return true;
      case Kind.Ram: {
        if (pte.isHeld(e) || (write && pte.isDup(e))) return false; // a device has it: the main thread revokes
        const f = pte.frame(e);
        if (write && !(a & ACCESS_SHARED) && Atomics.load(this.refs, f) > 1) return false; // copy-on-write
        this.frames.push(f);
        return true;
      }
      default:
        return false; // never touched, device-private, migrating: the main thread decides
    }
  }

  /** Byte offset in system RAM of a word access at va (-1: the zero page). */
  private offset(va: number): number {
    const f = this.frames[0]!;
    if (f < 0) return -1;
    return f * PAGE_SIZE + (va % PAGE_SIZE);
  }

  /** Walk [va, va+length) page by page: RAM byte offset, offset in the caller's buffer, count. */
  private copy(va: number, length: number, each: (ramOffset: number, at: number, n: number) => void): void {
    let at = 0;
    let i = 0;
    while (at < length) {
      const inPage = (va + at) % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, length - at);
      const f = this.frames[i++]!;
      if (f >= 0) each(f * PAGE_SIZE + inPage, at, n);
      // the zero page: a load leaves zeros in `out`; a store never sees it (checked above)
      at += n;
    }
  }
}
