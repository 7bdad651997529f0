// Bench kernels: the WGSL files under shaders/bench/, loaded the way the library loads its own
// (src/device/shaders.ts: a `new URL(literal, import.meta.url)` that Vite serves and bundles,
// read from disk in Node). Every kernel compiles twice from the same source: behind the HMM
// prelude (through the device page table) and behind shaders/bench/plain.wgsl (one plain
// storage buffer), which is what the explicit-copy strategy and goal G10 launch.

import { loadShaderText } from '../device/wgslFiles.ts';
import type { HmmDevice, HmmKernel } from 'webgpu-hmm';

const urls = {
  plain: new URL('../../shaders/bench/plain.wgsl', import.meta.url),
  triad: new URL('../../shaders/bench/triad.wgsl', import.meta.url),
  gather: new URL('../../shaders/bench/gather.wgsl', import.meta.url),
  chase: new URL('../../shaders/bench/chase.wgsl', import.meta.url),
  stencil: new URL('../../shaders/bench/stencil.wgsl', import.meta.url),
  stream: new URL('../../shaders/bench/stream.wgsl', import.meta.url),
  scale: new URL('../../shaders/bench/scale.wgsl', import.meta.url),
  increment: new URL('../../shaders/bench/increment.wgsl', import.meta.url),
  touch: new URL('../../shaders/bench/touch.wgsl', import.meta.url),
};

export type KernelName = Exclude<keyof typeof urls, 'plain'>;

/** Workgroup size of each kernel: 8x8 for the 2-D stencil, 64 otherwise. */
export const WORKGROUP: Record<KernelName, [number, number]> = {
  triad: [64, 1],
  gather: [64, 1],
  chase: [64, 1],
  stencil: [8, 8],
  stream: [64, 1],
  scale: [64, 1],
  increment: [64, 1],
  touch: [64, 1],
};

const sources = new Map<keyof typeof urls, Promise<string>>();

export function benchSource(name: keyof typeof urls): Promise<string> {
  let p = sources.get(name);
  if (!p) {
    p = loadShaderText(urls[name]);
    sources.set(name, p);
  }
  return p;
}

/** A kernel compiled against a plain storage buffer (group 1: the buffer and its base VA). */
export interface PlainKernel {
  readonly name: KernelName;
  readonly pipeline: GPUComputePipeline;
}

export async function compilePlain(device: GPUDevice, name: KernelName): Promise<PlainKernel> {
  const [prelude, body] = await Promise.all([benchSource('plain'), benchSource(name)]);
  const [x, y] = WORKGROUP[name];
  const code = `${prelude}\n${body}\n@compute @workgroup_size(${x}, ${y}, 1)\nfn plain_main(@builtin(global_invocation_id) gid: vec3u) {\n  kernel(gid);\n}\n`;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: `bench ${name} (plain)`, code });
  const pipeline = await device.createComputePipelineAsync({ label: `bench ${name} (plain)`, layout: 'auto', compute: { module, entryPoint: 'plain_main' } });
  const err = await device.popErrorScope();
  if (err) throw new Error(`bench kernel ${name} (plain) does not compile: ${err.message}`);
  return { name, pipeline };
}

export async function compileHmm(dev: HmmDevice, name: KernelName): Promise<HmmKernel> {
  const [x, y] = WORKGROUP[name];
  const k = await dev.createKernel({ label: `bench ${name}`, code: await benchSource(name), workgroupSize: [x, y] });
  await k.replayablePipeline(); // compiled on first use otherwise: not inside a timed run
  return k;
}

/** Workgroups for `invocations` 1-D invocations (2-D when one row would exceed the limit), and the invocations per row. */
export function grid(invocations: number, wgSize: number, maxPerDim = 65535): { workgroups: [number, number]; row: number } {
  const groups = Math.max(1, Math.ceil(invocations / wgSize));
  const x = Math.min(groups, maxPerDim);
  const y = Math.ceil(groups / x);
  return { workgroups: [x, y], row: x * wgSize };
}
