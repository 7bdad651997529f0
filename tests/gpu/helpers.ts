// Shared helpers for GPU tests: a small system on the real adapter, byte patterns.
import { afterEach } from 'vitest';
import { expect } from 'vitest';
import { HmmError, createSystem, type HmmDevice, type System, type SystemConfig } from '../../src/index.ts';

const live: System[] = [];

export async function makeSystem(config: Partial<SystemConfig> = {}): Promise<System> {
  const sys = await createSystem({
    ...config,
    systemRamBytes: config.systemRamBytes ?? 8 << 20,
    devices: config.devices ?? [{ memoryBytes: 4 << 20 }],
  });
  live.push(sys);
  return sys;
}

afterEach(() => {
  while (live.length) live.pop()!.destroy();
});

/** A recognisable byte pattern: byte i of the buffer is (i * 7 + seed) & 0xff, with the page number mixed in. */
export function pattern(bytes: number, seed = 1): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 7 + seed + (i >> 12) * 13) & 0xff;
  return out;
}

/** Index of the first differing byte, or -1: a fast check for megabyte buffers (toEqual is slow there). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const n = a.length;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** The HmmError a promise rejects with (the test fails if it resolves or throws anything else). */
export async function failure(p: Promise<unknown>): Promise<HmmError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HmmError);
  return e as HmmError;
}

/** A kernel that doubles `n` u32s from `va` in place (uniforms: va, n). */
export const DOUBLE_KERNEL = /* wgsl */ `
struct U { va: u32, n: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.n) { return; }
  let a = u.va + gid.x * 4u;
  hmm_store_u32(a, hmm_load_u32(a) * 2u);
}`;

/** The GPU buffers a device creates from now on that are not destroyed yet (a leak check). */
export function trackBuffers(dev: HmmDevice): Set<GPUBuffer> {
  const live = new Set<GPUBuffer>();
  const create = dev.device.createBuffer.bind(dev.device);
  dev.device.createBuffer = (desc: GPUBufferDescriptor): GPUBuffer => {
    const b = create(desc);
    const destroy = b.destroy.bind(b);
    live.add(b);
    b.destroy = () => {
      live.delete(b);
      return destroy();
    };
    return b;
  };
  return live;
}
