// SystemRam: the frame allocator over one SharedArrayBuffer; frames zeroed before reuse.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/constants.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';
import { throwsSync } from './helpers.ts';

describe('SystemRam', () => {
  it('cuts the buffer into 4 KiB frames, all free, handed out lowest first', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    expect(ram.frameCount).toBe(4);
    expect(ram.freeFrames).toBe(4);
    expect(ram.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect([ram.alloc('t'), ram.alloc('t'), ram.alloc('t')]).toEqual([0, 1, 2]);
    expect(ram.freeFrames).toBe(1);
  });

  it('frame(f) is a 4096-byte view sharing memory with the buffer', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    const v = ram.frame(2);
    expect(v.length).toBe(PAGE_SIZE);
    v[0] = 0xab;
    v[PAGE_SIZE - 1] = 0xcd;
    expect(ram.bytes[2 * PAGE_SIZE]).toBe(0xab);
    expect(ram.bytes[3 * PAGE_SIZE - 1]).toBe(0xcd);
  });

  it('zeroes a frame before handing it out again', () => {
    const ram = new SystemRam(2 * PAGE_SIZE);
    const f = ram.alloc('first user');
    ram.frame(f).fill(0x5a);
    ram.free(f);
    const g = ram.alloc('second user');
    expect(g).toBe(f); // LIFO: the same frame comes back
    expect(ram.frame(g).every((b) => b === 0)).toBe(true);
  });

  it('zeroes frames handed out by allocMany too', () => {
    const ram = new SystemRam(3 * PAGE_SIZE);
    const fs = ram.allocMany(3, 't');
    for (const f of fs) ram.frame(f).fill(0xff);
    for (const f of fs) ram.free(f);
    for (const f of ram.allocMany(3, 't')) expect(ram.frame(f).every((b) => b === 0)).toBe(true);
  });

  it('is ENOMEM when exhausted, saying what the frame was for', () => {
    const ram = new SystemRam(2 * PAGE_SIZE);
    ram.alloc('a');
    ram.alloc('b');
    const e = throwsSync('ENOMEM', () => ram.alloc('loading the answer'));
    expect(e.message).toMatch(/system RAM exhausted/);
    expect(e.message).toContain('2 frames');
    expect(e.message).toContain('loading the answer');
    expect(ram.freeFrames).toBe(0);
  });

  it('allocMany is all-or-nothing: a batch that does not fit allocates nothing', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    ram.alloc('x');
    const e = throwsSync('ENOMEM', () => ram.allocMany(4, 'a big write'));
    expect(e.message).toContain('4 frames needed, 3 free');
    expect(e.message).toContain('a big write');
    expect(ram.freeFrames).toBe(3);
    expect(ram.allocMany(3, 'fits').length).toBe(3);
    expect(ram.freeFrames).toBe(0);
    expect(ram.allocMany(0, 'nothing')).toEqual([]);
  });

  it('free puts the frame back; freeing more frames than exist is refused', () => {
    const ram = new SystemRam(2 * PAGE_SIZE);
    const f = ram.alloc('t');
    ram.free(f);
    expect(ram.freeFrames).toBe(2);
    expect(() => ram.free(f)).toThrow(/double free/);
  });

  // BUG (reported): free() only notices a double free when every frame is already free; with
  // any other frame in use, the same frame lands on the free stack twice and is later handed
  // to two owners at once.
  it('refuses a double free while other frames are in use', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    const a = ram.alloc('a');
    ram.alloc('b');
    ram.free(a);
    expect(() => ram.free(a)).toThrow(/double free/);
  });

  it.each([0, -4096, 4095, 4097, 1.5 * 4096, NaN, Infinity])('rejects size %s with EINVAL', (size) => {
    const e = throwsSync('EINVAL', () => new SystemRam(size));
    expect(e.message).toContain('multiple of 4096');
    expect(e.message).toContain(String(size));
  });
});

describe('SystemRam reference counts (fork shares frames)', () => {
  it('a shared frame returns to the pool only with its last reference', () => {
    const ram = new SystemRam(2 * PAGE_SIZE);
    const f = ram.alloc('t');
    ram.share(f);
    expect(ram.refCount(f)).toBe(2);
    ram.free(f);
    expect(ram.freeFrames).toBe(1);
    expect(ram.refCount(f)).toBe(1);
    ram.free(f);
    expect(ram.freeFrames).toBe(2);
    expect(() => ram.free(f)).toThrow(/double free/);
  });
});
