// The thrashing detector's decisions, without a GPU.
import { describe, expect, it } from 'vitest';
import { ThrashDetector } from '../../src/policy/thrashing.ts';

describe('ThrashDetector', () => {
  it('pins a page after `threshold` bounces within the window, for pinMs', () => {
    const d = new ThrashDetector();
    d.config = { enabled: true, windowMs: 10, threshold: 3, pinMs: 100, napMs: 0 };
    expect(d.record(7, 'toDevice', 0)).toBe(false);
    expect(d.record(7, 'toSystem', 1)).toBe(false);
    expect(d.record(7, 'toDevice', 2)).toBe(false);
    expect(d.record(7, 'toSystem', 3)).toBe(true);
    expect(d.isPinned(7, 50)).toBe(true);
    expect(d.isPinned(8, 50)).toBe(false);
    expect(d.isPinned(7, 104)).toBe(false); // the epoch is over
  });

  it('slow or same-direction moves are not bounces', () => {
    const d = new ThrashDetector();
    d.config = { enabled: true, windowMs: 10, threshold: 2, pinMs: 100, napMs: 0 };
    d.record(1, 'toDevice', 0);
    expect(d.record(1, 'toSystem', 50)).toBe(false); // outside the window
    expect(d.record(1, 'toSystem', 51)).toBe(false); // same direction
    expect(d.record(1, 'toDevice', 52)).toBe(false);
    expect(d.record(1, 'toSystem', 53)).toBe(true);
  });

  it('does nothing when disabled, and forgets unmapped pages', () => {
    const d = new ThrashDetector();
    d.config = { ...d.config, enabled: false };
    for (let t = 0; t < 10; t++) expect(d.record(3, t % 2 ? 'toSystem' : 'toDevice', t)).toBe(false);
    d.config = { enabled: true, windowMs: 10, threshold: 1, pinMs: 100, napMs: 0 };
    d.record(4, 'toDevice', 0);
    expect(d.record(4, 'toSystem', 1)).toBe(true);
    d.forget(0, 10);
    expect(d.isPinned(4, 2)).toBe(false);
  });
});
