// AddressSpace: one "process". It owns the VMAs, the CPU page table and the CPU side of every
// access: mmap/munmap/mprotect, demand-zero, copy-on-write after fork, and CPU reads and
// writes, which fault device-private pages back to RAM (migrate_to_ram) before they complete.
// CPU threads (src/workers) read its page table directly and come here, through the fault
// mailbox, for everything else (threadFault). Devices see it only through the interval
// notifier and the DevicePagemap calls; it never touches GPU objects.

import { MMAP_MIN_ADDR, PAGE_SIZE, PAGES_PER_HUGE, HUGE_SIZE, VA_PAGES, hex, pageList } from '../constants.ts';
import { HmmError } from '../errors.ts';
import type { Stats } from '../trace/stats.ts';
import { ThrashDetector, type Direction } from '../policy/thrashing.ts';
import { checkAddress, checkCount, checkPageAligned, checkRange } from './args.ts';
import { ACCESS_READ, ACCESS_SHARED, ACCESS_WRITE, CTL_FORKING, CpuPageTable, Kind, pte } from './cpuPageTable.ts';
import { DeviceHolds, type DeviceHold, type HoldOptions } from './deviceHolds.ts';
import { IntervalNotifier } from './notifier.ts';
import { PagePins, type PinHandle } from './pins.ts';
import type { Cause } from '../trace/provenance.ts';
import type { DevicePagemap } from './pagemap.ts';
import type { SystemRam } from './systemRam.ts';
import { VmaList, canRead, canWrite, type Advice, type Prot, type Vma } from './vmaList.ts';

export interface MmapOptions {
  prot?: Prot;
  /** Shared mappings stay in system RAM: they never migrate (as the kernel's MAP_SHARED). */
  shared?: boolean;
  /** 2 MiB aligned, 2 MiB granular. */
  huge?: boolean;
  /** Fixed address (MAP_FIXED): replaces whatever was mapped there. */
  addr?: number;
}

/** How many times a CPU access re-checks pages that other work keeps changing. */
const CPU_FAULT_RETRIES = 64;
/**
 * Holders of device holds that are not devices (src/mm/deviceHolds.ts). fork() holds devices
 * off the pages it brings home and copies; a CPU access (main thread, or a CPU thread's fault)
 * holds them off the pages it faults in until it has made its access (the kernel's page lock
 * during a fault: migration skips such a page). CPU accesses wait only for devices' holds:
 * fork waits for the CPU threads inside its pages itself, and one CPU access never needs to
 * keep another off (their pins keep the pages from moving).
 */
const FORK_HOLDER = -1;
const CPU_HOLDER = -2;
const isDeviceHold = (h: DeviceHold): boolean => h.device >= 0 && h.cpuWaits;
const MAIN_THREAD_FAULT: Cause = { kind: 'cpu-fault', thread: 'main' };
const WORKER_FAULT: Cause = { kind: 'cpu-fault', thread: 'worker' };
/** How long fork() waits for in-flight CPU thread accesses to finish before EBUSY. */
const FORK_DRAIN_MS = 10_000;

/**
 * One "process": a 32-bit virtual address space of 4 KiB pages, its mappings and its CPU page
 * table. Made by `sys.createAddressSpace()`; `dev.mirror(mm)` is a device's view of it.
 */
export class AddressSpace {
  /**
   * The CPU page table (shared with CPU threads).
   * @internal
   */
  readonly pageTable = new CpuPageTable();
  /**
   * The mappings (VMAs).
   * @internal
   */
  readonly vmas = new VmaList();
  /**
   * The interval notifier (mmu_interval_notifier): `insert(start, end, callback)` (pages)
   * subscribes to invalidations of a range; its `readBegin()` / `readRetry(seq)` give
   * `rangeFault` its `notifier` and `seq`.
   */
  readonly notifier = new IntervalNotifier();
  /**
   * Pages being migrated: a CPU access waits for the migration instead of tearing data.
   * @internal
   */
  readonly inflight = new Map<number, Promise<void>>();
  /**
   * Pages bouncing between RAM and devices (policy: migrations report, the mirror asks). Its
   * `config` (createSystem's `thrashing`) may be changed per address space.
   */
  readonly thrash = new ThrashDetector();
  /**
   * Address spaces related by fork. A shared mapping's frames are mapped by several of them;
   * device copies of such a frame are flagged in every one, so a touch from any side finds them.
   * @internal
   */
  family: Set<AddressSpace> = new Set([this]);
  /**
   * Pages whose held device copy was made through another family member (it owns the copy).
   * @internal
   */
  readonly copyOwner = new Map<number, AddressSpace>();
  /** Set while fork() runs; thread faults wait for it. */
  private forking: Promise<unknown> | null = null;
  private readonly destroyHooks: (() => void)[] = [];
  /**
   * Pages marked madvise('free') (MADV_FREE), with the entry they had then: system RAM may take
   * them back under pressure while they are unchanged. The entry carries the read-only-copy
   * flag meanwhile, so a write (main thread, CPU thread, device) goes through a fault, which
   * ends the mark first: a page written after the advice is never dropped.
   */
  private readonly lazyFree = new Map<number, number>();
  /** 2 MiB blocks given a run of RAM as a whole (huge pages in RAM): see isRamHuge. */
  private readonly ramHuge = new Set<number>();
  /**
   * Users' pins on pages (mm.pin, pin_user_pages): a pinned page does not migrate.
   * @internal
   */
  readonly pins = new PagePins();
  /**
   * Pages a device is servicing a fault on, until its kernel has run: CPU accesses and other devices wait.
   * @internal
   */
  readonly holds: DeviceHolds;
  /**
   * Pins of main-thread reads and writes. They are taken across awaits but never observed by
   * another thread, so they live here; CPU threads pin in the shared table instead.
   */
  private readonly mainPins = new Map<number, number>();
  private readonly unpinWaiters: (() => void)[] = [];
  private destroyed = false;

  /**
   * Address spaces are made by `sys.createAddressSpace()`.
   * @internal
   */
  constructor(
    /** This address space's number in its System (trace events' `mm`). */
    readonly id: number,
    /** @internal */
    readonly ram: SystemRam,
    private readonly pagemaps: () => readonly (DevicePagemap | undefined)[],
    /** @internal */
    readonly stats: Stats,
    /** Makes the child address space for fork() (the system registers it). */
    private readonly spawn?: () => AddressSpace,
  ) {
    this.holds = new DeviceHolds(id);
    this.onDestroy(ram.onPressure((want) => this.reclaimLazyFree(want)));
  }

  // ------------------------------------------------------------------ mappings

  /**
   * mmap: map `length` bytes (rounded up to whole pages, or 2 MiB blocks with `huge`) and return
   * the address. Pages are demand-zero. A fixed `addr` (MAP_FIXED) replaces what is mapped there.
   * @throws {@link HmmError} EINVAL: a bad length or option, or an `addr` that is unaligned, below 0x10000 or past 4 GiB; or the address space was destroyed.
   * @throws {@link HmmError} ENOMEM: no free range of that size in the 4 GiB address space.
   */
  mmap(length: number, opts: MmapOptions = {}): number {
    this.checkAlive('mmap');
    checkCount('mmap', 'length', length);
    if (opts === null || typeof opts !== 'object') throw new HmmError('EINVAL', `mmap: options ${String(opts)} is not an object`);
    for (const flag of ['shared', 'huge'] as const)
      if (opts[flag] !== undefined && typeof opts[flag] !== 'boolean') throw new HmmError('EINVAL', `mmap: ${flag} ${String(opts[flag])} is not a boolean`);
    const prot = opts.prot ?? 'rw';
    if (prot !== 'none' && prot !== 'r' && prot !== 'rw') throw new HmmError('EINVAL', `mmap: prot ${String(prot)} is not 'none', 'r' or 'rw'`);
    const huge = opts.huge === true;
    const unit = huge ? HUGE_SIZE : PAGE_SIZE;
    const bytes = Math.ceil(length / unit) * unit;
    const npages = bytes / PAGE_SIZE;
    let start: number;
    if (opts.addr !== undefined) {
      const addr = checkPageAligned('mmap', opts.addr);
      if (huge && addr % HUGE_SIZE !== 0) throw new HmmError('EINVAL', `mmap: huge mapping at ${hex(addr)} is not 2 MiB aligned`, addr);
      if (addr < MMAP_MIN_ADDR)
        throw new HmmError('EINVAL', `mmap: address ${hex(addr)} is below ${hex(MMAP_MIN_ADDR)}; page 0 stays unmapped so a null pointer faults`, addr);
      checkRange('mmap', addr, bytes);
      start = addr / PAGE_SIZE;
      this.unmapPages(start, start + npages); // MAP_FIXED replaces
    } else {
      start = this.vmas.findFree(npages, MMAP_MIN_ADDR / PAGE_SIZE, VA_PAGES, huge ? PAGES_PER_HUGE : 1);
      if (start < 0) throw new HmmError('ENOMEM', `mmap: no free range of ${bytes} bytes in the 4 GiB address space`);
    }
    this.vmas.insert({ start, end: start + npages, prot, shared: opts.shared === true, huge });
    this.syncAccess(start, start + npages);
    return start * PAGE_SIZE;
  }

  /**
   * mremap: resize the mapping at [va, va+oldLength), or move it, and return its address.
   * Shrinking unmaps the tail; growing extends it in place when the pages after it are free;
   * otherwise, with `mayMove` (MREMAP_MAYMOVE) or a fixed `addr` (MREMAP_FIXED, which replaces
   * whatever is mapped there), the pages move: each keeps its place, RAM frame or device frame
   * (a device-private page stays on its device), devices see an UNMAP of the old range first
   * (invariant 2) and fault the new one in. `dontUnmap` (MREMAP_DONTUNMAP, same length, needs a
   * move) leaves the old range mapped and demand-zero. A huge mapping stays huge when its new
   * address is 2 MiB aligned and its length whole 2 MiB blocks, and becomes 4 KiB pages
   * otherwise. Errors as Linux: EINVAL (unaligned, zero length, overlapping fixed ranges,
   * dontUnmap without a move or with another length), EFAULT (the old range is not inside one
   * mapping), ENOMEM (no room and no move allowed).
   * @throws {@link HmmError} EINVAL: an unaligned address, a bad length or option, overlapping fixed ranges, `dontUnmap` without a move or with another length; or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: the old range is not inside one mapping.
   * @throws {@link HmmError} ENOMEM: no room to grow in place and no move allowed, or no free range to move to.
   * @throws {@link HmmError} EBUSY: devices kept taking the pages while they were written back.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a device lost during its write-back.
   */
  async mremap(va: number, oldLength: number, newLength: number, opts: { addr?: number; mayMove?: boolean; dontUnmap?: boolean } = {}): Promise<number> {
    this.checkAlive('mremap');
    checkPageAligned('mremap', va);
    const positive = (what: string, n: number): number => {
      if (!Number.isSafeInteger(n) || n <= 0) throw new HmmError('EINVAL', `mremap ${hex(va)}: ${what} ${String(n)} is not a positive byte count`, va);
      return Math.ceil(n / PAGE_SIZE);
    };
    const oldPages = positive('oldLength', oldLength);
    let newPages = positive('newLength', newLength);
    if (opts === null || typeof opts !== 'object') throw new HmmError('EINVAL', `mremap ${hex(va)}: options ${String(opts)} is not an object`, va);
    for (const flag of ['mayMove', 'dontUnmap'] as const)
      if (opts[flag] !== undefined && typeof opts[flag] !== 'boolean')
        throw new HmmError('EINVAL', `mremap ${hex(va)}: ${flag} ${String(opts[flag])} is not a boolean`, va);
    const fixed = opts.addr !== undefined ? checkPageAligned('mremap', opts.addr) / PAGE_SIZE : undefined;
    const mayMove = opts.mayMove === true || fixed !== undefined;
    if (opts.dontUnmap && (!mayMove || newPages !== oldPages))
      throw new HmmError('EINVAL', `mremap ${hex(va)}: dontUnmap needs a move (mayMove or addr) and the same length`, va);
    const start = va / PAGE_SIZE;
    checkRange('mremap', va, oldPages * PAGE_SIZE);
    if (fixed !== undefined) {
      if (fixed * PAGE_SIZE < MMAP_MIN_ADDR)
        throw new HmmError('EINVAL', `mremap: address ${hex(fixed * PAGE_SIZE)} is below ${hex(MMAP_MIN_ADDR)}`, fixed * PAGE_SIZE);
      checkRange('mremap', fixed * PAGE_SIZE, newPages * PAGE_SIZE);
      if (fixed < start + oldPages && start < fixed + newPages)
        throw new HmmError('EINVAL', `mremap ${hex(va)}: the new range at ${hex(fixed * PAGE_SIZE)} overlaps the old one`, fixed * PAGE_SIZE);
    }
    const source = (): Vma => {
      const v = this.vmas.find(start);
      if (!v || v.end < start + oldPages) {
        const at = v ? v.end * PAGE_SIZE : va;
        throw new HmmError('EFAULT', `mremap ${hex(va)}: ${hex(at)} is not in the mapping (the old range must lie inside one)`, at);
      }
      return v;
    };
    // a huge mapping is whole 2 MiB blocks, as mmap made it
    if (source().huge) newPages = Math.ceil(newPages / PAGES_PER_HUGE) * PAGES_PER_HUGE;
    // In place: the same length, a shrink, or a growth into free pages.
    if (fixed === undefined && !opts.dontUnmap) {
      if (newPages === oldPages) return va;
      if (newPages < oldPages) {
        await this.munmap((start + newPages) * PAGE_SIZE, (oldPages - newPages) * PAGE_SIZE);
        return va;
      }
      const end = start + oldPages;
      if (start + newPages <= VA_PAGES && this.vmas.overlapping(end, start + newPages).length === 0) {
        const v = source();
        this.vmas.insert({ ...v, start: end, end: start + newPages });
        this.syncAccess(end, start + newPages);
        return va;
      }
      if (!mayMove) throw new HmmError('ENOMEM', `mremap ${hex(va)}: no room to grow to ${newPages * PAGE_SIZE} bytes in place, and mayMove is not set`, va);
    }
    // A move. Nothing of the old range may be moving or held by a device at the instant the
    // entries move: held copies are written back first, and the check and the move share a turn.
    for (let attempt = 0; ; attempt++) {
      await this.settle(start, start + oldPages, 'held', { kind: 'call', call: 'mm.mremap()' });
      this.checkAlive('mremap');
      source();
      if (!this.anyHeldOrMoving(start, start + oldPages)) break;
      if (attempt >= CPU_FAULT_RETRIES) throw new HmmError('EBUSY', `mremap ${hex(va)}: devices kept taking the pages`, va);
    }
    const v = source();
    // A shared mapping's page that a fork relative also maps moves only in this address space:
    // the two would map one frame at two addresses, and sharing between relatives is keyed by
    // address here (design-notes §17). Refused, as Linux refuses what it cannot do: nothing moved.
    // A relative's own entry decides, not the frame's reference count: that also counts holders
    // that map nothing (a pinner whose page was unmapped, a write-back in flight), and a frame
    // no relative maps moves as in an address space without relatives.
    if (v.shared && this.family.size > 1) {
      for (let p = start; p < start + Math.min(oldPages, newPages); p++) {
        if (this.relativeMaps(p))
          throw new HmmError(
            'EINVAL',
            `mremap ${hex(va)}: page ${hex(p * PAGE_SIZE)} of a shared mapping is also mapped by a fork relative; a shared range that relatives map cannot move (grow or shrink it in place)`,
            p * PAGE_SIZE,
          );
      }
    }
    let to: number;
    if (fixed !== undefined) {
      this.unmapPages(fixed, fixed + newPages); // MREMAP_FIXED replaces what is there
      to = fixed;
    } else {
      to = this.vmas.findFree(newPages, MMAP_MIN_ADDR / PAGE_SIZE, VA_PAGES, v.huge ? PAGES_PER_HUGE : 1);
      if (to < 0) throw new HmmError('ENOMEM', `mremap ${hex(va)}: no free range of ${newPages * PAGE_SIZE} bytes to move to`, va);
    }
    this.moveEntries(start, to, Math.min(oldPages, newPages));
    if (newPages < oldPages) this.unmapPages(start + newPages, start + oldPages);
    const huge = v.huge && to % PAGES_PER_HUGE === 0 && newPages % PAGES_PER_HUGE === 0;
    if (!opts.dontUnmap) this.vmas.remove(start, start + Math.min(oldPages, newPages));
    this.vmas.insert({ ...v, start: to, end: to + newPages, huge });
    this.syncAccess(start, start + oldPages);
    this.syncAccess(to, to + newPages);
    this.stats.add('remaps');
    return to * PAGE_SIZE;
  }

  /**
   * munmap: unmap [va, va+length) (rounded up to whole pages): devices drop their mappings
   * first, frames are freed, and the next touch is EFAULT. Holes in the range are fine.
   * @throws {@link HmmError} EINVAL: an unaligned address or a bad length; or the address space was destroyed.
   * @throws {@link HmmError} EBUSY: (after fork) a device's copy of a shared page kept moving during its write-back.
   * @throws {@link HmmError} EPOISON: (after fork) a shared page's only current data was on a device lost during its write-back.
   */
  async munmap(va: number, length: number): Promise<void> {
    this.checkAlive('munmap');
    const { start, end } = this.pageRange('munmap', va, length);
    // A device's held copy of a frame another address space also maps is the only current
    // data: write it back first, or that address space would lose it.
    if (this.family.size > 1) await this.settle(start, end, 'held', { kind: 'call', call: 'mm.munmap()' });
    this.unmapPages(start, end);
  }

  /**
   * mprotect: change the protection of [va, va+length) to 'none', 'r' or 'rw'. Devices give back
   * pages they hold writable and drop their mappings before the change.
   * @throws {@link HmmError} EINVAL: an unaligned address, a bad length or prot; or the address space was destroyed.
   * @throws {@link HmmError} ENOMEM: a page of the range is not mapped (as Linux).
   * @throws {@link HmmError} EBUSY: devices kept taking the pages.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a device lost during its write-back.
   */
  async mprotect(va: number, length: number, prot: Prot): Promise<void> {
    this.checkAlive('mprotect');
    const { start, end } = this.pageRange('mprotect', va, length);
    if (prot !== 'none' && prot !== 'r' && prot !== 'rw') throw new HmmError('EINVAL', `mprotect: prot ${String(prot)} is not 'none', 'r' or 'rw'`);
    const checkHoles = (): void => {
      const hole = this.vmas.firstHole(start, end);
      if (hole >= 0) throw new HmmError('ENOMEM', `mprotect: page at ${hex(hole * PAGE_SIZE)} is not mapped`, hole * PAGE_SIZE);
    };
    checkHoles();
    // A device holding pages writable must give them back before it may lose write access, and
    // the change is made in the same turn as the check that none holds any: the invalidation
    // below drops a device's mappings, and a copy held since the last look would be dropped
    // without its write-back.
    for (let attempt = 0; ; attempt++) {
      await this.settle(start, end, 'held', { kind: 'call', call: 'mm.mprotect()' });
      this.checkAlive('mprotect');
      checkHoles(); // unmapped meanwhile: as if after that munmap
      if (!this.anyHeldOrMoving(start, end)) break;
      if (attempt >= CPU_FAULT_RETRIES) throw new HmmError('EBUSY', `mprotect ${hex(va)}: devices kept taking the pages`, va);
    }
    this.vmas.protect(start, end, prot);
    this.syncAccess(start, end);
    this.notifier.invalidate({ start, end, event: 'protection', owner: null });
    this.stats.add('invalidations');
  }

  /**
   * Advice on [va, va+length) (cudaMemAdvise, madvise): `preferred` location ('system' or a
   * device id; null clears it), `readMostly`, `accessedBy` devices. Policy reads it; nothing
   * moves when it is given. The range must be mapped (ENOMEM names the hole).
   * @throws {@link HmmError} EINVAL: an unaligned address, a bad length, advice that is not an object, an unknown key, a device id that is not one of this system's; or the address space was destroyed.
   * @throws {@link HmmError} ENOMEM: a page of the range is not mapped.
   */
  async advise(va: number, length: number, advice: Advice): Promise<void> {
    this.checkAlive('advise');
    const { start, end } = this.pageRange('advise', va, length);
    if (!advice || typeof advice !== 'object' || Array.isArray(advice)) throw new HmmError('EINVAL', `advise ${hex(va)}: advice must be an object`, va);
    const unknown = Object.keys(advice).find((k) => k !== 'preferred' && k !== 'readMostly' && k !== 'accessedBy');
    if (unknown !== undefined) throw new HmmError('EINVAL', `advise ${hex(va)}: unknown advice '${unknown}' (expected preferred, readMostly, accessedBy)`, va);
    const devs = this.pagemaps();
    const checkDev = (d: unknown, what: string): void => {
      if (typeof d !== 'number' || !Number.isInteger(d) || !devs[d])
        throw new HmmError('EINVAL', `advise ${hex(va)}: ${what} ${String(d)} is not a device of this system`, va);
    };
    if (advice.preferred !== undefined && advice.preferred !== null && advice.preferred !== 'system') checkDev(advice.preferred, 'preferred');
    if (advice.readMostly !== undefined && typeof advice.readMostly !== 'boolean')
      throw new HmmError('EINVAL', `advise ${hex(va)}: readMostly must be a boolean`, va);
    if (advice.accessedBy !== undefined) {
      if (!Array.isArray(advice.accessedBy)) throw new HmmError('EINVAL', `advise ${hex(va)}: accessedBy must be an array of device ids`, va);
      for (const d of advice.accessedBy) checkDev(d, 'accessedBy device');
    }
    this.vmas.advise(start, end, advice);
  }

  /**
   * pin_user_pages: pin [va, va+length) for a user of the memory outside the GPU path (DMA by
   * another device, a driver). With `longterm` (FOLL_LONGTERM) device-private pages come home
   * to RAM first and untouched pages get frames, so every page of the range is pinned in RAM;
   * without it, the pages that are in RAM now are pinned where they are and the rest left as
   * they are. A pinned page does not migrate (per page, 'pinned'): devices use copies of it.
   * `unpin()` the result when done; munmap ends the pin for that address, the frame living on
   * until unpin. EFAULT names the first address not mapped (or prot 'none').
   * @throws {@link HmmError} EINVAL: a bad address, length or option; or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address of the range is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} ENOMEM: (longterm) system RAM is exhausted.
   * @throws {@link HmmError} EBUSY: (longterm) the pages kept moving away.
   * @throws {@link HmmError} EPOISON: (longterm) a page's only current data was on a lost device.
   */
  async pin(va: number, length: number, opts: { longterm?: boolean } = {}): Promise<PinHandle> {
    this.checkAlive('pin');
    checkAddress('pin', va);
    checkCount('pin', 'length', length);
    checkRange('pin', va, length);
    if (opts === null || typeof opts !== 'object') throw new HmmError('EINVAL', `pin ${hex(va)}: options ${String(opts)} is not an object`, va);
    if (opts.longterm !== undefined && typeof opts.longterm !== 'boolean')
      throw new HmmError('EINVAL', `pin ${hex(va)}: longterm ${String(opts.longterm)} is not a boolean`, va);
    this.checkAccess('pin', va, length, false);
    const first = Math.floor(va / PAGE_SIZE);
    const pages = pageList(first, Math.floor((va + length - 1) / PAGE_SIZE) - first + 1);
    if (!opts.longterm) {
      const inRam = pages.filter((p) => pte.kind(this.pageTable.get(p)) === Kind.Ram);
      this.stats.add('pinnedPages', inRam.length);
      return this.pins.pin(inRam, false);
    }
    // Long-term: every page into RAM with a frame of its own, then pinned in the same turn as
    // the check that they all are (as a CPU access does, holding devices off meanwhile).
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const held = this.waitForDeviceHolds('pin', va, length, false, pages);
      if (held) await held;
      const hold = this.holds.hold(CPU_HOLDER, pages, 0);
      try {
        await this.faultPages(pages, false, { kind: 'call', call: 'mm.pin()' });
        this.checkAlive('pin');
        this.checkAccess('pin', va, length, false);
        if (!pages.every((p) => this.cpuAccessible(p, false))) continue;
        this.populate(pages, true, `pinning ${pages.length} pages at ${hex(va)}`);
        this.stats.add('pinnedPages', pages.length);
        return this.pins.pin(pages, true);
      } finally {
        hold.release();
      }
    }
    throw new HmmError('EBUSY', `pin ${hex(va)}: the pages kept moving away`, va);
  }

  /**
   * madvise: `dontneed` drops the pages wherever they live (RAM and device frames freed, device
   * mappings invalidated first) and the next touch is demand-zero; pages of a shared mapping
   * keep their data (the shared object's) and lose only their device copies, as MADV_DONTNEED
   * on shared memory. `free` (private mappings only, MADV_FREE) lets the pages go: device-private
   * ones are dropped now, RAM ones when system RAM runs short, unless written first; a later
   * read sees the old bytes or zeros, never anything else. `willneed` brings the range into RAM
   * (device-private pages home, held copies written back). The range must be mapped (ENOMEM
   * names the first hole); placement advice is `advise`.
   * @throws {@link HmmError} EINVAL: an unaligned address, a bad length or advice, 'free' on a shared mapping; or the address space was destroyed.
   * @throws {@link HmmError} ENOMEM: a page of the range is not mapped, or ('willneed') system RAM is exhausted.
   * @throws {@link HmmError} EBUSY: devices kept taking the pages.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async madvise(va: number, length: number, advice: 'dontneed' | 'free' | 'willneed'): Promise<void> {
    this.checkAlive('madvise');
    const { start, end } = this.pageRange('madvise', va, length);
    if (advice !== 'dontneed' && advice !== 'free' && advice !== 'willneed')
      throw new HmmError('EINVAL', `madvise ${hex(va)}: advice ${String(advice)} is not 'dontneed', 'free' or 'willneed'`, va);
    const checkLayout = (): void => {
      const hole = this.vmas.firstHole(start, end);
      if (hole >= 0) throw new HmmError('ENOMEM', `madvise: page at ${hex(hole * PAGE_SIZE)} is not mapped`, hole * PAGE_SIZE);
      if (advice === 'free') {
        const shared = this.vmas.overlapping(start, end).find((v) => v.shared);
        if (shared)
          throw new HmmError(
            'EINVAL',
            `madvise ${hex(va)}: 'free' needs private memory; ${hex(shared.start * PAGE_SIZE)} is a shared mapping`,
            shared.start * PAGE_SIZE,
          );
      }
    };
    checkLayout();
    const pages = pageList(start, end - start);
    if (advice === 'willneed') {
      // As a CPU access brings pages home: after the devices' operations that hold them, and
      // holding devices off meanwhile (without that, a kernel's fault service and this took the
      // pages from each other until one gave up). It is advice: pages that a device takes again
      // at once stay there (Linux never fails MADV_WILLNEED for contention); lost data is still EPOISON.
      const held = this.holdsEnded(pages, isDeviceHold);
      if (held) await held;
      this.checkAlive('madvise');
      checkLayout();
      const hold = this.holds.hold(CPU_HOLDER, pages, 0);
      try {
        await this.faultPages(pages, false, { kind: 'call', call: "mm.madvise('willneed')" });
      } catch (e) {
        if (!(e instanceof HmmError && e.code === 'EBUSY')) throw e;
      } finally {
        hold.release();
      }
      return;
    }
    // No page moving and none held by a device, checked in the same turn as the change: a held
    // copy is written back first (it may be newer than RAM), and nothing may slip in between.
    for (let attempt = 0; ; attempt++) {
      await this.settle(start, end, 'held', { kind: 'call', call: `mm.madvise('${advice}')` });
      this.checkAlive('madvise');
      checkLayout();
      if (!this.anyHeldOrMoving(start, end)) break;
      if (attempt >= CPU_FAULT_RETRIES) throw new HmmError('EBUSY', `madvise ${hex(va)}: devices kept taking the pages`, va);
    }
    if (advice === 'dontneed') {
      this.zap(start, end, true);
      for (const v of this.vmas.overlapping(start, end)) if (!v.shared) this.pins.drop(v.start, v.end);
      this.ram.reap();
      return;
    }
    // free: device-private pages go now; RAM pages are marked (mark, then read the pin: a CPU
    // thread already inside a page may be writing it, and such a page is left unmarked).
    for (const p of pages) {
      const e = this.pageTable.get(p);
      if (pte.kind(e) === Kind.Device) this.zap(p, p + 1);
      else if (pte.kind(e) === Kind.Ram && !this.pins.isPinned(p)) {
        const marked = pte.withDup(e);
        this.pageTable.set(p, marked);
        if (this.isPinned(p)) this.pageTable.set(p, e);
        else this.lazyFree.set(p, marked);
      }
    }
  }

  /**
   * Page p was written (or is about to be): madvise('free') no longer lets it go.
   * @internal
   */
  endLazyFree(p: number): void {
    this.lazyFree.delete(p);
  }

  /**
   * System RAM is short: drop pages marked madvise('free') that nothing touched since, until
   * `want` frames are free again (or none is left). Returns the frames freed.
   */
  private reclaimLazyFree(want: number): number {
    let freed = 0;
    for (const [p, marked] of [...this.lazyFree]) {
      if (freed >= want) break;
      const e = this.pageTable.get(p);
      this.lazyFree.delete(p);
      if (e !== marked || this.isPinned(p) || this.holds.isHeld(p)) continue;
      const last = this.ram.refCount(pte.frame(e)) === 1;
      this.zap(p, p + 1);
      if (last) freed++;
    }
    return freed;
  }

  /**
   * The mapping that contains `va`, if any.
   * @internal
   */
  vmaAt(va: number): Vma | undefined {
    return this.vmas.find(Math.floor(va / PAGE_SIZE));
  }

  // ------------------------------------------------------------------ CPU access

  /**
   * A CPU read of `length` bytes at `va`. Device-private pages fault home first (migrate_to_ram),
   * held device copies are written back; untouched pages read as zeros.
   * @throws {@link HmmError} EINVAL: a bad address or length, or a range past 4 GiB; or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address of the range is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted bringing pages home.
   * @throws {@link HmmError} EBUSY: the pages kept moving away between the fault and the access.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async read(va: number, length: number): Promise<Uint8Array> {
    this.checkAlive('read');
    checkAddress('read', va);
    checkCount('read', 'length', length);
    checkRange('read', va, length);
    const out = new Uint8Array(length);
    await this.cpuAccess('read', va, length, false, (first, last) => {
      for (let p = first; p <= last; p++) {
        const e = this.pageTable.get(p);
        const pageStart = p * PAGE_SIZE;
        const from = Math.max(va, pageStart);
        const to = Math.min(va + length, pageStart + PAGE_SIZE);
        if (pte.kind(e) === Kind.Ram) {
          const base = pte.frame(e) * PAGE_SIZE;
          out.set(this.ram.bytes.subarray(base + from - pageStart, base + to - pageStart), from - va);
        } else if (pte.kind(e) === Kind.None) {
          this.pageTable.set(p, pte.zero); // a read maps the shared zero page
        }
        // Zero: the output is already zero.
      }
    });
    return out;
  }

  /**
   * A CPU write of `data` at `va`. Device pages fault home first and read-only device copies are
   * invalidated; untouched pages get zeroed frames, copy-on-write pages a copy.
   * @throws {@link HmmError} EINVAL: a bad address, data that is not a non-empty Uint8Array, or a range past 4 GiB; or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: an address of the range is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: an address of the range is mapped read-only.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted (nothing is written then).
   * @throws {@link HmmError} EBUSY: the pages kept moving away between the fault and the access.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async write(va: number, data: Uint8Array): Promise<void> {
    this.checkAlive('write');
    checkAddress('write', va);
    if (!(data instanceof Uint8Array)) throw new HmmError('EINVAL', `write: data at ${hex(va)} is not a Uint8Array`, va);
    checkCount('write', 'length', data.length);
    checkRange('write', va, data.length);
    await this.cpuAccess('write', va, data.length, true, (first, last) => {
      // Frames for untouched pages and copy-on-write breaks, all or nothing, so ENOMEM leaves
      // memory untouched.
      this.populate(pageList(first, last - first + 1), true, `writing ${data.length} bytes at ${hex(va)}`);
      for (let p = first; p <= last; p++) {
        const e = this.pageTable.get(p);
        const pageStart = p * PAGE_SIZE;
        const from = Math.max(va, pageStart);
        const to = Math.min(va + data.length, pageStart + PAGE_SIZE);
        const base = pte.frame(e) * PAGE_SIZE;
        this.ram.bytes.set(data.subarray(from - va, to - va), base + from - pageStart);
      }
    });
  }

  /**
   * A main-thread access to [va, va+length): wait for device holds, pin the pages, fault them
   * in, and run `access` on pages [first, last] in the same turn as the check that finds every
   * one of them CPU-accessible. That check comes after the last await: resuming from one is a
   * later microtask, and meanwhile a migration, a device copy or eviction may have made a page
   * Migrating, device-private or held; reading it then returned zeros, and writing it went
   * through a stale frame number. Such a page is faulted again.
   */
  private async cpuAccess(what: 'read' | 'write', va: number, length: number, write: boolean, access: (first: number, last: number) => void): Promise<void> {
    const first = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + length - 1) / PAGE_SIZE);
    const pages = pageList(first, last - first + 1);
    this.checkAccess(what, va, length, write);
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const held = this.waitForDeviceHolds(what, va, length, write, pages);
      if (held) await held;
      const hold = this.holds.hold(CPU_HOLDER, pages, 0);
      this.pinRange(first, last);
      try {
        await this.faultPages(pages, write, MAIN_THREAD_FAULT);
        this.checkAlive(what);
        this.checkAccess(what, va, length, write); // the mapping may have changed while we waited
        if (!pages.every((p) => this.cpuAccessible(p, write))) continue;
        access(first, last);
        return;
      } finally {
        this.unpinRange(first, last);
        hold.release();
      }
    }
    throw new HmmError('EBUSY', `${what} of ${length} bytes at ${hex(va)}: the pages kept moving away between the fault and the access`, va);
  }

  /**
   * May the CPU touch page p now: untouched, the zero page, or plain RAM (for a write, with no read-only device copies)?
   * @internal
   */
  cpuAccessible(p: number, write: boolean): boolean {
    const e = this.pageTable.get(p);
    switch (pte.kind(e)) {
      case Kind.None:
      case Kind.Zero:
        return true;
      case Kind.Ram:
        return !pte.isHeld(e) && !(write && pte.isDup(e));
      default:
        return false;
    }
  }

  // ------------------------------------------------------------------ fault handling

  /**
   * The slow path of a CPU thread's load or store (src/workers): everything the thread could
   * not do from the shared page table by itself. Checks the access as `read`/`write` do, brings
   * pages home, maps the zero page for a read, frames and copy-on-write breaks for a write.
   * The thread then re-checks the table and accesses the memory itself.
   * @internal
   */
  async threadFault(va: number, length: number, write: boolean, pinForThread = false): Promise<void> {
    const what = write ? 'store' : 'load';
    this.checkAlive(what);
    checkAddress(what, va);
    checkCount(what, 'length', length);
    checkRange(what, va, length);
    if (this.forking) await this.forking.catch(() => undefined);
    this.checkAlive(what);
    this.checkAccess(what, va, length, write);
    const first = Math.floor(va / PAGE_SIZE);
    const pages = pageList(first, Math.floor((va + length - 1) / PAGE_SIZE) - first + 1);
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const held = this.waitForDeviceHolds(what, va, length, write, pages);
      if (held) await held;
      const hold = this.holds.hold(CPU_HOLDER, pages, 0);
      try {
        await this.faultPages(pages, write, WORKER_FAULT);
        this.checkAlive(what);
        this.checkAccess(what, va, length, write);
        if (!pages.every((p) => this.cpuAccessible(p, write))) continue; // moved again meanwhile
        this.populate(pages, write, `a ${what} of ${length} bytes at ${hex(va)} from a CPU thread`);
        // The thread's turn: its pins, taken here in the same turn as the check, keep migrations
        // and device copies off the pages until it has made its access (it unpins then). Without
        // them a device could take the pages back before the thread woke, as often as it
        // faulted, and the thread would give up after its last trip.
        if (pinForThread) for (const p of pages) this.pageTable.pin(p);
        return;
      } finally {
        hold.release();
      }
    }
    throw new HmmError('EBUSY', `a ${what} of ${length} bytes at ${hex(va)} from a CPU thread: devices kept taking the pages first`, va);
  }

  /**
   * handle_mm_fault for a set of pages (CPU accesses and makeExclusive come here): after it,
   * every page is CPU-accessible (None, Zero or plain RAM; with `write`, no device copies), as
   * of its last check. A CPU access waits for device holds before it starts, and holds the
   * devices off the pages while it runs (CPU_HOLDER), so the devices wait for it in turn.
   * @internal
   */
  async faultPages(pages: readonly number[], write: boolean, cause: Cause = MAIN_THREAD_FAULT): Promise<void> {
    this.stats.recorder?.cpuAccess(this, pages, write, cause); // a recording's CPU event (src/replay/recorder.ts)
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      if (await this.faultPagesOnce(pages, write, cause)) return;
    }
    const at = (pages[0] ?? 0) * PAGE_SIZE;
    throw new HmmError('EBUSY', `CPU access to ${pages.length} pages from ${hex(at)} kept being raced by migrations`, at);
  }

  /**
   * One pass of faultPages: start what the pages need (bring them home, revoke held copies,
   * invalidate read-only copies for a write) and wait for it. True when nothing was needed.
   * rangeFault walks its range again after each pass, as hmm_range_fault does after
   * handle_mm_fault: by then a page may have become valid for the device asking (another of
   * its own faults mapped it), and a second pass here would have revoked that device's own copy.
   * @internal
   */
  async faultPagesOnce(pages: readonly number[], write: boolean, cause: Cause = MAIN_THREAD_FAULT): Promise<boolean> {
    // A range names its first poisoned page (design-notes §14), whichever device call would
    // fail first: ask for that page alone (EPOISON from its device), before anything moves.
    let firstPoisoned = -1;
    for (const p of pages) if (this.poisoned(p) && (firstPoisoned < 0 || p < firstPoisoned)) firstPoisoned = p;
    if (firstPoisoned >= 0) await this.collectPending([firstPoisoned], write, cause);
    const pending = this.collectPending(pages, write, cause);
    if (pending === null) return true;
    this.stats.add('cpuFaults');
    this.stats.trace.record({ kind: 'cpu-fault', pages: pages.length, va: (pages[0] ?? 0) * PAGE_SIZE, mm: this.id, detail: write ? 'write' : 'read' });
    await pending;
    return false;
  }

  /** What the CPU must wait for before it may touch [start, end); null when nothing. */
  private collectPending(pages: readonly number[], write: boolean, cause: Cause): Promise<unknown> | null {
    const byDevice = new Map<number, number[]>();
    const heldBy = new Map<number, number[]>();
    const waits: Promise<unknown>[] = [];
    for (const p of pages) {
      const e = this.pageTable.get(p);
      switch (pte.kind(e)) {
        case Kind.Device:
          push(byDevice, pte.device(e), p);
          break;
        case Kind.Migrating:
          waits.push(this.inflight.get(p) ?? Promise.resolve());
          break;
        case Kind.Ram:
          if (pte.isHeld(e)) push(heldBy, pte.heldBy(e), p);
          else if (write && pte.isDup(e)) {
            this.lazyFree.delete(p); // a write ends madvise('free')
            // Read-only device copies must go before the CPU changes the page, in every
            // address space that maps the frame.
            for (const mm of this.sharers(p, pte.frame(e))) {
              mm.notifier.invalidate({ start: p, end: p + 1, event: 'clear', owner: null });
              this.stats.add('invalidations');
              mm.pageTable.set(p, pte.plainRam(mm.pageTable.get(p)));
            }
          }
          break;
        default:
          break;
      }
    }
    if (byDevice.size === 0 && heldBy.size === 0 && waits.length === 0) return null;
    for (const [dev, pages] of byDevice) waits.push(this.pagemap(dev, pages[0]!).migrateToRam(this, pages, cause));
    for (const [dev, pages] of heldBy) waits.push(this.revokeHeld(dev, pages, cause));
    return allSettled(waits);
  }

  /**
   * Revoke a device's held copies of pages (write them back). A copy made through another
   * address space of the fork family is revoked there; then no family member keeps the flag.
   * @internal
   */
  async revokeHeld(dev: number, pages: readonly number[], cause: Cause = MAIN_THREAD_FAULT): Promise<void> {
    // A write-back of the copy already under way through its owner (a CPU fault there, or the
    // owner's destroy(), which starts one it cannot wait for) must land first: clearing our
    // flag before it does would let this side read the frame without the device's writes.
    const underWay = pages.map((p) => this.copyOwner.get(p)?.inflight.get(p)).filter((w) => w !== undefined);
    if (underWay.length > 0) await Promise.all(underWay);
    // The owner writes the copy back, and clears every sharer's flag in the same turn as it
    // lands (HmmDevice.revoke). A flag whose owner no longer holds the page (it let go of it)
    // is revoked through this address space: there is no copy left, only the flag to clear.
    const byOwner = new Map<AddressSpace, number[]>();
    for (const p of pages) {
      const owner = this.copyOwner.get(p);
      const x = owner?.pageTable.get(p) ?? 0;
      const mm = owner && owner.family === this.family && !owner.destroyed && pte.isHeld(x) && pte.heldBy(x) === dev ? owner : this;
      const list = byOwner.get(mm);
      if (list) list.push(p);
      else byOwner.set(mm, [p]);
    }
    await allSettled([...byOwner].map(([mm, ps]) => this.pagemap(dev, ps[0]!).revoke(mm, ps, cause)));
  }

  /**
   * Address spaces whose entry for page p points at RAM frame `frame`: this one, and fork
   * relatives sharing the frame through a shared mapping (private frames break on write).
   * @internal
   */
  sharers(p: number, frame: number): AddressSpace[] {
    if (this.family.size === 1 || this.ram.refCount(frame) < 2) return [this];
    const out: AddressSpace[] = [];
    for (const mm of this.family) {
      const e = mm.pageTable.get(p);
      if (pte.kind(e) === Kind.Ram && pte.frame(e) === frame) out.push(mm);
    }
    return out;
  }

  /**
   * Does a live fork relative map the RAM frame this address space maps at page p, at p (the
   * only place a relative can map it: shared frames do not move while relatives map them)?
   * Asked with p settled here (not migrating, not held by a live device): a relative that shares
   * the frame is not migrating it then either (isolation and held copies flag every sharer), so
   * only its RAM entries count (a Migrating entry's frame may be a device frame's number).
   */
  private relativeMaps(p: number): boolean {
    const e = this.pageTable.get(p);
    if (pte.kind(e) !== Kind.Ram || this.ram.refCount(pte.frame(e)) < 2) return false;
    for (const mm of this.family) {
      if (mm === this || mm.destroyed) continue;
      const x = mm.pageTable.get(p);
      if (pte.kind(x) === Kind.Ram && pte.frame(x) === pte.frame(e)) return true;
    }
    return false;
  }

  /**
   * Demand-zero and copy-on-write for pages already CPU-accessible: a read maps the zero page;
   * a write gets a zeroed frame, or a private copy of a frame still shared with a fork
   * relative. All frames are allocated before any entry changes, so ENOMEM changes nothing.
   * @internal
   */
  populate(pages: readonly number[], write: boolean, forWhat?: string): void {
    // Pages about to be written are not madvise('free') any more; and reclaiming under the
    // allocation below must not take one of them from under this call.
    if (write) for (const p of pages) this.lazyFree.delete(p);
    this.ram.reap(); // frames whose unmapping waited for a CPU thread to leave them
    const fresh: number[] = [];
    const cow: number[] = [];
    for (const p of pages) {
      const e = this.pageTable.get(p);
      const k = pte.kind(e);
      if (k === Kind.None || (write && k === Kind.Zero)) fresh.push(p);
      // A copy-on-write break only of a page the CPU may write now: a device's held copy is
      // newer than the frame, and read-only copies would keep the old bytes (callers fault
      // such pages first, and re-check after; one that moved meanwhile is left for them).
      else if (write && this.cpuAccessible(p, true) && k === Kind.Ram && this.ram.refCount(pte.frame(e)) > 1 && !this.vmas.find(p)?.shared) cow.push(p);
    }
    if (!write) {
      for (const p of fresh) this.pageTable.set(p, pte.zero);
      return;
    }
    // A write to an untouched 2 MiB block of a huge mapping gets a huge page in RAM (a THP): an
    // aligned run of 512 zeroed frames for the whole block, when RAM has one free.
    const runs = this.hugeRunsFor(fresh);
    const small = runs.size > 0 ? fresh.filter((p) => !runs.has(p >>> 9)) : fresh;
    const n = small.length + cow.length;
    if (n === 0 && runs.size === 0) return;
    const at = (small[0] ?? cow[0] ?? fresh[0]!) * PAGE_SIZE;
    let frames: number[];
    try {
      frames = this.ram.allocMany(n, forWhat ?? `a write fault at ${hex(at)}`);
    } catch (e) {
      for (const base of runs.values()) for (let k = 0; k < PAGES_PER_HUGE; k++) this.ram.free(base + k);
      throw e;
    }
    for (const [b, base] of runs) {
      for (let k = 0; k < PAGES_PER_HUGE; k++) this.pageTable.set(b * PAGES_PER_HUGE + k, pte.ram(base + k));
      this.ramHuge.add(b);
    }
    small.forEach((p, i) => this.pageTable.set(p, pte.ram(frames[i]!)));
    cow.forEach((p, i) => {
      this.ramHuge.delete(p >>> 9); // a copy of one page: the block is not one run any more
      const old = pte.frame(this.pageTable.get(p));
      const copy = frames[small.length + i]!;
      this.ram.frame(copy).set(this.ram.frame(old));
      this.pageTable.set(p, pte.ram(copy));
      this.ram.free(old); // one reference fewer; the relative keeps the frame
    });
    if (cow.length > 0) this.stats.add('cowBreaks', cow.length);
  }

  /**
   * The 2 MiB blocks of huge mappings that `fresh` pages (about to get frames for a write) fall
   * in and that are untouched as a whole (every entry none or the zero page), each with a run
   * of 512 frames taken for it; a block RAM has no run for gets 4 KiB frames instead.
   */
  private hugeRunsFor(fresh: readonly number[]): Map<number, number> {
    const runs = new Map<number, number>();
    const seen = new Set<number>();
    for (const p of fresh) {
      const b = p >>> 9;
      if (seen.has(b)) continue;
      seen.add(b);
      const first = b * PAGES_PER_HUGE;
      const vma = this.vmas.find(p);
      if (!vma?.huge || vma.start > first || vma.end < first + PAGES_PER_HUGE) continue;
      let untouched = true;
      for (let q = first; q < first + PAGES_PER_HUGE && untouched; q++) {
        const k = pte.kind(this.pageTable.get(q));
        untouched = k === Kind.None || k === Kind.Zero;
      }
      if (!untouched) continue;
      const base = this.ram.allocRun(PAGES_PER_HUGE);
      if (base === null) break; // fragmented: 4 KiB frames
      runs.set(b, base);
    }
    return runs;
  }

  /** Is any page of [start, end) migrating, or held by a live device? */
  private anyHeldOrMoving(start: number, end: number): boolean {
    for (let p = start; p < end; p++) {
      const e = this.pageTable.get(p);
      if (pte.kind(e) === Kind.Migrating || (pte.isHeld(e) && !this.poisoned(p))) return true;
    }
    return false;
  }

  /** Wait until no page in [start, end) is migrating or (for 'held') held by a device. */
  private async settle(start: number, end: number, what: 'held', cause: Cause): Promise<void> {
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const heldBy = new Map<number, number[]>();
      const waits: Promise<unknown>[] = [];
      for (let p = start; p < end; p++) {
        const e = this.pageTable.get(p);
        if (pte.kind(e) === Kind.Migrating) waits.push(this.inflight.get(p) ?? Promise.resolve());
        else if (what === 'held' && pte.isHeld(e) && !this.poisoned(p)) push(heldBy, pte.heldBy(e), p); // a lost device holds nothing back
      }
      for (const [dev, pages] of heldBy) waits.push(this.revokeHeld(dev, pages, cause));
      if (waits.length === 0) return;
      await allSettled(waits);
    }
    throw new HmmError('EBUSY', `pages at ${hex(start * PAGE_SIZE)} kept migrating`, start * PAGE_SIZE);
  }

  /**
   * Was page p's only current data on a device that is now lost? Its device-private pages, and
   * copies it held writable that a kernel may have changed (clean ones were let go when the loss
   * was seen). Every touch of such a page is EPOISON until it is unmapped.
   * @internal
   */
  poisoned(p: number): boolean {
    const e = this.pageTable.get(p);
    const dev = pte.kind(e) === Kind.Device ? pte.device(e) : pte.isHeld(e) ? pte.heldBy(e) : -1;
    if (dev < 0) return false;
    const pm = this.pagemaps()[dev];
    return !pm || pm.lostReason !== undefined;
  }

  private pagemap(dev: number, page: number): DevicePagemap {
    const pm = this.pagemaps()[dev];
    if (!pm) throw new HmmError('EPOISON', `page ${hex(page * PAGE_SIZE)} lives on device ${dev}, which is gone`, page * PAGE_SIZE);
    return pm;
  }

  /**
   * Every byte of [va, va+len) must be mapped with the needed permission; nothing changes otherwise.
   * @internal
   */
  checkAccess(what: string, va: number, len: number, write: boolean): void {
    let p = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + len - 1) / PAGE_SIZE);
    while (p <= last) {
      const vma = this.vmas.find(p);
      const at = Math.max(va, p * PAGE_SIZE);
      if (!vma) throw new HmmError('EFAULT', `${what}: address ${hex(at)} is not mapped`, at);
      if (!canRead(vma.prot)) throw new HmmError('EFAULT', `${what}: address ${hex(at)} is mapped with prot 'none'`, at);
      if (write && !canWrite(vma.prot)) throw new HmmError('EPERM', `${what}: address ${hex(at)} is mapped read-only`, at);
      p = vma.end;
    }
  }

  /**
   * Is 2 MiB block b a huge page in system RAM (a THP)? Its 512 entries, inside one huge
   * mapping, all in RAM on one aligned run of frames. Derived from the table, not remembered:
   * whatever splits it (a partial munmap or mprotect, a copy-on-write break of one page, a page
   * migrating away alone) makes this false by itself.
   * @internal
   */
  isRamHuge(b: number): boolean {
    if (!this.ramHuge.has(b)) return false;
    if (this.stillRamHuge(b)) return true;
    this.ramHuge.delete(b); // split since: it stays 4 KiB pages, even if they line up again
    return false;
  }

  /**
   * Block b was given an aligned 2 MiB run of RAM frames as a whole (a THP).
   * @internal
   */
  markRamHuge(b: number): void {
    this.ramHuge.add(b);
  }

  /**
   * A page of block b left its frame (migrated, dropped, copied on write): the block is split.
   * @internal
   */
  splitRamHuge(b: number): void {
    this.ramHuge.delete(b);
  }

  private stillRamHuge(b: number): boolean {
    const first = b * PAGES_PER_HUGE;
    const vma = this.vmas.find(first);
    if (!vma?.huge || vma.start > first || vma.end < first + PAGES_PER_HUGE) return false;
    const e0 = this.pageTable.get(first);
    const base = pte.frame(e0);
    if (pte.kind(e0) !== Kind.Ram || base % PAGES_PER_HUGE !== 0) return false;
    for (let i = 1; i < PAGES_PER_HUGE; i++) {
      const e = this.pageTable.get(first + i);
      if (pte.kind(e) !== Kind.Ram || pte.frame(e) !== base + i) return false;
    }
    return true;
  }

  /**
   * Migrations report here; a page that starts thrashing is counted and traced.
   * @internal
   */
  noteMigration(pages: readonly number[], dir: Direction): void {
    const now = performance.now();
    let thrashing = 0;
    for (const p of pages) if (this.thrash.record(p, dir, now)) thrashing++;
    if (thrashing > 0) {
      this.stats.add('thrashEvents', thrashing);
      this.stats.trace.record({
        kind: 'thrash',
        pages: thrashing,
        va: pages[0]! * PAGE_SIZE,
        mm: this.id,
        detail: `pinned in system RAM for ${this.thrash.config.pinMs} ms`,
      });
    }
  }

  // ------------------------------------------------------------------ internals

  private unmapPages(start: number, end: number): void {
    if (this.family.size > 1) this.startSharedWriteBacks(start, end);
    this.zap(start, end);
    this.vmas.remove(start, end);
    this.syncAccess(start, end);
    this.thrash.forget(start, end);
    this.pins.drop(start, end);
    this.ram.reap(); // frames whose unmapping waited for a CPU thread to leave them
  }

  /**
   * mremap's move: the entries of n pages from `from` go to `to` (which holds nothing), each
   * keeping its RAM frame or device frame; the old pages are left untouched (none). Devices drop
   * their mappings of the old range first, read-only copies with them; nothing is moving or held
   * (the caller settled that in this same turn).
   */
  private moveEntries(from: number, to: number, n: number): void {
    this.notifier.invalidate({ start: from, end: from + n, event: 'unmap', owner: null });
    this.stats.add('invalidations');
    const byDevice = new Map<number, { frames: number[]; to: number[] }>();
    const olds: number[] = [];
    const news: number[] = [];
    // huge pages in RAM move whole; one that lands 2 MiB aligned is still one
    const hugeBlocks: number[] = [];
    for (let b = Math.ceil(from / PAGES_PER_HUGE); (b + 1) * PAGES_PER_HUGE <= from + n; b++) if (this.isRamHuge(b)) hugeBlocks.push(b);
    for (let i = 0; i < n; i++) {
      const p = from + i;
      const q = to + i;
      const e = this.pageTable.get(p);
      this.lazyFree.delete(p);
      this.copyOwner.delete(p);
      olds.push(p);
      news.push(q);
      switch (pte.kind(e)) {
        case Kind.Ram:
          // The copies went with the invalidation; a copy held by a lost device did not: its
          // data is gone, and the page stays poisoned where it moves (as a hwpoison entry does).
          this.pageTable.set(q, this.poisoned(p) ? e : pte.plainRam(e));
          break;
        case Kind.Device: {
          this.pageTable.set(q, e);
          let d = byDevice.get(pte.device(e));
          if (!d) byDevice.set(pte.device(e), (d = { frames: [], to: [] }));
          d.frames.push(pte.frame(e));
          d.to.push(q);
          break;
        }
        case Kind.Zero:
          this.pageTable.set(q, pte.zero);
          break;
        default:
          break;
      }
      this.pageTable.set(p, pte.none);
    }
    for (const [dev, d] of byDevice) this.pagemaps()[dev]?.moved(this, d.frames, d.to);
    for (const b of hugeBlocks) {
      this.ramHuge.delete(b);
      const moved = b * PAGES_PER_HUGE - from + to;
      if (moved % PAGES_PER_HUGE === 0) this.ramHuge.add(moved / PAGES_PER_HUGE);
    }
    this.pins.move(olds, news);
    this.thrash.forget(from, from + n);
  }

  /**
   * Drop what [start, end) holds: devices drop their mappings first (the notifier), then RAM
   * frames are freed (after a CPU thread inside or a pin holder lets go), device-private frames
   * given back, entries none. With `keepShared` (madvise), pages of shared mappings keep their
   * frames, the shared object's data, and lose only their device copies.
   */
  private zap(start: number, end: number, keepShared = false): void {
    this.notifier.invalidate({ start, end, event: 'unmap', owner: null });
    this.stats.add('invalidations');
    const byDevice = new Map<number, number[]>();
    for (let p = start; p < end; p++) {
      const e = this.pageTable.get(p);
      this.lazyFree.delete(p);
      if (keepShared && this.vmas.find(p)?.shared) {
        // its copies are gone; a copy held by a lost device had the object's only current data:
        // that stays lost (poisoned), it is not the frame's older bytes
        if (pte.kind(e) === Kind.Ram && !this.poisoned(p)) {
          // Read-only device copies of the frame are flagged in every address space that maps
          // it, so that a write from any side finds them: the relatives' copies go too, with
          // their flags, or this side's next write would leave them mapped with the old bytes.
          if (pte.isDup(e))
            for (const mm of this.sharers(p, pte.frame(e))) {
              const x = mm.pageTable.get(p);
              if (mm === this || !pte.isDup(x) || pte.isHeld(x)) continue;
              mm.notifier.invalidate({ start: p, end: p + 1, event: 'clear', owner: null });
              this.stats.add('invalidations');
              mm.pageTable.set(p, pte.plainRam(x));
            }
          this.pageTable.set(p, pte.plainRam(e));
        }
        continue;
      }
      switch (pte.kind(e)) {
        case Kind.Ram: {
          this.ramHuge.delete(p >>> 9);
          // Entry first, then the pin: a CPU thread pins, then reads the entry, so either it
          // sees the page gone or we see it inside its access and free the frame after it.
          this.pageTable.set(p, pte.none);
          // A user's pin (mm.pin) keeps the frame for its holders until they unpin.
          const holders = this.pins.holders(p);
          const threadInside = this.pageTable.isPinned(p);
          if (threadInside || holders.length > 0)
            this.ram.freeWhen(pte.frame(e), () => Atomics.load(this.pageTable.pins, p) === 0 && holders.every((h) => h.isReleased));
          else this.ram.free(pte.frame(e));
          this.copyOwner.delete(p);
          continue;
        }
        case Kind.Device:
          push(byDevice, pte.device(e), p);
          continue; // the device clears the entry with its frame
        case Kind.Migrating:
          break; // the migration owns both frames; it sees the entry changed and frees them
        default:
          break;
      }
      this.pageTable.set(p, pte.none);
    }
    for (const [dev, pages] of byDevice) {
      const pm = this.pagemaps()[dev];
      if (pm) pm.discard(this, pages);
      for (const p of pages) this.pageTable.set(p, pte.none);
    }
  }

  /**
   * A device's held copy of a frame a fork relative also maps (a shared mapping) carries that
   * relative's data too. Unmapping the page here (munmap, MAP_FIXED, destroy) cannot wait for
   * a device, so the copy's write-back starts now: it takes the copy off the device at once
   * (entries Migrating, the download queued after any kernel already submitted), the unmapping
   * hands this side's frame reference to it, it writes the bytes into the frame the relatives
   * still map, and their accesses wait for it (revokeHeld). If it fails on a live device, a
   * relative takes the copy over (HmmDevice.revoke); on a lost device their flags make the
   * page EPOISON. Either way its rejection is nobody's to report here.
   */
  private startSharedWriteBacks(start: number, end: number): void {
    const heldBy = new Map<number, number[]>();
    for (const v of this.vmas.overlapping(start, end))
      for (let p = Math.max(start, v.start); p < Math.min(end, v.end); p++) {
        const e = this.pageTable.get(p);
        if (pte.isHeld(e) && this.ram.refCount(pte.frame(e)) > 1 && !this.poisoned(p)) push(heldBy, pte.heldBy(e), p);
      }
    for (const [dev, pages] of heldBy) void this.revokeHeld(dev, pages, { kind: 'call', call: 'unmapping a page relatives share' }).catch(() => undefined);
  }

  /** Keep the access bytes CPU threads read equal to the VMAs over [start, end). */
  private syncAccess(start: number, end: number): void {
    const access = this.pageTable.access;
    access.fill(0, start, end);
    for (const v of this.vmas.overlapping(start, end)) {
      const bits = (canRead(v.prot) ? ACCESS_READ : 0) | (canWrite(v.prot) ? ACCESS_WRITE : 0) | (v.shared ? ACCESS_SHARED : 0);
      // prot 'none' gives 0, as a hole does: threads ask the main thread, which says EFAULT
      access.fill(bits, v.start, v.end);
    }
  }

  // ------------------------------------------------------------------ fork

  /**
   * fork(): a child address space with the same mappings. Private pages are shared
   * copy-on-write (the first write on either side copies the frame); shared mappings stay
   * shared, every page given a frame now so both sides see later writes. Pages that live on a
   * device, or are held by one, come home first: the child must see their current data, and
   * RAM is where copy-on-write happens. CPU threads of this address space are held off (slow
   * path) while the table is copied, and in-flight ones are waited for.
   * @throws {@link HmmError} EINVAL: the address space was destroyed, or was not made by a System.
   * @throws {@link HmmError} EBUSY: it is already forking, a CPU thread's access did not finish within 10 s, or pages kept moving to devices.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted (pages brought home, frames for shared mappings, copies of pinned pages).
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async fork(): Promise<AddressSpace> {
    this.checkAlive('fork');
    if (!this.spawn) throw new HmmError('EINVAL', `fork: address space ${this.id} was not made by a System`);
    if (this.forking) throw new HmmError('EBUSY', `fork: address space ${this.id} is already forking`);
    let finish!: () => void;
    this.forking = new Promise<void>((r) => (finish = r));
    Atomics.store(this.pageTable.ctl, CTL_FORKING, 1);
    // Devices keep off the pages while fork brings them home and copies the table (a device
    // hold, as a fault service takes): a kernel faulting them back each time would starve it.
    const hold = this.holds.hold(
      FORK_HOLDER,
      [...this.vmas.all()].flatMap((v) => pageList(v.start, v.end - v.start)),
      0,
    );
    try {
      for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
        await this.drainThreads();
        this.checkAlive('fork');
        const away: number[] = [];
        for (const v of this.vmas.all())
          for (let p = v.start; p < v.end; p++) {
            const e = this.pageTable.get(p);
            const k = pte.kind(e);
            if (k === Kind.Device || k === Kind.Migrating || pte.isHeld(e)) away.push(p);
          }
        if (away.length > 0) {
          await this.faultPages(away, false, { kind: 'call', call: 'mm.fork()' });
          this.checkAlive('fork');
          continue;
        }
        // Every page is in RAM, the zero page or untouched; from here on nothing awaits.
        const sharedHoles: number[] = [];
        for (const v of this.vmas.all())
          if (v.shared) for (let p = v.start; p < v.end; p++) if (pte.kind(this.pageTable.get(p)) !== Kind.Ram) sharedHoles.push(p);
        this.populate(sharedHoles, true, `fork of address space ${this.id} (frames for its shared mappings)`);
        // A pinned private page is copied for the child now, not shared copy-on-write: a later
        // write by the parent would otherwise move the parent's page off the frame its pinner
        // holds (the kernel copies such pages at fork too).
        const pinned: number[] = [];
        for (const v of this.vmas.all())
          if (!v.shared) for (let p = v.start; p < v.end; p++) if (this.pins.isPinned(p) && pte.kind(this.pageTable.get(p)) === Kind.Ram) pinned.push(p);
        const copies = this.ram.allocMany(pinned.length, `fork of address space ${this.id} (copies of its pinned pages)`);
        return this.copyInto(this.spawn(), new Map(pinned.map((p, i) => [p, copies[i]!])));
      }
      throw new HmmError('EBUSY', `fork: pages of address space ${this.id} kept moving to devices`);
    } finally {
      hold.release();
      Atomics.store(this.pageTable.ctl, CTL_FORKING, 0);
      this.forking = null;
      finish();
    }
  }

  private copyInto(child: AddressSpace, pinnedCopies: ReadonlyMap<number, number>): AddressSpace {
    for (const b of this.ramHuge) if (this.isRamHuge(b)) child.ramHuge.add(b); // the child maps the same runs
    child.family = this.family;
    this.family.add(child);
    child.thrash.config = this.thrash.config;
    for (const v of this.vmas.all()) {
      child.vmas.insert({ ...v });
      for (let p = v.start; p < v.end; p++) {
        const e = this.pageTable.get(p);
        const copy = pinnedCopies.get(p);
        if (copy !== undefined) {
          this.ram.frame(copy).set(this.ram.frame(pte.frame(e)));
          child.pageTable.set(p, pte.ram(copy));
        } else if (pte.kind(e) === Kind.Ram) {
          this.ram.share(pte.frame(e));
          // No device has a copy made for the child. But a shared frame's read-only device
          // copies are flagged in every address space that maps it, so that a write from any
          // side invalidates them (collectPending): the child's entry carries the flag too.
          const shared = v.shared && pte.isDup(e);
          child.pageTable.set(p, shared ? pte.withDup(pte.ram(pte.frame(e))) : pte.ram(pte.frame(e)));
        } else child.pageTable.set(p, pte.kind(e) === Kind.Zero ? pte.zero : pte.none);
      }
      child.syncAccess(v.start, v.end);
    }
    this.stats.add('forks');
    return child;
  }

  /** Wait until no CPU thread is inside an access to this address space. */
  private async drainThreads(): Promise<void> {
    const deadline = performance.now() + FORK_DRAIN_MS;
    for (;;) {
      let busy = -1;
      for (const v of this.vmas.all()) {
        for (let p = v.start; p < v.end && busy < 0; p++) if (this.pageTable.isPinned(p)) busy = p;
        if (busy >= 0) break;
      }
      if (busy < 0) return;
      if (performance.now() > deadline)
        throw new HmmError('EBUSY', `fork: a CPU access to ${hex(busy * PAGE_SIZE)} did not finish within ${FORK_DRAIN_MS} ms`, busy * PAGE_SIZE);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  private pageRange(what: string, va: number, length: number): { start: number; end: number } {
    const a = checkPageAligned(what, va);
    checkCount(what, 'length', length);
    const bytes = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    checkRange(what, a, bytes);
    return { start: a / PAGE_SIZE, end: (a + bytes) / PAGE_SIZE };
  }

  private pinRange(first: number, last: number): void {
    for (let p = first; p <= last; p++) this.mainPins.set(p, (this.mainPins.get(p) ?? 0) + 1);
  }
  private unpinRange(first: number, last: number): void {
    for (let p = first; p <= last; p++) {
      const n = (this.mainPins.get(p) ?? 1) - 1;
      if (n > 0) this.mainPins.set(p, n);
      else this.mainPins.delete(p);
    }
    if (this.unpinWaiters.length > 0) for (const wake of this.unpinWaiters.splice(0)) wake();
  }

  /**
   * Resolves when no main-thread read or write has any of `pages` pinned (at once when none
   * has). Such an access waits only for migrations and write-backs, never for a device's
   * operation (it lets go of its pins to wait for a device hold), so a device may wait here.
   * @internal
   */
  async mainUnpinned(pages: readonly number[]): Promise<void> {
    while (pages.some((p) => this.mainPins.has(p))) await new Promise<void>((r) => this.unpinWaiters.push(r));
  }

  /**
   * Is a CPU access in flight on page p: a CPU thread inside it (pins in the shared table), or
   * a main-thread read/write waiting for other pages of its range? Such a page does not migrate.
   * @internal
   */
  isPinned(p: number): boolean {
    return this.pageTable.isPinned(p) || this.mainPins.has(p) || this.pins.isPinned(p);
  }

  /**
   * Is a main-thread read or write in flight on page p (pinned across its awaits)?
   * @internal
   */
  isMainPinned(p: number): boolean {
    return this.mainPins.has(p);
  }

  /**
   * EINVAL once destroy() ran; devices and mirrors ask too before they touch this address space.
   * @internal
   */
  checkAlive(what: string): void {
    if (this.destroyed) throw new HmmError('EINVAL', `${what}: address space ${this.id} was destroyed`);
  }

  /**
   * Unmap everything and refuse further use (process exit): later calls are EINVAL, its mirrors
   * close and its CPU threads' fault mailbox stops. Idempotent; throws nothing.
   */
  destroy(): void {
    if (this.destroyed) return;
    // (held copies of frames relatives still map are written back: startSharedWriteBacks)
    for (const v of [...this.vmas.all()]) this.unmapPages(v.start, v.end);
    this.notifier.invalidate({ start: 0, end: VA_PAGES, event: 'release', owner: null });
    this.family.delete(this);
    this.destroyed = true;
    for (const hook of this.destroyHooks.splice(0)) hook();
  }

  /**
   * The hold registries that govern page p: this address space's, and for a page of a shared
   * mapping, those of the fork relatives that map the same frame too. One frame has one set of
   * turns: two relatives' devices taking a shared page from each other would never end.
   */
  private holdRegistries(p: number): DeviceHolds[] {
    if (this.family.size === 1 || !this.vmas.find(p)?.shared) return [this.holds];
    const e = this.pageTable.get(p);
    const k = pte.kind(e);
    if (k !== Kind.Ram && k !== Kind.Migrating) return [this.holds];
    const out = [this.holds];
    for (const s of this.family) {
      if (s === this) continue;
      const x = s.pageTable.get(p);
      const kx = pte.kind(x);
      if ((kx === Kind.Ram || kx === Kind.Migrating) && pte.frame(x) === pte.frame(e) && s.vmas.find(p)?.shared) out.push(s.holds);
    }
    return out;
  }

  /**
   * Is page p held (this address space's holds, or a relative's on the same shared frame) by a hold `which` selects?
   * @internal
   */
  heldBy(p: number, which: (h: DeviceHold) => boolean): boolean {
    // (a space with no fork relatives has one registry: asked directly, as a fault round does per page)
    if (this.family.size === 1) return this.holds.some(p, which);
    return this.holdRegistries(p).some((r) => r.some(p, which));
  }

  /**
   * When every hold `which` selects on `pages` (and on the shared frames behind them) has ended; null when none.
   * @internal
   */
  holdsEnded(pages: readonly number[], which: (h: DeviceHold) => boolean): Promise<void> | null {
    const waits: Promise<void>[] = [];
    for (const p of pages)
      for (const r of this.holdRegistries(p)) {
        const w = r.ended([p], which);
        if (w) waits.push(w);
      }
    return waits.length > 0 ? Promise.all(waits).then(() => undefined) : null;
  }

  /**
   * A device servicing faults on `pages` holds CPU accesses and other devices off them until
   * its kernel has run once more (release() the result then), so a kernel under contention
   * always progresses: the pages it faulted in cannot be taken back between the fault service
   * and the relaunch (src/mm/deviceHolds.ts).
   * @internal
   */
  holdForDevice(device: number, pages: readonly number[], ticket = Infinity, opts: HoldOptions = {}): DeviceHold {
    return this.holds.hold(device, pages, ticket, opts);
  }

  /**
   * While a device holds any of `pages` for its relaunch (holdForDevice): a promise that waits
   * for it, then checks the access again. Null when nothing is held, so the caller goes on
   * without yielding (a read or write pins its pages in the same turn as the call). CPU
   * threads and the main thread's read and write all wait: a main-thread read that took the
   * pages back under a fault service made the relaunch fault again, and the device then
   * mapped copies of pages the read still pinned, which the read revoked, round after round,
   * until the fault service gave up with EBUSY.
   */
  private waitForDeviceHolds(what: string, va: number, length: number, write: boolean, pages: readonly number[]): Promise<void> | null {
    const held = this.holdsEnded(pages, isDeviceHold);
    if (!held) return null;
    return held.then(() => {
      this.checkAlive(what);
      this.checkAccess(what, va, length, write);
    });
  }

  /**
   * Run `hook` when this address space is destroyed (the CPU-thread mailbox stops then).
   * @internal
   */
  onDestroy(hook: () => void): void {
    if (this.destroyed) hook();
    else this.destroyHooks.push(hook);
  }

  /** Whether destroy() ran. */
  get isDestroyed(): boolean {
    return this.destroyed;
  }
}

/**
 * Wait for every one, then throw the first failure. A fault that fails on one page (EPOISON from
 * a lost device) must not return while its other pages are still moving: Promise.all would, and
 * the caller would find them Migrating after the error.
 */
async function allSettled(waits: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(waits);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function push(m: Map<number, number[]>, k: number, v: number): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}
