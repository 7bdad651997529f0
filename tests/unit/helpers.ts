// Shared helpers for the unit tests (no GPU): catching HmmErrors, a fresh address space,
// recognisable byte patterns.
import { expect } from 'vitest';
import { HmmError, type HmmErrorCode } from '../../src/errors.ts';
import { AddressSpace } from '../../src/mm/addressSpace.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';
import { Stats } from '../../src/trace/stats.ts';

/** Run fn, which must throw an HmmError synchronously with `code`; returns the error. */
export function throwsSync(code: HmmErrorCode, fn: () => unknown): HmmError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  return checkError(code, caught);
}

/** Await fn (sync throw or rejection), which must fail with an HmmError of `code`. */
export async function throwsAsync(code: HmmErrorCode, fn: () => Promise<unknown> | unknown): Promise<HmmError> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  return checkError(code, caught);
}

function checkError(code: HmmErrorCode, caught: unknown): HmmError {
  expect(caught, `expected HmmError ${code}, nothing was thrown`).toBeDefined();
  expect(caught, `expected HmmError ${code}, got ${String(caught)}`).toBeInstanceOf(HmmError);
  const e = caught as HmmError;
  expect(e.code, e.message).toBe(code);
  expect(e.message.startsWith(`${code}: `)).toBe(true);
  return e;
}

export interface Env {
  mm: AddressSpace;
  ram: SystemRam;
  stats: Stats;
}

/** An address space with no devices over `ramBytes` of system RAM. */
export function makeMm(ramBytes = 1 << 20): Env {
  const ram = new SystemRam(ramBytes);
  const stats = new Stats();
  const mm = new AddressSpace(1, ram, () => [], stats);
  return { mm, ram, stats };
}

/** Byte i is (i * 7 + seed) & 0xff, with the page number mixed in; never all zero. */
export function pattern(bytes: number, seed = 1): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 7 + seed + (i >> 12) * 13) & 0xff;
  return out;
}

/** Lower-case hex of an address as the library prints it ("0x0001f000"). */
export const hx = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
