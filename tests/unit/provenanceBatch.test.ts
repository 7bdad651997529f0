// Provenance's batch path and its numeric keys (src/trace/provenance.ts): a fault round records
// its pages in one recordEach call, each with its own cause, and the histories and waiting
// placement decisions are keyed by number. What explain and a recording read must be what one
// record() per page gave.
import { describe, expect, it } from 'vitest';
import { VA_PAGES } from '../../src/constants.ts';
import { Provenance, type Cause } from '../../src/trace/provenance.ts';

const fault: Cause = { kind: 'gpu-fault', device: 0, kernel: 'k', dispatch: 3, round: 1 };
const prefetch: Cause = { kind: 'prefetch', device: 0, kernel: 'k', dispatch: 3, round: 1, policy: 'density' };
const call: Cause = { kind: 'call', call: 'a migration to the device' };

describe('Provenance.recordEach', () => {
  it('records each page with its own cause, as one record() per page would', () => {
    const batch = new Provenance();
    const single = new Provenance();
    const causeOf = (p: number): Cause => (p % 2 === 0 ? fault : prefetch);
    const pages = [2, 3, 4, 7];
    batch.recordEach(1, pages, 'to-device', 0, causeOf);
    for (const p of pages) single.record(1, [p], 'to-device', 0, causeOf(p));
    for (const p of pages) {
      const strip = (e: { ts: number }) => ({ ...e, ts: 0 });
      expect(batch.history(1, p).map(strip)).toEqual(single.history(1, p).map(strip));
      expect(batch.history(1, p)[0]!.cause).toBe(causeOf(p));
    }
  });

  it('tells observers of each page alone, with its cause, also while histories are off', () => {
    const p = new Provenance();
    const seen: unknown[] = [];
    p.observers.add((...args: unknown[]) => seen.push(args));
    p.recordEach(1, [5, 6], 'copy', 2, (q) => (q === 5 ? fault : prefetch));
    p.enabled = false;
    p.recordEach(1, [9], 'copy', 2, () => call);
    expect(seen).toEqual([
      [1, [5], 'copy', 2, fault],
      [1, [6], 'copy', 2, prefetch],
      [1, [9], 'copy', 2, call],
    ]);
    expect(p.history(1, 9)).toEqual([]);
  });

  it('gives each page its own placement decision, and none to a page that had none', () => {
    const p = new Provenance();
    p.decision(1, 10, 0, 'default: migrate');
    p.decision(1, 12, 0, 'thrash-aware: pin');
    p.recordEach(1, [10, 11, 12, 13], 'to-device', 0, () => fault);
    expect(p.history(1, 10)[0]!.placement).toBe('default: migrate');
    expect(p.history(1, 11)[0]).not.toHaveProperty('placement');
    expect(p.history(1, 12)[0]!.placement).toBe('thrash-aware: pin');
    expect(p.history(1, 13)[0]).not.toHaveProperty('placement');
    // each decision went with its move, once
    p.recordEach(1, [10, 12], 'to-system', 0, () => call);
    expect(p.history(1, 10)[1]).not.toHaveProperty('placement');
    expect(p.history(1, 12)[1]).not.toHaveProperty('placement');
  });
});

describe('Provenance keys', () => {
  it('keeps the last page of one address space apart from the first of the next', () => {
    const p = new Provenance();
    p.record(1, [VA_PAGES - 1], 'to-device', 0, call);
    p.record(2, [0], 'copy', 0, call);
    expect(p.history(1, VA_PAGES - 1).map((e) => e.move)).toEqual(['to-device']);
    expect(p.history(2, 0).map((e) => e.move)).toEqual(['copy']);
    p.forget(2);
    expect(p.history(1, VA_PAGES - 1)).toHaveLength(1);
    expect(p.history(2, 0)).toEqual([]);
  });

  it('a decision for a device id outside the numbered slots goes with that device and page only', () => {
    // (numeric decision keys hold page and device for ids 0..7; these must not land on a neighbour)
    for (const device of [8, 9, -1]) {
      const p = new Provenance();
      p.decision(1, 4, device, 'odd device');
      p.record(1, [3], 'to-device', 7, call);
      p.record(1, [5], 'to-device', 0, call);
      p.record(1, [5], 'to-device', 1, call);
      p.record(1, [4], 'to-device', 0, call);
      expect(p.history(1, 3)[0]).not.toHaveProperty('placement');
      expect(p.history(1, 5).map((e) => e.placement)).toEqual([undefined, undefined]);
      expect(p.history(1, 4)[0]).not.toHaveProperty('placement');
      p.record(1, [4], 'to-device', device, call);
      expect(p.history(1, 4)[1]!.placement).toBe('odd device');
    }
  });
});
