// args.ts: argument checks shared by every public entry point. Each bad value is EINVAL with a
// message naming the call, the argument and the value.
import { describe, expect, it } from 'vitest';
import { VA_LIMIT } from '../../src/constants.ts';
import { checkAddress, checkCount, checkPageAligned, checkPages, checkRange } from '../../src/mm/args.ts';
import { hx, throwsSync } from './helpers.ts';

/** Not a usable number at all: every checker refuses these. */
const NOT_NUMBERS: unknown[] = [NaN, Infinity, -Infinity, '4096', '0x1000', null, undefined, {}, [4096], 4096n, true];
const NEGATIVE = [-1, -4096, -(2 ** 40)];
const NON_INTEGER = [0.5, 4096.5, 1e-9 + 4096];

describe('checkAddress', () => {
  it('accepts integers in [0, 4 GiB), aligned or not', () => {
    for (const a of [0, 1, 4095, 0x10000, VA_LIMIT - 1]) expect(checkAddress('op', a)).toBe(a);
  });

  it.each([...NOT_NUMBERS, ...NEGATIVE, ...NON_INTEGER, VA_LIMIT, VA_LIMIT + 4096, 2 ** 53])('rejects %s', (v) => {
    const e = throwsSync('EINVAL', () => checkAddress('myop', v));
    expect(e.message).toContain('myop');
    expect(e.message).toContain('address');
    expect(e.message).toContain('not an integer in [0, 4 GiB)');
  });

  it('names the value in the message', () => {
    expect(throwsSync('EINVAL', () => checkAddress('op', VA_LIMIT)).message).toContain('0x100000000');
    expect(throwsSync('EINVAL', () => checkAddress('op', -5)).message).toContain('-5');
    expect(throwsSync('EINVAL', () => checkAddress('op', 1.5)).message).toContain('1.5');
    expect(throwsSync('EINVAL', () => checkAddress('op', 'abc')).message).toContain('abc');
  });
});

describe('checkPageAligned', () => {
  it('accepts page-aligned addresses', () => {
    for (const a of [0, 4096, 0x10000, VA_LIMIT - 4096]) expect(checkPageAligned('op', a)).toBe(a);
  });

  it.each([1, 4095, 4097, 0x10001, VA_LIMIT - 1])('rejects unaligned %s naming the address', (v) => {
    const e = throwsSync('EINVAL', () => checkPageAligned('mmap', v));
    expect(e.message).toContain('mmap');
    expect(e.message).toContain(hx(v));
    expect(e.message).toContain('not 4 KiB aligned');
    expect(e.address).toBe(v);
  });

  it.each([...NOT_NUMBERS, ...NEGATIVE, ...NON_INTEGER, VA_LIMIT])('rejects %s', (v) => {
    expect(throwsSync('EINVAL', () => checkPageAligned('munmap', v)).message).toContain('munmap');
  });
});

describe('checkCount', () => {
  it('accepts positive integers', () => {
    for (const n of [1, 4096, 2 ** 40]) expect(checkCount('op', 'length', n)).toBe(n);
  });

  it.each([0, -0, ...NEGATIVE, ...NON_INTEGER, ...NOT_NUMBERS])('rejects %s naming the argument', (v) => {
    const e = throwsSync('EINVAL', () => checkCount('read', 'length', v));
    expect(e.message).toContain('read');
    expect(e.message).toContain('length');
    expect(e.message).toContain('not a positive integer');
  });
});

describe('checkRange', () => {
  it('accepts ranges ending exactly at 4 GiB', () => {
    checkRange('op', VA_LIMIT - 4096, 4096);
    checkRange('op', 0, VA_LIMIT);
  });

  it.each([
    [VA_LIMIT - 4096, 4097],
    [VA_LIMIT - 1, 2],
    [0x10000, VA_LIMIT],
    [0, VA_LIMIT + 1],
  ])('rejects %s + %s running past 4 GiB, naming the start', (va, len) => {
    const e = throwsSync('EINVAL', () => checkRange('write', va, len));
    expect(e.message).toContain('write');
    expect(e.message).toContain(hx(va));
    expect(e.message).toContain('past the end');
    expect(e.address).toBe(va);
  });
});

describe('checkPages', () => {
  it('returns the first page and the count', () => {
    expect(checkPages('op', 0x20000, 3)).toEqual({ start: 0x20, npages: 3 });
    expect(checkPages('op', VA_LIMIT - 4096, 1)).toEqual({ start: VA_LIMIT / 4096 - 1, npages: 1 });
  });

  it.each([1, 0x20001, ...NEGATIVE, ...NON_INTEGER, ...NOT_NUMBERS, VA_LIMIT])('rejects address %s', (va) => {
    expect(throwsSync('EINVAL', () => checkPages('mirror.read', va, 1)).message).toContain('mirror.read');
  });

  it.each([0, -1, 1.5, ...NOT_NUMBERS])('rejects npages %s naming npages', (n) => {
    expect(throwsSync('EINVAL', () => checkPages('mirror.read', 0x20000, n)).message).toContain('npages');
  });

  it('rejects a page count running past 4 GiB', () => {
    const e = throwsSync('EINVAL', () => checkPages('mirror.read', VA_LIMIT - 8192, 3));
    expect(e.message).toContain(hx(VA_LIMIT - 8192));
    expect(throwsSync('EINVAL', () => checkPages('op', 0x10000, 2 ** 40)).code).toBe('EINVAL');
  });
});
