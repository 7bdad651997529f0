// The shared frame allocator, including aligned runs mixed with single frames.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameAllocator } from '../../src/mm/frameAllocator.ts';

describe('FrameAllocator', () => {
  it('hands out aligned runs only where the whole run is free', () => {
    const a = new FrameAllocator(2048, 'test');
    a.take(1); // frame 0: block 0 is no longer whole
    expect(a.takeAligned(512)).toBe(512);
    expect(a.free).toBe(2048 - 513);
    expect(a.takeAligned(512)).toBe(1024);
    expect(a.takeAligned(512)).toBe(1536);
    expect(a.takeAligned(512)).toBeNull();
  });

  it('never hands one frame to two owners, whatever mix of take, takeAligned and give', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant<'aligned'>('aligned'), fc.integer({ min: 0, max: 40 }), fc.integer({ min: -40, max: -1 })), { maxLength: 60 }),
        (ops) => {
          const a = new FrameAllocator(64, 'prop');
          const owned = new Set<number>();
          for (const op of ops) {
            if (op === 'aligned') {
              const base = a.takeAligned(16);
              if (base !== null)
                for (let f = base; f < base + 16; f++) {
                  expect(owned.has(f)).toBe(false);
                  owned.add(f);
                }
            } else if (op >= 0) {
              for (const f of a.take(op)) {
                expect(owned.has(f)).toBe(false);
                owned.add(f);
              }
            } else {
              const victims = [...owned].slice(0, -op);
              for (const f of victims) {
                a.give(f);
                owned.delete(f);
              }
            }
            expect(a.free).toBe(64 - owned.size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
