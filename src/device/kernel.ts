// Kernel compilation: a user's WGSL `fn kernel(gid: vec3u)` is wrapped with the prelude
// (shaders/hmm.wgsl, @group(1)) and an entry point, compiled once per device, and errors are
// reported against the user's own line numbers, not the combined source's.

import { HmmError } from '../errors.ts';
import { shaderSource } from './shaders.ts';

export interface KernelOptions {
  /** WGSL defining `fn kernel(gid: vec3u)`; it may declare `@group(0) @binding(0) var<uniform>`. */
  code: string;
  /** Workgroup size, [x, y, z] or x; default 64. */
  workgroupSize?: number | [number, number?, number?];
  label?: string;
}

/** Internal kernels (mirror read/write) also bind a storage buffer at @group(0) @binding(1). */
export interface KernelBuild extends KernelOptions {
  ioBinding?: boolean;
}

/** Entries in the GPU fault queue: faults one replay round can report (pending bits dedupe them first). */
export const FAULT_QUEUE_CAP = 4096;
/** Control buffer words: 5 status words, the queue, a 2-bit-per-page pending bitmap, then the done bitmap. */
export const CTL_QUEUE = 5;
export const CTL_DONE = CTL_QUEUE + FAULT_QUEUE_CAP + (2 * (1 << 20)) / 32;

export class HmmKernel {
  constructor(
    readonly label: string,
    readonly pipeline: GPUComputePipeline,
    readonly workgroupSize: [number, number, number],
    readonly ioBinding: boolean,
    readonly device: GPUDevice,
  ) {}
}

export interface PipelineLayouts {
  group0: GPUBindGroupLayout;
  group0io: GPUBindGroupLayout;
  group1: GPUBindGroupLayout;
}

export function makeLayouts(device: GPUDevice): PipelineLayouts {
  const C = GPUShaderStage.COMPUTE;
  const storage = (binding: number, type: GPUBufferBindingType = 'storage'): GPUBindGroupLayoutEntry => ({
    binding,
    visibility: C,
    buffer: { type },
  });
  const uniform: GPUBindGroupLayoutEntry = { binding: 0, visibility: C, buffer: { type: 'uniform' } };
  return {
    group0: device.createBindGroupLayout({ label: 'hmm kernel uniforms', entries: [uniform] }),
    group0io: device.createBindGroupLayout({ label: 'hmm kernel uniforms + io', entries: [uniform, storage(1)] }),
    group1: device.createBindGroupLayout({
      label: 'hmm prelude',
      entries: [storage(0, 'read-only-storage'), storage(1), storage(2), storage(3), storage(4), storage(5), storage(6)],
    }),
  };
}

function normalizeSize(label: string, ws: KernelOptions['workgroupSize'], device: GPUDevice): [number, number, number] {
  if (ws !== undefined && typeof ws !== 'number' && !(Array.isArray(ws) && ws.length >= 1 && ws.length <= 3))
    throw new HmmError('EINVAL', `kernel '${label}': workgroupSize ${Array.isArray(ws) ? `[${ws.join(', ')}]` : String(ws)} is not a number or an array [x, y?, z?]`);
  const arr = ws === undefined ? [64] : typeof ws === 'number' ? [ws] : ws;
  const size: [number, number, number] = [arr[0] ?? 1, arr[1] ?? 1, arr[2] ?? 1];
  const lim = device.limits;
  const max = [lim.maxComputeWorkgroupSizeX, lim.maxComputeWorkgroupSizeY, lim.maxComputeWorkgroupSizeZ];
  size.forEach((n, i) => {
    if (!Number.isInteger(n) || n < 1 || n > max[i]!)
      throw new HmmError('EINVAL', `kernel '${label}': workgroupSize[${i}] = ${n} is not an integer in [1, ${max[i]}]`);
  });
  if (size[0] * size[1] * size[2] > lim.maxComputeInvocationsPerWorkgroup)
    throw new HmmError('EINVAL', `kernel '${label}': workgroup of ${size.join('x')} exceeds ${lim.maxComputeInvocationsPerWorkgroup} invocations`);
  return size;
}

export async function compileKernel(
  device: GPUDevice,
  layouts: PipelineLayouts,
  frameShift: number,
  opts: KernelBuild,
): Promise<HmmKernel> {
  if (!opts || typeof opts !== 'object') throw new HmmError('EINVAL', 'createKernel: options { code, workgroupSize?, label? } required');
  if (opts.label !== undefined && typeof opts.label !== 'string')
    throw new HmmError('EINVAL', `createKernel: label ${String(opts.label)} is not a string`);
  const label = opts.label ?? 'kernel';
  if (typeof opts.code !== 'string' || !/\bfn\s+kernel\s*\(/.test(opts.code))
    throw new HmmError('EINVAL', `kernel '${label}': code must be WGSL defining fn kernel(gid: vec3u)`);
  const size = normalizeSize(label, opts.workgroupSize, device);
  const prelude = await shaderSource('prelude');
  const head = `${prelude}\n// ---- user kernel '${label}' ----\n`;
  const userFirstLine = head.split('\n').length; // 1-based line of the user's first line
  const wg = `vec3u(${size.join('u, ')}u)`;
  const entry = `
@compute @workgroup_size(${size.join(', ')})
fn hmm_main(@builtin(global_invocation_id) hmm_gid: vec3u, @builtin(num_workgroups) hmm_nwg: vec3u) {
  if (!hmm_replayable()) {
    kernel(hmm_gid);
    return;
  }
  let idx = hmm_invocation_index(hmm_gid, hmm_nwg, ${wg});
  if (hmm_is_done(idx)) { return; }
  kernel(hmm_gid);
  hmm_mark_done(idx);
}
`;
  const code = head + opts.code + entry;
  device.pushErrorScope('validation'); // compile errors are reported below, not as uncaptured errors
  const module = device.createShaderModule({ label, code });
  const scoped = device.popErrorScope();
  const info = await module.getCompilationInfo();
  await scoped;
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length > 0) {
    // Lines are reported in the user's own numbering, with the offending line quoted; an error
    // past the user's last line (an unclosed brace, a kernel() with the wrong signature) is
    // reported against the entry point the library adds after it.
    const userLines = opts.code.split('\n');
    const where = (m: GPUCompilationMessage): string => {
      if (m.lineNum < 1) return '';
      const n = m.lineNum - userFirstLine + 1;
      if (n < 1) return `prelude line ${m.lineNum}:${m.linePos}: `;
      if (n > userLines.length) return `after the kernel's last line (line ${userLines.length}), in the entry point that calls kernel(gid: vec3u) (an unclosed brace? a kernel with another signature?): `;
      return `line ${n}:${m.linePos}: `;
    };
    const quote = (m: GPUCompilationMessage): string => {
      const n = m.lineNum - userFirstLine + 1;
      return m.lineNum >= 1 && n >= 1 && n <= userLines.length ? `\n    ${n} | ${userLines[n - 1]!.trim()}` : '';
    };
    const text = errors.map((m) => `${where(m)}${m.message}${quote(m)}`).join('\n');
    throw new HmmError('EINVAL', `kernel '${label}' does not compile:\n${text}`);
  }
  const layout = device.createPipelineLayout({
    label,
    bindGroupLayouts: [opts.ioBinding ? layouts.group0io : layouts.group0, layouts.group1],
  });
  try {
    const pipeline = await device.createComputePipelineAsync({
      label,
      layout,
      compute: { module, entryPoint: 'hmm_main', constants: { HMM_FRAME_SHIFT: frameShift, HMM_QUEUE_CAP: FAULT_QUEUE_CAP } },
    });
    return new HmmKernel(label, pipeline, size, opts.ioBinding === true, device);
  } catch (e) {
    throw new HmmError('EINVAL', `kernel '${label}': pipeline creation failed: ${(e as Error).message}`);
  }
}
