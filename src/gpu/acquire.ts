// GPU access: find a WebGPU implementation (navigator.gpu in a browser, Dawn's `webgpu`
// package in Node), an adapter, and a GPUDevice with the limits the memory pool needs. In
// Node with no hardware adapter it finds a software Vulkan driver (SwiftShader, shipped by
// Debian's chromium package) by itself. Device loss is turned into a callback. Nothing here
// knows about pages.

import { HmmError } from '../errors.ts';

export interface AcquiredDevice {
  device: GPUDevice;
  adapterName: string;
  /** 'node' (Dawn) or 'browser'. */
  runtime: 'node' | 'browser';
}

export interface DeviceRequest {
  label: string;
  /** The largest single storage binding the pool will use. */
  storageBindingBytes: number;
  /** Storage buffers one kernel binds (page tables, memory buffers, status). */
  storageBuffersPerStage: number;
  /** Called once if the device is lost (destroy() included, with reason 'destroyed'). */
  onLost?: (info: GPUDeviceLostInfo) => void;
}

/** Software Vulkan drivers tried, in order, when Node finds no adapter by itself. */
const SOFTWARE_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json',
  '/usr/share/vulkan/icd.d/lvp_icd.aarch64.json',
];

const HOW_TO_GET_ONE =
  'No WebGPU adapter. In Node this project uses Dawn (npm `webgpu`) on a GPU driver, or on the software ' +
  'Vulkan driver SwiftShader: on Debian `apt-get install chromium libvulkan1` provides ' +
  '/usr/lib/chromium/vk_swiftshader_icd.json, or set VK_ICD_FILENAMES to a Vulkan ICD. In a browser, ' +
  'use Chrome with WebGPU (or start Chromium with --enable-unsafe-webgpu).';

let nodeGpu: Promise<{ gpu: GPU; adapter: GPUAdapter }> | undefined;

const isNode = (): boolean => typeof process !== 'undefined' && typeof process.versions === 'object' && !!process.versions.node;

/** An adapter in a few words: vendor, architecture, device, description (what `dev.adapterName` says). */
export function describeAdapter(adapter: GPUAdapter): string {
  const i = adapter.info;
  const parts = [i.vendor, i.architecture, i.device, i.description].filter((s) => s && s.length > 0);
  return parts.length > 0 ? [...new Set(parts)].join(' / ') : 'unknown adapter';
}

async function nodeAdapter(): Promise<{ gpu: GPU; adapter: GPUAdapter }> {
  // A variable specifier keeps bundlers from pulling Dawn into browser builds.
  const specifier = 'webgpu';
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = await import(/* @vite-ignore */ specifier);
  } catch (e) {
    // `webgpu` is an optional peer dependency of the package: a browser never needs it.
    const missing = (e as { code?: unknown })?.code === 'ERR_MODULE_NOT_FOUND' && /['"]webgpu['"]/.test(String((e as Error)?.message));
    if (missing)
      throw new HmmError(
        'EDEVLOST',
        'In Node, webgpu-hmm runs on Dawn, the npm package `webgpu` (an optional peer dependency), which is not installed: ' +
          'run `npm install webgpu` (README, "Use it in your app").',
      );
    throw new HmmError('EDEVLOST', `${HOW_TO_GET_ONE} (loading the webgpu package failed: ${String(e)})`);
  }
  Object.assign(globalThis, mod.globals); // GPUBufferUsage, GPUMapMode, ...
  const fs = await import('node:fs');
  const tried: string[] = [];
  const tryCreate = async (): Promise<{ gpu: GPU; adapter: GPUAdapter } | null> => {
    const gpu = mod.create([]);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    return adapter ? { gpu, adapter } : null;
  };
  const first = await tryCreate();
  if (first) return first;
  if (process.env.VK_ICD_FILENAMES) tried.push(process.env.VK_ICD_FILENAMES);
  for (const icd of SOFTWARE_ICDS) {
    if (!fs.existsSync(icd) || tried.includes(icd)) continue;
    process.env.VK_ICD_FILENAMES = icd; // read by the Vulkan loader when Dawn makes an instance
    tried.push(icd);
    const got = await tryCreate();
    if (got) return got;
  }
  throw new HmmError('EDEVLOST', `${HOW_TO_GET_ONE} Tried: ${tried.length ? tried.join(', ') : 'no Vulkan ICD found'}.`);
}

async function getAdapter(): Promise<{ adapter: GPUAdapter; runtime: 'node' | 'browser' }> {
  if (typeof navigator !== 'undefined' && navigator.gpu) {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new HmmError('EDEVLOST', HOW_TO_GET_ONE);
    return { adapter, runtime: 'browser' };
  }
  if (!isNode()) throw new HmmError('EDEVLOST', `${HOW_TO_GET_ONE} (navigator.gpu is missing)`);
  nodeGpu ??= nodeAdapter();
  try {
    const { gpu } = await nodeGpu;
    // An adapter hands out one device; ask again for every device after the first.
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new HmmError('EDEVLOST', HOW_TO_GET_ONE);
    return { adapter, runtime: 'node' };
  } catch (e) {
    nodeGpu = undefined;
    throw e;
  }
}

/**
 * A GPUDevice whose limits fit the request, raised above the defaults only where needed. In
 * Node it loads Dawn (the `webgpu` package) and falls back to SwiftShader when there is no GPU.
 * @throws {@link HmmError} EDEVLOST: no WebGPU adapter (in Node: `webgpu` is not installed or failed to load, or no GPU or software Vulkan driver was found).
 * @throws {@link HmmError} EINVAL: the request exceeds the adapter's storage binding or storage buffer limits.
 */
export async function acquireDevice(req: DeviceRequest): Promise<AcquiredDevice> {
  const { adapter, runtime } = await getAdapter();
  const lim = adapter.limits;
  if (req.storageBindingBytes > lim.maxStorageBufferBindingSize)
    throw new HmmError('EINVAL', `${req.label}: a ${req.storageBindingBytes}-byte storage binding exceeds the adapter's ${lim.maxStorageBufferBindingSize}`);
  if (req.storageBuffersPerStage > lim.maxStorageBuffersPerShaderStage)
    throw new HmmError(
      'EINVAL',
      `${req.label}: ${req.storageBuffersPerStage} storage buffers per kernel exceed the adapter's ${lim.maxStorageBuffersPerShaderStage}`,
    );
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: Math.max(req.storageBindingBytes, 128 << 20),
    maxBufferSize: Math.max(req.storageBindingBytes, 256 << 20),
    maxStorageBuffersPerShaderStage: Math.max(req.storageBuffersPerStage, 8),
  };
  for (const k of Object.keys(requiredLimits)) {
    requiredLimits[k] = Math.min(requiredLimits[k]!, (lim as unknown as Record<string, number>)[k]!);
  }
  // Timestamp queries where the adapter has them: the bench times G10's batches of launches
  // with them (src/bench/microbench.ts); nothing in the library depends on them.
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  const device = await adapter.requestDevice({ label: req.label, requiredLimits, requiredFeatures });
  if (req.onLost) {
    const onLost = req.onLost;
    void device.lost.then((info) => onLost(info));
  }
  return { device, adapterName: describeAdapter(adapter), runtime };
}
