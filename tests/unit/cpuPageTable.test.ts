// CpuPageTable: the 32-bit entry encoding and the per-page pin counts.
import { describe, expect, it } from 'vitest';
import { VA_PAGES } from '../../src/constants.ts';
import { CpuPageTable, Kind, MAX_DEVICES, pte } from '../../src/mm/cpuPageTable.ts';

const FRAMES = [0, 1, 2, 0xff, 0x1234, 0x7fffff, 0x800000, 0xffffff]; // 24 frame bits

describe('pte encoding', () => {
  it('none and zero have their kinds', () => {
    expect(pte.kind(pte.none)).toBe(Kind.None);
    expect(pte.kind(pte.zero)).toBe(Kind.Zero);
    expect(pte.none).toBe(0);
  });

  it('ram(frame) round-trips the frame, as an unsigned 32-bit value', () => {
    for (const f of FRAMES) {
      const e = pte.ram(f);
      expect(pte.kind(e)).toBe(Kind.Ram);
      expect(pte.frame(e)).toBe(f);
      expect(e).toBeGreaterThanOrEqual(0);
      expect(e).toBeLessThan(2 ** 32);
      expect(pte.isDup(e)).toBe(false);
      expect(pte.isHeld(e)).toBe(false);
    }
  });

  it('survives a store in the Uint32Array table', () => {
    const t = new CpuPageTable();
    const e = pte.withHeld(pte.ram(0xffffff), 7);
    t.set(VA_PAGES - 1, e);
    expect(t.get(VA_PAGES - 1)).toBe(e);
    expect(t.get(0)).toBe(pte.none);
  });

  it('onDevice(dev, frame) round-trips device and frame', () => {
    for (let dev = 0; dev < MAX_DEVICES; dev++)
      for (const f of FRAMES) {
        const e = pte.onDevice(dev, f);
        expect(pte.kind(e)).toBe(Kind.Device);
        expect(pte.device(e)).toBe(dev);
        expect(pte.frame(e)).toBe(f);
        expect(pte.isDup(e) || pte.isHeld(e)).toBe(false); // DUP/HELD only mean something on RAM
      }
  });

  it('migrating(prev) keeps frame and device bits, only the kind changes', () => {
    for (const prev of [pte.ram(0x1234), pte.onDevice(5, 0xabcdef), pte.withDup(pte.ram(9)), pte.none, pte.zero]) {
      const m = pte.migrating(prev);
      expect(pte.kind(m)).toBe(Kind.Migrating);
      expect(pte.frame(m)).toBe(pte.frame(prev));
      expect(pte.device(m)).toBe(pte.device(prev));
      expect(m >>> 3).toBe(prev >>> 3);
    }
  });

  it('withDup marks a RAM entry; plainRam clears it; the frame is kept', () => {
    const e = pte.withDup(pte.ram(42));
    expect(pte.isDup(e)).toBe(true);
    expect(pte.isHeld(e)).toBe(false);
    expect(pte.kind(e)).toBe(Kind.Ram);
    expect(pte.frame(e)).toBe(42);
    expect(pte.plainRam(e)).toBe(pte.ram(42));
  });

  it('withHeld records the holder, replaces an earlier holder; plainRam clears it', () => {
    for (let dev = 0; dev < MAX_DEVICES; dev++) {
      const e = pte.withHeld(pte.ram(0x7fffff), dev);
      expect(pte.isHeld(e)).toBe(true);
      expect(pte.heldBy(e)).toBe(dev);
      expect(pte.frame(e)).toBe(0x7fffff);
      expect(pte.kind(e)).toBe(Kind.Ram);
      expect(pte.heldBy(pte.withHeld(e, (dev + 3) % MAX_DEVICES))).toBe((dev + 3) % MAX_DEVICES);
      expect(pte.plainRam(e)).toBe(pte.ram(0x7fffff));
    }
    const both = pte.withHeld(pte.withDup(pte.ram(3)), 2);
    expect(pte.isDup(both) && pte.isHeld(both)).toBe(true);
    expect(pte.plainRam(both)).toBe(pte.ram(3));
  });
});

describe('CpuPageTable', () => {
  it('has one entry and one pin count per page of the 4 GiB space, all zero', () => {
    const t = new CpuPageTable();
    expect(t.entries.length).toBe(VA_PAGES);
    expect(t.pins.length).toBe(VA_PAGES);
    expect(t.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(t.isPinned(123)).toBe(false);
  });

  it('pins nest: a page stays pinned until every pin is released', () => {
    const t = new CpuPageTable();
    t.pin(7);
    t.pin(7);
    expect(t.isPinned(7)).toBe(true);
    expect(t.isPinned(6) || t.isPinned(8)).toBe(false);
    t.unpin(7);
    expect(t.isPinned(7)).toBe(true);
    t.unpin(7);
    expect(t.isPinned(7)).toBe(false);
  });

  it('entries and pins do not alias', () => {
    const t = new CpuPageTable();
    t.set(VA_PAGES - 1, 0xffffffff);
    t.pin(0);
    expect(t.get(0)).toBe(0);
    expect(t.isPinned(VA_PAGES - 1)).toBe(false);
    expect(t.pins[0]).toBe(1);
  });
});
