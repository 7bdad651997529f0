// System: the top-level object users create. It owns system RAM, the devices (each its own
// GPUDevice), the address spaces, and the counters. createSystem() is the entry point.

import { acquireDevice } from './gpu/acquire.ts';
import { HmmDevice } from './device/hmmDevice.ts';
import { MAX_MEMORY_BUFFERS } from './device/deviceMemory.ts';
import { HmmError } from './errors.ts';
import { AddressSpace } from './mm/addressSpace.ts';
import { MAX_DEVICES } from './mm/cpuPageTable.ts';
import { SystemRam } from './mm/systemRam.ts';
import { Stats } from './trace/stats.ts';
import type { TraceLog } from './trace/trace.ts';
import type { ThrashConfig } from './policy/thrashing.ts';
import type { PrefetchConfig } from './policy/prefetch.ts';

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
}

export interface SystemConfig {
  systemRamBytes: number;
  devices?: DeviceConfig[];
  /** Thrashing detection for every address space (default: on, 3 bounces within 50 ms pin a page in RAM for 1 s). */
  thrashing?: Partial<ThrashConfig>;
}

export class System {
  readonly ram: SystemRam;
  readonly devices: HmmDevice[] = [];
  /** The live counters (every part adds to them); `stats()` is a snapshot of them. */
  readonly counters = new Stats();
  private readonly spaces: AddressSpace[] = [];
  private nextMm = 1;

  private readonly thrashing: Partial<ThrashConfig>;

  constructor(config: SystemConfig) {
    this.ram = new SystemRam(config.systemRamBytes);
    this.thrashing = config.thrashing ?? {};
  }

  /** A new, empty address space (a "process"). */
  createAddressSpace(): AddressSpace {
    const mm = new AddressSpace(this.nextMm++, this.ram, () => this.devices, this.counters);
    mm.thrash.config = { ...mm.thrash.config, ...this.thrashing };
    this.spaces.push(mm);
    return mm;
  }

  /** Counters: faults, pages and bytes each way, invalidations, copy batches, ... */
  stats(): Record<string, number> {
    return this.counters.snapshot();
  }

  /** The event log: faults, migrations, prefetches, kernels, with timestamps; `.toChromeTrace()` opens in Perfetto. */
  trace(): TraceLog {
    return this.counters.trace;
  }

  /** Names of the adapters the devices run on. */
  adapters(): string[] {
    return this.devices.map((d) => d.adapterName);
  }

  destroy(): void {
    for (const mm of this.spaces) mm.destroy();
    for (const d of this.devices) d.destroy();
  }
}

export async function createSystem(config: SystemConfig): Promise<System> {
  if (!config || typeof config !== 'object') throw new HmmError('EINVAL', 'createSystem: config object required');
  const sys = new System(config);
  const devs = config.devices ?? [];
  if (devs.length > MAX_DEVICES) throw new HmmError('EINVAL', `createSystem: at most ${MAX_DEVICES} devices`);
  for (let i = 0; i < devs.length; i++) {
    const cfg = devs[i]!;
    const name = cfg.label ?? `gpu${i}`;
    if (!Number.isInteger(cfg.memoryBytes) || cfg.memoryBytes <= 0 || cfg.memoryBytes % 4096 !== 0)
      throw new HmmError('EINVAL', `createSystem: devices[${i}].memoryBytes ${cfg.memoryBytes} must be a positive multiple of 4096`);
    if (cfg.evictionBytes !== undefined && ![4096, 65536, 2097152].includes(cfg.evictionBytes))
      throw new HmmError('EINVAL', `createSystem: devices[${i}].evictionBytes ${cfg.evictionBytes} is not 4096, 65536 or 2097152`);
    const wantBinding = Math.min(cfg.memoryBytes, cfg.maxBufferBytes ?? cfg.memoryBytes);
    let dev: HmmDevice | undefined;
    const acquired = await acquireDevice({
      label: name,
      storageBindingBytes: Math.min(wantBinding, 1 << 30),
      storageBuffersPerStage: 2 + MAX_MEMORY_BUFFERS + 2, // page tables, memory, control, internal kernels' io
      onLost: (info) => dev?.markLost(info.message || info.reason),
    });
    const maxBuf = Math.min(cfg.maxBufferBytes ?? Infinity, acquired.device.limits.maxStorageBufferBindingSize, acquired.device.limits.maxBufferSize);
    dev = new HmmDevice(i, name, acquired.device, acquired.adapterName, cfg.memoryBytes, maxBuf, sys.counters);
    if (cfg.prefetch) dev.prefetch = { ...dev.prefetch, ...cfg.prefetch };
    if (cfg.evictionBytes !== undefined) dev.evictionPages = cfg.evictionBytes / 4096;
    sys.devices.push(dev);
  }
  return sys;
}
