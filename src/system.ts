// System: the top-level object users create. It owns system RAM, the devices (each its own
// GPUDevice), the address spaces, and the counters. createSystem() is the entry point.

import { acquireDevice } from './gpu/acquire.ts';
import { DEFAULT_FAULT_BUFFER_PAGES, HmmDevice } from './device/hmmDevice.ts';
import { MAX_MEMORY_BUFFERS } from './device/deviceMemory.ts';
import { FAULT_QUEUE_CAP } from './device/kernel.ts';
import { HmmError } from './errors.ts';
import { AddressSpace } from './mm/addressSpace.ts';
import { MAX_DEVICES } from './mm/cpuPageTable.ts';
import { SystemRam } from './mm/systemRam.ts';
import { Stats } from './trace/stats.ts';
import type { TraceLog } from './trace/trace.ts';
import type { ThrashConfig } from './policy/thrashing.ts';
import { densityPrefetch, type PrefetchConfig } from './policy/prefetch.ts';
import { checkPolicy } from './policy/guard.ts';
import type { Policies } from './policy/types.ts';
import { describeCause, type PageEvent } from './trace/provenance.ts';
import { residency, residenceName, type ResidenceName } from './trace/residency.ts';
import { PAGE_SIZE } from './constants.ts';
import { Recorder, type Recording } from './replay/recorder.ts';

export interface DeviceConfig {
  /** Device-private memory, a multiple of 4096 bytes. */
  memoryBytes: number;
  /** Largest single memory buffer; the pool is split into up to four (default: the adapter's binding limit). */
  maxBufferBytes?: number;
  label?: string;
  /** Density prefetcher for replayable faults (default: on, threshold 51 %, 64 KiB upgrade). */
  prefetch?: Partial<PrefetchConfig>;
  /** Eviction unit when device memory is full: 4096, 65536 (default) or 2 MiB. */
  evictionBytes?: 4096 | 65536 | 2097152;
  /**
   * Replayable faults: the device's fault buffer, the most faults one launch delivers (default
   * 256, as UVM's batch; at most 4096). The rest overflow and fault again in the next round.
   */
  faultBufferPages?: number;
  /** Replayable faults: the most faulted pages one round services (default: the whole fault buffer; at most faultBufferPages). */
  faultBatchPages?: number;
  /**
   * The device's policies (src/policy/types.ts): prefetch, eviction, placement, batching. Any
   * left out is the built-in (density prefetch with `prefetch`, clock eviction, advice
   * placement, cap batching). A dispatch may override them with its own `policy`.
   */
  policy?: Policies;
}

/** sys.explain(mm, va): a page's residence now and its moves, oldest first. */
export interface PageStory {
  va: number;
  page: number;
  /** Where it lives now (residency(): 'ram', 'device', 'copy', ...). */
  now: ResidenceName;
  history: (PageEvent & { why: string })[];
}

export interface SystemConfig {
  systemRamBytes: number;
  devices?: DeviceConfig[];
  /** Thrashing detection for every address space (default: on, 3 bounces within 50 ms pin a page in RAM for 1 s). */
  thrashing?: Partial<ThrashConfig>;
}

/**
 * The top-level object: system RAM, the devices and the address spaces, and the counters and
 * event log. Made by {@link createSystem}.
 */
export class System {
  /**
   * System RAM: the frames every address space's pages live in when they are not on a device.
   * @internal
   */
  readonly ram: SystemRam;
  readonly devices: HmmDevice[] = [];
  /**
   * The live counters (every part adds to them); `stats()` is a snapshot of them.
   * @internal
   */
  readonly counters = new Stats();
  /** The live address spaces (destroyed ones leave). */
  private readonly spaces = new Set<AddressSpace>();
  private nextMm = 1;
  private destroyed = false;

  private readonly thrashing: Partial<ThrashConfig>;

  /**
   * Systems are made by {@link createSystem}, which checks the config and creates the devices.
   * @internal
   */
  constructor(config: SystemConfig) {
    try {
      this.ram = new SystemRam(config.systemRamBytes);
    } catch (e) {
      if (e instanceof RangeError) throw new HmmError('ENOMEM', `createSystem: cannot allocate ${config.systemRamBytes} bytes of system RAM (${e.message})`);
      throw e;
    }
    this.thrashing = config.thrashing ?? {};
  }

  /**
   * A new, empty address space (a "process").
   * @throws {@link HmmError} EINVAL: the system was destroyed.
   */
  createAddressSpace(): AddressSpace {
    if (this.destroyed) throw new HmmError('EINVAL', 'createAddressSpace: the system was destroyed');
    const mm = new AddressSpace(
      this.nextMm++,
      this.ram,
      () => this.devices,
      this.counters,
      () => this.createAddressSpace(),
    );
    mm.thrash.config = { ...mm.thrash.config, ...this.thrashing };
    this.spaces.add(mm);
    mm.onDestroy(() => {
      this.spaces.delete(mm); // a destroyed address space is not kept alive here
      this.counters.provenance.forget(mm.id);
    });
    return mm;
  }

  /** The address spaces not destroyed yet, oldest first. */
  get addressSpaces(): readonly AddressSpace[] {
    return [...this.spaces];
  }

  /** Counters: faults, pages and bytes each way, invalidations, copy batches, ... */
  stats(): Record<string, number> {
    return this.counters.snapshot();
  }

  /** The event log: faults, migrations, prefetches, kernels, with timestamps; `.toChromeTrace()` opens in Perfetto. */
  trace(): TraceLog {
    return this.counters.trace;
  }

  /**
   * One page's story: where it lives now, and each move it made (to a device, home, a copy, a
   * write-back, a dropped copy) with its cause (which kernel, dispatch and round faulted on it,
   * which prefetch or eviction policy chose it, which CPU fault or call moved it) and, for a
   * page a device faulted on, which placement policy decided what.
   * @throws {@link HmmError} EINVAL: `mm` is not an address space of this system, or `va` is not a 32-bit address.
   */
  explain(mm: AddressSpace, va: number): PageStory {
    if (!(mm instanceof AddressSpace) || mm.stats !== this.counters)
      throw new HmmError('EINVAL', `explain: ${String(mm)} is not an address space of this system`);
    if (!Number.isSafeInteger(va) || va < 0 || va >= 2 ** 32) throw new HmmError('EINVAL', `explain: address ${String(va)} is not a 32-bit virtual address`);
    const page = Math.floor(va / PAGE_SIZE);
    const history = this.counters.provenance.history(mm.id, page).map((e) => ({ ...e, why: describeCause(e.cause) }));
    return { va, page, now: residenceName(residency(mm, page * PAGE_SIZE, 1)[0]!), history };
  }

  /**
   * Record a fault trace from now until `stop()`: every dispatch's launches (the pages its
   * kernel touched and the faults it reported, through a recording variant of its pipeline),
   * the CPU faults and explicit page moves between them, the devices' sizes and policies.
   * `npm run replay` replays the trace against any policies without a GPU (src/replay/).
   * One recording at a time (EBUSY otherwise).
   */
  startRecording(): Recording {
    if (this.destroyed) throw new HmmError('EINVAL', 'startRecording: the system was destroyed');
    return new Recorder(this);
  }

  /** Names of the adapters the devices run on. */
  adapters(): string[] {
    return this.devices.map((d) => d.adapterName);
  }

  /** Destroy every address space and device; later calls on them are EINVAL / EDEVLOST. Idempotent; throws nothing. */
  destroy(): void {
    this.destroyed = true;
    for (const mm of [...this.spaces]) mm.destroy();
    for (const d of this.devices) d.destroy();
  }
}

/** Where the README explains the headers a page needs (and how to send them from Vite). */
const ISOLATION_HELP = 'https://www.npmjs.com/package/webgpu-hmm#use-it-in-your-app';

/**
 * The entry point: a System with `systemRamBytes` of system RAM and one HMM device per entry of
 * `devices` (each its own GPUDevice; in Node, on Dawn from the `webgpu` package). Every option is
 * checked before anything is allocated; a failure keeps no GPU device.
 * @throws {@link HmmError} EINVAL: a bad config option (named), more devices than supported, a device memory the adapter's limits cannot bind.
 * @throws {@link HmmError} EPERM: no SharedArrayBuffer (a browser page that is not cross-origin isolated: the message names both headers).
 * @throws {@link HmmError} ENOMEM: system RAM of that size cannot be allocated.
 * @throws {@link HmmError} EDEVLOST: no WebGPU adapter (in Node: the `webgpu` package is missing, or no GPU or SwiftShader was found).
 */
export async function createSystem(config: SystemConfig): Promise<System> {
  if (!config || typeof config !== 'object') throw new HmmError('EINVAL', 'createSystem: config object required');
  checkConfig(config);
  // System RAM is a SharedArrayBuffer; a browser page has one only when cross-origin isolated.
  if (typeof SharedArrayBuffer === 'undefined')
    throw new HmmError(
      'EPERM',
      'createSystem: SharedArrayBuffer is not available here, and system RAM is one. Browsers provide it only to ' +
        'cross-origin isolated pages: serve the page (and its scripts and workers) with the headers ' +
        '"Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp" ' +
        `(README, "Use it in your app": ${ISOLATION_HELP}).`,
    );
  const sys = new System(config);
  const devs = config.devices ?? [];
  try {
    for (let i = 0; i < devs.length; i++) {
      const cfg = devs[i]!;
      const name = cfg.label ?? `gpu${i}`;
      const wantBinding = Math.min(cfg.memoryBytes, cfg.maxBufferBytes ?? cfg.memoryBytes);
      let dev: HmmDevice | undefined;
      const acquired = await acquireDevice({
        label: name,
        storageBindingBytes: Math.min(wantBinding, 1 << 30),
        storageBuffersPerStage: 2 + MAX_MEMORY_BUFFERS + 2, // page tables, memory, control, internal kernels' io
        onLost: (info) => dev?.markLost(info.message || info.reason),
      });
      const maxBuf = Math.min(cfg.maxBufferBytes ?? Infinity, acquired.device.limits.maxStorageBufferBindingSize, acquired.device.limits.maxBufferSize);
      try {
        dev = new HmmDevice(i, name, acquired.device, acquired.adapterName, cfg.memoryBytes, maxBuf, sys.counters);
      } catch (e) {
        acquired.device.destroy();
        throw e;
      }
      if (cfg.prefetch) dev.prefetch = { ...dev.prefetch, ...cfg.prefetch };
      dev.policies = { ...dev.policies, prefetch: densityPrefetch(dev.prefetch), ...cfg.policy };
      if (cfg.evictionBytes !== undefined) dev.evictionPages = cfg.evictionBytes / 4096;
      if (cfg.faultBufferPages !== undefined) dev.faultBufferPages = cfg.faultBufferPages;
      if (cfg.faultBatchPages !== undefined) dev.faultBatchPages = cfg.faultBatchPages;
      sys.devices.push(dev);
    }
  } catch (e) {
    sys.destroy(); // a failed createSystem keeps no GPU device
    throw e;
  }
  return sys;
}

/** Every option is checked before anything is allocated: bad input is EINVAL naming the option. */
function checkConfig(config: SystemConfig): void {
  const show = (v: unknown): string =>
    typeof v === 'string' ? `'${v}'` : Array.isArray(v) ? `[array of ${v.length}]` : typeof v === 'object' && v !== null ? '{object}' : String(v);
  const bad = (what: string, v: unknown, want: string): HmmError => new HmmError('EINVAL', `createSystem: ${what} ${show(v)} ${want}`);
  const isBytes = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v > 0 && v % 4096 === 0;
  const isBatch = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= FAULT_QUEUE_CAP;
  if (!isBytes(config.systemRamBytes)) throw bad('systemRamBytes', config.systemRamBytes, 'must be a positive multiple of 4096');
  const t = config.thrashing;
  if (t !== undefined) {
    if (t === null || typeof t !== 'object') throw bad('thrashing', t, 'is not an object');
    if (t.enabled !== undefined && typeof t.enabled !== 'boolean') throw bad('thrashing.enabled', t.enabled, 'is not a boolean');
    for (const k of ['windowMs', 'threshold', 'pinMs', 'napMs'] as const)
      if (t[k] !== undefined && !(typeof t[k] === 'number' && t[k] >= 0 && Number.isFinite(t[k])))
        throw bad(`thrashing.${k}`, t[k], 'is not a finite number >= 0');
  }
  const devs = config.devices;
  if (devs === undefined) return;
  if (!Array.isArray(devs)) throw bad('devices', devs, 'is not an array of device configs');
  if (devs.length > MAX_DEVICES) throw new HmmError('EINVAL', `createSystem: at most ${MAX_DEVICES} devices`);
  devs.forEach((cfg: DeviceConfig, i) => {
    const at = `devices[${i}]`;
    if (!cfg || typeof cfg !== 'object') throw bad(at, cfg, 'is not an object { memoryBytes, ... }');
    if (!isBytes(cfg.memoryBytes)) throw bad(`${at}.memoryBytes`, cfg.memoryBytes, 'must be a positive multiple of 4096');
    if (cfg.maxBufferBytes !== undefined && !isBytes(cfg.maxBufferBytes))
      throw bad(`${at}.maxBufferBytes`, cfg.maxBufferBytes, 'must be a positive multiple of 4096');
    if (cfg.label !== undefined && typeof cfg.label !== 'string') throw bad(`${at}.label`, cfg.label, 'is not a string');
    if (cfg.evictionBytes !== undefined && ![4096, 65536, 2097152].includes(cfg.evictionBytes))
      throw bad(`${at}.evictionBytes`, cfg.evictionBytes, 'is not 4096, 65536 or 2097152');
    if (cfg.faultBufferPages !== undefined && !isBatch(cfg.faultBufferPages))
      throw bad(`${at}.faultBufferPages`, cfg.faultBufferPages, `is not an integer in [1, ${FAULT_QUEUE_CAP}]`);
    if (cfg.faultBatchPages !== undefined && !isBatch(cfg.faultBatchPages))
      throw bad(`${at}.faultBatchPages`, cfg.faultBatchPages, `is not an integer in [1, ${FAULT_QUEUE_CAP}]`);
    const buffer = cfg.faultBufferPages ?? DEFAULT_FAULT_BUFFER_PAGES;
    if (cfg.faultBatchPages !== undefined && cfg.faultBatchPages > buffer)
      throw bad(
        `${at}.faultBatchPages`,
        cfg.faultBatchPages,
        `is more than the device's fault buffer (faultBufferPages ${buffer}): a round services at most what the buffer delivers`,
      );
    const pol = cfg.policy;
    if (pol !== undefined) {
      if (pol === null || typeof pol !== 'object') throw bad(`${at}.policy`, pol, 'is not an object { prefetch?, eviction?, placement?, batching? }');
      const unknown = Object.keys(pol).find((k) => !['prefetch', 'eviction', 'placement', 'batching', 'name'].includes(k));
      if (unknown !== undefined)
        throw bad(
          `${at}.policy.${unknown}`,
          (pol as Record<string, unknown>)[unknown],
          "is not a policy kind (prefetch, eviction, placement, batching) or a policy set's name",
        );
      const name = (pol as { name?: unknown }).name;
      if (name !== undefined && typeof name !== 'string') throw bad(`${at}.policy.name`, name, "is not a string (a policy set's name)");
      for (const kind of ['prefetch', 'eviction', 'placement', 'batching'] as const)
        if (pol[kind] !== undefined) checkPolicy(kind, pol[kind], `createSystem: ${at}.policy`);
    }
    const pf = cfg.prefetch;
    if (pf !== undefined) {
      if (pf === null || typeof pf !== 'object') throw bad(`${at}.prefetch`, pf, 'is not an object');
      if (pf.enabled !== undefined && typeof pf.enabled !== 'boolean') throw bad(`${at}.prefetch.enabled`, pf.enabled, 'is not a boolean');
      if (pf.threshold !== undefined && !(typeof pf.threshold === 'number' && pf.threshold >= 0 && pf.threshold <= 100))
        throw bad(`${at}.prefetch.threshold`, pf.threshold, 'is not a percentage in [0, 100]');
      const up = pf.upgradePages;
      if (up !== undefined && !(Number.isInteger(up) && up >= 1 && up <= 512 && (up & (up - 1)) === 0))
        throw bad(`${at}.prefetch.upgradePages`, up, 'is not a power of two in [1, 512]');
    }
  });
}
