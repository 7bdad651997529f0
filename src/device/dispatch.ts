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
import { ProgressRule } from './progress.ts';

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
  if (!(cfg.threshold >= 0 && cfg.threshold <= 100))
    throw new HmmError('EINVAL', `dispatch '${label}': prefetch.threshold ${cfg.threshold} is not a percentage in [0, 100]`);
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

/** A round's fault keys, each once, ascending. */
function dedupe(faults: Uint32Array): number[] {
  const sorted = Uint32Array.from(faults).sort();
  const out: number[] = [];
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) out.push(sorted[i]!);
  return out;
}

function sameKeys(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
    if (!opts || typeof opts !== 'object')
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': options { workgroups, uniforms?, mode?, ranges? } required`);
    const u = opts.uniforms;
    if (u !== undefined && !(u instanceof ArrayBuffer) && !ArrayBuffer.isView(u))
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': uniforms ${String(u)} is not an ArrayBuffer or a typed array`);
    const maxUniform = this.dev.device.limits.maxUniformBufferBindingSize;
    if (u !== undefined && u.byteLength > maxUniform)
      throw new HmmError(
        'EINVAL',
        `dispatch '${kernel.label}': uniforms of ${u.byteLength} bytes exceed the device's ${maxUniform}-byte uniform binding limit`,
      );
    if (u !== undefined && u.byteLength % 4 !== 0)
      throw new HmmError(
        'EINVAL',
        `dispatch '${kernel.label}': uniforms of ${u.byteLength} bytes: the length must be a multiple of 4 (WGSL uniform values are 4-byte words)`,
      );
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
      throw new HmmError(
        'ENOMEM',
        `dispatch '${kernel.label}': declared ranges span ${declared.size} pages, more than ${this.dev.name}'s ${this.dev.memory.frameCount} frames; use replayable mode to stream them`,
      );
    let faults = 0;
    const policies = this.policiesFor(kernel.label, opts);
    // The declared pages are held until the kernel has run: CPU accesses and other devices wait
    // for it, and this device's other operations evict them only if they are older.
    const ticket = this.dev.ticket();
    const hold = this.mm.holdForDevice(
      this.dev.id,
      [...declared].sort((a, b) => a - b),
      ticket,
    );
    // A recording in progress (src/replay/recorder.ts) learns of it, and of how it ended.
    const rec = this.dev.stats.recorder?.dispatchBegin(this.dev, this.mm, {
      kernel: kernel.label,
      ticket,
      mode,
      ranges,
      batchPages: this.dev.faultBatchPages,
      maxRounds: 1,
      policies,
      prefetch: opts.prefetch,
    });
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const cause: Cause = { kind: 'declared', device: this.dev.id, kernel: kernel.label, dispatch: ticket };
        for (const r of ranges)
          await this.faults.faultIn(r.start, r.end, r.write, {
            keep: declared,
            hold,
            ticket,
            policies,
            where: `dispatch '${kernel.label}'`,
            cause: () => cause,
          });
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
    if (!Number.isInteger(maxRounds) || maxRounds < 1)
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': maxRounds ${String(maxRounds)} is not a positive integer`);
    // The device's fault buffer for every round of this dispatch, and the service's cap within it.
    const buffer = this.dev.faultBufferPages;
    const batch = opts.faultBatchPages ?? this.dev.faultBatchPages;
    if (!Number.isInteger(batch) || batch < 1 || batch > FAULT_QUEUE_CAP)
      throw new HmmError('EINVAL', `dispatch '${kernel.label}': faultBatchPages ${String(batch)} is not an integer in [1, ${FAULT_QUEUE_CAP}]`);
    if (batch > buffer)
      throw new HmmError(
        'EINVAL',
        `dispatch '${kernel.label}': faultBatchPages ${batch} is more than ${this.dev.name}'s fault buffer (faultBufferPages ${buffer}): a round services at most the faults the buffer delivers`,
      );
    const policies = this.policiesFor(kernel.label, opts);
    const ticket = this.dev.ticket(); // this dispatch's age, for all its rounds
    // A recording in progress (src/replay/recorder.ts) gets each launch's touched pages and faults.
    const rec = this.dev.stats.recorder?.dispatchBegin(this.dev, this.mm, {
      kernel: kernel.label,
      ticket,
      mode: 'replayable',
      ranges,
      batchPages: batch,
      maxRounds,
      policies,
      prefetch: opts.prefetch,
      invocations,
    });
    try {
      for (const r of ranges) await this.faults.faultIn(r.start, r.end, r.write, { ticket, policies, where: `dispatch '${kernel.label}'` });
    } catch (e) {
      rec?.end(undefined, e);
      throw e;
    }
    let faults = 0;
    let faultedPages = 0;
    let stalled = 0;
    let lastKeys: readonly number[] = [];
    let hold: DeviceHold | null = null;
    const stats = this.dev.stats;
    // The progress rule (progress.ts, design-notes §20): the window of invocations each launch
    // runs, and the pages protected from this dispatch's own evictions while it is in force.
    const rule = new ProgressRule(invocations);
    // This dispatch's own control buffer for all its rounds: its done bitmap (cleared by the
    // first launch) is what makes a relaunch skip the invocations that already finished.
    const ctl = this.controls.take(Math.ceil(invocations / 32) * 4, rec !== undefined);
    // Its interest in every page it faults on, until it ends: younger device operations wait
    // for it instead of taking those pages between its rounds (src/mm/deviceHolds.ts).
    const interest = this.mm.holdForDevice(this.dev.id, [], ticket, { interest: true });
    try {
      for (let round = 1; round <= maxRounds; round++) {
        checkAlive(this.dev, this.mm, 'dispatch');
        // A fault round spans its launch, the readback, and the service (its phases nest in it).
        const tRound = performance.now();
        const window = rule.whole && rule.window[0] === 0 ? undefined : rule.window;
        const status = await this.dev.launcher.launch(this.target, ctl, kernel, workgroups, opts.uniforms, undefined, {
          replayable: true,
          clearDone: round === 1,
          record: rec !== undefined,
          faultBuffer: buffer,
          window,
        });
        rec?.round(status);
        hold?.release();
        hold = null;
        stats.add('dispatches');
        if (rule.active) stats.add('progressRounds');
        const verdict = rule.launched(status.misses, status.faultedInvocations ?? 0);
        if (verdict === 'done') {
          rec?.end({ faults, rounds: round, faultedPages });
          return { faults, rounds: round, faultedPages };
        }
        if (verdict === 'window-done') continue;
        faults++;
        let t = performance.now();
        stats.add('gpuFaults');
        const keys = dedupe(status.faults!);
        stats.add('faultsReported', status.misses);
        stats.add('faultsDeduplicated', status.misses - keys.length);
        stats.add('faultRecords', status.faults!.length);
        stats.add('faultsOverflowed', Math.max(0, (status.queued ?? 0) - status.faults!.length));
        let pages = 0;
        for (let i = 0; i < keys.length; i++) if (i === 0 || keys[i]! >>> 1 !== keys[i - 1]! >>> 1) pages++;
        stats.add('faultPages', pages);
        stalled = sameKeys(keys, lastKeys) ? stalled + 1 : 0;
        lastKeys = keys;
        if (stalled >= STALLED_ROUNDS || round === maxRounds) {
          const shown = keys
            .slice(0, 8)
            .map((k) => hex((k >>> 1) * PAGE_SIZE))
            .join(', ');
          throw new HmmError(
            'EBUSY',
            `dispatch '${kernel.label}': still faulting after ${round} rounds on ${keys.length} pages (${shown}${keys.length > 8 ? ', ...' : ''})`,
            (keys[0]! >>> 1) * PAGE_SIZE,
          );
        }
        faultedPages += keys.length;
        rule.faults(keys);
        const roundPages = keys.map((k) => k >>> 1);
        interest.extend(roundPages);
        hold = this.mm.holdForDevice(this.dev.id, roundPages, ticket);
        t = stats.endPhase('dedupe', t, this.dev.id, this.mm.id);
        const flow = stats.trace.newFlow();
        try {
          await this.serviceFaults({ kernel: kernel.label, dispatch: ticket, round, flow }, keys, policies, batch, hold, rule);
        } catch (e) {
          // No room even with the rule in force: fewer invocations at a time, or, with one
          // left that still does not fit, ENOMEM naming the dispatch and the sizes.
          if (!(e instanceof HmmError && e.code === 'ENOMEM' && rule.active)) throw e;
          const [first, end] = rule.window;
          const alone = rule.protectedPages.size;
          if (!rule.shrink())
            throw new HmmError(
              'ENOMEM',
              `dispatch '${kernel.label}': invocation ${first} alone does not fit ${this.dev.name}: it faulted on ${alone + keys.length} pages it needs at once (${alone} resident and kept) without finishing, and the device has ${this.dev.memory.frameCount} frames (${e.message})`,
              e.address,
            );
          stats.trace.record({
            kind: 'gpu-fault-round',
            ts: tRound,
            dur: performance.now() - tRound,
            pages: keys.length,
            device: this.dev.id,
            mm: this.mm.id,
            detail: `${kernel.label} round ${round}: no room; invocations [${first}, ${end}) narrowed to [${rule.window[0]}, ${rule.window[1]})`,
            id: flow,
          });
          continue;
        }
        // what the service mapped: a fault on it again before any invocation finishes is a refault
        rule.servicedKeys(keys.filter((k) => this.table.has(k >>> 1, (k & 1) === 1)));
        stats.trace.record({
          kind: 'gpu-fault-round',
          ts: tRound,
          dur: performance.now() - tRound,
          pages: keys.length,
          va: (keys[0]! >>> 1) * PAGE_SIZE,
          device: this.dev.id,
          mm: this.mm.id,
          detail: `${kernel.label} round ${round}: ${status.misses} misses, ${keys.length} unique${rule.active ? `, progress rule: invocations [${rule.window[0]}, ${rule.window[1]}), ${rule.protectedPages.size} pages kept` : ''}`,
          id: flow,
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
      if (own === null || typeof own !== 'object')
        throw new HmmError('EINVAL', `dispatch '${label}': policy ${String(own)} is not an object { prefetch?, eviction?, placement?, batching? }`);
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
    rule: ProgressRule,
  ): Promise<void> {
    const stats = this.dev.stats;
    let t = performance.now();
    const label = at.kernel;
    const where = `dispatch '${label}' round ${at.round}`;
    const writes = new Set<number>();
    let faulted: number[] = [];
    for (const k of keys) {
      const p = k >>> 1;
      if (k & 1) writes.add(p);
      if (faulted.length === 0 || faulted[faulted.length - 1] !== p) faulted.push(p); // keys are sorted: a page's read and write are neighbours
    }
    // How much of the round to take on, and whether to nap first: the batching policy's. The
    // faults left out fault again next round. Whatever it says, one batch must fit beside what
    // stays resident: at most half the device (the mechanism's cap), and under the progress
    // rule at most what is not kept for the dispatch already.
    const frames = this.dev.memory.frameCount;
    let cap = Math.max(1, Math.floor(frames / 2));
    if (rule.active) cap = Math.max(1, Math.min(cap, frames - rule.protectedPages.size));
    const thrashing = this.mm.thrash.config.enabled && this.throttle(faulted);
    const plan = askBatching(
      policies.batching,
      { faulted: faulted.length, frames, batchPages: batch, thrashing, thrashNapMs: this.mm.thrash.config.napMs },
      where,
    );
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
      resident: (p: number) => this.table.has(p),
      allowed: (p: number) => this.faults.migratable(p, false, opts, 'prefetch') && !this.faults.othersTurn(p, opts),
    };
    // (under the progress rule no company: it would only take room the kept pages need)
    let wanted = rule.active ? faulted : askPrefetch(policies.prefetch, faulted, view, where);
    if (wanted.length > cap) {
      wanted = [...faulted, ...wanted.filter((p) => !isFault.has(p)).slice(0, cap - faulted.length)].sort((a, b) => a - b);
    }
    // (with no company and no progress rule, what to keep is exactly the faulted set: no second copy of it)
    const keep = wanted.length === faulted.length && !rule.active ? isFault : new Set(wanted);
    for (const w of writes) if (!keep.has(w)) writes.delete(w);
    const reads = wanted.filter((p) => !writes.has(p));
    // what this dispatch's evictions must spare: the batch, and the pages the progress rule keeps
    if (rule.active) for (const p of rule.protectedPages) keep.add(p);
    t = stats.endPhase('policy', t, this.dev.id, this.mm.id);
    if (plan.napMs > 0) {
      stats.add('throttledBatches');
      await new Promise((r) => setTimeout(r, plan.napMs));
    }
    stats.add('prefetchedPages', wanted.length - faulted.length);
    if (wanted.length > faulted.length)
      stats.trace.record({ kind: 'prefetch', pages: wanted.length - faulted.length, va: wanted[0]! * PAGE_SIZE, device: this.dev.id, mm: this.mm.id });
    try {
      // One fault-in for the writes (a page faulted for a load and a store is among them, and
      // is uploaded once, writable), then one for the reads and the prefetched company.
      await this.faults.faultInPages(
        [...writes].sort((a, b) => a - b),
        true,
        { ...opts, keep, progress: isFault },
      );
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

  /**
   * Does a batch touching these pages nap first (the thrashing throttle)? Only when a faulted
   * page is thrashing and someone else is using it right now: a CPU access inside it or moving
   * it, or another device's turn with it. A nap gives the other side its turn; with nobody
   * waiting it only adds latency, and a pinned page is served through a copy anyway, so the
   * batch cannot take it from anyone (design-notes §20).
   */
  private throttle(pages: readonly number[]): boolean {
    const now = performance.now();
    const mm = this.mm;
    return pages.some((p) => mm.thrash.isPinned(p, now) && (mm.isPinned(p) || mm.inflight.has(p) || mm.heldBy(p, (h) => h.device !== this.dev.id)));
  }

  private missError(label: string, s: { misses: number; minMiss: number; minWriteMiss: number }): HmmError {
    const at = s.minMiss;
    const vma = this.mm.vmaAt(at);
    if (!vma || !canRead(vma.prot)) return new HmmError('ESEGV', `kernel '${label}' touched unmapped address ${hex(at)} (${s.misses} faulting accesses)`, at);
    if (s.minWriteMiss === at && !canWrite(vma.prot))
      return new HmmError('EPERM', `kernel '${label}' wrote read-only address ${hex(at)} (${s.misses} faulting accesses)`, at);
    return new HmmError(
      'EFAULT',
      `kernel '${label}' touched ${hex(at)}, outside its declared ranges (${s.misses} faulting accesses); declare it in ranges`,
      at,
    );
  }

  /** Is every page of [start, end) mapped in this device's table (writable, for `write`)? */
  private mapped(start: number, end: number, write: boolean): boolean {
    for (let p = start; p < end; p++) if (!this.table.has(p, write)) return false;
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
