// Mirror: one device's view of one address space (dmirror). It owns that device page table,
// its notifier subscription and control buffers, and the dmirror calls (read, write, migrate,
// exclusive access, prefetch, snapshot) plus kernel dispatch. Making pages valid on the device
// is faultIn.ts's; running kernels and servicing their faults is dispatch.ts's. A mirror's
// calls may all be in flight at once (docs/concurrency.md).

import { PAGE_SIZE, PAGES_PER_HUGE, VA_PAGES, WORDS_PER_PAGE, hex, pageList } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { migrateToDevice, migrateToSystem, runs } from '../hmm/migrate.ts';
import { PFN_ERROR, PFN_VALID, PFN_WRITE, pageFlags, ramHugeBlocks } from '../hmm/rangeFault.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import { checkAddress, checkCount, checkPageAligned, checkPages, checkRange } from '../mm/args.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import type { InvalidateRange, NotifierSubscription } from '../mm/notifier.ts';
import { canRead, canWrite } from '../mm/vmaList.ts';
import type { Cause } from '../trace/provenance.ts';
import { ControlBuffers } from './controlBuffers.ts';
import { DevicePageTable } from './devicePageTable.ts';
import { Dispatcher, type DispatchOptions, type DispatchResult } from './dispatch.ts';
import { DeviceFaultIn, MAX_ROUNDS, checkAlive, type FaultInOptions } from './faultIn.ts';
import type { HmmDevice } from './hmmDevice.ts';
import type { LaunchTarget } from './launch.ts';
import type { HmmKernel } from './kernel.ts';

export type { DispatchOptions, DispatchRange, DispatchResult } from './dispatch.ts';

/** Snapshot byte values: the kernel's HMM_DMIRROR_PROT_*. */
export const PROT = {
  ERROR: 0xff,
  NONE: 0x00,
  READ: 0x01,
  WRITE: 0x02,
  PMD: 0x04,
  PUD: 0x08,
  ZERO: 0x10,
  DEV_PRIVATE_LOCAL: 0x20,
  DEV_PRIVATE_REMOTE: 0x30,
} as const;

const EXPLICIT_MIGRATE: Cause = { kind: 'call', call: 'm.migrateToDevice() (HMM_DMIRROR_MIGRATE_TO_DEV)' };

/**
 * One device's view of one address space (the kernel's dmirror test driver): the dmirror calls
 * (read, write, migrate, exclusive access, prefetch, snapshot) and kernel dispatch. Made by
 * `dev.mirror(mm)`; it closes when its address space is destroyed.
 */
export class Mirror {
  /**
   * This device's page table for the address space.
   * @internal
   */
  readonly table: DevicePageTable;
  private readonly sub: NotifierSubscription;
  /**
   * Control buffers (status, fault queue, pending and done bitmaps): one per launch or replayable dispatch.
   * @internal
   */
  readonly controls: ControlBuffers;
  /**
   * Pages this device holds for atomics (make_device_exclusive) until a CPU touch revokes them.
   * @internal
   */
  readonly exclusive = new Set<number>();
  /**
   * Device fault-in for this address space (faultIn.ts).
   * @internal
   */
  readonly faults: DeviceFaultIn;
  private readonly dispatcher: Dispatcher;
  /** What a launch on this mirror binds (hmmDevice.ts launch). */
  private readonly target: LaunchTarget;
  private closed = false;
  /** Public operations in flight, and whether close() waits for them to end. */
  private active = 0;
  private closing = false;

  /**
   * Mirrors are made by `dev.mirror(mm)`.
   * @internal
   */
  constructor(
    /** The device. */
    readonly dev: HmmDevice,
    /** The address space. */
    readonly mm: AddressSpace,
  ) {
    const leafCapacity = Math.min(2048, Math.max(16, dev.memory.frameCount));
    this.table = new DevicePageTable(dev.device, `${dev.name} mm${mm.id} page table`, leafCapacity);
    this.sub = mm.notifier.insert(0, VA_PAGES, (r) => this.invalidate(r), dev);
    this.controls = new ControlBuffers(dev.device, `${dev.name} mm${mm.id}`, (buffer) => this.preludeBindGroup(buffer));
    this.target = { table: this.table, mm, controls: this.controls };
    this.faults = new DeviceFaultIn(dev, mm, this.table, this.sub, this.exclusive);
    this.dispatcher = new Dispatcher(dev, mm, this.table, this.controls, this.faults, this.target);
  }

  /** The CPU side changed [start, end): stop using it before returning (invariant 2). */
  private invalidate(r: InvalidateRange): void {
    this.faults.dropMappings(r.start, r.end);
  }

  /**
   * Unmap [start, end) runs from this device (copies of RAM pages are freed, private pages stay).
   * @internal
   */
  dropRuns(ranges: readonly (readonly [number, number])[]): void {
    this.faults.dropRuns(ranges);
  }

  // ------------------------------------------------------------------ dmirror API

  /**
   * HMM_DMIRROR_READ: the device reads npages through its page table; `faults` counts the fault rounds.
   * @throws {@link HmmError} EINVAL: a bad argument (named), or the address space was destroyed.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} EFAULT: a page is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} ENOMEM: device memory (or system RAM) is exhausted.
   * @throws {@link HmmError} EBUSY: still faulting after the round limit.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async read(va: number, npages: number): Promise<{ data: Uint8Array; cpages: number; faults: number }> {
    return this.op(async () => {
      this.alive('mirror.read');
      const { start, npages: n } = checkPages('mirror.read', va, npages);
      return this.holding(pageList(start, n), 'm.read() (HMM_DMIRROR_READ)', async (opts) => {
        let faults = 0;
        for (let round = 0; round < MAX_ROUNDS; round++) {
          const { misses, data } = await this.dev.launcher.runMirrorKernel(this.target, 'read', start * PAGE_SIZE, n * WORDS_PER_PAGE);
          if (misses === 0) return { data: data!, cpages: n, faults };
          faults++;
          this.dev.stats.add('gpuFaults');
          await this.faults.faultIn(start, start + n, false, opts);
        }
        throw new HmmError('EBUSY', `mirror.read ${hex(va)}: still faulting after ${MAX_ROUNDS} rounds`, va);
      });
    });
  }

  /**
   * HMM_DMIRROR_WRITE: the device writes data (a multiple of 4 bytes) through its page table.
   * @throws {@link HmmError} EINVAL: an unaligned address, data that is not a Uint8Array of a non-zero multiple of 4 bytes, or the address space was destroyed.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} EFAULT: a page is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: a page is mapped read-only.
   * @throws {@link HmmError} ENOMEM: device memory (or system RAM) is exhausted.
   * @throws {@link HmmError} EBUSY: still faulting after the round limit.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async write(va: number, data: Uint8Array): Promise<{ cpages: number; faults: number }> {
    return this.op(() => this.faults.thenWriteBackShared(() => this.writeOnce(va, data)));
  }

  private async writeOnce(va: number, data: Uint8Array): Promise<{ cpages: number; faults: number }> {
    this.alive('mirror.write');
    checkPageAligned('mirror.write', va);
    if (!(data instanceof Uint8Array)) throw new HmmError('EINVAL', `mirror.write ${hex(va)}: data is not a Uint8Array`, va);
    checkCount('mirror.write', 'data length', data.length);
    if (data.length % 4 !== 0) throw new HmmError('EINVAL', `mirror.write ${hex(va)}: data length ${data.length} is not a multiple of 4`, va);
    checkRange('mirror.write', va, data.length);
    const start = va / PAGE_SIZE;
    const n = Math.ceil(data.length / PAGE_SIZE);
    return this.holding(pageList(start, n), 'm.write() (HMM_DMIRROR_WRITE)', async (opts) => {
      let faults = 0;
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const { misses } = await this.dev.launcher.runMirrorKernel(this.target, 'write', va, data.length / 4, data);
        if (misses === 0) return { cpages: n, faults };
        faults++;
        this.dev.stats.add('gpuFaults');
        await this.faults.faultIn(start, start + n, true, opts);
      }
      throw new HmmError('EBUSY', `mirror.write ${hex(va)}: still faulting after ${MAX_ROUNDS} rounds`, va);
    });
  }

  /**
   * Run a device access to `pages` (the dmirror read and write) holding them until it is over,
   * as a dispatch does: CPU threads and other devices that want them wait for it instead of
   * taking them back between its fault-in and its kernel, which under CPU load they could do
   * round after round (EBUSY).
   */
  private async holding<T>(pages: readonly number[], call: string, f: (opts: FaultInOptions) => Promise<T>): Promise<T> {
    const ticket = this.dev.ticket();
    const hold = this.mm.holdForDevice(this.dev.id, pages, ticket);
    const cause: Cause = { kind: 'call', call };
    try {
      return await f({ hold, ticket, cause: () => cause, where: call });
    } finally {
      hold.release();
    }
  }

  /**
   * HMM_DMIRROR_MIGRATE_TO_DEV. EINVAL if a page is unmapped or unreadable (nothing moves);
   * ENOENT if any page is not on this device afterwards (shared, pinned, another device's).
   * @throws {@link HmmError} EINVAL: a bad address or npages, a page not mapped or mapped with prot 'none' (nothing moves), or the address space was destroyed.
   * @throws {@link HmmError} ENOENT: some page is not on this device afterwards; the message names the first and why.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   */
  async migrateToDevice(va: number, npages: number): Promise<{ cpages: number; pages: string[] }> {
    return this.op(async () => {
      const { start, npages: n } = checkPages('mirror.migrateToDevice', va, npages);
      this.alive('migrateToDevice');
      for (let p = start; p < start + n; p++) {
        const vma = this.mm.vmas.find(p);
        if (!vma || !canRead(vma.prot))
          throw new HmmError('EINVAL', `migrateToDevice: address ${hex(p * PAGE_SIZE)} is ${vma ? "mapped with prot 'none'" : 'not mapped'}`, p * PAGE_SIZE);
      }
      const pages = pageList(start, n);
      // whole blocks of huge mappings move as 2 MiB units first (SELECT_COMPOUND); only what
      // did not move that way goes through the 4 KiB pass (asking it about 512 pages a unit
      // just moved, to hear 'already', was per-page work on every huge migration)
      const result: string[] = new Array<string>(n);
      for (const block of this.faults.hugeBlocks(pages)) {
        const first = block * PAGES_PER_HUGE;
        if (first < start || first + PAGES_PER_HUGE > start + n) continue;
        const res = await migrateToDevice(this.mm, this.dev, pageList(first, PAGES_PER_HUGE), {
          huge: true,
          othersTurn: (p) => this.faults.othersTurn(p, {}),
          cause: () => EXPLICIT_MIGRATE,
        });
        res.pages.forEach((r, k) => r === 'moved' && (result[first - start + k] = r));
      }
      // (a page a CPU fault took back while a later block was moving goes again, as before)
      const rest = pages.filter((p, i) => result[i] === undefined || !this.onThisDevice(p));
      if (rest.length > 0) {
        const res = await migrateToDevice(this.mm, this.dev, rest, { othersTurn: (p) => this.faults.othersTurn(p, {}), cause: () => EXPLICIT_MIGRATE });
        rest.forEach((p, k) => (result[p - start] = res.pages[k]!));
      }
      let cpages = 0;
      const bad: number[] = [];
      pages.forEach((p, i) => {
        if (result[i] !== 'moved' && result[i] !== 'already') return void bad.push(i);
        // 'already' was decided when the batch was collected, before it waited for its copy; a
        // CPU fault (a thread's, through the mailbox) may have brought the page home since, and
        // then its entry names a RAM frame. Mapping that number as a device frame was the load
        // test's lost update: the kernel's writes went to another page's frame (or past the
        // pool) while CPU threads kept writing RAM. So look at the entry now, as it is.
        const e = this.mm.pageTable.get(p);
        if (pte.kind(e) !== Kind.Device || pte.device(e) !== this.dev.id) {
          result[i] = 'busy'; // taken back by a CPU fault meanwhile: not on this device
          return void bad.push(i);
        }
        cpages++;
        // dmirror maps what it migrated; an 'already' page may have lost its mapping
        if (!this.table.lookup(p)) {
          const vma = this.mm.vmas.find(p);
          this.table.map(p, pte.frame(e), !!vma && canWrite(vma.prot));
        }
      });
      this.dev.stats.add('pageTableWrites', this.table.flush());
      if (bad.length > 0) {
        const i = bad[0]!;
        throw new HmmError(
          'ENOENT',
          `migrateToDevice: ${bad.length} of ${n} pages did not move to ${this.dev.name}; first ${hex((start + i) * PAGE_SIZE)} (${result[i]})`,
          (start + i) * PAGE_SIZE,
        );
      }
      return { cpages, pages: result };
    });
  }

  /**
   * HMM_DMIRROR_MIGRATE_TO_SYS: this device's private pages in the range go back to RAM.
   * @throws {@link HmmError} EINVAL: a bad address or npages, a page not mapped, or the address space was destroyed.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted.
   * @throws {@link HmmError} EBUSY: a readback (mapAsync) was refused on a live device; retry.
   */
  async migrateToSystem(va: number, npages: number): Promise<{ cpages: number; pages: string[] }> {
    return this.op(async () => {
      const { start, npages: n } = checkPages('mirror.migrateToSystem', va, npages);
      this.alive('migrateToSystem');
      for (let p = start; p < start + n; p++) {
        if (!this.mm.vmas.find(p)) throw new HmmError('EINVAL', `migrateToSystem: address ${hex(p * PAGE_SIZE)} is not mapped`, p * PAGE_SIZE);
      }
      const pages = pageList(start, n);
      const res = await migrateToSystem(this.mm, this.dev, pages, { kind: 'call', call: 'm.migrateToSystem() (HMM_DMIRROR_MIGRATE_TO_SYS)' });
      return { cpages: res.moved, pages: res.pages };
    });
  }

  /**
   * HMM_DMIRROR_EXCLUSIVE (make_device_exclusive): the device takes the pages for atomic
   * access. They stay in system RAM but the CPU loses access: its next touch (read or write)
   * makes the device write them back and let go, and only then completes. Needs a writable,
   * private mapping, as the kernel's does.
   * @throws {@link HmmError} EINVAL: a bad address or npages, a shared mapping, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: a page is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EPERM: a page is mapped read-only.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} ENOMEM: system RAM or device memory is exhausted.
   * @throws {@link HmmError} EBUSY: the pages kept migrating.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async makeExclusive(va: number, npages: number): Promise<{ cpages: number }> {
    return this.op(async () => {
      const { start, npages: n } = checkPages('mirror.makeExclusive', va, npages);
      this.alive('makeExclusive');
      const pages = pageList(start, n);
      this.faults.checkPermissions(pages, true);
      for (const p of pages) {
        if (this.mm.vmas.find(p)!.shared)
          throw new HmmError('EINVAL', `makeExclusive: ${hex(p * PAGE_SIZE)} is a shared mapping; exclusive access needs private memory`, p * PAGE_SIZE);
      }
      const ticket = this.dev.ticket();
      for (let round = 0; round < MAX_ROUNDS; round++) {
        // Another device's operation holding some of the pages goes first (never wait holding).
        // (the older ones: the oldest operation never waits)
        const others = this.mm.holdsEnded(pages, (h) => h.ticket < ticket);
        if (others) {
          await others;
          round--;
          continue;
        }
        // Then hold them while taking them, as a fault service does: other devices and CPU
        // accesses wait instead of taking them back between the fault and the copy.
        const hold = this.mm.holdForDevice(this.dev.id, pages, ticket, { exclusive: true });
        try {
          // Every page into RAM, writable, with no device copies anywhere.
          await this.mm.faultPages(pages, true, { kind: 'call', call: 'm.makeExclusive()' });
          // The mapping may have gone while we waited (munmap, or the address space destroyed):
          // populating it now would give frames to pages nothing maps, never to be freed.
          this.alive('makeExclusive');
          this.faults.checkPermissions(pages, true);
          // Every page must still be one the CPU could write now, in this same turn as the
          // invalidation below: a device that took a copy of one meanwhile would lose it to that
          // invalidation without a write-back. Such a page is faulted again.
          if (!pages.every((p) => this.mm.cpuAccessible(p, true))) continue;
          this.mm.populate(pages, true);
          for (const [s, e] of runs(pages)) {
            this.mm.notifier.invalidate({ start: s, end: e, event: 'exclusive', owner: this.dev });
            this.faults.dropMappings(s, e);
          }
          const skipped = await this.faults.mapCopies(pages, true, new Set(pages), {
            hold,
            ticket,
            cause: () => ({ kind: 'call', call: 'm.makeExclusive()' }),
          });
          this.dev.stats.add('pageTableWrites', this.table.flush());
          if (skipped.length > 0) continue; // a CPU thread was inside some pages: take them again
          for (const p of pages) this.exclusive.add(p);
          return { cpages: n };
        } finally {
          hold.release();
        }
      }
      throw new HmmError('EBUSY', `makeExclusive ${hex(va)}: pages kept migrating`, va);
    });
  }

  /**
   * HMM_DMIRROR_CHECK_EXCLUSIVE: EPERM if the device still holds any page exclusively (fine on a lost device).
   * @throws {@link HmmError} EINVAL: a bad address or npages, or the address space was destroyed.
   * @throws {@link HmmError} EPERM: the device still holds a page of the range exclusively.
   */
  async checkExclusive(va: number, npages: number): Promise<void> {
    this.mm.checkAlive(`${this.dev.name}: checkExclusive`); // host-side state: fine on a lost device
    const { start, npages: n } = checkPages('mirror.checkExclusive', va, npages);
    for (let p = start; p < start + n; p++) {
      const e = this.mm.pageTable.get(p);
      if (this.exclusive.has(p) && pte.isHeld(e) && pte.heldBy(e) === this.dev.id)
        throw new HmmError('EPERM', `checkExclusive: ${this.dev.name} still holds ${hex(p * PAGE_SIZE)} exclusively`, p * PAGE_SIZE);
    }
  }

  /**
   * Explicit prefetch (as cudaMemPrefetchAsync): bring [va, va+bytes) to this device, or back
   * to system RAM. Rounded out to whole pages; a hole or prot 'none' in the range is EFAULT.
   * @throws {@link HmmError} EINVAL: a bad address, byte count or location, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: a page is not mapped, or mapped with prot 'none'.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} ENOMEM: device memory or system RAM is exhausted.
   * @throws {@link HmmError} EBUSY: the pages kept changing under the fault-in.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async prefetch(va: number, bytes: number, location: 'device' | 'system'): Promise<{ pages: number }> {
    return this.op(async () => {
      checkAddress('mirror.prefetch', va);
      checkCount('mirror.prefetch', 'bytes', bytes);
      checkRange('mirror.prefetch', va, bytes);
      if (location !== 'device' && location !== 'system')
        throw new HmmError('EINVAL', `mirror.prefetch ${hex(va)}: location ${String(location)} is not 'device' or 'system'`, va);
      this.alive('prefetch');
      const start = Math.floor(va / PAGE_SIZE);
      const end = Math.ceil((va + bytes) / PAGE_SIZE);
      const pages = pageList(start, end - start);
      this.faults.checkPermissions(pages, false);
      if (location === 'device') {
        const before = pages.filter((p) => this.table.lookup(p) === null).length;
        await this.faults.faultInPages(pages, false, { cause: () => ({ kind: 'call', call: "m.prefetch('device')" }) });
        this.dev.stats.add('prefetchedPages', before);
        return { pages: before };
      }
      // to system RAM: from whichever device holds them
      const away = pages.filter((p) => {
        const k = pte.kind(this.mm.pageTable.get(p));
        return k === Kind.Device || pte.isHeld(this.mm.pageTable.get(p));
      });
      await this.mm.faultPages(away, false, { kind: 'call', call: "m.prefetch('system')" });
      return { pages: away.length };
    });
  }

  /**
   * HMM_DMIRROR_SNAPSHOT: one byte per page, the kernel's HMM_DMIRROR_PROT_* values ({@link PROT}); fine on a lost device.
   * @throws {@link HmmError} EINVAL: a bad address or npages, or the address space was destroyed.
   */
  async snapshot(va: number, npages: number): Promise<Uint8Array> {
    this.mm.checkAlive(`${this.dev.name}: snapshot`); // host-side state: fine on a lost device
    const { start, npages: n } = checkPages('mirror.snapshot', va, npages);
    const out = new Uint8Array(n);
    const hugeBlock = ramHugeBlocks(this.mm);
    for (let i = 0; i < n; i++) out[i] = this.snapshotPage(start + i, hugeBlock);
    return out;
  }

  /** One page's HMM_DMIRROR_PROT_* byte: rangeFault's flags for this device (pageFlags), as bytes. */
  private snapshotPage(p: number, hugeBlock: (b: number) => boolean): number {
    if (this.mm.poisoned(p)) return PROT.ERROR; // its data went with a lost device
    const f = pageFlags(this.mm, p, this.dev.id);
    if (f & PFN_ERROR) return PROT.ERROR;
    const e = this.mm.pageTable.get(p);
    const rw = f & PFN_WRITE ? PROT.WRITE : PROT.READ;
    switch (pte.kind(e)) {
      case Kind.Zero:
        return PROT.ZERO | PROT.READ;
      case Kind.Ram:
        // read-only when a device has a read-only copy or a fork relative shares it
        // copy-on-write (the kernel's PTE is read-only then too); PMD for a huge page in RAM
        return f & PFN_VALID ? rw | (hugeBlock(p >>> 9) ? PROT.PMD : 0) : PROT.NONE;
      case Kind.Device:
        if (pte.device(e) !== this.dev.id) return PROT.DEV_PRIVATE_REMOTE;
        return PROT.DEV_PRIVATE_LOCAL | rw | (this.table.isHuge(p) ? PROT.PMD : 0);
      default:
        return PROT.NONE;
    }
  }

  // ------------------------------------------------------------------ kernels

  /**
   * Run a kernel from `dev.createKernel`: 'validated' (the declared `ranges` are faulted in and
   * mapped first; a miss is an error) or 'replayable' (faults are serviced in rounds and the
   * unfinished invocations relaunched).
   * @throws {@link HmmError} EINVAL: a bad kernel, option, range, uniforms or workgroups, a kernel of another device, a policy that threw or answered nonsense, or the address space was destroyed.
   * @throws {@link HmmError} EFAULT: a declared range is not mapped (or prot 'none'), or (validated) the kernel touched an address outside its declared ranges.
   * @throws {@link HmmError} EPERM: the kernel wrote (or a range declared 'rw') read-only memory.
   * @throws {@link HmmError} ESEGV: the kernel touched an address outside every mapping.
   * @throws {@link HmmError} ENOMEM: declared ranges larger than device memory, or device memory or system RAM exhausted.
   * @throws {@link HmmError} EBUSY: (replayable) still faulting after `maxRounds`, or the same pages kept faulting; ranges kept being invalidated.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} EPOISON: a page's only current data was on a lost device.
   */
  async dispatch(kernel: HmmKernel, opts: DispatchOptions): Promise<DispatchResult> {
    return this.op(() => this.faults.thenWriteBackShared(() => this.dispatcher.dispatch(kernel, opts)));
  }

  /** The prelude's bind group for one control buffer: page table, memory buffers, control. */
  private preludeBindGroup(control: GPUBuffer): GPUBindGroup {
    const mem = this.dev.memory.buffers;
    const memEntry = (i: number): GPUBindGroupEntry => ({ binding: 2 + i, resource: { buffer: mem[i] ?? this.dev.dummyBuffers[i]! } });
    return this.dev.device.createBindGroup({
      label: `${this.dev.name} mm${this.mm.id} prelude`,
      layout: this.dev.layouts.group1,
      entries: [
        { binding: 0, resource: { buffer: this.table.dirBuffer } },
        { binding: 1, resource: { buffer: this.table.leafBuffer } },
        memEntry(0),
        memEntry(1),
        memEntry(2),
        memEntry(3),
        { binding: 6, resource: { buffer: control } },
      ],
    });
  }

  private alive(what: string): void {
    checkAlive(this.dev, this.mm, what);
  }

  /**
   * Run one public operation. The mirror's GPU buffers outlive the operations in flight on it:
   * close() while any is running (its address space destroyed under it) waits for the last.
   */
  private onThisDevice(p: number): boolean {
    const e = this.mm.pageTable.get(p);
    return pte.kind(e) === Kind.Device && pte.device(e) === this.dev.id;
  }

  private async op<T>(f: () => Promise<T>): Promise<T> {
    this.active++;
    try {
      return await f();
    } finally {
      if (--this.active === 0 && this.closing) this.close();
    }
  }

  /**
   * Give back the page table's and control buffers' GPU memory (when the last operation ends).
   * @internal
   */
  close(): void {
    if (this.closed) return;
    this.sub.remove(); // no more invalidations: the address space is gone, or the device
    if (this.active > 0) {
      this.closing = true;
      return;
    }
    this.closed = true;
    this.table.destroy();
    this.controls.close();
  }
}
