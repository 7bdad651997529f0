// Helpers shared by the sequential and the concurrent differential fuzzers (tests/fuzz/): the
// fuzz kernels, byte patterns, catching HmmErrors as outcomes, and the frame accounting both
// check after every step. Nothing here decides what the model expects (model.ts, linearize.ts).
import { expect } from 'vitest';
import { HmmError, rangeFault, type AddressSpace, type HmmDevice } from '../../src/index.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { SystemRam } from '../../src/mm/systemRam.ts';
import { BASE_PAGE, BASE_VA, WINDOW_PAGES } from './model.ts';
import { snapshotFlagsDisagreement } from './snapshotFlags.ts';

/** Atomically add `add` to each of `words` u32s from `base` (uniforms: base, words, add, pad). */
export const ADD_KERNEL = /* wgsl */ `
struct U { base: u32, words: u32, add: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.words) { return; }
  hmm_atomic_add_u32(u.base + gid.x * 4u, u.add);
}`;

/**
 * Plain loads and stores: word i of [dst, dst + 4*words) becomes word i of src plus `add`
 * (uniforms: src, dst, words, add). Restartable when src and dst do not overlap: an invocation
 * whose load misses stores nothing, and its rerun reads the same source.
 */
export const COPY_KERNEL = /* wgsl */ `
struct U { src: u32, dst: u32, words: u32, add: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.words) { return; }
  let v = hmm_load_u32(u.src + gid.x * 4u);
  hmm_store_u32(u.dst + gid.x * 4u, v + u.add);
}`;

/** A recognisable pattern of `len` bytes, different for each seed. */
export function bytesOf(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

/** Run `f`; its value or its HmmError. Anything that is not an HmmError is rethrown (a test failure). */
export async function outcome<T>(f: () => Promise<T> | T): Promise<{ value?: T; error: HmmError | null }> {
  try {
    return { value: await f(), error: null };
  } catch (e) {
    if (!(e instanceof HmmError)) throw e;
    return { error: e };
  }
}

/** Index of the first differing byte, -1 when equal. */
export function diffAt(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

export const isLost = (d: HmmDevice): boolean => d.lostReason !== undefined;

/**
 * RAM frames unmapped while something still used them, freed later (SystemRam.freeWhen): a CPU
 * thread inside the page, or a user's pin (mm.pin: the pinner keeps the frame until unpin).
 * SystemRam keeps the list private; the accounting reads it (each entry holds one reference).
 */
export function deferredFrames(ram: SystemRam): number[] {
  return (ram as unknown as { deferred: { frame: number }[] }).deferred.map((d) => d.frame);
}

/**
 * Wait until no page of `spaces` is being migrated or written back. An unmapping that cannot
 * wait (MAP_FIXED over a page a device holds a copy of, when another holder keeps the frame:
 * a fork relative, or a pinner whose page was unmapped) starts the copy's write-back and
 * returns; the write-back holds the unmapped entry's frame reference until its bytes land
 * (src/mm/addressSpace.ts startSharedWriteBacks), so the accounting below is exact only after.
 */
export async function quiesce(spaces: readonly AddressSpace[]): Promise<void> {
  for (let round = 0; round < 1000; round++) {
    const pending = spaces.flatMap((mm) => [...mm.inflight.values()]);
    if (pending.length === 0) return;
    await Promise.allSettled(pending);
  }
  expect.fail('migrations never finished (an in-flight map never empties)');
}

/**
 * Frame accounting over the fuzz window, after `what`: no page left Migrating, every RAM
 * frame's reference count equal to the page-table entries that point at it plus the deferred
 * frees waiting on it (pins), free + used RAM frames equal to all of them, and on every live
 * device free + owned frames equal to all of them (a lost device's frames are gone with it).
 */
export function checkAccounting(spaces: readonly AddressSpace[], ram: SystemRam, devices: readonly HmmDevice[], what: string): void {
  const refs = new Map<number, number>();
  for (const f of deferredFrames(ram)) refs.set(f, (refs.get(f) ?? 0) + 1);
  for (const mm of spaces) {
    if (mm.isDestroyed) continue;
    for (let p = BASE_PAGE; p < BASE_PAGE + WINDOW_PAGES; p++) {
      const e = mm.pageTable.get(p);
      expect(pte.kind(e), `mm${mm.id} page ${p} still migrating after ${what}`).not.toBe(Kind.Migrating);
      if (pte.kind(e) === Kind.Ram) refs.set(pte.frame(e), (refs.get(pte.frame(e)) ?? 0) + 1);
    }
  }
  for (const [f, n] of refs) expect(ram.refCount(f), `frame ${f} references after ${what}`).toBe(n);
  expect(ram.freeFrames + refs.size, `RAM frames leaked after ${what}`).toBe(ram.frameCount);
  for (const d of devices.filter((x) => !isLost(x))) expect(d.memory.freeFrames + d.ownedFrames, `${d.name} frames after ${what}`).toBe(d.memory.frameCount);
}

/**
 * Snapshot and rangeFault agree (tests/fuzz/snapshotFlags.ts) on every page of the window of
 * `mm`, for `dev`. Both are taken in one turn (neither awaits before it has read the table), so
 * they see the same state; rangeFault gets a temporary subscription, as a driver's would be.
 */
export async function checkSnapshotAgreement(mm: AddressSpace, dev: HmmDevice, what: string): Promise<void> {
  const m = dev.mirror(mm);
  const sub = mm.notifier.insert(BASE_PAGE, BASE_PAGE + WINDOW_PAGES, () => {});
  try {
    const snap = m.snapshot(BASE_VA, WINDOW_PAGES);
    const rf = rangeFault(mm, {
      start: BASE_PAGE,
      end: BASE_PAGE + WINDOW_PAGES,
      fault: false,
      write: false,
      owner: dev.id,
      notifier: sub,
      seq: sub.readBegin(),
    });
    const poisoned = Array.from({ length: WINDOW_PAGES }, (_, i) => mm.poisoned(BASE_PAGE + i));
    const huge = Array.from({ length: WINDOW_PAGES }, (_, i) => m.table.isHuge(BASE_PAGE + i));
    const [bytes, flags] = await Promise.all([snap, rf]);
    for (let i = 0; i < WINDOW_PAGES; i++) {
      const why = snapshotFlagsDisagreement({
        snapshot: bytes[i]!,
        flags: flags.flags[i]!,
        order: flags.orders[i]!,
        poisoned: poisoned[i]!,
        deviceHuge: huge[i]!,
      });
      if (why) expect.fail(`${dev.name} mm${mm.id} page ${i} (entry ${mm.pageTable.get(BASE_PAGE + i).toString(16)}) after ${what}: ${why}`);
    }
  } finally {
    sub.remove();
  }
}
