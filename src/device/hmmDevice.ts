// HmmDevice: one GPUDevice acting as an HMM driver. It owns the device memory pool, the copy
// engine, the reverse map from device frames to (address space, page), eviction (the policy
// picks among candidates; the mechanism writes back and drops), release and revoke, the
// mirrors (one per address space), kernel compilation, and device-loss state. Launches are
// launch.ts's. It is the DevicePagemap the CPU side calls for migrate_to_ram, and the target
// migrations copy into.

import { PAGE_SIZE, hex } from '../constants.ts';
import { HmmError } from '../errors.ts';
import { migrateToSystem, runs, type MigrationDevice } from '../hmm/migrate.ts';
import { AddressSpace } from '../mm/addressSpace.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import type { DevicePagemap } from '../mm/pagemap.ts';
import type { Stats } from '../trace/stats.ts';
import { DEFAULT_PREFETCH, densityPrefetch, type PrefetchConfig } from '../policy/prefetch.ts';
import { CopyEngine } from './copyEngine.ts';
import { ALL_BLOCKS, PTE_ACCESSED, PTE_DIRTY } from './devicePageTable.ts';
import { BLOCK_SIZE, BLOCKS_PER_PAGE, popcount16, type StatusRead } from './copyEngine.ts';
import { capBatching } from '../policy/batching.ts';
import { clockEviction } from '../policy/eviction.ts';
import { askEviction } from '../policy/guard.ts';
import { advicePlacement } from '../policy/placement.ts';
import type { EvictionCandidate, EvictionPolicy, Policies } from '../policy/types.ts';
import type { Cause } from '../trace/provenance.ts';
import { DeviceMemory } from './deviceMemory.ts';
import type { FaultContext, FaultInjection, FaultPoint } from './faultInjection.ts';
import { FAULT_QUEUE_CAP, compileUserKernel, makeLayouts, type HmmKernel, type KernelOptions, type PipelineLayouts } from './kernel.ts';
import { Mirror } from './mirror.ts';
import { nextTicket, type DeviceHold } from '../mm/deviceHolds.ts';
import { Launcher } from './launch.ts';

/** Held copies of one address space and where their dirty-block words are (HmmDevice.heldWords). */
export interface HeldWords {
  mm: AddressSpace;
  frames: number[];
  pages: number[];
  words: number[];
}

/** dev.release(): passes over the device's frames, for pages that operations in flight bring meanwhile. */
const RELEASE_ROUNDS = 4;
/** A device's fault buffer unless createSystem says otherwise: UVM's fault batch of 256. */
export const DEFAULT_FAULT_BUFFER_PAGES = 256;

/**
 * One GPU device (its own GPUDevice) acting as an HMM driver: device-private memory, kernels,
 * and `mirror(mm)`, its view of an address space. `sys.devices` holds them.
 */
export class HmmDevice implements DevicePagemap, MigrationDevice {
  /**
   * The device memory pool (frames in up to four GPU buffers).
   * @internal
   */
  readonly memory: DeviceMemory;
  /**
   * Batched copies between system RAM and device frames.
   * @internal
   */
  readonly copy: CopyEngine;
  /**
   * The bind group layouts every kernel on this device shares.
   * @internal
   */
  readonly layouts: PipelineLayouts;
  /**
   * Kernel launches on this device (launch.ts).
   * @internal
   */
  readonly launcher: Launcher;
  /**
   * Tiny buffers bound where the pool has fewer than four memory buffers (one each: writable bindings may not alias).
   * @internal
   */
  readonly dummyBuffers: GPUBuffer[];
  private readonly mirrors = new Map<AddressSpace, Mirror>();
  // Reverse map: which page each device frame holds, and whether it is a copy of a RAM page.
  private readonly rmapMm: (AddressSpace | undefined)[];
  private readonly rmapPage: Int32Array;
  private readonly rmapCopy: Uint8Array;
  /** Per frame: the launch count (launcher.launches) when it was handed out as a copy: a held copy no launch followed is clean. */
  private readonly copyEpoch: Uint32Array;
  /** Per frame: the launch count when its page arrived, and at the last sweep that found it accessed (eviction candidates; one clock). */
  private readonly arrivedAt: Uint32Array;
  private readonly lastAccess: Uint32Array;
  /**
   * Per frame: what a readback found in its page's dirty-block word, and the launch count then
   * plus one (0: never read). While no launch has come since, that word is still exact, and a
   * write-back reads only the blocks it names (held copies: launch.ts reads theirs after each
   * launch; eviction reads its candidates').
   */
  private readonly knownBlocks: Uint32Array;
  private readonly knownAt: Uint32Array;
  /**
   * Per frame: blocks a write-back takes as dirty whatever the GPU's word says: ALL_BLOCKS for a
   * held copy mapped again after its word was lost (a failed write-back, a copy a fork relative
   * took over), 0 otherwise.
   */
  private readonly assumedDirty: Uint32Array;
  /**
   * Frames holding writable (held) copies, whose dirty blocks launch.ts reads after each launch.
   * @internal
   */
  readonly heldFrames = new Set<number>();
  /** The device's policies (createSystem's `devices[i].policy`, the built-ins by default); a dispatch may override them. */
  policies: Required<Policies>;
  /**
   * Test hook: real failures at named points of migration, copy and launch (faultInjection.ts). Never set in production.
   * @internal
   */
  faultInjection: FaultInjection | undefined;
  /** Why the device was lost ('destroyed' after destroy()); undefined while it works. Calls on a lost device are EDEVLOST. */
  lostReason: string | undefined;
  /** Eviction unit in pages: 1 (4 KiB), 16 (64 KiB) or 512 (2 MiB). */
  evictionPages = 16;
  /** Where the clock hand stands in the frame array. */
  private clockHand = 0;
  /** Density prefetcher settings for replayable faults (a dispatch may override them). */
  prefetch: PrefetchConfig = { ...DEFAULT_PREFETCH };
  private bufferPages = DEFAULT_FAULT_BUFFER_PAGES;
  private batchPages: number | undefined;
  /**
   * Replayable mode: the device's fault buffer, the most faults one launch delivers to the host
   * (default 256, UVM's batch from a larger hardware buffer). A launch's faults beyond it
   * overflow (counted in `faultsOverflowed`): their invocations stay unfinished and fault again
   * next round, as warps stalled on a full buffer do. At most 4096.
   * @throws {@link HmmError} EINVAL: not an integer in [1, 4096].
   */
  get faultBufferPages(): number {
    return this.bufferPages;
  }
  set faultBufferPages(n: number) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > FAULT_QUEUE_CAP)
      throw new HmmError('EINVAL', `${this.name}: faultBufferPages ${String(n)} is not an integer in [1, ${FAULT_QUEUE_CAP}]`);
    this.bufferPages = n;
  }
  /**
   * Replayable mode: the most faulted pages one round services (UVM's fault batch count); the
   * rest fault again next round. Default: the whole fault buffer (faultBufferPages), and never
   * more than it. A dispatch may override it.
   * @throws {@link HmmError} EINVAL: not an integer in [1, 4096].
   */
  get faultBatchPages(): number {
    return Math.min(this.batchPages ?? this.bufferPages, this.bufferPages);
  }
  set faultBatchPages(n: number) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > FAULT_QUEUE_CAP)
      throw new HmmError('EINVAL', `${this.name}: faultBatchPages ${String(n)} is not an integer in [1, ${FAULT_QUEUE_CAP}]`);
    this.batchPages = n;
  }
  /**
   * WebGPU errors no error scope caught (tests assert this stays empty).
   * @internal
   */
  readonly uncaptured: string[] = [];

  /**
   * Devices are made by createSystem, one per `devices` entry.
   * @internal
   */
  constructor(
    /** The device's index in `sys.devices` (what `advise` takes as a device id). */
    readonly id: number,
    /** Its label (`devices[i].label`, default `gpu<i>`). */
    readonly name: string,
    /** The WebGPU device it runs on. */
    readonly device: GPUDevice,
    /** The adapter's description (vendor, architecture, device). */
    readonly adapterName: string,
    memoryBytes: number,
    maxBufferBytes: number,
    /** @internal */
    readonly stats: Stats,
  ) {
    this.memory = new DeviceMemory(device, name, memoryBytes, maxBufferBytes);
    this.copy = new CopyEngine(device, this.memory, stats);
    this.layouts = makeLayouts(device);
    this.dummyBuffers = [0, 1, 2, 3].map((i) => device.createBuffer({ label: `${name} unused memory slot ${i}`, size: 16, usage: GPUBufferUsage.STORAGE }));
    // A validation error is a bug in this library; never let one pass silently.
    device.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      this.uncaptured.push(msg);
      console.error(`[webgpu-hmm] ${name}: uncaptured WebGPU error: ${msg}`);
    });
    this.rmapMm = new Array(this.memory.frameCount);
    this.rmapPage = new Int32Array(this.memory.frameCount).fill(-1);
    this.rmapCopy = new Uint8Array(this.memory.frameCount);
    this.copyEpoch = new Uint32Array(this.memory.frameCount);
    this.arrivedAt = new Uint32Array(this.memory.frameCount);
    this.lastAccess = new Uint32Array(this.memory.frameCount);
    this.knownBlocks = new Uint32Array(this.memory.frameCount);
    this.knownAt = new Uint32Array(this.memory.frameCount);
    this.assumedDirty = new Uint32Array(this.memory.frameCount);
    this.policies = { prefetch: densityPrefetch(this.prefetch), eviction: clockEviction(), placement: advicePlacement(), batching: capBatching() };
    this.copy.inject = (point, ctx) => this.inject(point, ctx);
    this.launcher = new Launcher(this);
  }

  /**
   * dmirror: this device's view of an address space (one per address space; the same one each call).
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} EINVAL: `mm` is not an AddressSpace, was destroyed, or belongs to another System.
   */
  mirror(mm: AddressSpace): Mirror {
    this.checkAlive('mirror');
    if (!(mm instanceof AddressSpace)) throw new HmmError('EINVAL', `${this.name}: mirror: ${String(mm)} is not an AddressSpace`);
    mm.checkAlive(`${this.name}: mirror`);
    if (mm.stats !== this.stats) throw new HmmError('EINVAL', `${this.name}: mirror: address space ${mm.id} belongs to another System`);
    let m = this.mirrors.get(mm);
    if (!m) {
      const made = new Mirror(this, mm);
      this.mirrors.set(mm, made);
      // The address space's end is its mirrors' end: their page tables and control buffers go
      // (after the operations still in flight on them, Mirror.close).
      mm.onDestroy(() => {
        if (this.mirrors.get(mm) === made) this.mirrors.delete(mm);
        made.close();
      });
      m = made;
    }
    return m;
  }

  /**
   * Compile a user kernel (WGSL `fn kernel(gid: vec3u)`) with the HMM prelude.
   * @throws {@link HmmError} EDEVLOST: the device is lost.
   * @throws {@link HmmError} EINVAL: bad options or workgroupSize, code without `fn kernel`, a use of the prelude's internals (docs/threat-model.md), or WGSL that does not compile (errors at the kernel's own lines).
   */
  async createKernel(opts: KernelOptions): Promise<HmmKernel> {
    this.checkAlive('createKernel');
    return compileUserKernel(this.device, this.layouts, this.memory, opts);
  }

  /**
   * HMM_DMIRROR_RELEASE: every page of every address space on this device goes back to RAM:
   * private pages migrate, held copies are written back, read-only copies go. Operations in
   * flight may bring pages here meanwhile; what they bring is looked at again (a few rounds),
   * and a held copy is always written back, never dropped: it may be the page's only current
   * data. A device lost on the way fails the call with EDEVLOST.
   * @throws {@link HmmError} EDEVLOST: the device is lost (before or during the call).
   * @throws {@link HmmError} ENOMEM: system RAM is exhausted.
   * @throws {@link HmmError} EBUSY: a readback (mapAsync) was refused on a live device; nothing was lost, retry.
   */
  async release(): Promise<{ pages: number }> {
    this.checkAlive('release');
    const cause: Cause = { kind: 'call', call: `${this.name}.release()` };
    let pages = 0;
    try {
      for (let round = 0; round < RELEASE_ROUNDS; round++) {
        const byMm = new Map<AddressSpace, { priv: number[]; held: number[]; dup: number[] }>();
        for (let f = 0; f < this.memory.frameCount; f++) {
          const mm = this.rmapMm[f];
          if (!mm) continue;
          let s = byMm.get(mm);
          if (!s) byMm.set(mm, (s = { priv: [], held: [], dup: [] }));
          const p = this.rmapPage[f]!;
          const e = mm.pageTable.get(p);
          if (!this.rmapCopy[f]) s.priv.push(p);
          else if (pte.isHeld(e) && pte.heldBy(e) === this.id) s.held.push(p);
          else s.dup.push(p);
        }
        if (byMm.size === 0) break;
        for (const [mm, s] of byMm) {
          if (s.held.length > 0) await this.revoke(mm, s.held, cause);
          if (s.priv.length > 0) pages += (await migrateToSystem(mm, this, s.priv, cause)).moved;
          // Read-only copies simply go; a copy held since the scan (an await ago) stays for the
          // next round, which writes it back.
          const mirror = this.mirrors.get(mm);
          const readOnly = s.dup.filter((p) => {
            const e = mm.pageTable.get(p);
            return !(pte.isHeld(e) && pte.heldBy(e) === this.id);
          });
          if (mirror && readOnly.length > 0) mirror.dropRuns(runs(readOnly));
          this.stats.provenance.record(mm.id, readOnly, 'dropped', this.id, cause);
        }
      }
    } catch (e) {
      if (this.lostReason !== undefined) throw new HmmError('EDEVLOST', `${this.name}: release failed: device lost (${this.lostReason})`);
      throw e;
    }
    this.checkAlive('release');
    return { pages };
  }

  /**
   * Make room: move at least `want` frames' worth of pages off this device, never a page
   * `keep` names (what the current fault batch needs: no livelock). A clock over device frames
   * in units of `evictionPages`: units a kernel touched since the last sweep (the GPU-set
   * accessed bits) get a second chance, and lose their bits; then the rest go, oldest first.
   * Device-private pages are written back to RAM; copies are dropped (held ones written back).
   * Returns the frames freed (0 when nothing may go) and how many units were offered to the
   * policy (a policy that picks none of several leaves the caller short: its error says so).
   * @internal
   */
  async evict(
    want: number,
    keep: (mm: AddressSpace, page: number) => boolean,
    ticket = Infinity,
    policy: EvictionPolicy = this.policies.eviction,
    why = 'a fault-in',
  ): Promise<{ freed: number; offered: number }> {
    const t0 = performance.now();
    const unit = this.evictionPages;
    const n = this.memory.frameCount;
    type Unit = { mm: AddressSpace; pages: number[]; frames: number[]; lastFrame: number };
    const units = new Map<string, Unit>();
    for (let i = 0; i < n; i++) {
      const f = (this.clockHand + i) % n;
      const mm = this.rmapMm[f];
      if (!mm) continue;
      const p = this.rmapPage[f]!;
      // what the current batch needs, and pages already moving, stay; the rest of their unit may go
      // (and pages an operation on this device as old as the caller or older holds for its
      // launch: wound-wait, see ticket())
      if (keep(mm, p) || pte.kind(mm.pageTable.get(p)) === Kind.Migrating || mm.holds.isHeldBy(p, this.id, ticket)) continue;
      const key = `${mm.id}:${Math.floor(p / unit)}`;
      let u = units.get(key);
      if (!u) units.set(key, (u = { mm, pages: [], frames: [], lastFrame: f }));
      u.pages.push(p);
      u.frames.push(f);
      u.lastFrame = f;
    }
    if (units.size === 0) return { freed: 0, offered: 0 };
    // accessed and dirty bits, one readback per address space involved
    const touched = new Set<string>();
    const dirty = new Set<string>();
    const byMm = new Map<AddressSpace, string[]>();
    for (const [k, u] of units) {
      const list = byMm.get(u.mm);
      if (list) list.push(k);
      else byMm.set(u.mm, [k]);
    }
    for (const [mm, keys] of byMm) {
      const mirror = this.mirrors.get(mm);
      if (!mirror) continue;
      const pages = keys.flatMap((k) => units.get(k)!.pages);
      const pending = this.faultInjection ? (buffer: GPUBuffer) => this.inject('mapPending', { buffer, what: 'pageTable' }) : undefined;
      const readAt = this.launcher.launches;
      const { entries, blocks } = await mirror.table.readGpuState(pages, pending).catch(async (e: unknown) => {
        throw await this.gpuFailure('eviction: reading accessed bits', e);
      });
      let i = 0;
      for (const k of keys) {
        const u = units.get(k)!;
        for (let j = 0; j < u.pages.length; j++, i++) {
          // the dirty blocks as of the readback: a write-back before the next launch reads only those
          if (entries[i]! & 1 && entries[i]! >>> 8 === u.frames[j]) this.knowBlocks(u.frames[j]!, blocks[i]!, readAt);
          if (entries[i]! & PTE_ACCESSED) {
            touched.add(k);
            this.lastAccess[u.frames[j]!] = this.launcher.launches;
          }
          if (entries[i]! & PTE_DIRTY) dirty.add(k);
        }
      }
    }
    // The policy picks among the candidates, offered in clock order from the hand.
    const keyOf = new Map<EvictionCandidate, string>();
    const candidates: EvictionCandidate[] = [];
    for (const [k, u] of units) {
      const c: EvictionCandidate = {
        page: Math.floor(u.pages[0]! / unit) * unit,
        pages: u.pages.length,
        owner: u.mm.id,
        accessed: touched.has(k),
        dirty: dirty.has(k),
        arrived: Math.min(...u.frames.map((f) => this.arrivedAt[f]!)),
        lastAccess: Math.max(...u.frames.map((f) => this.lastAccess[f]!)),
        clock: candidates.length,
      };
      candidates.push(c);
      keyOf.set(c, k);
    }
    const picked = askEviction(policy, want, candidates, `${this.name} eviction for ${why}`);
    const cause: Cause = { kind: 'eviction', device: this.id, policy: policy.name, for: why };
    const victims = picked.map((c) => keyOf.get(c)!);
    const freed = picked.reduce((sum, c) => sum + c.pages, 0);
    const chosen = new Set(victims);
    // second chance for the touched units that stay
    for (const k of touched) {
      if (chosen.has(k)) continue;
      const u = units.get(k)!;
      const mirror = this.mirrors.get(u.mm);
      if (mirror) {
        mirror.table.clearAccessed(u.pages);
        this.stats.add('pageTableWrites', mirror.table.flush());
      }
    }
    // the hand moves past the last victim in clock order
    if (picked.length > 0) this.clockHand = (units.get(keyOf.get(picked.reduce((a, b) => (b.clock > a.clock ? b : a)))!)!.lastFrame + 1) % n;
    // write back and drop, per address space
    const byMmVictims = new Map<AddressSpace, number[]>();
    for (const k of victims) {
      const u = units.get(k)!;
      const list = byMmVictims.get(u.mm);
      if (list) list.push(...u.pages);
      else byMmVictims.set(u.mm, [...u.pages]);
    }
    let pagesOut = 0;
    for (const [mm, pages] of byMmVictims) {
      const priv: number[] = [];
      const held: number[] = [];
      const dup: number[] = [];
      for (const p of pages) {
        const e = mm.pageTable.get(p);
        (pte.kind(e) === Kind.Device ? priv : pte.isHeld(e) ? held : dup).push(p);
      }
      if (held.length > 0) await this.revoke(mm, held, cause);
      if (priv.length > 0) pagesOut += (await migrateToSystem(mm, this, priv, cause)).moved;
      // read-only copies go; one that became a held copy during the awaits above stays (it
      // may be the page's only current data: it is written back when it is evicted or touched)
      const mirror = this.mirrors.get(mm);
      const readOnly = dup.filter((p) => {
        const e = mm.pageTable.get(p);
        return !(pte.isHeld(e) && pte.heldBy(e) === this.id);
      });
      if (mirror && readOnly.length > 0) mirror.dropRuns(runs(readOnly));
      this.stats.provenance.record(mm.id, readOnly, 'dropped', this.id, cause);
      pagesOut += held.length + readOnly.length;
    }
    this.stats.add('evictions', pagesOut);
    this.stats.trace.record({
      kind: 'evict',
      ts: t0,
      dur: performance.now() - t0,
      pages: pagesOut,
      bytes: pagesOut * PAGE_SIZE,
      device: this.id,
      detail: `${victims.length} units of ${unit} pages`,
    });
    return { freed, offered: candidates.length };
  }

  /**
   * A new operation's age (one clock for every device: ages are compared across devices).
   * Operations hold the pages they need until their launch (src/mm/deviceHolds.ts), and age
   * decides who gives way (wound-wait): an operation waits only for older ones' holds and may
   * take a younger one's pages (it faults them again); its evictions spare the pages of
   * operations as old as it or older. The oldest never waits for a device, so every
   * operation finishes in turn and none waits in a cycle.
   * @internal
   */
  ticket(): number {
    return nextTicket();
  }

  /**
   * When an operation of age `ticket` finds the device full of pages it may not evict: a
   * promise that resolves when one of the older operations holding or claiming pages here ends
   * (its own hold, `except`, aside); null when there is none, and waiting would not help.
   * @internal
   */
  olderEnded(ticket: number, except?: DeviceHold): Promise<void> | null {
    const waits: Promise<unknown>[] = [];
    for (const mm of this.mirrors.keys()) for (const h of mm.holds.olderHolds(this.id, ticket, except)) waits.push(h.ended);
    // and pages on their way off the device (a release, another operation's eviction): their
    // frames come free when they arrive
    for (let f = 0; f < this.memory.frameCount; f++) {
      const mm = this.rmapMm[f];
      const moving = mm?.inflight.get(this.rmapPage[f]!);
      if (moving) waits.push(moving);
    }
    return waits.length > 0 ? Promise.race(waits).then(() => undefined) : null;
  }

  /**
   * Frames in use (MigrationDevice: the trace's counter track).
   * @internal
   */
  residentPages(): number {
    return this.memory.frameCount - this.memory.freeFrames;
  }

  /**
   * Frames owned by some page (private pages and copies); with the free ones, every frame.
   * @internal
   */
  get ownedFrames(): number {
    let n = 0;
    for (const mm of this.rmapMm) if (mm) n++;
    return n;
  }

  // ------------------------------------------------------------------ DevicePagemap

  /**
   * migrate_to_ram (DevicePagemap): bring these device-private pages of mm back to RAM; EPOISON on a lost device.
   * @internal
   */
  async migrateToRam(mm: AddressSpace, pages: number[], cause?: Cause): Promise<void> {
    if (this.lostReason === undefined) {
      try {
        await migrateToSystem(mm, this, pages, cause);
        return;
      } catch (e) {
        if (this.lostReason === undefined) throw e; // e.g. ENOMEM, or a mapAsync failure on a live device
      }
    }
    // Lost: these pages had their only copy here. Never zeros: EPOISON, naming the first.
    const first = pages.find((p) => {
      const e = mm.pageTable.get(p);
      return pte.kind(e) === Kind.Device && pte.device(e) === this.id;
    });
    if (first !== undefined) throw this.poisonError(first);
  }

  /**
   * Held copies go back to RAM: unmap first (so no later kernel writes them), then gather, and
   * write into RAM only the 256-byte blocks kernels dirtied (the rest of the RAM frame is what
   * the copy was made from: no CPU writes a held page). When a readback since the last launch
   * told the dirty blocks, only those cross; otherwise the pages and their dirty-block words
   * come back in one readback. A page whose word is unknown counts as all blocks dirty.
   * @internal
   */
  async revoke(mm: AddressSpace, pages: number[], cause: Cause = { kind: 'call', call: 'a write-back' }): Promise<void> {
    const mine = pages.filter((p) => {
      const e = mm.pageTable.get(p);
      return pte.isHeld(e) && pte.heldBy(e) === this.id;
    });
    if (mine.length === 0) return;
    if (this.lostReason !== undefined) return this.revokeLost(mm, mine);
    let t = performance.now(); // (phases: collect, gpu-wait, commit)
    const mirror = this.mirrors.get(mm);
    const frames: number[] = [];
    const ramFrames: number[] = [];
    const held: number[] = [];
    const wasExclusive: boolean[] = [];
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const words: number[] = [];
    for (const p of mine) {
      const e = mm.pageTable.get(p);
      words.push(mirror?.table.statusWord(p) ?? -1); // (before the unmap: its leaf may go back to the pool)
      const f = mirror?.table.unmap(p) ?? -1;
      wasExclusive.push(mirror?.exclusive.delete(p) ?? false);
      frames.push(f);
      ramFrames.push(pte.frame(e));
      held.push(e);
      mm.pageTable.set(p, pte.migrating(e));
      mm.inflight.set(p, done);
    }
    if (mirror) this.stats.add('pageTableWrites', mirror.table.flush());
    // The pages still mapped here a moment ago, and their dirty blocks: known (a readback since
    // the last launch), or read with the data (all blocks until the word comes back).
    const live: number[] = [];
    for (let i = 0; i < mine.length; i++) if (frames[i]! >= 0) live.push(i);
    const liveFrames = live.map((i) => frames[i]!);
    const blocks = new Uint32Array(live.length);
    let known = true;
    for (let k = 0; k < live.length; k++) {
      const f = liveFrames[k]!;
      if (this.knownAt[f] === this.launcher.launches + 1) blocks[k] = this.knownBlocks[f]! | this.assumedDirty[f]!;
      else known = false;
    }
    let data: Uint8Array;
    t = this.stats.endPhase('collect', t, this.id, mm.id);
    try {
      if (known) data = await this.downloadBlocks(liveFrames, blocks);
      else {
        blocks.fill(ALL_BLOCKS);
        const status: StatusRead | undefined = mirror && { buffer: mirror.table.leafBuffer, words: live.map((i) => words[i]!), out: blocks };
        data = await this.download(liveFrames, status);
        for (let k = 0; k < live.length; k++) blocks[k] = (blocks[k]! | this.assumedDirty[liveFrames[k]!]!) & ALL_BLOCKS;
      }
      t = this.stats.endPhase('gpu-wait', t, this.id, mm.id);
    } catch (err) {
      // Nothing came back, so the device copy is still the only current data: every page is
      // held (and mapped) again as it was, never left with the stale RAM bytes.
      const gone: number[] = [];
      mine.forEach((p, i) => {
        if (mm.pageTable.get(p) === pte.migrating(held[i]!)) {
          mm.pageTable.set(p, held[i]!);
          // (mapped again, its dirty-block word starts from zero: the blocks before are unknown)
          if (frames[i]! >= 0 && mirror) {
            mirror.table.map(p, frames[i]!, true);
            this.assumedDirty[frames[i]!] = ALL_BLOCKS;
          }
          if (wasExclusive[i]) mirror?.exclusive.add(p);
        } else {
          // Unmapped meanwhile (or mm destroyed): the relatives that still map the frame take
          // the copy over, the only current data, and a later touch writes it back (a retry);
          // on a lost device their copy flags make the page EPOISON, as any dirty held copy.
          // When nobody maps the frame any more, nobody can read what the copy held: it goes.
          if (frames[i]! >= 0 && !this.passCopy(mm, p, ramFrames[i]!, frames[i]!)) gone.push(frames[i]!);
          mm.ram.free(ramFrames[i]!);
        }
        if (mm.inflight.get(p) === done) mm.inflight.delete(p); // (a newer operation's isolation is not ours to end)
      });
      if (mirror) this.stats.add('pageTableWrites', mirror.table.flush());
      this.disown(gone);
      this.freeFrames(gone);
      resolve();
      if (this.lostReason !== undefined) return this.revokeLost(mm, mine);
      throw err;
    }
    {
      let crossed = 0;
      let written = 0;
      let at = 0; // where page k's blocks start in `data`
      for (let k = 0; k < live.length; k++) {
        const i = live[k]!;
        const b = blocks[k]!;
        const n = popcount16(b);
        const from = known ? at : k * PAGE_SIZE;
        crossed += known ? n * BLOCK_SIZE : PAGE_SIZE;
        at += known ? n * BLOCK_SIZE : PAGE_SIZE;
        // Unmapped meanwhile (munmap, MAP_FIXED, destroy), the frame is still ours to write while
        // a fork relative maps it too (a shared mapping): the device's writes are its data.
        if (mm.pageTable.get(mine[i]!) !== pte.migrating(held[i]!) && mm.ram.refCount(ramFrames[i]!) <= 1) continue;
        // only the dirty blocks: the rest of the RAM frame is what the copy was made from
        copyBlocks(mm.ram.frame(ramFrames[i]!), data, from, b, known);
        written += n * BLOCK_SIZE;
      }
      this.stats.add('bytesToSystem', crossed);
      this.stats.add('bytesWrittenBack', written);
      this.stats.add('bytesStored', written);
      this.stats.provenance.record(mm.id, mine, 'write-back', this.id, cause);
      for (let i = 0; i < mine.length; i++) {
        const p = mine[i]!;
        // (still our isolation: another operation's Migrating entry, after an unmap and a move,
        // is not ours to end)
        if (mm.pageTable.get(p) === pte.migrating(held[i]!)) mm.pageTable.set(p, pte.ram(ramFrames[i]!));
        // The copy is home: the relatives that map the frame lose its flag in this same turn.
        // (Later, as a separate step, it could already be a newer copy's flag, and clearing it
        // would leave that copy mapped with no flag to revoke it: a stale device mapping.)
        this.clearRelativesFlags(mm, p, ramFrames[i]!);
        // Unmapped meanwhile: the entry no longer names the frame (none, or, after MREMAP_FIXED
        // over it, another page's frame): the write-back's reference goes.
        const now = mm.pageTable.get(p);
        if (pte.kind(now) !== Kind.Ram || pte.frame(now) !== ramFrames[i]) mm.ram.free(ramFrames[i]!);
        else mm.copyOwner.delete(p);
        if (mm.inflight.get(p) === done) mm.inflight.delete(p);
      }
      const used = frames.filter((f) => f >= 0);
      this.disown(used);
      this.freeFrames(used);
      resolve();
      this.stats.endPhase('commit', t, this.id, mm.id);
    }
  }

  /**
   * A held copy whose write-back failed after `from` let go of the page (it was destroyed, or
   * unmapped the page, meanwhile): the fork relatives that map the same RAM frame are flagged
   * as holding it (they normally are already) and one of them takes the copy over, so a later
   * write-back through it still has the device's writes. On a lost device nothing is taken
   * over: the flags alone make the page EPOISON for them. False (the frame may go) when no
   * relative maps the frame, or the device is lost.
   */
  private passCopy(from: AddressSpace, p: number, ramFrame: number, frame: number): boolean {
    if (from.ram.refCount(ramFrame) < 2) return false;
    const heirs = [...from.family].filter((s) => {
      const x = s.pageTable.get(p);
      return s !== from && !s.isDestroyed && pte.kind(x) === Kind.Ram && pte.frame(x) === ramFrame;
    });
    const heir = heirs[0];
    if (!heir) return false;
    for (const s of heirs) s.pageTable.set(p, pte.withHeld(pte.plainRam(s.pageTable.get(p)), this.id));
    if (this.lostReason !== undefined) return false;
    const mirror = this.mirror(heir);
    if (mirror.table.lookup(p)) mirror.faults.dropMappings(p, p + 1);
    mirror.table.map(p, frame, true);
    this.assumedDirty[frame] = ALL_BLOCKS; // its dirty-block word starts over in the heir's table
    this.stats.add('pageTableWrites', mirror.table.flush());
    this.rmapMm[frame] = heir; // the launch count it was made at stays: it is as dirty as it was
    this.rmapPage[frame] = p;
    for (const s of heirs) {
      if (s === heir) s.copyOwner.delete(p);
      else s.copyOwner.set(p, heir);
    }
    return true;
  }

  /** The fork relatives of `mm` that map `ramFrame` at page p: this device's copy flag goes. */
  private clearRelativesFlags(mm: AddressSpace, p: number, ramFrame: number): void {
    for (const s of mm.family) {
      const x = s.pageTable.get(p);
      if (s === mm || pte.kind(x) !== Kind.Ram || pte.frame(x) !== ramFrame) continue;
      if (pte.isHeld(x) && pte.heldBy(x) === this.id) s.pageTable.set(p, pte.plainRam(x));
      s.copyOwner.delete(p);
    }
  }

  /**
   * Revoke on a lost device: nothing can be written back. A held copy no kernel launch
   * followed is clean (RAM is current) and simply lets go; the others stay held by the lost
   * device, which makes them poisoned, and the first is reported as EPOISON.
   */
  private revokeLost(mm: AddressSpace, pages: readonly number[]): void {
    let dirty: number | undefined;
    for (const p of pages) {
      const e = mm.pageTable.get(p);
      if (!pte.isHeld(e) || pte.heldBy(e) !== this.id) continue;
      if (!this.letGoIfClean(mm, p, this.mirrors.get(mm)?.table.lookup(p)?.frame ?? -1)) dirty ??= p;
    }
    if (dirty !== undefined) throw this.poisonError(dirty);
  }

  /**
   * A held copy of a lost device: if no launch came after it was handed out, or its dirty-block
   * word, read after the last launch, says no kernel wrote it, the page becomes plain RAM again.
   * Without its frame (an invalidation after the loss dropped the mapping) there is nothing to
   * tell: it stays poisoned, as markLost already judged it.
   */
  private letGoIfClean(mm: AddressSpace, p: number, frame: number): boolean {
    if (frame < 0) return false;
    const knownClean = this.knownAt[frame] === this.launcher.launches + 1 && (this.knownBlocks[frame]! | this.assumedDirty[frame]!) === 0;
    if (this.copyEpoch[frame] !== this.launcher.launches && !knownClean) return false;
    mm.pageTable.set(p, pte.plainRam(mm.pageTable.get(p)));
    this.clearRelativesFlags(mm, p, pte.frame(mm.pageTable.get(p)));
    const mirror = this.mirrors.get(mm);
    mirror?.table.unmap(p);
    mirror?.exclusive.delete(p);
    this.disown([frame]);
    return true;
  }

  /**
   * mremap (DevicePagemap): the device-private pages in `frames` now belong to pages `to` of mm.
   * @internal
   */
  moved(mm: AddressSpace, frames: readonly number[], to: readonly number[]): void {
    frames.forEach((f, i) => {
      if (this.rmapMm[f] === mm) this.rmapPage[f] = to[i]!;
    });
  }

  /**
   * munmap (DevicePagemap): free the pages' device frames without copying.
   * @internal
   */
  discard(mm: AddressSpace, pages: number[]): void {
    const frames = pages.map((p) => pte.frame(mm.pageTable.get(p)));
    this.disown(frames);
    this.freeFrames(frames);
  }

  // ------------------------------------------------------------------ MigrationDevice

  /**
   * MigrationDevice: take up to n free device frames.
   * @internal
   */
  allocFrames(n: number): number[] {
    return this.memory.allocUpTo(n);
  }
  /**
   * MigrationDevice: an aligned 2 MiB run of device frames (its first frame), or null.
   * @internal
   */
  allocHuge(): number | null {
    return this.memory.allocHuge();
  }
  /**
   * MigrationDevice: give frames back to the pool.
   * @internal
   */
  freeFrames(frames: readonly number[]): void {
    this.memory.free(frames);
  }
  /**
   * MigrationDevice: queue copies of RAM pages into device frames.
   * @internal
   */
  upload(frames: readonly number[], sources: readonly Uint8Array[]): void {
    this.copy.upload(frames, sources);
  }
  /**
   * MigrationDevice: read device frames back (EDEVLOST on a lost device, EBUSY if mapAsync is refused).
   * @internal
   */
  async download(frames: readonly number[], status?: StatusRead): Promise<Uint8Array> {
    if (frames.length === 0) return new Uint8Array(0);
    try {
      return await this.copy.download(frames, status);
    } catch (e) {
      throw await this.gpuFailure(`download of ${frames.length} frames`, e);
    }
  }
  /**
   * Only the 256-byte blocks `blocks[i]` names of frames[i], packed (CopyEngine.downloadBlocks);
   * EDEVLOST on a lost device, EBUSY if mapAsync is refused.
   * @internal
   */
  async downloadBlocks(frames: readonly number[], blocks: ArrayLike<number>): Promise<Uint8Array> {
    try {
      return await this.copy.downloadBlocks(frames, Array.from(blocks));
    } catch (e) {
      throw await this.gpuFailure(`download of ${frames.length} frames' dirty blocks`, e);
    }
  }
  /**
   * MigrationDevice: where these pages of mm keep their dirty-block words on this device, to
   * read in the same readback as their data (download's `status`); read before they are unmapped.
   * @internal
   */
  statusWords(mm: AddressSpace, pages: readonly number[]): StatusRead | undefined {
    const table = this.mirrors.get(mm)?.table;
    if (!table) return undefined;
    return { buffer: table.leafBuffer, words: pages.map((p) => table.statusWord(p)), out: new Uint32Array(pages.length).fill(ALL_BLOCKS) };
  }
  /**
   * A readback submitted when the launch count was `at` found these blocks dirty in frame f's
   * page: exact until the next launch.
   * @internal
   */
  knowBlocks(frame: number, blocks: number, at: number): void {
    this.knownBlocks[frame] = blocks;
    this.knownAt[frame] = at + 1;
  }
  /**
   * MigrationDevice: wait for the queued copies (EDEVLOST on a lost device).
   * @internal
   */
  async settle(): Promise<void> {
    const lost = this.device.lost.then(() => 'lost' as const);
    const outcome = await Promise.race([this.device.queue.onSubmittedWorkDone().then(() => 'done' as const), lost]);
    if (outcome === 'lost' || this.lostReason !== undefined) throw this.lostError('copy');
  }
  /**
   * MigrationDevice: pages of mm now live in these device frames: reverse map and device page table.
   * @internal
   */
  adopt(mm: AddressSpace, pages: readonly number[], frames: readonly number[], writable: readonly boolean[], huge = false): void {
    if (pages.length === 0) return; // every page raced (e.g. its address space was destroyed meanwhile)
    const mirror = this.mirror(mm);
    pages.forEach((p, i) => {
      const f = frames[i]!;
      this.rmapMm[f] = mm;
      this.rmapPage[f] = p;
      this.rmapCopy[f] = 0;
      this.arrivedAt[f] = this.launcher.launches;
      this.lastAccess[f] = 0;
      this.forget(f);
      if (!huge) mirror.table.map(p, f, writable[i]!);
    });
    if (huge) mirror.table.mapHuge(pages[0]! >>> 9, frames[0]!, writable[0]!); // one directory entry for 2 MiB
    this.stats.add('pageTableWrites', mirror.table.flush());
  }
  /**
   * MigrationDevice: frames no page owns any more (reverse map only).
   * @internal
   */
  disown(frames: readonly number[]): void {
    for (const f of frames) {
      this.rmapMm[f] = undefined;
      this.rmapPage[f] = -1;
      this.rmapCopy[f] = 0;
      this.forget(f);
    }
  }

  /** A frame starts over: nothing known of its dirty blocks, none assumed, not a held copy. */
  private forget(f: number): void {
    this.knownAt[f] = 0;
    this.assumedDirty[f] = 0;
    this.heldFrames.delete(f);
  }
  /**
   * MigrationDevice: drop this device's mappings of page runs of mm.
   * @internal
   */
  unmapOwn(mm: AddressSpace, pageRuns: readonly [number, number][]): void {
    this.mirrors.get(mm)?.dropRuns(pageRuns);
  }

  /**
   * Device frame `frame` holds a copy of page `page` of mm (reverse map), just made from RAM (or
   * a read-only one just made writable): `held` when it is writable (held by this device).
   * @internal
   */
  ownCopy(frame: number, mm: AddressSpace, page: number, held = false): void {
    this.rmapMm[frame] = mm;
    this.rmapPage[frame] = page;
    this.rmapCopy[frame] = 1;
    this.copyEpoch[frame] = this.launcher.launches;
    this.arrivedAt[frame] = this.launcher.launches;
    this.lastAccess[frame] = 0;
    this.forget(frame);
    if (held) this.heldFrames.add(frame);
  }

  /**
   * The held copies of mm's pages on this device, with their dirty-block words in `table`:
   * what a launch reads back after its kernel (launch.ts), so that a write-back before the
   * next launch reads only the dirty blocks. None past `max` (the readback stays small).
   * @internal
   */
  heldWords(mm: AddressSpace, table: { statusWord(page: number): number }, max: number): HeldWords | null {
    if (this.heldFrames.size === 0 || this.heldFrames.size > max) return null;
    const frames: number[] = [];
    const pages: number[] = [];
    const words: number[] = [];
    for (const f of this.heldFrames) {
      if (this.rmapMm[f] !== mm) continue;
      const p = this.rmapPage[f]!;
      const w = table.statusWord(p);
      if (w < 0) continue;
      frames.push(f);
      pages.push(p);
      words.push(w);
    }
    return frames.length > 0 ? { mm, frames, pages, words } : null;
  }

  /**
   * The words heldWords asked for came back from a readback submitted at launch count `at`:
   * each is exact until the next launch, for a frame that still holds the same held copy.
   * @internal
   */
  heldWordsRead(held: HeldWords, values: Uint32Array, at: number): void {
    held.frames.forEach((f, i) => {
      if (this.rmapMm[f] === held.mm && this.rmapPage[f] === held.pages[i] && this.heldFrames.has(f)) this.knowBlocks(f, values[i]!, at);
    });
  }
  /**
   * Does `frame` hold a copy of a RAM page (not a device-private page)?
   * @internal
   */
  isCopyFrame(frame: number): boolean {
    return this.rmapCopy[frame] === 1;
  }

  /**
   * What a recording (src/replay/recorder.ts) starts from: the clock hand, the launch count, the
   * free frames in the order they would be handed out, and each frame in use (whose page, a
   * copy or not, mapped writable, when it arrived and was last seen accessed).
   * @internal
   */
  recordingState(): {
    clockHand: number;
    launches: number;
    freeOrder: number[];
    frames: { frame: number; space: number; page: number; copy: boolean; write: boolean; arrived: number; lastAccess: number }[];
  } {
    const frames = [];
    for (let f = 0; f < this.memory.frameCount; f++) {
      const mm = this.rmapMm[f];
      if (!mm) continue;
      const page = this.rmapPage[f]!;
      const write = this.mirrors.get(mm)?.table.lookup(page)?.write ?? false;
      frames.push({ frame: f, space: mm.id, page, copy: this.rmapCopy[f] === 1, write, arrived: this.arrivedAt[f]!, lastAccess: this.lastAccess[f]! });
    }
    return { clockHand: this.clockHand, launches: this.launcher.launches, freeOrder: this.memory.freeOrder(), frames };
  }

  // ------------------------------------------------------------------ loss

  /**
   * The device is gone (device.lost resolved, or a failed readback proved it). From now on
   * every call on it is EDEVLOST. Its device-private pages, and held copies a kernel may have
   * written, had their only current data here: they stay where they are and every CPU or
   * device touch reports EPOISON for them, page by page, until they are unmapped. Held copies
   * no launch followed are clean (RAM is current): they let go now. Read-only copies need
   * nothing: RAM has the data. Nothing else in the system changes.
   * @internal
   */
  markLost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    for (let f = 0; f < this.memory.frameCount; f++) {
      const mm = this.rmapMm[f];
      if (!mm || !this.rmapCopy[f]) continue;
      const p = this.rmapPage[f]!;
      const e = mm.pageTable.get(p);
      if (pte.isHeld(e) && pte.heldBy(e) === this.id) this.letGoIfClean(mm, p, f);
    }
  }

  /**
   * Test hook point (faultInjection.ts): lets a test cause a real failure here.
   * @internal
   */
  inject(point: FaultPoint, ctx: Partial<FaultContext>): void {
    if (this.faultInjection) this.faultInjection.at(point, { ...ctx, device: this.device });
  }

  private poisonError(page: number): HmmError {
    const va = page * PAGE_SIZE;
    return new HmmError(
      'EPOISON',
      `page ${hex(va)}: its only current copy was on ${this.name}, which was lost (${this.lostReason}); the data is gone (munmap it to reuse the address)`,
      va,
    );
  }

  /**
   * A readback failed: if the device is lost (device.lost wins the race against an empty
   * queue), EDEVLOST; otherwise the mapAsync was refused on a live device: EBUSY, the caller
   * has put everything back, and a retry may succeed.
   * @internal
   */
  async gpuFailure(what: string, cause: unknown): Promise<HmmError> {
    if (cause instanceof HmmError) return cause;
    if (this.lostReason === undefined) {
      const info = await Promise.race([
        this.device.lost,
        this.device.queue.onSubmittedWorkDone().then(
          () => null,
          () => null,
        ),
      ]);
      if (info) this.markLost(info.message || info.reason);
    }
    if (this.lostReason !== undefined) return new HmmError('EDEVLOST', `${this.name}: ${what} failed: device lost (${this.lostReason})`);
    const why = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    return new HmmError('EBUSY', `${this.name}: ${what} failed: mapAsync was rejected (${why || 'no reason given'}) on a live device; nothing changed, retry`);
  }

  /**
   * EDEVLOST once the device is lost.
   * @internal
   */
  checkAlive(what: string): void {
    if (this.lostReason !== undefined) throw new HmmError('EDEVLOST', `${this.name}: ${what}: device lost (${this.lostReason})`);
  }

  private lostError(what: string, cause?: unknown): HmmError {
    if (cause instanceof HmmError) return cause;
    return new HmmError('EDEVLOST', `${this.name}: ${what} failed: ${this.lostReason ?? String(cause)}`);
  }

  /**
   * Give back every GPU object and the GPUDevice; later calls are EDEVLOST, and pages whose only
   * copy was here are EPOISON. `sys.destroy()` does this for every device. Throws nothing.
   */
  destroy(): void {
    for (const m of this.mirrors.values()) m.close();
    this.mirrors.clear();
    this.copy.destroy();
    this.launcher.destroy();
    this.memory.destroy();
    for (const b of this.dummyBuffers) b.destroy();
    this.markLost('destroyed');
    this.device.destroy();
  }
}

/**
 * Copy the 256-byte blocks `blocks` names from `data` into a RAM frame, a run of consecutive
 * blocks at a time: `packed`, the blocks sit one after another from `from` (downloadBlocks);
 * otherwise `from` is the whole page's start.
 */
function copyBlocks(ram: Uint8Array, data: Uint8Array, from: number, blocks: number, packed: boolean): void {
  let m = 0;
  for (let j = 0; j < BLOCKS_PER_PAGE; ) {
    if (!(blocks & (1 << j))) {
      j++;
      continue;
    }
    let n = 1;
    while (j + n < BLOCKS_PER_PAGE && blocks & (1 << (j + n))) n++;
    const src = packed ? from + m * BLOCK_SIZE : from + j * BLOCK_SIZE;
    ram.set(data.subarray(src, src + n * BLOCK_SIZE), j * BLOCK_SIZE);
    m += n;
    j += n;
  }
}
