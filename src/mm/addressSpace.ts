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
/** How long fork() waits for in-flight CPU thread accesses to finish before EBUSY. */
const FORK_DRAIN_MS = 10_000;

export class AddressSpace {
  readonly pageTable = new CpuPageTable();
  readonly vmas = new VmaList();
  readonly notifier = new IntervalNotifier();
  /** Pages being migrated: a CPU access waits for the migration instead of tearing data. */
  readonly inflight = new Map<number, Promise<void>>();
  /** Pages bouncing between RAM and devices (policy: migrations report, the mirror asks). */
  readonly thrash = new ThrashDetector();
  /**
   * Address spaces related by fork. A shared mapping's frames are mapped by several of them;
   * device copies of such a frame are flagged in every one, so a touch from any side finds them.
   */
  family: Set<AddressSpace> = new Set([this]);
  /** Pages whose held device copy was made through another family member (it owns the copy). */
  readonly copyOwner = new Map<number, AddressSpace>();
  /** Set while fork() runs; thread faults wait for it. */
  private forking: Promise<unknown> | null = null;
  private readonly destroyHooks: (() => void)[] = [];
  /** Pages a device is servicing a fault on, until its kernel has run: CPU accesses and other devices wait. */
  readonly holds: DeviceHolds;
  /**
   * Pins of main-thread reads and writes. They are taken across awaits but never observed by
   * another thread, so they live here; CPU threads pin in the shared table instead.
   */
  private readonly mainPins = new Map<number, number>();
  private readonly unpinWaiters: (() => void)[] = [];
  private destroyed = false;

  constructor(
    readonly id: number,
    readonly ram: SystemRam,
    private readonly pagemaps: () => readonly (DevicePagemap | undefined)[],
    readonly stats: Stats,
    /** Makes the child address space for fork() (the system registers it). */
    private readonly spawn?: () => AddressSpace,
  ) {
    this.holds = new DeviceHolds(id);
  }

  // ------------------------------------------------------------------ mappings

  mmap(length: number, opts: MmapOptions = {}): number {
    this.checkAlive('mmap');
    checkCount('mmap', 'length', length);
    if (opts === null || typeof opts !== 'object') throw new HmmError('EINVAL', `mmap: options ${String(opts)} is not an object`);
    for (const flag of ['shared', 'huge'] as const)
      if (opts[flag] !== undefined && typeof opts[flag] !== 'boolean') throw new HmmError('EINVAL', `mmap: ${flag} ${String(opts[flag])} is not a boolean`);
    const prot = opts.prot ?? 'rw';
    if (prot !== 'none' && prot !== 'r' && prot !== 'rw')
      throw new HmmError('EINVAL', `mmap: prot ${String(prot)} is not 'none', 'r' or 'rw'`);
    const huge = opts.huge === true;
    const unit = huge ? HUGE_SIZE : PAGE_SIZE;
    const bytes = Math.ceil(length / unit) * unit;
    const npages = bytes / PAGE_SIZE;
    let start: number;
    if (opts.addr !== undefined) {
      const addr = checkPageAligned('mmap', opts.addr);
      if (huge && addr % HUGE_SIZE !== 0)
        throw new HmmError('EINVAL', `mmap: huge mapping at ${hex(addr)} is not 2 MiB aligned`, addr);
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

  async munmap(va: number, length: number): Promise<void> {
    this.checkAlive('munmap');
    const { start, end } = this.pageRange('munmap', va, length);
    // A device's held copy of a frame another address space also maps is the only current
    // data: write it back first, or that address space would lose it.
    if (this.family.size > 1) await this.settle(start, end, 'held');
    this.unmapPages(start, end);
  }

  async mprotect(va: number, length: number, prot: Prot): Promise<void> {
    this.checkAlive('mprotect');
    const { start, end } = this.pageRange('mprotect', va, length);
    if (prot !== 'none' && prot !== 'r' && prot !== 'rw')
      throw new HmmError('EINVAL', `mprotect: prot ${String(prot)} is not 'none', 'r' or 'rw'`);
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
      await this.settle(start, end, 'held');
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
   */
  async advise(va: number, length: number, advice: Advice): Promise<void> {
    this.checkAlive('advise');
    const { start, end } = this.pageRange('advise', va, length);
    if (!advice || typeof advice !== 'object' || Array.isArray(advice)) throw new HmmError('EINVAL', `advise ${hex(va)}: advice must be an object`, va);
    const unknown = Object.keys(advice).find((k) => k !== 'preferred' && k !== 'readMostly' && k !== 'accessedBy');
    if (unknown !== undefined) throw new HmmError('EINVAL', `advise ${hex(va)}: unknown advice '${unknown}' (expected preferred, readMostly, accessedBy)`, va);
    const devs = this.pagemaps();
    const checkDev = (d: unknown, what: string): void => {
      if (typeof d !== 'number' || !Number.isInteger(d) || !devs[d]) throw new HmmError('EINVAL', `advise ${hex(va)}: ${what} ${String(d)} is not a device of this system`, va);
    };
    if (advice.preferred !== undefined && advice.preferred !== null && advice.preferred !== 'system') checkDev(advice.preferred, 'preferred');
    if (advice.readMostly !== undefined && typeof advice.readMostly !== 'boolean') throw new HmmError('EINVAL', `advise ${hex(va)}: readMostly must be a boolean`, va);
    if (advice.accessedBy !== undefined) {
      if (!Array.isArray(advice.accessedBy)) throw new HmmError('EINVAL', `advise ${hex(va)}: accessedBy must be an array of device ids`, va);
      for (const d of advice.accessedBy) checkDev(d, 'accessedBy device');
    }
    this.vmas.advise(start, end, advice);
  }

  vmaAt(va: number): Vma | undefined {
    return this.vmas.find(Math.floor(va / PAGE_SIZE));
  }

  // ------------------------------------------------------------------ CPU access

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
        await this.faultPages(pages, write);
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

  /** May the CPU touch page p now: untouched, the zero page, or plain RAM (for a write, with no read-only device copies)? */
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
        await this.faultPages(pages, write);
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
   */
  async faultPages(pages: readonly number[], write: boolean): Promise<void> {
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      if (await this.faultPagesOnce(pages, write)) return;
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
   */
  async faultPagesOnce(pages: readonly number[], write: boolean): Promise<boolean> {
    // A range names its first poisoned page (design-notes §14), whichever device call would
    // fail first: ask for that page alone (EPOISON from its device), before anything moves.
    let firstPoisoned = -1;
    for (const p of pages) if (this.poisoned(p) && (firstPoisoned < 0 || p < firstPoisoned)) firstPoisoned = p;
    if (firstPoisoned >= 0) await this.collectPending([firstPoisoned], write);
    const pending = this.collectPending(pages, write);
    if (pending === null) return true;
    this.stats.add('cpuFaults');
    this.stats.trace.record({ kind: 'cpu-fault', pages: pages.length, va: (pages[0] ?? 0) * PAGE_SIZE, mm: this.id, detail: write ? 'write' : 'read' });
    await pending;
    return false;
  }

  /** What the CPU must wait for before it may touch [start, end); null when nothing. */
  private collectPending(pages: readonly number[], write: boolean): Promise<unknown> | null {
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
    for (const [dev, pages] of byDevice) waits.push(this.pagemap(dev, pages[0]!).migrateToRam(this, pages));
    for (const [dev, pages] of heldBy) waits.push(this.revokeHeld(dev, pages));
    return allSettled(waits);
  }

  /**
   * Revoke a device's held copies of pages (write them back). A copy made through another
   * address space of the fork family is revoked there; then no family member keeps the flag.
   */
  async revokeHeld(dev: number, pages: readonly number[]): Promise<void> {
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
    await allSettled([...byOwner].map(([mm, ps]) => this.pagemap(dev, ps[0]!).revoke(mm, ps)));
  }

  /**
   * Address spaces whose entry for page p points at RAM frame `frame`: this one, and fork
   * relatives sharing the frame through a shared mapping (private frames break on write).
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
   * Demand-zero and copy-on-write for pages already CPU-accessible: a read maps the zero page;
   * a write gets a zeroed frame, or a private copy of a frame still shared with a fork
   * relative. All frames are allocated before any entry changes, so ENOMEM changes nothing.
   */
  populate(pages: readonly number[], write: boolean, forWhat?: string): void {
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
    const n = fresh.length + cow.length;
    if (n === 0) return;
    const at = (fresh[0] ?? cow[0]!) * PAGE_SIZE;
    const frames = this.ram.allocMany(n, forWhat ?? `a write fault at ${hex(at)}`);
    fresh.forEach((p, i) => this.pageTable.set(p, pte.ram(frames[i]!)));
    cow.forEach((p, i) => {
      const old = pte.frame(this.pageTable.get(p));
      const copy = frames[fresh.length + i]!;
      this.ram.frame(copy).set(this.ram.frame(old));
      this.pageTable.set(p, pte.ram(copy));
      this.ram.free(old); // one reference fewer; the relative keeps the frame
    });
    if (cow.length > 0) this.stats.add('cowBreaks', cow.length);
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
  private async settle(start: number, end: number, what: 'held'): Promise<void> {
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const heldBy = new Map<number, number[]>();
      const waits: Promise<unknown>[] = [];
      for (let p = start; p < end; p++) {
        const e = this.pageTable.get(p);
        if (pte.kind(e) === Kind.Migrating) waits.push(this.inflight.get(p) ?? Promise.resolve());
        else if (what === 'held' && pte.isHeld(e) && !this.poisoned(p)) push(heldBy, pte.heldBy(e), p); // a lost device holds nothing back
      }
      for (const [dev, pages] of heldBy) waits.push(this.revokeHeld(dev, pages));
      if (waits.length === 0) return;
      await allSettled(waits);
    }
    throw new HmmError('EBUSY', `pages at ${hex(start * PAGE_SIZE)} kept migrating`, start * PAGE_SIZE);
  }

  /**
   * Was page p's only current data on a device that is now lost? Its device-private pages, and
   * copies it held writable that a kernel may have changed (clean ones were let go when the loss
   * was seen). Every touch of such a page is EPOISON until it is unmapped.
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

  /** Every byte of [va, va+len) must be mapped with the needed permission; nothing changes otherwise. */
  checkAccess(what: string, va: number, len: number, write: boolean): void {
    let p = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + len - 1) / PAGE_SIZE);
    while (p <= last) {
      const vma = this.vmas.find(p);
      const at = Math.max(va, p * PAGE_SIZE);
      if (!vma) throw new HmmError('EFAULT', `${what}: address ${hex(at)} is not mapped`, at);
      if (!canRead(vma.prot)) throw new HmmError('EFAULT', `${what}: address ${hex(at)} is mapped with prot 'none'`, at);
      if (write && !canWrite(vma.prot))
        throw new HmmError('EPERM', `${what}: address ${hex(at)} is mapped read-only`, at);
      p = vma.end;
    }
  }

  /**
   * Is 2 MiB block b a huge page in system RAM (a THP)? Its 512 entries, inside one huge
   * mapping, all in RAM on one aligned run of frames. Derived from the table, not remembered:
   * whatever splits it (a partial munmap or mprotect, a copy-on-write break of one page, a page
   * migrating away alone) makes this false by itself.
   */
  isRamHuge(b: number): boolean {
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

  /** Migrations report here; a page that starts thrashing is counted and traced. */
  noteMigration(pages: readonly number[], dir: Direction): void {
    const now = performance.now();
    let thrashing = 0;
    for (const p of pages) if (this.thrash.record(p, dir, now)) thrashing++;
    if (thrashing > 0) {
      this.stats.add('thrashEvents', thrashing);
      this.stats.trace.record({ kind: 'thrash', pages: thrashing, va: pages[0]! * PAGE_SIZE, mm: this.id, detail: `pinned in system RAM for ${this.thrash.config.pinMs} ms` });
    }
  }

  // ------------------------------------------------------------------ internals

  private unmapPages(start: number, end: number): void {
    if (this.family.size > 1) this.startSharedWriteBacks(start, end);
    // Devices drop their mappings of the range before any frame is freed.
    this.notifier.invalidate({ start, end, event: 'unmap', owner: null });
    this.stats.add('invalidations');
    const byDevice = new Map<number, number[]>();
    for (let p = start; p < end; p++) {
      const e = this.pageTable.get(p);
      switch (pte.kind(e)) {
        case Kind.Ram:
          // Entry first, then the pin: a CPU thread pins, then reads the entry, so either it
          // sees the page gone or we see it inside its access and free the frame after it.
          this.pageTable.set(p, pte.none);
          if (this.pageTable.isPinned(p)) this.ram.freeWhenUnpinned(pte.frame(e), this.pageTable.pins, p);
          else this.ram.free(pte.frame(e));
          this.copyOwner.delete(p);
          continue;
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
    this.vmas.remove(start, end);
    this.syncAccess(start, end);
    this.thrash.forget(start, end);
    this.ram.reap(); // frames whose unmapping waited for a CPU thread to leave them
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
    for (const [dev, pages] of heldBy) void this.revokeHeld(dev, pages).catch(() => undefined);
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
    const hold = this.holds.hold(FORK_HOLDER, [...this.vmas.all()].flatMap((v) => pageList(v.start, v.end - v.start)), 0);
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
          await this.faultPages(away, false);
          this.checkAlive('fork');
          continue;
        }
        // Every page is in RAM, the zero page or untouched; from here on nothing awaits.
        const sharedHoles: number[] = [];
        for (const v of this.vmas.all()) if (v.shared) for (let p = v.start; p < v.end; p++) if (pte.kind(this.pageTable.get(p)) !== Kind.Ram) sharedHoles.push(p);
        this.populate(sharedHoles, true, `fork of address space ${this.id} (frames for its shared mappings)`);
        return this.copyInto(this.spawn());
      }
      throw new HmmError('EBUSY', `fork: pages of address space ${this.id} kept moving to devices`);
    } finally {
      hold.release();
      Atomics.store(this.pageTable.ctl, CTL_FORKING, 0);
      this.forking = null;
      finish();
    }
  }

  private copyInto(child: AddressSpace): AddressSpace {
    child.family = this.family;
    this.family.add(child);
    child.thrash.config = this.thrash.config;
    for (const v of this.vmas.all()) {
      child.vmas.insert({ ...v });
      for (let p = v.start; p < v.end; p++) {
        const e = this.pageTable.get(p);
        if (pte.kind(e) === Kind.Ram) {
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
   */
  async mainUnpinned(pages: readonly number[]): Promise<void> {
    while (pages.some((p) => this.mainPins.has(p))) await new Promise<void>((r) => this.unpinWaiters.push(r));
  }

  /**
   * Is a CPU access in flight on page p: a CPU thread inside it (pins in the shared table), or
   * a main-thread read/write waiting for other pages of its range? Such a page does not migrate.
   */
  isPinned(p: number): boolean {
    return this.pageTable.isPinned(p) || this.mainPins.has(p);
  }

  /** Is a main-thread read or write in flight on page p (pinned across its awaits)? */
  isMainPinned(p: number): boolean {
    return this.mainPins.has(p);
  }

  /** EINVAL once destroy() ran; devices and mirrors ask too before they touch this address space. */
  checkAlive(what: string): void {
    if (this.destroyed) throw new HmmError('EINVAL', `${what}: address space ${this.id} was destroyed`);
  }

  /** Unmap everything and refuse further use (process exit). */
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

  /** Is page p held (this address space's holds, or a relative's on the same shared frame) by a hold `which` selects? */
  heldBy(p: number, which: (h: DeviceHold) => boolean): boolean {
    return this.holdRegistries(p).some((r) => r.some(p, which));
  }

  /** When every hold `which` selects on `pages` (and on the shared frames behind them) has ended; null when none. */
  holdsEnded(pages: readonly number[], which: (h: DeviceHold) => boolean): Promise<void> | null {
    const waits: Promise<void>[] = [];
    for (const p of pages) for (const r of this.holdRegistries(p)) {
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

  /** Run `hook` when this address space is destroyed (the CPU-thread mailbox stops then). */
  onDestroy(hook: () => void): void {
    if (this.destroyed) hook();
    else this.destroyHooks.push(hook);
  }

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
