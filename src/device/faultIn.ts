// Device fault-in: making pages valid in one device's page table for one address space. It
// owns the decision path of a device fault (under the read-begin / read-retry rule): which pages
// migrate here and which the device maps as copies (asking the placement policy), whole 2 MiB
// blocks, room made by eviction, turns with other operations (src/mm/deviceHolds.ts), and
// dropping mappings when the CPU side changes. The dmirror calls (mirror.ts) and the dispatch
// path (dispatch.ts) both come here; this module calls neither.

import { PAGE_SIZE, PAGES_PER_HUGE, hex, pageList } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { migrateToDevice, runs } from '../hmm/migrate.ts';
import { PFN_DEVICE_PRIVATE, PFN_VALID, rangeFault } from '../hmm/rangeFault.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import type { DeviceHold } from '../mm/deviceHolds.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import type { NotifierSubscription } from '../mm/notifier.ts';
import { canRead, canWrite } from '../mm/vmaList.ts';
import { askPlacement } from '../policy/guard.ts';
import type { Policies } from '../policy/types.ts';
import type { Cause } from '../trace/provenance.ts';
import type { DevicePageTable } from './devicePageTable.ts';
import type { HmmDevice } from './hmmDevice.ts';

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

/** Fault-in rounds (and eviction sweeps) before a call gives up with EBUSY. */
export const MAX_ROUNDS = 32;
/** How long a device copy waits for CPU threads already inside the pages to leave them. */
const THREAD_DRAIN_MS = 100;

/** Every public call first: the device must be alive (EDEVLOST), then the address space (EINVAL). */
export function checkAlive(dev: HmmDevice, mm: AddressSpace, what: string): void {
  dev.checkAlive(what);
  mm.checkAlive(`${dev.name}: ${what}`);
}

export class DeviceFaultIn {
  /** Faults this device took on each page (for placement policies: PlacementContext.faults). */
  private readonly faultCounts = new Map<number, number>();
  /** Held copies of frames other address spaces also map: written back when the operation ends. */
  private readonly sharedHeld = new Set<number>();
  /** Why the last makeRoom found no room (for the ENOMEM that follows it). */
  private shortBecause = '';
  /** Placement decisions in words, per policy name and decision (decisionText). */
  private readonly decisionTexts = new Map<string, Map<string, string>>();
  /** The last othersHold predicate made, and the options it was made for (othersTurn asks per page). */
  private othersOpts: FaultInOptions | undefined;
  private othersPredicate: ((h: DeviceHold) => boolean) | undefined;

  constructor(
    private readonly dev: HmmDevice,
    private readonly mm: AddressSpace,
    private readonly table: DevicePageTable,
    private readonly sub: NotifierSubscription,
    /** Pages this device holds for atomics (make_device_exclusive); a dropped mapping leaves it. */
    private readonly exclusive: Set<number>,
  ) {}

  private checkAlive(what: string): void {
    checkAlive(this.dev, this.mm, what);
  }

  /** A replayable fault round faulted on these pages (placement policies see the counts). */
  countFaults(pages: readonly number[]): void {
    for (const p of pages) this.faultCounts.set(p, (this.faultCounts.get(p) ?? 0) + 1);
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
    const triedInPlace = new Set<number>();
    for (let round = 0; round < MAX_ROUNDS; round++) {
      this.checkAlive('fault'); // the device lost, or the address space destroyed, meanwhile
      const seq = this.sub.readBegin();
      let missing: number[] = [];
      for (const p of pages) if (!this.table.has(p, write)) missing.push(p);
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
      // held by another operation meanwhile (only the block migrations above awaited: without
      // them, every page here was just found free of other turns in this same turn)
      if (blocks.length > 0) movable = movable.filter((p) => !this.othersTurn(p, opts));
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
            throw new HmmError(
              'ENOMEM',
              `${this.dev.name}: device memory exhausted (${this.dev.memory.frameCount} frames) faulting in ${hex(at)}${this.shortBecause}`,
              at,
            );
          }
        }
        continue;
      }
      // A write to a page this device has a read-only copy of: the copy becomes writable in
      // place (hmm_range_fault would drop it with every other copy, and a new one be uploaded).
      // (Once per page: one that could not be made writable, a CPU thread staying inside it,
      // takes the general path next round.)
      if (write) {
        const inPlace = missing.filter((p) => !triedInPlace.has(p) && this.upgradableInPlace(p));
        if (inPlace.length > 0) {
          for (const p of inPlace) triedInPlace.add(p);
          await this.mapCopies(inPlace, true, protect, opts);
          continue; // look again at what is still missing
        }
      }
      // The rest: hmm_range_fault brings other devices' pages home and reports ours.
      try {
        for (const [s, e] of runs(missing)) await this.mapByRangeFault(s, e, write, seq, busyOnCpu, protect, opts);
      } catch (err) {
        if (err instanceof HmmError && err.code === 'EBUSY') continue; // invalidated: start over
        throw err;
      }
    }
    throw new HmmError(
      'EBUSY',
      `${this.dev.name}: fault-in of ${hex(start * PAGE_SIZE)}..${hex(end * PAGE_SIZE)} did not settle after ${MAX_ROUNDS} rounds`,
      start * PAGE_SIZE,
    );
  }

  /**
   * Is it another operation's turn with page p? Yes while another device (or fork, or a CPU
   * access faulting it in) holds it, in this address space or, for a shared frame, in a fork
   * relative that maps it. And yes while an older operation of this device holds it for such
   * a relative: a device keeps one held copy of a frame, so two relatives' operations on it
   * take turns, the older first (each taking the copy from the other would never end).
   */
  othersTurn(p: number, opts: FaultInOptions): boolean {
    // (one predicate per options object, not one closure per page asked about)
    if (opts !== this.othersOpts || !this.othersPredicate) {
      this.othersPredicate = this.othersHold(opts);
      this.othersOpts = opts;
    }
    return this.mm.heldBy(p, this.othersPredicate);
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
    const policy = (opts.policies ?? this.dev.policies).eviction;
    const { freed, offered } = await this.dev.evict(need, (mm, p) => mm === this.mm && protect.has(p), ticket, policy, opts.where);
    if (freed > 0 || this.dev.memory.freeFrames > 0) return 'freed';
    const older = this.dev.olderEnded(ticket, opts.hold);
    if (!older) {
      this.shortBecause =
        offered > 0 ? `; eviction policy '${policy.name}' chose none of the ${offered} units it was offered` : '; everything resident is needed by this access';
      return 'none';
    }
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
  hugeBlocks(pages: readonly number[], opts: FaultInOptions = {}): number[] {
    if (this.dev.memory.freeFrames < PAGES_PER_HUGE) return [];
    const blocks = new Set<number>();
    for (const p of pages) {
      const vma = this.mm.vmas.find(p);
      if (vma?.huge) blocks.add(p >>> 9);
    }
    return [...blocks].filter((b) => {
      const first = b * PAGES_PER_HUGE;
      const vma = this.mm.vmas.find(first);
      if (!vma?.huge || vma.start > first || vma.end < first + PAGES_PER_HUGE) return false;
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
  migratable(p: number, write: boolean, opts: FaultInOptions, asking: 'fault' | 'prefetch'): boolean {
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
    const decision = askPlacement(
      policy,
      {
        page: p,
        device: this.dev.id,
        write,
        advice: { preferred: vma.preferred, readMostly: vma.readMostly, accessedBy: vma.accessedBy },
        thrashing: this.mm.thrash.isPinned(p, now),
        faults: this.faultCounts.get(p) ?? 0,
        prefetch: asking === 'prefetch',
      },
      opts.where ?? `${this.dev.name} fault-in`,
    );
    if (asking === 'fault') {
      if (decision === 'pin') this.mm.thrash.pin(p, now);
      this.dev.stats.provenance.decision(this.mm.id, p, this.dev.id, this.decisionText(policy.name, decision));
    }
    return decision === 'migrate';
  }

  /** "policy: decision", built once per policy name and decision, not once per faulted page. */
  private decisionText(policy: string, decision: string): string {
    let byDecision = this.decisionTexts.get(policy);
    if (!byDecision) this.decisionTexts.set(policy, (byDecision = new Map()));
    let text = byDecision.get(decision);
    if (text === undefined) byDecision.set(decision, (text = `${policy}: ${decision}`));
    return text;
  }

  checkPermissions(pages: readonly number[], write: boolean): void {
    for (const p of pages) {
      const vma = this.mm.vmas.find(p);
      const at = p * PAGE_SIZE;
      if (!vma || !canRead(vma.prot))
        throw new HmmError('EFAULT', `${this.dev.name}: address ${hex(at)} is ${vma ? "mapped with prot 'none'" : 'not mapped'}`, at);
      if (write && !canWrite(vma.prot)) throw new HmmError('EPERM', `${this.dev.name}: write to read-only address ${hex(at)}`, at);
    }
  }

  private async mapByRangeFault(
    start: number,
    end: number,
    write: boolean,
    seq: number,
    busyOnCpu: ReadonlySet<number>,
    protect: ReadonlySet<number>,
    opts: FaultInOptions,
  ): Promise<void> {
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
    if (copies.length > 0) {
      // A read of a thrashing page of private writable memory gets a writable (held) copy, as a
      // migrated page comes writable: the store that usually follows a load needs no second
      // fault round and no second copy, and a copy no kernel wrote goes home at no cost (its
      // dirty blocks, read after the launch, are none). Thrash mitigation must not cost more
      // than the migrations it replaces (issue 15, G9).
      const held = write ? [] : copies.filter((p) => this.heldForRead(p));
      if (held.length > 0) await this.mapCopies(held, true, protect, opts);
      const heldSet = held.length > 0 ? new Set(held) : undefined;
      const plain = heldSet ? copies.filter((p) => !heldSet.has(p)) : copies;
      if (plain.length > 0) await this.mapCopies(plain, write, protect, opts);
    }
    this.dev.stats.add('pageTableWrites', this.table.flush());
  }

  /**
   * Does a read fault on p map a held (writable) copy? For a page the thrashing detector keeps in
   * RAM, in a private writable mapping not advised read-mostly, that the CPU could write now and
   * no fork relative shares: a held copy of it needs no other step.
   */
  private heldForRead(p: number): boolean {
    const vma = this.mm.vmas.find(p);
    if (!vma || vma.shared || vma.readMostly || !canWrite(vma.prot) || !this.mm.thrash.isPinned(p, performance.now())) return false;
    const e = this.mm.pageTable.get(p);
    return pte.kind(e) === Kind.Ram && this.mm.cpuAccessible(p, true) && this.mm.ram.refCount(pte.frame(e)) === 1;
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
  async mapCopies(pages: readonly number[], write: boolean, protect: ReadonlySet<number> = new Set(pages), opts: FaultInOptions = {}): Promise<number[]> {
    const mm = this.mm;
    // The zero page cannot carry the copy flags: give such pages a real frame first. A held
    // (writable) copy of a frame shared copy-on-write with a fork relative needs a private
    // frame, or the device's writes would reach the relative on write-back.
    mm.populate(write ? pages : pages.filter((p) => pte.kind(mm.pageTable.get(p)) !== Kind.Ram), true);
    // Then device frames, evicting if the device is full (never a page this access needs), so
    // that nothing waits on eviction while the pages are isolated below. A page with a
    // read-only copy here that a write wants needs none: the copy becomes writable in place.
    let want = pages.length;
    if (write) for (const p of pages) if (this.upgradable(p) >= 0) want--;
    const frames = this.dev.allocFrames(want);
    // (a clock sweep may only clear accessed bits, giving second chances; and frames freed
    // may go to another operation allocating at the same time: sweep again, as long as
    // something was freed or an older operation ended; waiting does not count as a sweep)
    for (let sweep = 0; sweep < MAX_ROUNDS && frames.length < want; sweep++) {
      const room = await this.makeRoom(want - frames.length, protect, opts);
      if (room === 'waited') sweep--;
      if (room === 'none') break;
      frames.push(...this.dev.allocFrames(want - frames.length));
    }
    if (frames.length < want) {
      this.dev.freeFrames(frames);
      throw new HmmError(
        'ENOMEM',
        `${this.dev.name}: no device memory for ${pages.length} page copies at ${hex(pages[0]! * PAGE_SIZE)}${this.shortBecause}`,
        pages[0]! * PAGE_SIZE,
      );
    }
    // A main-thread read or write in flight on a page would find it isolated and start over,
    // as often as we tried: let it finish first (it never waits for us).
    await Promise.all([...mm.family].map((s) => s.mainUnpinned(pages)));
    // (phases from here: collect and isolate, copy-upload, commit; the eviction above has its own)
    const stats = this.dev.stats;
    let t = performance.now();
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
      // (A read-only copy here that the write makes writable in place is not CPU-writable: its
      // other copies, on other devices, go below, while the page is isolated.)
      if (!(mm.cpuAccessible(p, write) || (write && this.upgradableInPlace(p))) || pte.kind(mm.pageTable.get(p)) !== Kind.Ram || this.othersTurn(p, opts))
        continue;
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
    /** The device frame of each copied page, and whether it is a read-only copy made writable. */
    const target: number[] = [];
    const upgraded: boolean[] = [];
    let fresh = 0;
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
        // (the read-only copy a write would make writable may have gone in the awaits above,
        // and then the page needs one of the frames, which may have run out: it faults again)
        const upgrade = write ? this.upgradable(p) : -1;
        if (busy.has(p) || (upgrade < 0 && fresh === frames.length)) {
          sharers.forEach((s, i) => s.pageTable.set(p, before[i]!));
          skipped.push(p);
          continue;
        }
        copied.push(p);
        target.push(upgrade >= 0 ? upgrade : frames[fresh++]!);
        upgraded.push(upgrade >= 0);
      }
      this.dev.freeFrames(frames.splice(fresh)); // the frames no page took
      t = stats.endPhase('collect', t, this.dev.id, mm.id);
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
      // Copies made writable in place: other devices' read-only copies of those pages go now
      // (this device's own stays: the 'exclusive' event skips it), as a CPU write would drop them.
      for (let i = 0; i < copied.length; i++) {
        if (!upgraded[i]) continue;
        mm.notifier.invalidate({ start: copied[i]!, end: copied[i]! + 1, event: 'exclusive', owner: this.dev });
        this.dev.stats.add('invalidations');
      }
      const sources: Uint8Array[] = [];
      for (let i = 0; i < copied.length; i++) if (!upgraded[i]) sources.push(mm.ram.frame(pte.frame(mm.pageTable.get(copied[i]!))));
      if (frames.length > 0) this.dev.upload(frames, sources);
      t = stats.endPhase('copy-upload', t, this.dev.id, mm.id);
      let upgrades = 0;
      copied.forEach((p, i) => {
        const f = target[i]!;
        if (upgraded[i]) upgrades++;
        else if (this.table.lookup(p)) this.dropMappings(p, p + 1); // (none: upgradable() said so, or it went meanwhile)
        this.table.map(p, f, write);
        this.dev.ownCopy(f, mm, p, write);
      });
      this.dev.stats.add('deviceCopies', copied.length - upgrades);
      if (upgrades > 0) this.dev.stats.add('copyUpgrades', upgrades);
      const causeOf = opts.cause ?? (() => ({ kind: 'call', call: 'a device copy' }) as Cause);
      this.dev.stats.provenance.recordEach(mm.id, copied, 'copy', this.dev.id, causeOf);
      stats.endPhase('commit', t, this.dev.id, mm.id);
      return skipped;
    } finally {
      for (const [p, { sharers }] of isolated) for (const s of sharers) if (s.inflight.get(p) === copying) s.inflight.delete(p);
      release();
    }
  }

  /**
   * The device frame of page p's read-only copy here, which a write may make writable in place
   * (no second upload: the frame holds what RAM holds, since a CPU write drops the copy
   * first), or -1 when p has none.
   */
  private upgradable(p: number): number {
    const m = this.table.lookup(p);
    return m && !m.write && this.dev.isCopyFrame(m.frame) ? m.frame : -1;
  }

  /**
   * May a write make page p's read-only copy here writable in place? Its RAM page must be one
   * only this address space maps (a frame a fork relative shares copy-on-write needs a private
   * one first, and a shared one's relatives' copies would stay), with read-only copies and no
   * held one.
   */
  private upgradableInPlace(p: number): boolean {
    const e = this.mm.pageTable.get(p);
    return pte.kind(e) === Kind.Ram && pte.isDup(e) && !pte.isHeld(e) && this.mm.ram.refCount(pte.frame(e)) === 1 && this.upgradable(p) >= 0;
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

  /**
   * Device writes to a frame that several address spaces map (a shared mapping after fork)
   * are held copies; they are written back when the operation ends, so no relative can lose
   * them to a munmap or MAP_FIXED on one side (which must not wait on a device).
   */
  async thenWriteBackShared<T>(op: () => Promise<T>): Promise<T> {
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
}
