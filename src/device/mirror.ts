// Mirror: one device's view of one address space (dmirror). It owns that device page table,
// its notifier subscription, and device-side fault handling: making a range valid on the
// device (migrating what can move, copying what cannot), always under the read-begin /
// read-retry rule. Its public methods are the dmirror ioctls plus validated kernel dispatch.

import { PAGE_SIZE, PAGES_PER_HUGE, VA_PAGES, WORDS_PER_PAGE, hex, pageList } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { migrateToDevice, migrateToSystem, runs } from '../hmm/migrate.ts';
import { PFN_DEVICE_PRIVATE, PFN_ERROR, PFN_VALID, PFN_WRITE, pageFlags, ramHugeBlocks, rangeFault } from '../hmm/rangeFault.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import type { DeviceHold } from '../mm/deviceHolds.ts';
import { checkAddress, checkCount, checkPageAligned, checkPages, checkRange } from '../mm/args.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import type { InvalidateRange, NotifierSubscription } from '../mm/notifier.ts';
import { canRead, canWrite } from '../mm/vmaList.ts';
import { DevicePageTable } from './devicePageTable.ts';
import type { HmmDevice, LaunchStatus } from './hmmDevice.ts';
import { ControlBuffers } from './controlBuffers.ts';
import { FAULT_QUEUE_CAP, HmmKernel } from './kernel.ts';
import { densityPrefetch, type PrefetchConfig } from '../policy/prefetch.ts';
import { askBatching, askPlacement, askPrefetch, checkPolicy } from '../policy/guard.ts';
import type { Policies } from '../policy/types.ts';
import type { Cause } from '../trace/provenance.ts';

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

export interface DispatchRange {
  va: number;
  bytes: number;
  /** 'r' (default) or 'rw'. */
  access?: 'r' | 'rw';
}

export interface DispatchOptions {
  workgroups: number | [number, number?, number?];
  /** Bytes for the kernel's @group(0) @binding(0) uniform. */
  uniforms?: ArrayBufferView | ArrayBuffer;
  mode?: 'validated' | 'replayable';
  /** Validated mode: every range the kernel may touch. Replayable mode: pages to fault in first (optional). */
  ranges?: DispatchRange[];
  /** Replayable mode: the most replay rounds before EBUSY (default 100000). */
  maxRounds?: number;
  /** Replayable mode: false turns the density prefetcher off; an object overrides the device's settings. */
  prefetch?: boolean | Partial<PrefetchConfig>;
  /** Replayable mode: the most faulted pages one round services (default: the device's `faultBatchPages`). */
  faultBatchPages?: number;
  /** Policies for this dispatch, over the device's (src/policy/types.ts): prefetch, eviction, placement, batching. */
  policy?: Policies;
}

function resolvePrefetch(label: string, base: PrefetchConfig, o: DispatchOptions['prefetch']): PrefetchConfig {
  if (o === undefined || o === true) return base;
  if (o === false) return { ...base, enabled: false };
  const cfg = { ...base, ...o };
  if (!(cfg.threshold >= 0 && cfg.threshold <= 100)) throw new HmmError('EINVAL', `dispatch '${label}': prefetch.threshold ${cfg.threshold} is not a percentage in [0, 100]`);
  if (!Number.isInteger(cfg.upgradePages) || cfg.upgradePages < 1 || cfg.upgradePages > 512 || (cfg.upgradePages & (cfg.upgradePages - 1)) !== 0)
    throw new HmmError('EINVAL', `dispatch '${label}': prefetch.upgradePages ${cfg.upgradePages} is not a power of two in [1, 512]`);
  return cfg;
}

export interface DispatchResult {
  /** Validated: extra fault-in rounds before the launch. Replayable: rounds that faulted. */
  faults: number;
  /** Replayable: launches, the first included. */
  rounds: number;
  /** Replayable: distinct (page, access) faults serviced, over all rounds. */
  faultedPages: number;
}

/** How a fault-in may treat the device's other pages, and who is asking. */
export interface FaultInOptions {
  /** Pages eviction must not take to make room (default: the pages being faulted in). */
  keep?: ReadonlySet<number>;
  /** Replayable service: return as soon as one of these pages is mapped (the rest is prefetched company). */
  progress?: ReadonlySet<number>;
  /** Replayable service: its hold on the faulted pages, let go while it waits for others. */
  hold?: DeviceHold;
  /** The asking operation's age (HmmDevice.ticket()): older operations' pages are spared, younger ones' may be evicted. */
  ticket?: number;
  /** The policies in force (a dispatch's own over the device's); the device's when left out. */
  policies?: Required<Policies>;
  /** Where the policies are asked, for their errors: e.g. "dispatch 'k' round 3". */
  where?: string;
  /** Why each page is faulted in (provenance): a GPU fault, a prefetch, a declared range, a call. */
  cause?: (page: number) => Cause;
}

const MAX_ROUNDS = 32;
const EXPLICIT_MIGRATE: Cause = { kind: 'call', call: 'm.migrateToDevice() (HMM_DMIRROR_MIGRATE_TO_DEV)' };
/** How long a device copy waits for CPU threads already inside the pages to leave them. */
const THREAD_DRAIN_MS = 100;
/** Replayable mode: rounds in a row that may fault on exactly the same pages before EBUSY. */
const STALLED_ROUNDS = 8;
/** Replayable mode: the most rounds one dispatch may take. */
const DEFAULT_MAX_REPLAYS = 100_000;

export class Mirror {
  readonly table: DevicePageTable;
  private readonly sub: NotifierSubscription;
  /** Control buffers (status, fault queue, pending and done bitmaps): one per launch or replayable dispatch. */
  readonly controls: ControlBuffers;
  private closed = false;
  /** Public operations in flight, and whether close() waits for them to end. */
  private active = 0;
  private closing = false;
  /** Pages this device holds for atomics (make_device_exclusive) until a CPU touch revokes them. */
  readonly exclusive = new Set<number>();
  /** Faults this device took on each page (for placement policies: PlacementContext.faults). */
  private readonly faultCounts = new Map<number, number>();
  /** Held copies of frames other address spaces also map: written back when the operation ends. */
  private readonly sharedHeld = new Set<number>();

  constructor(
    readonly dev: HmmDevice,
    readonly mm: AddressSpace,
  ) {
    const leafCapacity = Math.min(2048, Math.max(16, dev.memory.frameCount));
    this.table = new DevicePageTable(dev.device, `${dev.name} mm${mm.id} page table`, leafCapacity);
    this.sub = mm.notifier.insert(0, VA_PAGES, (r) => this.invalidate(r), dev);
    this.controls = new ControlBuffers(dev.device, `${dev.name} mm${mm.id}`, (buffer) => this.preludeBindGroup(buffer));
  }

  // ------------------------------------------------------------------ notifier

  /** The CPU side changed [start, end): stop using it before returning (invariant 2). */
  private invalidate(r: InvalidateRange): void {
    this.dropMappings(r.start, r.end);
  }

  /** Unmap [start, end) from this device; copies of RAM pages are freed, private pages stay. */
  dropMappings(start: number, end: number): void {
    this.dropRuns([[start, end]]);
  }

  /** dropMappings for several [start, end) runs, with one page-table upload for all of them. */
  dropRuns(ranges: readonly (readonly [number, number])[]): void {
    const copies: number[] = [];
    const each = (p: number, f: number): void => {
      if (this.dev.isCopyFrame(f)) copies.push(f);
      this.exclusive.delete(p);
    };
    for (const [start, end] of ranges) this.table.unmapRange(start, end, each);
    this.dev.stats.add('pageTableWrites', this.table.flush());
    if (copies.length > 0) {
      this.dev.disown(copies);
      this.dev.freeFrames(copies);
    }
  }

  // ------------------------------------------------------------------ device faults

  /**
   * Make every page of [start, end) valid in this device's table (writable with `write`).
   * Pages that can migrate move here; others get a device copy (read-only, or held
   * exclusively for writes). Errors as rangeFault gives them, naming the address.
   */
  async faultIn(start: number, end: number, write: boolean, opts: FaultInOptions = {}): Promise<void> {
    return this.faultInPages(pageList(start, end - start), write, opts);
  }

  /**
   * faultIn for any set of pages (sorted): one migration batch serves all of them. When the
   * device is full, pages are evicted to make room (see FaultInOptions for which may not go).
   */
  async faultInPages(pages: readonly number[], write: boolean, opts: FaultInOptions = {}): Promise<void> {
    this.dev.checkAlive('fault');
    if (pages.length === 0) return;
    const { progress, hold } = opts;
    const protect = opts.keep ?? new Set(pages);
    const start = pages[0]!;
    const end = pages[pages.length - 1]! + 1;
    const busyOnCpu = new Set<number>();
    for (let round = 0; round < MAX_ROUNDS; round++) {
      this.alive('fault'); // the device lost, or the address space destroyed, meanwhile
      const seq = this.sub.readBegin();
      let missing: number[] = [];
      for (const p of pages) {
        const m = this.table.lookup(p);
        if (!m || (write && !m.write)) missing.push(p);
      }
      if (missing.length === 0) return; // every page mapped now: the table is the truth
      // A replayed kernel needs only progress: once some faulted pages are mapped it runs
      // again, and the rest fault again. Waiting for all of them at once could starve it while
      // CPU threads keep taking pages back. Prefetched pages mapped do not count: when the
      // faulted ones cannot migrate (pinned by thrashing detection) they go the copy path
      // next round, and returning before that would replay into the same faults forever.
      if (progress && round > 0 && missing.length < pages.length) {
        const stillMissing = new Set(missing);
        const required = pages.filter((p) => progress.has(p));
        if (required.length === 0 || required.some((p) => !stillMissing.has(p))) return;
      }
      // (Errors first, for every page still missing, so the first bad address is the one named.)
      this.checkPermissions(missing, write);
      // Pages another operation holds for its launch are not taken from it (that would make its
      // kernel fault again: two devices on the same pages would never progress). Map the rest;
      // when none of the rest would let this caller progress, wait for those launches, and a
      // fault service lets go of its own pages meanwhile: nobody waits while holding.
      const contended = missing.filter((p) => this.othersTurn(p, opts));
      if (contended.length > 0) {
        const free = missing.filter((p) => !this.othersTurn(p, opts));
        if (!(progress ? free.some((p) => progress.has(p)) : free.length > 0)) {
          const others = this.othersTurnEnded(contended, opts);
          if (hold) await hold.yieldTo(others);
          else await others;
          this.dev.checkAlive('fault');
          round--; // waiting for another device's turn is not a round that failed to settle
          continue;
        }
        missing = free;
      }
      // Pages that can move come here by migration (never-touched ones as zeroed device pages);
      // a page a CPU thread was inside of when we tried is served through a copy instead.
      let movable = missing.filter((p) => !busyOnCpu.has(p) && this.migratable(p, write, opts, 'fault'));
      // Whole 2 MiB blocks of huge mappings move as one unit, mapped by one directory entry.
      const blocks = this.hugeBlocks(movable, opts);
      for (const block of blocks) {
        const blockPages = pageList(block * PAGES_PER_HUGE, PAGES_PER_HUGE);
        await migrateToDevice(this.mm, this.dev, blockPages, { huge: true, othersTurn: (p) => this.othersTurn(p, opts), cause: opts.cause });
        movable = movable.filter((p) => p >>> 9 !== block);
      }
      if (blocks.length > 0 && movable.length === 0) continue; // look again at what is still missing
      movable = movable.filter((p) => !this.othersTurn(p, opts)); // held by another operation meanwhile
      if (movable.length > 0) {
        const res = await migrateToDevice(this.mm, this.dev, movable, { othersTurn: (p) => this.othersTurn(p, opts), cause: opts.cause });
        res.pages.forEach((r, i) => r === 'pinned' && busyOnCpu.add(movable[i]!));
        const short = res.pages.indexOf('nomem');
        if (short >= 0) {
          const need = res.pages.filter((r) => r === 'nomem').length;
          const room = await this.makeRoom(need, protect, opts);
          if (room === 'waited') round--; // another operation's turn: not a round that failed to settle
          if (room === 'none' && res.moved === 0) {
            const at = movable[short]! * PAGE_SIZE;
            throw new HmmError('ENOMEM', `${this.dev.name}: device memory exhausted (${this.dev.memory.frameCount} frames) faulting in ${hex(at)}; everything resident is needed by this access`, at);
          }
        }
        continue;
      }
      // The rest: hmm_range_fault brings other devices' pages home and reports ours.
      try {
        for (const [s, e] of runs(missing)) await this.mapByRangeFault(s, e, write, seq, busyOnCpu, protect, opts);
      } catch (err) {
        if (err instanceof HmmError && err.code === 'EBUSY') continue; // invalidated: start over
        throw err;
      }
    }
    throw new HmmError('EBUSY', `${this.dev.name}: fault-in of ${hex(start * PAGE_SIZE)}..${hex(end * PAGE_SIZE)} did not settle after ${MAX_ROUNDS} rounds`, start * PAGE_SIZE);
  }

  /**
   * Is it another operation's turn with page p? Yes while another device (or fork, or a CPU
   * access faulting it in) holds it, in this address space or, for a shared frame, in a fork
   * relative that maps it. And yes while an older operation of this device holds it for such
   * a relative: a device keeps one held copy of a frame, so two relatives' operations on it
   * take turns, the older first (each taking the copy from the other would never end).
   */
  private othersTurn(p: number, opts: FaultInOptions): boolean {
    return this.mm.heldBy(p, this.othersHold(opts));
  }

  /** When the turns othersTurn found for `pages` have ended. */
  private othersTurnEnded(pages: readonly number[], opts: FaultInOptions): Promise<unknown> {
    return this.mm.holdsEnded(pages, this.othersHold(opts)) ?? Promise.resolve();
  }

  /**
   * The holds that make it another operation's turn for the asking one: older ones (age
   * decides, src/mm/deviceHolds.ts; fork and CPU accesses are the oldest), whose operations
   * want the pages elsewhere: on another device, in RAM for exclusive access (makeExclusive:
   * even its own device's other operations keep off), or in a fork relative's mirror (one
   * device keeps one held copy of a shared frame). Operations of one device on one address
   * space share its mappings and need no turns.
   */
  private othersHold(opts: FaultInOptions): (h: DeviceHold) => boolean {
    const ticket = opts.ticket ?? Infinity;
    return (h) => h !== opts.hold && h.ticket < ticket && (h.device !== this.dev.id || h.exclusive || h.space !== this.mm.id);
  }

  /**
   * Evict to free `need` frames, sparing `protect` and whatever older operations need. When
   * nothing may go, wait until an older operation on this device ends ('waited'; a fault
   * service lets go of its own pages meanwhile), or report 'none': nothing to wait for.
   */
  private async makeRoom(need: number, protect: ReadonlySet<number>, opts: FaultInOptions): Promise<'freed' | 'waited' | 'none'> {
    const ticket = opts.ticket ?? Infinity;
    // (frames another operation gave back since the caller looked count as room too)
    if (this.dev.memory.freeFrames > 0) return 'freed';
    const freed = await this.dev.evict(need, (mm, p) => mm === this.mm && protect.has(p), ticket, (opts.policies ?? this.dev.policies).eviction, opts.where);
    if (freed > 0 || this.dev.memory.freeFrames > 0) return 'freed';
    const older = this.dev.olderEnded(ticket, opts.hold);
    if (!older) return 'none';
    if (opts.hold) await opts.hold.yieldTo(older);
    else await older;
    this.dev.checkAlive('fault');
    return 'waited';
  }

  /**
   * Blocks touched by `pages` that can move as one 2 MiB unit: inside one huge mapping, every
   * page migratable and none mapped here yet, and room on the device for a whole block (when
   * there is not, the pages take the 4 KiB path, which evicts to make room).
   */
  private hugeBlocks(pages: readonly number[], opts: FaultInOptions = {}): number[] {
    if (this.dev.memory.freeFrames < PAGES_PER_HUGE) return [];
    const blocks = new Set<number>();
    for (const p of pages) {
      const vma = this.mm.vmas.find(p);
      if (vma?.huge) blocks.add(p >>> 9);
    }
    return [...blocks].filter((b) => {
      const first = b * PAGES_PER_HUGE;
      const vma = this.mm.vmas.find(first);
      if (!vma || !vma.huge || vma.start > first || vma.end < first + PAGES_PER_HUGE) return false;
      for (let p = first; p < first + PAGES_PER_HUGE; p++) if (this.table.lookup(p) || !this.migratable(p, false, opts, 'prefetch')) return false;
      return true;
    });
  }

  /**
   * May a device fault on p move it here (rather than map a copy)? No for shared mappings and
   * pinned pages (mechanism); no by policy when advice or the thrashing detector says the page
   * should stay in system RAM: preferred location 'system' or another device we only access,
   * read-mostly for reads, or thrashing.
   */
  private migratable(p: number, write: boolean, opts: FaultInOptions, asking: 'fault' | 'prefetch'): boolean {
    // What may not move at all is the mechanism's to know: shared mappings, pinned pages, pages
    // not in RAM (or untouched), pages a device holds.
    const vma = this.mm.vmas.find(p);
    if (!vma || vma.shared || !canRead(vma.prot) || this.mm.isPinned(p)) return false;
    const e = this.mm.pageTable.get(p);
    const k = pte.kind(e);
    if (!(k === Kind.None || k === Kind.Zero || (k === Kind.Ram && !pte.isHeld(e)))) return false;
    // The rest is the placement policy's: migrate, or serve through a copy ('pin': and keep it in RAM a while).
    const now = performance.now();
    const policy = (opts.policies ?? this.dev.policies).placement;
    const decision = askPlacement(policy, {
      page: p,
      device: this.dev.id,
      write,
      advice: { preferred: vma.preferred, readMostly: vma.readMostly, accessedBy: vma.accessedBy },
      thrashing: this.mm.thrash.isPinned(p, now),
      faults: this.faultCounts.get(p) ?? 0,
    }, opts.where ?? `${this.dev.name} fault-in`);
    if (asking === 'fault') {
      if (decision === 'pin') this.mm.thrash.pin(p, now);
      this.dev.stats.provenance.decision(this.mm.id, p, this.dev.id, `${policy.name}: ${decision}`);
    }
    return decision === 'migrate';
  }

  private checkPermissions(pages: readonly number[], write: boolean): void {
    for (const p of pages) {
      const vma = this.mm.vmas.find(p);
      const at = p * PAGE_SIZE;
      if (!vma || !canRead(vma.prot))
        throw new HmmError('EFAULT', `${this.dev.name}: address ${hex(at)} is ${vma ? "mapped with prot 'none'" : 'not mapped'}`, at);
      if (write && !canWrite(vma.prot)) throw new HmmError('EPERM', `${this.dev.name}: write to read-only address ${hex(at)}`, at);
    }
  }

  private async mapByRangeFault(start: number, end: number, write: boolean, seq: number, busyOnCpu: ReadonlySet<number>, protect: ReadonlySet<number>, opts: FaultInOptions): Promise<void> {
    const leave = (p: number): boolean => this.othersTurn(p, opts);
    const res = await rangeFault(this.mm, { start, end, fault: true, write, owner: this.dev.id, notifier: this.sub, seq, leave, cause: opts.cause?.(start) });
    if (this.sub.readRetry(seq, [start, end])) throw new HmmError('EBUSY', 'invalidated'); // retry under the rule
    const copies: number[] = [];
    for (let i = 0; i < end - start; i++) {
      const p = start + i;
      const f = res.flags[i]!;
      if (!(f & PFN_VALID)) continue;
      if (f & PFN_DEVICE_PRIVATE) {
        // Map only if the entry is still the one the walk saw: this device's own migrations do
        // not bump our notifier sequence (the notifier skips an owner's 'migrate' events), so
        // readRetry cannot tell that the page went home after the walk; a stale entry would
        // map a RAM frame number as a device frame. A page that moved faults again.
        if (this.mm.pageTable.get(p) !== res.entries[i]) continue;
        if (this.table.isHuge(p) || this.mapHugeBlock(p)) continue;
        const vma = this.mm.vmas.find(p);
        this.table.map(p, pte.frame(res.entries[i]!), !!vma && canWrite(vma.prot));
      } else if (busyOnCpu.has(p) || !this.migratable(p, write, opts, 'fault')) copies.push(p);
      // a migratable page that came home from another device migrates on the next round
    }
    // No retry check after the copies: mapCopies isolates its pages while it waits and maps
    // only those whose entries did not change, and an invalidation that comes after the mapping
    // drops it through the notifier like any other.
    // Upload what is mapped so far before any await: a launch checks the host table, and the
    // GPU's copy must not lag behind it (launch flushes too; this keeps the window closed).
    this.dev.stats.add('pageTableWrites', this.table.flush());
    if (copies.length > 0) await this.mapCopies(copies, write, protect, opts);
    this.dev.stats.add('pageTableWrites', this.table.flush());
  }

  /**
   * Map page p's whole 2 MiB block with one directory entry, if the block is one huge page on
   * this device: inside a huge mapping, all 512 pages this device's private pages on one aligned
   * run of frames, none mapped here yet (a huge page that mremap moved to an aligned address, or
   * whose mapping an invalidation dropped, keeps its PMD). False when it is not.
   */
  private mapHugeBlock(p: number): boolean {
    const first = (p >>> 9) * PAGES_PER_HUGE;
    const vma = this.mm.vmas.find(first);
    if (!vma?.huge || vma.start > first || vma.end < first + PAGES_PER_HUGE || this.table.isHuge(p)) return false;
    const e0 = this.mm.pageTable.get(first);
    const base = pte.frame(e0);
    if (pte.kind(e0) !== Kind.Device || pte.device(e0) !== this.dev.id || base % PAGES_PER_HUGE !== 0) return false;
    for (let i = 0; i < PAGES_PER_HUGE; i++) {
      const e = this.mm.pageTable.get(first + i);
      if (pte.kind(e) !== Kind.Device || pte.device(e) !== this.dev.id || pte.frame(e) !== base + i || this.table.lookup(first + i)) return false;
    }
    this.table.mapHuge(p >>> 9, base, canWrite(vma.prot));
    return true;
  }

  /**
   * Pages that must stay in RAM (shared, pinned, advised or thrashing) are mapped as device
   * copies: read-only duplicates (a CPU write invalidates them first), or, for writes, held
   * by this device (any CPU touch writes them back first). Either way one VA never maps two
   * different contents on two sides that both hold it valid. Returns the pages it could not
   * copy this time (a CPU thread stayed inside them); they fault again.
   */
  private async mapCopies(pages: readonly number[], write: boolean, protect: ReadonlySet<number> = new Set(pages), opts: FaultInOptions = {}): Promise<number[]> {
    const mm = this.mm;
    // The zero page cannot carry the copy flags: give such pages a real frame first. A held
    // (writable) copy of a frame shared copy-on-write with a fork relative needs a private
    // frame, or the device's writes would reach the relative on write-back.
    mm.populate(write ? pages : pages.filter((p) => pte.kind(mm.pageTable.get(p)) !== Kind.Ram), true);
    // Then device frames, evicting if the device is full (never a page this access needs), so
    // that nothing waits on eviction while the pages are isolated below.
    const frames = this.dev.allocFrames(pages.length);
    // (a clock sweep may only clear accessed bits, giving second chances; and frames freed
    // may go to another operation allocating at the same time: sweep again, as long as
    // something was freed or an older operation ended; waiting does not count as a sweep)
    for (let sweep = 0; sweep < MAX_ROUNDS && frames.length < pages.length; sweep++) {
      const room = await this.makeRoom(pages.length - frames.length, protect, opts);
      if (room === 'waited') sweep--;
      if (room === 'none') break;
      frames.push(...this.dev.allocFrames(pages.length - frames.length));
    }
    if (frames.length < pages.length) {
      this.dev.freeFrames(frames);
      throw new HmmError('ENOMEM', `${this.dev.name}: no device memory for ${pages.length} page copies at ${hex(pages[0]! * PAGE_SIZE)}; everything resident is needed by this access`, pages[0]! * PAGE_SIZE);
    }
    // A main-thread read or write in flight on a page would find it isolated and start over,
    // as often as we tried: let it finish first (it never waits for us).
    await Promise.all([...mm.family].map((s) => s.mainUnpinned(pages)));
    // Isolate the pages while the copy is taken, in every address space that maps the frame:
    // CPU threads that find them Migrating wait in the mailbox, and threads already inside an
    // access (they pinned before we marked) are let finish, or the copy could miss a write.
    const isolated = new Map<number, { sharers: AddressSpace[]; before: number[] }>();
    let release!: () => void;
    const copying = new Promise<void>((r) => (release = r));
    for (const p of pages) {
      // Only a page the CPU could access itself right now, as the walk left it: the walk was an
      // await ago, and since then another device may hold the page (taking a copy of RAM would
      // orphan that device's newer copy) or have a read-only copy of it (a writable copy beside
      // it would let the two differ). A page that changed faults again.
      // (Nor a page another device holds for its relaunch: it is that device's turn.)
      if (!mm.cpuAccessible(p, write) || pte.kind(mm.pageTable.get(p)) !== Kind.Ram || this.othersTurn(p, opts)) continue;
      const e = mm.pageTable.get(p);
      const sharers = mm.sharers(p, pte.frame(e));
      const before = sharers.map((s) => s.pageTable.get(p));
      sharers.forEach((s, i) => {
        s.pageTable.set(p, pte.migrating(before[i]!));
        s.inflight.set(p, copying);
      });
      isolated.set(p, { sharers, before });
    }
    const busy = await this.waitForThreads(isolated);
    const copied: number[] = [];
    const skipped: number[] = pages.filter((p) => !isolated.has(p));
    try {
      for (const [p, { sharers, before }] of isolated) {
        const changed = sharers.map((s, i) => s.pageTable.get(p) !== pte.migrating(before[i]!));
        if (changed.some((c) => c)) {
          // Unmapped meanwhile where it changed: unmapPages left that reference to us, as to
          // any migration; the other sharers get their entry back.
          sharers.forEach((s, i) => (changed[i] ? mm.ram.free(pte.frame(before[i]!)) : s.pageTable.set(p, before[i]!)));
          skipped.push(p);
          continue;
        }
        if (busy.has(p)) {
          sharers.forEach((s, i) => s.pageTable.set(p, before[i]!));
          skipped.push(p);
        } else copied.push(p);
      }
      this.dev.freeFrames(frames.splice(copied.length)); // the frames of pages not copied
      // Flag the entries (DUP or HELD) before reading RAM: from here a CPU thread that wants
      // to write (or, for HELD, touch) the page takes the slow path, which revokes the copy.
      const flag = write ? (e: number) => pte.withHeld(pte.plainRam(e), this.dev.id) : (e: number) => pte.withDup(e);
      for (const p of copied) {
        const { sharers, before } = isolated.get(p)!;
        sharers.forEach((s, i) => {
          if (write) s.endLazyFree(p); // the device will write it: madvise('free') no longer applies
          s.pageTable.set(p, flag(before[i]!));
          if (s !== mm) s.copyOwner.set(p, mm);
          else s.copyOwner.delete(p); // this copy is ours, whoever made the last one
        });
        if (write && sharers.length > 1) this.sharedHeld.add(p);
      }
      if (copied.length === 0) return skipped;
      this.dev.upload(frames, copied.map((p) => mm.ram.frame(pte.frame(mm.pageTable.get(p)))));
      copied.forEach((p, i) => {
        if (this.table.lookup(p)) this.dropMappings(p, p + 1); // a read-only copy a write replaces
        this.table.map(p, frames[i]!, write);
        this.dev.ownCopy(frames[i]!, mm, p);
      });
      this.dev.stats.add('deviceCopies', copied.length);
      const causeOf = opts.cause ?? (() => ({ kind: 'call', call: 'a device copy' }) as Cause);
      for (const p of copied) this.dev.stats.provenance.record(mm.id, [p], 'copy', this.dev.id, causeOf(p));
      return skipped;
    } finally {
      for (const [p, { sharers }] of isolated) for (const s of sharers) if (s.inflight.get(p) === copying) s.inflight.delete(p);
      release();
    }
  }

  /**
   * Wait (briefly) until no CPU thread of any address space that maps the page is inside an
   * access to it; returns the pages still busy. A page a main-thread read or write has pinned
   * is busy at once: such an access may wait on other pages for a long time.
   */
  private async waitForThreads(isolated: ReadonlyMap<number, { sharers: readonly AddressSpace[] }>): Promise<Set<number>> {
    const deadline = performance.now() + THREAD_DRAIN_MS;
    const mainPinned = [...isolated].filter(([p, { sharers }]) => sharers.some((s) => s.isMainPinned(p))).map(([p]) => p);
    for (;;) {
      const busy = new Set(mainPinned);
      for (const [p, { sharers }] of isolated) if (sharers.some((s) => s.pageTable.isPinned(p))) busy.add(p);
      if (busy.size === mainPinned.length || performance.now() > deadline) return busy;
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  // ------------------------------------------------------------------ dmirror API

  /** HMM_DMIRROR_READ: the device reads npages through its page table. */
  async read(va: number, npages: number): Promise<{ data: Uint8Array; cpages: number; faults: number }> {
    return this.op(async () => {
      this.alive('mirror.read');
      const { start, npages: n } = checkPages('mirror.read', va, npages);
      return this.holding(pageList(start, n), 'm.read() (HMM_DMIRROR_READ)', async (opts) => {
        let faults = 0;
        for (let round = 0; round < MAX_ROUNDS; round++) {
          const { misses, data } = await this.dev.runMirrorKernel(this, 'read', start * PAGE_SIZE, n * WORDS_PER_PAGE);
          if (misses === 0) return { data: data!, cpages: n, faults };
          faults++;
          this.dev.stats.add('gpuFaults');
          await this.faultIn(start, start + n, false, opts);
        }
        throw new HmmError('EBUSY', `mirror.read ${hex(va)}: still faulting after ${MAX_ROUNDS} rounds`, va);
      });
    });
  }

  /** HMM_DMIRROR_WRITE: the device writes data (a multiple of 4 bytes) through its page table. */
  async write(va: number, data: Uint8Array): Promise<{ cpages: number; faults: number }> {
    return this.op(() => this.thenWriteBackShared(() => this.writeOnce(va, data)));
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
        const { misses } = await this.dev.runMirrorKernel(this, 'write', va, data.length / 4, data);
        if (misses === 0) return { cpages: n, faults };
        faults++;
        this.dev.stats.add('gpuFaults');
        await this.faultIn(start, start + n, true, opts);
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
      // whole blocks of huge mappings move as 2 MiB units first (SELECT_COMPOUND)
      const inRange = new Set(pages);
      for (const block of this.hugeBlocks(pages)) {
        const blockPages = pageList(block * PAGES_PER_HUGE, PAGES_PER_HUGE);
        if (blockPages.every((p) => inRange.has(p))) await migrateToDevice(this.mm, this.dev, blockPages, { huge: true, othersTurn: (p) => this.othersTurn(p, {}), cause: () => EXPLICIT_MIGRATE });
      }
      const res = await migrateToDevice(this.mm, this.dev, pages, { othersTurn: (p) => this.othersTurn(p, {}), cause: () => EXPLICIT_MIGRATE });
      const result: string[] = [...res.pages];
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
        throw new HmmError('ENOENT', `migrateToDevice: ${bad.length} of ${n} pages did not move to ${this.dev.name}; first ${hex((start + i) * PAGE_SIZE)} (${result[i]})`, (start + i) * PAGE_SIZE);
      }
      return { cpages, pages: result };
    });
  }

  /** HMM_DMIRROR_MIGRATE_TO_SYS: this device's private pages in the range go back to RAM. */
  async migrateToSystem(va: number, npages: number): Promise<{ cpages: number; pages: string[] }> {
    return this.op(async () => {
      const { start, npages: n } = checkPages('mirror.migrateToSystem', va, npages);
      this.alive('migrateToSystem');
      for (let p = start; p < start + n; p++) {
        if (!this.mm.vmas.find(p))
          throw new HmmError('EINVAL', `migrateToSystem: address ${hex(p * PAGE_SIZE)} is not mapped`, p * PAGE_SIZE);
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
   */
  async makeExclusive(va: number, npages: number): Promise<{ cpages: number }> {
    return this.op(async () => {
      const { start, npages: n } = checkPages('mirror.makeExclusive', va, npages);
      this.alive('makeExclusive');
      const pages = pageList(start, n);
      this.checkPermissions(pages, true);
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
          this.checkPermissions(pages, true);
          // Every page must still be one the CPU could write now, in this same turn as the
          // invalidation below: a device that took a copy of one meanwhile would lose it to that
          // invalidation without a write-back. Such a page is faulted again.
          if (!pages.every((p) => this.mm.cpuAccessible(p, true))) continue;
          this.mm.populate(pages, true);
          for (const [s, e] of runs(pages)) {
            this.mm.notifier.invalidate({ start: s, end: e, event: 'exclusive', owner: this.dev });
            this.dropMappings(s, e);
          }
          const skipped = await this.mapCopies(pages, true, new Set(pages), { hold, ticket, cause: () => ({ kind: 'call', call: 'm.makeExclusive()' }) });
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

  /** HMM_DMIRROR_CHECK_EXCLUSIVE: EPERM if the device still holds any page exclusively. */
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
      this.checkPermissions(pages, false);
      if (location === 'device') {
        const before = pages.filter((p) => this.table.lookup(p) === null).length;
        await this.faultInPages(pages, false, { cause: () => ({ kind: 'call', call: "m.prefetch('device')" }) });
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

  /** HMM_DMIRROR_SNAPSHOT: one byte per page, the kernel's HMM_DMIRROR_PROT_* values. */
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
   * Run a kernel. Validated mode: every declared range is faulted in and mapped first, under
   * the read-begin/retry rule, and launched with no await in between, so no invalidation can
   * slip between the check and the submit. A miss in the kernel is an error, never a zero.
   */
  async dispatch(kernel: HmmKernel, opts: DispatchOptions): Promise<DispatchResult> {
    return this.op(() => this.thenWriteBackShared(() => this.dispatchOnce(kernel, opts)));
  }

  /**
   * Device writes to a frame that several address spaces map (a shared mapping after fork)
   * are held copies; they are written back when the operation ends, so no relative can lose
   * them to a munmap or MAP_FIXED on one side (which must not wait on a device).
   */
  private async thenWriteBackShared<T>(op: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await op();
    } catch (e) {
      await this.writeBackShared().catch(() => undefined); // the operation's error is the one to report
      throw e;
    }
    await this.writeBackShared();
    return result;
  }

  private async writeBackShared(): Promise<void> {
    if (this.sharedHeld.size === 0) return;
    const pages = [...this.sharedHeld].sort((a, b) => a - b);
    this.sharedHeld.clear();
    await this.mm.revokeHeld(this.dev.id, pages, { kind: 'call', call: `the end of a ${this.dev.name} operation on a page fork relatives share` });
  }

  private async dispatchOnce(kernel: HmmKernel, opts: DispatchOptions): Promise<DispatchResult> {
    this.alive('dispatch');
    if (!(kernel instanceof HmmKernel)) throw new HmmError('EINVAL', `dispatch: kernel ${String(kernel)} is not a kernel from createKernel()`);
    if (!opts || typeof opts !== 'object') throw new HmmError('EINVAL', `dispatch '${kernel.label}': options { workgroups, uniforms?, mode?, ranges? } required`);
    const u = opts.uniforms;
    if (u !== undefined && !(u instanceof ArrayBuffer) && !ArrayBuffer.isView(u))
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': uniforms ${String(u)} is not an ArrayBuffer or a typed array`);
    const maxUniform = this.dev.device.limits.maxUniformBufferBindingSize;
    if (u !== undefined && u.byteLength > maxUniform)
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': uniforms of ${u.byteLength} bytes exceed the device's ${maxUniform}-byte uniform binding limit`);
    if (u !== undefined && u.byteLength % 4 !== 0)
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': uniforms of ${u.byteLength} bytes: the length must be a multiple of 4 (WGSL uniform values are 4-byte words)`);
    if (opts.ranges !== undefined && !Array.isArray(opts.ranges))
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': ranges is not an array of { va, bytes, access? }`);
    const mode = opts.mode ?? 'validated';
    if (mode !== 'validated' && mode !== 'replayable')
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': mode '${String(mode)}' is not 'validated' or 'replayable'`);
    if (kernel.device !== this.dev.device)
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': the kernel was created on another device than ${this.dev.name}`);
    const workgroups = this.dev.checkWorkgroups(kernel.label, opts.workgroups);
    const ranges = (opts.ranges ?? []).map((r, i) => {
      const what = `dispatch '${kernel.label}' ranges[${i}]`;
      if (!r || typeof r !== 'object') throw new HmmError('EINVAL', `${what}: ${String(r)} is not a { va, bytes, access? } object`);
      const va = checkAddress(what, r.va);
      const bytes = checkCount(what, 'bytes', r.bytes);
      checkRange(what, va, bytes);
      if (r.access !== undefined && r.access !== 'r' && r.access !== 'rw')
        throw new HmmError('EINVAL', `${what}: access ${String(r.access)} is not 'r' or 'rw'`, va);
      return { start: Math.floor(va / PAGE_SIZE), end: Math.ceil((va + bytes) / PAGE_SIZE), write: r.access === 'rw' };
    });
    if (mode === 'replayable') return this.dispatchReplayable(kernel, workgroups, opts, ranges);
    const declared = new Set<number>();
    for (const r of ranges) for (let p = r.start; p < r.end; p++) declared.add(p);
    if (declared.size > this.dev.memory.frameCount)
      throw new HmmError('ENOMEM', `dispatch '${kernel.label}': declared ranges span ${declared.size} pages, more than ${this.dev.name}'s ${this.dev.memory.frameCount} frames; use replayable mode to stream them`);
    let faults = 0;
    const policies = this.policiesFor(kernel.label, opts);
    // The declared pages are held until the kernel has run: CPU accesses and other devices wait
    // for it, and this device's other operations evict them only if they are older.
    const ticket = this.dev.ticket();
    const hold = this.mm.holdForDevice(this.dev.id, [...declared].sort((a, b) => a - b), ticket);
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const cause: Cause = { kind: 'declared', device: this.dev.id, kernel: kernel.label, dispatch: ticket };
        for (const r of ranges) await this.faultIn(r.start, r.end, r.write, { keep: declared, hold, ticket, policies, where: `dispatch '${kernel.label}'`, cause: () => cause });
        // Launch only if every declared page is still mapped as declared, checked in the same
        // turn as the submit. The table is the truth (every invalidation drops its mappings
        // before it returns); the notifier's sequence is not: it does not move for this
        // device's own evictions and migrations, and it moves for work anywhere else in the
        // address space. A page taken since it was faulted in is faulted in again.
        if (!ranges.every((r) => this.mapped(r.start, r.end, r.write))) {
          faults++;
          continue;
        }
        const status = await this.launchOnce(kernel, workgroups, opts.uniforms);
        if (status.misses > 0) throw this.missError(kernel.label, status);
        this.dev.stats.add('dispatches');
        return { faults, rounds: 1, faultedPages: 0 };
      }
    } finally {
      hold.release();
    }
    throw new HmmError('EBUSY', `dispatch '${kernel.label}': declared ranges kept being invalidated`);
  }

  /**
   * Replayable mode, as a GPU with recoverable faults: launch; invocations that miss record
   * (page, access) in the GPU fault queue once per round, stop storing, and stay unfinished;
   * the host reads the whole batch in one round trip, services it (deduplicated, sorted,
   * grouped into runs), and relaunches: only unfinished invocations run again (done bitmap).
   * Kernels must be restartable: what an invocation did before its first fault is redone.
   */
  private async dispatchReplayable(
    kernel: HmmKernel,
    workgroups: [number, number, number],
    opts: DispatchOptions,
    ranges: { start: number; end: number; write: boolean }[],
  ): Promise<DispatchResult> {
    const s = kernel.workgroupSize;
    const invocations = workgroups[0] * workgroups[1] * workgroups[2] * s[0] * s[1] * s[2];
    if (invocations > 2 ** 32 - 1) throw new HmmError('EINVAL', `dispatch '${kernel.label}': ${invocations} invocations exceed 2^32`);
    const maxRounds = opts.maxRounds ?? DEFAULT_MAX_REPLAYS;
    if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new HmmError('EINVAL', `dispatch '${kernel.label}': maxRounds ${String(maxRounds)} is not a positive integer`);
    const batch = opts.faultBatchPages ?? this.dev.faultBatchPages;
    if (!Number.isInteger(batch) || batch < 1 || batch > FAULT_QUEUE_CAP)
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': faultBatchPages ${String(batch)} is not an integer in [1, ${FAULT_QUEUE_CAP}]`);
    const policies = this.policiesFor(kernel.label, opts);
    const ticket = this.dev.ticket(); // this dispatch's age, for all its rounds
    for (const r of ranges) await this.faultIn(r.start, r.end, r.write, { ticket, policies, where: `dispatch '${kernel.label}'` });
    let faults = 0;
    let faultedPages = 0;
    let stalled = 0;
    let lastKeys = '';
    let hold: DeviceHold | null = null;
    // This dispatch's own control buffer for all its rounds: its done bitmap (cleared by the
    // first launch) is what makes a relaunch skip the invocations that already finished.
    const ctl = this.controls.take(Math.ceil(invocations / 32) * 4);
    // Its interest in every page it faults on, until it ends: younger device operations wait
    // for it instead of taking those pages between its rounds (src/mm/deviceHolds.ts).
    const interest = this.mm.holdForDevice(this.dev.id, [], ticket, { interest: true });
    try {
      for (let round = 1; round <= maxRounds; round++) {
        this.alive('dispatch');
        const status = await this.dev.launch(this, ctl, kernel, workgroups, opts.uniforms, undefined, { replayable: true, clearDone: round === 1 });
        hold?.release();
        hold = null;
        this.dev.stats.add('dispatches');
        if (status.misses === 0) return { faults, rounds: round, faultedPages };
        faults++;
        this.dev.stats.add('gpuFaults');
        const keys = [...new Set(status.faults!)].sort((a, b) => a - b);
        this.dev.stats.add('faultsReported', status.misses);
        this.dev.stats.add('faultsDeduplicated', status.misses - keys.length);
        this.dev.stats.add('faultRecords', status.faults!.length);
        this.dev.stats.add('faultPages', new Set(keys.map((k) => k >>> 1)).size);
        const sig = keys.join(',');
        stalled = sig === lastKeys ? stalled + 1 : 0;
        lastKeys = sig;
        if (stalled >= STALLED_ROUNDS || round === maxRounds) {
          const pages = keys.slice(0, 8).map((k) => hex((k >>> 1) * PAGE_SIZE)).join(', ');
          throw new HmmError('EBUSY', `dispatch '${kernel.label}': still faulting after ${round} rounds on ${keys.length} pages (${pages}${keys.length > 8 ? ', ...' : ''})`, (keys[0]! >>> 1) * PAGE_SIZE);
        }
        faultedPages += keys.length;
        const t0 = performance.now();
        const roundPages = keys.map((k) => k >>> 1);
        interest.extend(roundPages);
        hold = this.mm.holdForDevice(this.dev.id, roundPages, ticket);
        const flow = this.dev.stats.trace.newFlow();
        await this.serviceFaults({ kernel: kernel.label, dispatch: ticket, round, flow }, keys, policies, batch, hold);
        this.dev.stats.trace.record({
          kind: 'gpu-fault-round', ts: t0, dur: performance.now() - t0, pages: keys.length, va: (keys[0]! >>> 1) * PAGE_SIZE,
          device: this.dev.id, mm: this.mm.id, detail: `${kernel.label} round ${round}: ${status.misses} misses, ${keys.length} unique`, id: flow,
        });
      }
    } finally {
      hold?.release();
      interest.release();
      this.controls.give(ctl);
    }
    throw new HmmError('EBUSY', `dispatch '${kernel.label}': no rounds allowed`);
  }

  /**
   * The policies a dispatch runs under: the device's, with the dispatch's `prefetch` settings
   * (a density prefetcher with them) and then its own `policy` over them.
   */
  private policiesFor(label: string, opts: DispatchOptions): Required<Policies> {
    const out = { ...this.dev.policies };
    if (opts.prefetch !== undefined) out.prefetch = densityPrefetch(resolvePrefetch(label, this.dev.prefetch, opts.prefetch));
    const own = opts.policy;
    if (own !== undefined) {
      if (own === null || typeof own !== 'object') throw new HmmError('EINVAL', `dispatch '${label}': policy ${String(own)} is not an object { prefetch?, eviction?, placement?, batching? }`);
      for (const kind of ['prefetch', 'eviction', 'placement', 'batching'] as const) {
        if (own[kind] === undefined) continue;
        checkPolicy(kind, own[kind], `dispatch '${label}' policy`);
        (out as Record<string, unknown>)[kind] = own[kind];
      }
    }
    return out;
  }

  /**
   * Service one batch of GPU faults: writes (they subsume reads of the same page), then reads
   * plus what the prefetcher adds around them, each as one migration batch.
   */
  private async serviceFaults(
    at: { kernel: string; dispatch: number; round: number; flow: number },
    keys: readonly number[],
    policies: Required<Policies>,
    batch: number,
    hold: DeviceHold,
  ): Promise<void> {
    const label = at.kernel;
    const where = `dispatch '${label}' round ${at.round}`;
    const writes = new Set<number>();
    for (const k of keys) if (k & 1) writes.add(k >>> 1);
    let faulted = [...new Set(keys.map((k) => k >>> 1))];
    // How much of the round to take on, and whether to nap first: the batching policy's. The
    // faults left out fault again next round. Whatever it says, one batch must fit beside what
    // stays resident: at most half the device (the mechanism's cap).
    const cap = Math.max(1, Math.floor(this.dev.memory.frameCount / 2));
    const now = performance.now();
    const thrashing = this.mm.thrash.config.enabled && faulted.some((p) => this.mm.thrash.isPinned(p, now));
    const plan = askBatching(policies.batching, { faulted: faulted.length, frames: this.dev.memory.frameCount, batchPages: batch, thrashing, thrashNapMs: this.mm.thrash.config.napMs }, where);
    if (faulted.length > Math.min(cap, plan.take)) faulted = faulted.slice(0, Math.min(cap, plan.take));
    for (const p of faulted) this.faultCounts.set(p, (this.faultCounts.get(p) ?? 0) + 1);
    const isFault = new Set(faulted);
    const fault: Cause = { kind: 'gpu-fault', device: this.dev.id, ...at };
    const prefetched: Cause = { kind: 'prefetch', device: this.dev.id, ...at, policy: policies.prefetch.name };
    const opts: FaultInOptions = { hold, ticket: hold.ticket, policies, where, cause: (p) => (isFault.has(p) ? fault : prefetched) };
    const view = { resident: (p: number) => this.table.lookup(p) !== null, allowed: (p: number) => this.migratable(p, false, opts, 'prefetch') && !this.othersTurn(p, opts) };
    let wanted = askPrefetch(policies.prefetch, faulted, view, where);
    if (wanted.length > cap) {
      const isFault = new Set(faulted);
      wanted = [...faulted, ...wanted.filter((p) => !isFault.has(p)).slice(0, cap - faulted.length)].sort((a, b) => a - b);
    }
    const keep = new Set(wanted);
    for (const w of writes) if (!keep.has(w)) writes.delete(w);
    const reads = wanted.filter((p) => !writes.has(p));
    if (plan.napMs > 0) {
      this.dev.stats.add('throttledBatches');
      await new Promise((r) => setTimeout(r, plan.napMs));
    }
    this.dev.stats.add('prefetchedPages', wanted.length - faulted.length);
    if (wanted.length > faulted.length)
      this.dev.stats.trace.record({ kind: 'prefetch', pages: wanted.length - faulted.length, va: wanted[0]! * PAGE_SIZE, device: this.dev.id, mm: this.mm.id });
    try {
      await this.faultInPages([...writes].sort((a, b) => a - b), true, { ...opts, keep, progress: isFault });
      await this.faultInPages(reads, false, { ...opts, keep, progress: isFault });
    } catch (e) {
      // A fault on an address with no mapping is the kernel's segfault, not a host error.
      if (e instanceof HmmError && e.code === 'EFAULT' && e.address !== undefined)
        throw new HmmError('ESEGV', `kernel '${label}' touched unmapped address ${hex(e.address)}`, e.address);
      if (e instanceof HmmError && e.code === 'EPERM' && e.address !== undefined)
        throw new HmmError('EPERM', `kernel '${label}' wrote read-only address ${hex(e.address)}`, e.address);
      throw e;
    }
  }

  private missError(label: string, s: { misses: number; minMiss: number; minWriteMiss: number }): HmmError {
    const at = s.minMiss;
    const vma = this.mm.vmaAt(at);
    if (!vma || !canRead(vma.prot))
      return new HmmError('ESEGV', `kernel '${label}' touched unmapped address ${hex(at)} (${s.misses} faulting accesses)`, at);
    if (s.minWriteMiss === at && !canWrite(vma.prot))
      return new HmmError('EPERM', `kernel '${label}' wrote read-only address ${hex(at)} (${s.misses} faulting accesses)`, at);
    return new HmmError('EFAULT', `kernel '${label}' touched ${hex(at)}, outside its declared ranges (${s.misses} faulting accesses); declare it in ranges`, at);
  }

  /** Is every page of [start, end) mapped in this device's table (writable, for `write`)? */
  private mapped(start: number, end: number, write: boolean): boolean {
    for (let p = start; p < end; p++) {
      const m = this.table.lookup(p);
      if (!m || (write && !m.write)) return false;
    }
    return true;
  }

  /** A validated launch, with a control buffer of its own. */
  private async launchOnce(kernel: HmmKernel, workgroups: [number, number, number], uniforms?: ArrayBufferView | ArrayBuffer): Promise<LaunchStatus> {
    const ctl = this.controls.take();
    try {
      return await this.dev.launch(this, ctl, kernel, workgroups, uniforms);
    } finally {
      this.controls.give(ctl);
    }
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

  /** Every public call first: the device must be alive (EDEVLOST), then the address space (EINVAL). */
  private alive(what: string): void {
    this.dev.checkAlive(what);
    this.mm.checkAlive(`${this.dev.name}: ${what}`);
  }

  /**
   * Run one public operation. The mirror's GPU buffers outlive the operations in flight on it:
   * close() while any is running (its address space destroyed under it) waits for the last.
   */
  private async op<T>(f: () => Promise<T>): Promise<T> {
    this.active++;
    try {
      return await f();
    } finally {
      if (--this.active === 0 && this.closing) this.close();
    }
  }

  /** Give back the page table's and control buffers' GPU memory (when the last operation ends). */
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
