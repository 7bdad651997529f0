// SystemRam's uncleared allocations: a migration home overwrites every byte of its destination
// frames before an entry names them, so it asks for them uncleared (zero = false); everyone
// else gets cleared frames, and a frame freed uncleared is cleared when handed out again.
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/constants.ts';
import { SystemRam } from '../../src/mm/systemRam.ts';

const dirty = (ram: SystemRam, f: number) => ram.frame(f).every((b) => b === 0xee);
const clear = (ram: SystemRam, f: number) => ram.frame(f).every((b) => b === 0);

describe('SystemRam uncleared allocations', () => {
  it('allocRun(n, false) leaves the run as it was; allocRun(n) clears every frame of it', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    ram.bytes.fill(0xee);
    const a = ram.allocRun(2, false)!;
    expect([a, dirty(ram, 0), dirty(ram, 1)]).toEqual([0, true, true]);
    expect([ram.refCount(0), ram.refCount(1)]).toEqual([1, 1]);
    const b = ram.allocRun(2)!;
    expect([b, clear(ram, 2), clear(ram, 3)]).toEqual([2, true, true]);
  });

  it('allocMany(n, what, false) and alloc(what, false) leave frames as they were; the default clears', () => {
    const ram = new SystemRam(4 * PAGE_SIZE);
    ram.bytes.fill(0xee);
    const [f0, f1] = ram.allocMany(2, 'x', false);
    expect(dirty(ram, f0!) && dirty(ram, f1!)).toBe(true);
    const f2 = ram.alloc('x', false);
    expect(dirty(ram, f2)).toBe(true);
    const f3 = ram.alloc('x');
    expect(clear(ram, f3)).toBe(true);
    // a frame freed uncleared comes back cleared to whoever asks by default
    ram.free(f0!);
    expect(ram.allocMany(1, 'x')).toEqual([f0]);
    expect(clear(ram, f0!)).toBe(true);
  });
});
