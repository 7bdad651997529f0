// Kernel dispatch on one device for one address space: argument checks, the validated path
// (declared ranges faulted in, then one launch checked against the host table in the same
// turn), and the replayable path (launch, read the GPU fault queue, service the batch under
// the batching, prefetch and placement policies, relaunch what did not finish). Each launch has
// a control buffer of its own (controlBuffers.ts). Pages come in through faultIn.ts; this
// module is called by mirror.ts only.

import { PAGE_SIZE, hex } from '../constants.ts';
import { HmmError } from '../errors.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import type { DeviceHold } from '../mm/deviceHolds.ts';
import { checkAddress, checkCount, checkRange } from '../mm/args.ts';
import { canRead, canWrite } from '../mm/vmaList.ts';
import { densityPrefetch, type PrefetchConfig } from '../policy/prefetch.ts';
import { askBatching, askPrefetch, checkPolicy } from '../policy/guard.ts';
import type { Policies, PrefetchView } from '../policy/types.ts';
import type { Cause } from '../trace/provenance.ts';
import type { ControlBuffers } from './controlBuffers.ts';
import type { DevicePageTable } from './devicePageTable.ts';
import { MAX_ROUNDS, checkAlive, type DeviceFaultIn, type FaultInOptions } from './faultIn.ts';
import type { HmmDevice } from './hmmDevice.ts';
import type { LaunchStatus, LaunchTarget } from './launch.ts';
import { FAULT_QUEUE_CAP, HmmKernel } from './kernel.ts';

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


/** Replayable mode: rounds in a row that may fault on exactly the same pages before EBUSY. */
const STALLED_ROUNDS = 8;
/** Replayable mode: the most rounds one dispatch may take. */
const DEFAULT_MAX_REPLAYS = 100_000;

export class Dispatcher {
  constructor(
    private readonly dev: HmmDevice,
    private readonly mm: AddressSpace,
    private readonly table: DevicePageTable,
    private readonly controls: ControlBuffers,
    private readonly faults: DeviceFaultIn,
    /** What a launch binds: this address space's page table and control buffers. */
    private readonly target: LaunchTarget,
  ) {}

  /**
   * Run a kernel. Validated mode: every declared range is faulted in and mapped first, under
   * the read-begin/retry rule, and launched with no await in between, so no invalidation can
   * slip between the check and the submit. A miss in the kernel is an error, never a zero.
   * Replayable mode: see dispatchReplayable.
   */
  async dispatch(kernel: HmmKernel, opts: DispatchOptions): Promise<DispatchResult> {
    checkAlive(this.dev, this.mm, 'dispatch');
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
    const workgroups = this.dev.launcher.checkWorkgroups(kernel.label, opts.workgroups);
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
    // A recording in progress (src/replay/recorder.ts) learns of it, and of how it ended.
    const rec = this.dev.stats.recorder?.dispatchBegin(this.dev, this.mm, { kernel: kernel.label, ticket, mode, ranges, batchPages: this.dev.faultBatchPages, maxRounds: 1, policies, prefetch: opts.prefetch });
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const cause: Cause = { kind: 'declared', device: this.dev.id, kernel: kernel.label, dispatch: ticket };
        for (const r of ranges) await this.faults.faultIn(r.start, r.end, r.write, { keep: declared, hold, ticket, policies, where: `dispatch '${kernel.label}'`, cause: () => cause });
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
        rec?.end({ faults, rounds: 1, faultedPages: 0 });
        return { faults, rounds: 1, faultedPages: 0 };
      }
    } catch (e) {
      rec?.end(undefined, e);
      throw e;
    } finally {
      hold.release();
    }
    const busy = new HmmError('EBUSY', `dispatch '${kernel.label}': declared ranges kept being invalidated`);
    rec?.end(undefined, busy);
    throw busy;
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
    // A recording in progress (src/replay/recorder.ts) gets each launch's touched pages and faults.
    const rec = this.dev.stats.recorder?.dispatchBegin(this.dev, this.mm, { kernel: kernel.label, ticket, mode: 'replayable', ranges, batchPages: batch, maxRounds, policies, prefetch: opts.prefetch });
    try {
      for (const r of ranges) await this.faults.faultIn(r.start, r.end, r.write, { ticket, policies, where: `dispatch '${kernel.label}'` });
    } catch (e) {
      rec?.end(undefined, e);
      throw e;
    }
    let faults = 0;
    let faultedPages = 0;
    let stalled = 0;
    let lastKeys = '';
    let hold: DeviceHold | null = null;
    // This dispatch's own control buffer for all its rounds: its done bitmap (cleared by the
    // first launch) is what makes a relaunch skip the invocations that already finished.
    const ctl = this.controls.take(Math.ceil(invocations / 32) * 4, rec !== undefined);
    // Its interest in every page it faults on, until it ends: younger device operations wait
    // for it instead of taking those pages between its rounds (src/mm/deviceHolds.ts).
    const interest = this.mm.holdForDevice(this.dev.id, [], ticket, { interest: true });
    try {
      for (let round = 1; round <= maxRounds; round++) {
        checkAlive(this.dev, this.mm, 'dispatch');
        const status = await this.dev.launcher.launch(this.target, ctl, kernel, workgroups, opts.uniforms, undefined, { replayable: true, clearDone: round === 1, record: rec !== undefined });
        rec?.round(status);
        hold?.release();
        hold = null;
        this.dev.stats.add('dispatches');
        if (status.misses === 0) {
          rec?.end({ faults, rounds: round, faultedPages });
          return { faults, rounds: round, faultedPages };
        }
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
    } catch (e) {
      rec?.end(undefined, e);
      throw e;
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
    this.faults.countFaults(faulted);
    const isFault = new Set(faulted);
    const fault: Cause = { kind: 'gpu-fault', device: this.dev.id, ...at };
    const prefetched: Cause = { kind: 'prefetch', device: this.dev.id, ...at, policy: policies.prefetch.name };
    const opts: FaultInOptions = { hold, ticket: hold.ticket, policies, where, cause: (p) => (isFault.has(p) ? fault : prefetched) };
    const view: PrefetchView = {
      device: this.dev.id,
      space: this.mm.id,
      dispatch: at.dispatch,
      round: at.round,
      resident: (p: number) => this.table.lookup(p) !== null,
      allowed: (p: number) => this.faults.migratable(p, false, opts, 'prefetch') && !this.faults.othersTurn(p, opts),
    };
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
      await this.faults.faultInPages([...writes].sort((a, b) => a - b), true, { ...opts, keep, progress: isFault });
      await this.faults.faultInPages(reads, false, { ...opts, keep, progress: isFault });
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
      return await this.dev.launcher.launch(this.target, ctl, kernel, workgroups, uniforms);
    } finally {
      this.controls.give(ctl);
    }
  }
}
