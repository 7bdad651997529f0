// Kernel compilation: a user's WGSL `fn kernel(gid: vec3u)` is wrapped with the prelude
// (shaders/hmm.wgsl, @group(1)) and an entry point, compiled once per device, and errors are
// reported against the user's own line numbers, not the combined source's. Before anything
// is compiled, the kernel's text must pass the isolation check (kernelCheck.ts): it reaches
// memory only through the prelude's public functions. The prelude is specialised per kernel
// (see the top of hmm.wgsl): plain or atomic device memory, chosen from the kernel's text, and
// one pipeline per dispatch mode, so the resident path of a validated kernel carries no replay
// code.

import { HmmError } from '../errors.ts';
import { checkKernelSource, definesKernel, moduleScopeReferences, usesIdentifier, type KernelViolation } from './kernelCheck.ts';
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

/**
 * Entries the GPU fault queue has room for: the most faults one replay round can report (pending
 * bits dedupe them first). A device's fault buffer (faultBufferPages) delivers at most this many.
 */
export const FAULT_QUEUE_CAP = 4096;
/**
 * Control buffer words: 8 status words (the layout is in shaders/hmm.wgsl), the queue, a
 * 2-bit-per-page pending bitmap, then the done bitmap.
 */
export const CTL_QUEUE = 8;
/** Status words: [3] the fault buffer's capacity this round, [4] queue length (overflow included), [5] invocations that faulted, [6, 7] the window of invocations that run. */
export const CTL_QCAP = 3;
export const CTL_QLEN = 4;
export const CTL_FAULTED = 5;
export const CTL_WINDOW_START = 6;
export const CTL_WINDOW_END = 7;
export const CTL_DONE = CTL_QUEUE + FAULT_QUEUE_CAP + (2 * (1 << 20)) / 32;
/**
 * Recording pipelines (HMM_RECORD): a touched bitmap of the pending bitmap's shape sits where
 * the done bitmap would be, and the done bitmap follows it. Other pipelines never see it.
 */
export const TOUCHED_WORDS = (2 * (1 << 20)) / 32;
export const CTL_TOUCHED = CTL_DONE;
export const CTL_DONE_RECORDING = CTL_DONE + TOUCHED_WORDS;

/** A compiled kernel from `dev.createKernel`, for `m.dispatch` on that device's mirrors. */
export class HmmKernel {
  private replayable: Promise<GPUComputePipeline> | undefined;
  private recording: Promise<GPUComputePipeline> | undefined;
  /**
   * Kernels are made by `dev.createKernel`.
   * @internal
   */
  constructor(
    /** Its label (KernelOptions' `label`), as errors and traces name it. */
    readonly label: string,
    /**
     * The validated-mode pipeline.
     * @internal
     */
    readonly pipeline: GPUComputePipeline,
    /** Its workgroup size, [x, y, z]. */
    readonly workgroupSize: [number, number, number],
    /** @internal */
    readonly ioBinding: boolean,
    /** @internal */
    readonly device: GPUDevice,
    /**
     * Device memory is bound as array<atomic<u32>> (the kernel uses atomics or byte stores).
     * @internal
     */
    readonly atomicMemory: boolean,
    /** Compiles the replayable pipeline, with HMM_RECORD on when `record`. */
    private readonly makeReplayable: (record: boolean) => Promise<GPUComputePipeline>,
  ) {}

  /**
   * The replayable-mode pipeline, compiled on first use: many kernels never replay.
   * @internal
   */
  replayablePipeline(): Promise<GPUComputePipeline> {
    this.replayable ??= this.makeReplayable(false);
    return this.replayable;
  }

  /**
   * The replayable pipeline that also fills the touched bitmap (while a recording runs), compiled on first use.
   * @internal
   */
  recordingPipeline(): Promise<GPUComputePipeline> {
    this.recording ??= this.makeReplayable(true);
    return this.recording;
  }
}

/**
 * Does a kernel need device memory bound as atomics? Yes when it calls an atomic prelude
 * function or a byte store (a read-modify-write of a shared word). It is read from the
 * kernel's tokens, so a mention in a comment does not count; the memory bindings themselves
 * are out of a kernel's reach (kernelCheck.ts), so they need no case here.
 */
export function needsAtomicMemory(code: string): boolean {
  return usesIdentifier(code, (name) => name.startsWith('hmm_atomic_') || name === 'hmm_store_u8');
}

/**
 * The prelude's text for one memory variant: of its `//#if ATOMIC_MEMORY` / `//#else` /
 * `//#endif` block, the lines of the other branch (and the marker lines) become blank, so a
 * line number in the result is the same line of hmm.wgsl.
 */
export function preludeVariant(source: string, atomic: boolean): string {
  let branch: 'none' | 'atomic' | 'plain' = 'none';
  const lines = source.split('\n').map((line) => {
    const marker = line.trim();
    if (!marker.startsWith('//#')) return branch === 'none' || (branch === 'atomic') === atomic ? line : '';
    if (marker === '//#if ATOMIC_MEMORY' && branch === 'none') branch = 'atomic';
    else if (marker === '//#else' && branch === 'atomic') branch = 'plain';
    else if (marker === '//#endif' && branch === 'plain') branch = 'none';
    else throw new Error(`hmm.wgsl: unexpected '${marker}'`);
    return '';
  });
  if (branch !== 'none') throw new Error('hmm.wgsl: unterminated //#if ATOMIC_MEMORY');
  return lines.join('\n');
}

/** What the prelude needs to know about the device's memory pool. */
export interface PoolShape {
  /** log2 of the frames per memory buffer (HMM_FRAME_SHIFT). */
  frameShift: number;
  /** The memory buffers (1 to 4; HMM_MEM_BUFFERS). */
  buffers: readonly unknown[];
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
    throw new HmmError(
      'EINVAL',
      `kernel '${label}': workgroupSize ${Array.isArray(ws) ? `[${ws.join(', ')}]` : String(ws)} is not a number or an array [x, y?, z?]`,
    );
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

/**
 * The entry point the library appends after the kernel: it calls `kernel(gid)`, and in the
 * replayable pipeline skips invocations that already finished or are outside the launch's
 * window (the host narrows it when a dispatch stops making progress, design-notes §20). HMM_REPLAYABLE is a pipeline
 * constant: each pipeline keeps one branch.
 */
function entryPoint(size: readonly [number, number, number]): string {
  const wg = `vec3u(${size.join('u, ')}u)`;
  return `
@compute @workgroup_size(${size.join(', ')})
fn hmm_main(@builtin(global_invocation_id) hmm_gid: vec3u, @builtin(num_workgroups) hmm_nwg: vec3u) {
  if (HMM_REPLAYABLE) {
    let idx = hmm_invocation_index(hmm_gid, hmm_nwg, ${wg});
    if (!hmm_in_window(idx) || hmm_is_done(idx)) { return; }
    kernel(hmm_gid);
    hmm_mark_done(idx);
  } else {
    kernel(hmm_gid);
  }
}
`;
}

/**
 * The module a kernel compiles to: the prelude variant, the kernel's own text, the entry point.
 * Nothing the caller chose besides `code` and the validated workgroup size goes into it (not
 * the label: a label with a line break in it would be WGSL outside the checked text).
 */
export function kernelModuleSource(prelude: string, code: string, size: readonly [number, number, number]): { source: string; userFirstLine: number } {
  const head = `${prelude}\n// ---- user kernel ----\n`;
  return { source: head + code + entryPoint(size), userFirstLine: head.split('\n').length };
}

let referencesCache: { prelude: string; names: Set<string> } | undefined;

/** What the prelude (both memory variants) and the entry point resolve at module scope: a kernel may not redeclare those names there. */
function preludeReferences(prelude: string): Set<string> {
  if (referencesCache?.prelude !== prelude) {
    const names = moduleScopeReferences(`${prelude}\n${entryPoint([1, 1, 1])}`);
    referencesCache = { prelude, names };
  }
  return referencesCache.names;
}

/** The refusal for a kernel that breaks the isolation rules: each violation at the kernel's own line, quoted. */
function isolationError(label: string, code: string, violations: readonly KernelViolation[]): HmmError {
  const lines = code.split('\n');
  const shown = 10;
  const text = violations
    .slice(0, shown)
    .map((v) => `line ${v.line}:${v.column}: ${v.reason}${lines[v.line - 1] !== undefined ? `\n    ${v.line} | ${lines[v.line - 1]!.trim()}` : ''}`)
    .join('\n');
  const more = violations.length > shown ? `\n(and ${violations.length - shown} more)` : '';
  return new HmmError('EINVAL', `kernel '${label}' reaches past the prelude's public functions (docs/threat-model.md):\n${text}${more}`);
}

/**
 * createKernel: a user's kernel. Only the public options are read, so a caller cannot ask for
 * the internal copy kernel's extra binding.
 */
export function compileUserKernel(device: GPUDevice, layouts: PipelineLayouts, pool: PoolShape, opts: KernelOptions): Promise<HmmKernel> {
  const user: KernelBuild =
    opts && typeof opts === 'object' ? { code: opts.code, workgroupSize: opts.workgroupSize, label: opts.label, ioBinding: false } : opts;
  return compileKernel(device, layouts, pool, user);
}

/** Compile a kernel (the user's through compileUserKernel, or an internal one with ioBinding). */
export async function compileKernel(device: GPUDevice, layouts: PipelineLayouts, pool: PoolShape, opts: KernelBuild): Promise<HmmKernel> {
  if (!opts || typeof opts !== 'object') throw new HmmError('EINVAL', 'createKernel: options { code, workgroupSize?, label? } required');
  if (opts.label !== undefined && typeof opts.label !== 'string') throw new HmmError('EINVAL', `createKernel: label ${String(opts.label)} is not a string`);
  const label = opts.label ?? 'kernel';
  // Read once: the text that is checked is the text that is compiled (a getter cannot swap it).
  const userCode: unknown = opts.code;
  if (typeof userCode !== 'string' || !definesKernel(userCode))
    throw new HmmError('EINVAL', `kernel '${label}': code must be WGSL defining fn kernel(gid: vec3u)`);
  const size = normalizeSize(label, opts.workgroupSize, device);
  const source = await shaderSource('prelude');
  const violations = checkKernelSource(userCode, {
    preludeReferences: preludeReferences(source),
    bindings: opts.ioBinding ? [0, 1] : [0],
  });
  if (violations.length > 0) throw isolationError(label, userCode, violations);
  const atomicMemory = needsAtomicMemory(userCode);
  const { source: code, userFirstLine } = kernelModuleSource(preludeVariant(source, atomicMemory), userCode, size);
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
    const userLines = userCode.split('\n');
    const where = (m: GPUCompilationMessage): string => {
      if (m.lineNum < 1) return '';
      const n = m.lineNum - userFirstLine + 1;
      if (n < 1) return `prelude line ${m.lineNum}:${m.linePos}: `;
      if (n > userLines.length)
        return `after the kernel's last line (line ${userLines.length}), in the entry point that calls kernel(gid: vec3u) (an unclosed brace? a kernel with another signature?): `;
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
  const pipeline = async (replayable: boolean, record = false): Promise<GPUComputePipeline> => {
    try {
      return await device.createComputePipelineAsync({
        label: record ? `${label} (replayable, recording)` : replayable ? `${label} (replayable)` : label,
        layout,
        compute: {
          module,
          entryPoint: 'hmm_main',
          constants: {
            HMM_FRAME_SHIFT: pool.frameShift,
            HMM_MEM_BUFFERS: pool.buffers.length,
            HMM_QUEUE_CAP: FAULT_QUEUE_CAP,
            HMM_REPLAYABLE: replayable ? 1 : 0,
            // only the recording variant names it: every other pipeline is the one it was before recording existed
            ...(record ? { HMM_RECORD: 1 } : {}),
          },
        },
      });
    } catch (e) {
      throw new HmmError('EINVAL', `kernel '${label}': pipeline creation failed: ${(e as Error).message}`);
    }
  };
  return new HmmKernel(label, await pipeline(false), size, opts.ioBinding === true, device, atomicMemory, (record) => pipeline(true, record));
}
