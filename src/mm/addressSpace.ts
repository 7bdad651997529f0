// AddressSpace: one "process". It owns the VMAs, the CPU page table and the CPU side of every
// access: mmap/munmap/mprotect, demand-zero, and CPU reads and writes, which fault
// device-private pages back to RAM (migrate_to_ram) before they complete. Devices see it only
// through the interval notifier and the DevicePagemap calls; it never touches GPU objects.

import { MMAP_MIN_ADDR, PAGE_SIZE, PAGES_PER_HUGE, HUGE_SIZE, VA_PAGES, hex } from '../constants.ts';
import { HmmError } from '../errors.ts';
import type { Stats } from '../trace/stats.ts';
import { ThrashDetector, type Direction } from '../policy/thrashing.ts';
import { checkAddress, checkCount, checkPageAligned, checkRange } from './args.ts';
import { CpuPageTable, Kind, pte } from './cpuPageTable.ts';
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

export class AddressSpace {
  readonly pageTable = new CpuPageTable();
  readonly vmas = new VmaList();
  readonly notifier = new IntervalNotifier();
  /** Pages being migrated: a CPU access waits for the migration instead of tearing data. */
  readonly inflight = new Map<number, Promise<void>>();
  /** Pages bouncing between RAM and devices (policy: migrations report, the mirror asks). */
  readonly thrash = new ThrashDetector();
  private destroyed = false;

  constructor(
    readonly id: number,
    readonly ram: SystemRam,
    private readonly pagemaps: () => readonly (DevicePagemap | undefined)[],
    readonly stats: Stats,
  ) {}

  // ------------------------------------------------------------------ mappings

  mmap(length: number, opts: MmapOptions = {}): number {
    this.checkAlive('mmap');
    checkCount('mmap', 'length', length);
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
    return start * PAGE_SIZE;
  }

  async munmap(va: number, length: number): Promise<void> {
    this.checkAlive('munmap');
    const { start, end } = this.pageRange('munmap', va, length);
    this.unmapPages(start, end);
  }

  async mprotect(va: number, length: number, prot: Prot): Promise<void> {
    this.checkAlive('mprotect');
    const { start, end } = this.pageRange('mprotect', va, length);
    if (prot !== 'none' && prot !== 'r' && prot !== 'rw')
      throw new HmmError('EINVAL', `mprotect: prot ${String(prot)} is not 'none', 'r' or 'rw'`);
    const hole = this.vmas.firstHole(start, end);
    if (hole >= 0)
      throw new HmmError('ENOMEM', `mprotect: page at ${hex(hole * PAGE_SIZE)} is not mapped`, hole * PAGE_SIZE);
    // A device holding pages writable must give them back before it may lose write access.
    await this.settle(start, end, 'held');
    this.vmas.protect(start, end, prot);
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
    if (!advice || typeof advice !== 'object') throw new HmmError('EINVAL', `advise ${hex(va)}: advice must be an object`, va);
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
    const first = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + length - 1) / PAGE_SIZE);
    this.checkAccess('read', va, length, false);
    this.pinRange(first, last);
    try {
      await this.cpuFault(first, last + 1, false);
      this.checkAccess('read', va, length, false); // the mapping may have changed while we waited
      const out = new Uint8Array(length);
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
      return out;
    } finally {
      this.unpinRange(first, last);
    }
  }

  async write(va: number, data: Uint8Array): Promise<void> {
    this.checkAlive('write');
    checkAddress('write', va);
    if (!(data instanceof Uint8Array)) throw new HmmError('EINVAL', `write: data at ${hex(va)} is not a Uint8Array`, va);
    checkCount('write', 'length', data.length);
    checkRange('write', va, data.length);
    const first = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + data.length - 1) / PAGE_SIZE);
    this.checkAccess('write', va, data.length, true);
    this.pinRange(first, last);
    try {
      await this.cpuFault(first, last + 1, true);
      this.checkAccess('write', va, data.length, true);
      // Allocate every frame first, all or nothing, so ENOMEM leaves memory untouched.
      const needFrame: number[] = [];
      for (let p = first; p <= last; p++) {
        const k = pte.kind(this.pageTable.get(p));
        if (k === Kind.None || k === Kind.Zero) needFrame.push(p);
      }
      const frames = this.ram.allocMany(needFrame.length, `writing ${data.length} bytes at ${hex(va)}`);
      needFrame.forEach((p, i) => this.pageTable.set(p, pte.ram(frames[i]!)));
      for (let p = first; p <= last; p++) {
        const e = this.pageTable.get(p);
        const pageStart = p * PAGE_SIZE;
        const from = Math.max(va, pageStart);
        const to = Math.min(va + data.length, pageStart + PAGE_SIZE);
        const base = pte.frame(e) * PAGE_SIZE;
        this.ram.bytes.set(data.subarray(from - va, to - va), base + from - pageStart);
      }
    } finally {
      this.unpinRange(first, last);
    }
  }

  // ------------------------------------------------------------------ fault handling

  /**
   * Make [start, end) CPU-accessible: device-private pages come back to RAM, pages held by a
   * device are revoked, running migrations are waited for, and for a write the read-only
   * device copies are invalidated. Returns with no await after the last check, so the caller
   * can copy synchronously with every page in a CPU state.
   */
  async cpuFault(start: number, end: number, write: boolean): Promise<void> {
    const pages: number[] = [];
    for (let p = start; p < end; p++) pages.push(p);
    return this.faultPages(pages, write);
  }

  /**
   * handle_mm_fault for a set of pages (CPU accesses and rangeFault both come here): after it,
   * every page is CPU-accessible (None, Zero or plain RAM; with `write`, no device copies).
   */
  async faultPages(pages: readonly number[], write: boolean): Promise<void> {
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const pending = this.collectPending(pages, write);
      if (pending === null) return;
      this.stats.add('cpuFaults');
      this.stats.trace.record({ kind: 'cpu-fault', pages: pages.length, va: (pages[0] ?? 0) * PAGE_SIZE, mm: this.id, detail: write ? 'write' : 'read' });
      await pending;
    }
    const at = (pages[0] ?? 0) * PAGE_SIZE;
    throw new HmmError('EBUSY', `CPU access to ${pages.length} pages from ${hex(at)} kept being raced by migrations`, at);
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
            // Read-only device copies must go before the CPU changes the page.
            this.notifier.invalidate({ start: p, end: p + 1, event: 'clear', owner: null });
            this.stats.add('invalidations');
            this.pageTable.set(p, pte.plainRam(this.pageTable.get(p)));
          }
          break;
        default:
          break;
      }
    }
    if (byDevice.size === 0 && heldBy.size === 0 && waits.length === 0) return null;
    for (const [dev, pages] of byDevice) waits.push(this.pagemap(dev, pages[0]!).migrateToRam(this, pages));
    for (const [dev, pages] of heldBy) waits.push(this.pagemap(dev, pages[0]!).revoke(this, pages));
    return Promise.all(waits);
  }

  /**
   * Demand-zero for pages already CPU-accessible: a read maps the zero page, a write gets a
   * zeroed frame (all frames allocated before any entry changes, so ENOMEM changes nothing).
   */
  populate(pages: readonly number[], write: boolean): void {
    const need = pages.filter((p) => {
      const k = pte.kind(this.pageTable.get(p));
      return k === Kind.None || (write && k === Kind.Zero);
    });
    if (!write) {
      for (const p of need) this.pageTable.set(p, pte.zero);
      return;
    }
    const at = (need[0] ?? 0) * PAGE_SIZE;
    const frames = this.ram.allocMany(need.length, `a write fault at ${hex(at)}`);
    need.forEach((p, i) => this.pageTable.set(p, pte.ram(frames[i]!)));
  }

  /** Wait until no page in [start, end) is migrating or (for 'held') held by a device. */
  private async settle(start: number, end: number, what: 'held'): Promise<void> {
    for (let attempt = 0; attempt < CPU_FAULT_RETRIES; attempt++) {
      const heldBy = new Map<number, number[]>();
      const waits: Promise<unknown>[] = [];
      for (let p = start; p < end; p++) {
        const e = this.pageTable.get(p);
        if (pte.kind(e) === Kind.Migrating) waits.push(this.inflight.get(p) ?? Promise.resolve());
        else if (what === 'held' && pte.isHeld(e)) push(heldBy, pte.heldBy(e), p);
      }
      for (const [dev, pages] of heldBy) waits.push(this.pagemap(dev, pages[0]!).revoke(this, pages));
      if (waits.length === 0) return;
      await Promise.all(waits);
    }
    throw new HmmError('EBUSY', `pages at ${hex(start * PAGE_SIZE)} kept migrating`, start * PAGE_SIZE);
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
    // Devices drop their mappings of the range before any frame is freed.
    this.notifier.invalidate({ start, end, event: 'unmap', owner: null });
    this.stats.add('invalidations');
    const byDevice = new Map<number, number[]>();
    for (let p = start; p < end; p++) {
      const e = this.pageTable.get(p);
      switch (pte.kind(e)) {
        case Kind.Ram:
          this.ram.free(pte.frame(e));
          break;
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
    this.thrash.forget(start, end);
  }

  private pageRange(what: string, va: number, length: number): { start: number; end: number } {
    const a = checkPageAligned(what, va);
    checkCount(what, 'length', length);
    const bytes = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    checkRange(what, a, bytes);
    return { start: a / PAGE_SIZE, end: (a + bytes) / PAGE_SIZE };
  }

  private pinRange(first: number, last: number): void {
    for (let p = first; p <= last; p++) this.pageTable.pin(p);
  }
  private unpinRange(first: number, last: number): void {
    for (let p = first; p <= last; p++) this.pageTable.unpin(p);
  }

  private checkAlive(what: string): void {
    if (this.destroyed) throw new HmmError('EINVAL', `${what}: address space ${this.id} was destroyed`);
  }

  /** Unmap everything and refuse further use (process exit). */
  destroy(): void {
    if (this.destroyed) return;
    for (const v of [...this.vmas.all()]) this.unmapPages(v.start, v.end);
    this.notifier.invalidate({ start: 0, end: VA_PAGES, event: 'release', owner: null });
    this.destroyed = true;
  }
}

function push(m: Map<number, number[]>, k: number, v: number): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}
