// The simulator's eviction, HmmDevice.evict step by step: a sweep over the frames from the
// clock hand groups resident pages into units of the device's eviction size (skipping what the
// caller keeps), reads the GPU's accessed and dirty bits (an accessed page's lastAccess becomes
// the launch count), offers the units to the eviction policy through the guard, gives the
// touched units it keeps their second chance (their bits cleared, unit by unit, each an
// upload), moves the hand past the last victim, and moves the victims off: held copies written
// back, device pages home, read-only copies dropped. The built-in clock therefore picks here
// exactly what it picks on the GPU, given the same frames and bits.

import { askEviction } from '../../policy/guard.ts';
import type { EvictionCandidate, EvictionPolicy } from '../../policy/types.ts';
import type { SimDevice } from './device.ts';
import type { Machine } from './machine.ts';
import { dropRuns, migrateToSystem, pageRuns, revoke } from './moves.ts';
import { ACCESSED, DIRTY } from './table.ts';

interface Unit {
  space: number;
  pages: number[];
  frames: number[];
  lastFrame: number;
}

/** Free about `want` frames; never a page `keep` names. Returns the frames freed and the units offered. */
export function evict(
  m: Machine,
  dev: SimDevice,
  want: number,
  keep: (space: number, page: number) => boolean,
  policy: EvictionPolicy,
  why: string,
): { freed: number; offered: number } {
  const unit = dev.unit;
  const n = dev.frameCount;
  const units = new Map<string, Unit>();
  for (let i = 0; i < n; i++) {
    const f = (dev.clockHand + i) % n;
    const space = dev.rmapSpace[f]!;
    // Stryker disable next-line EqualityOperator: `<= 0`; address space ids start at 1 (parseFaultTrace
    if (space < 0) continue;
    const p = dev.rmapPage[f]!;
    if (keep(space, p)) continue;
    const key = `${space}:${Math.floor(p / unit)}`;
    let u = units.get(key);
    if (!u) units.set(key, (u = { space, pages: [], frames: [], lastFrame: f }));
    u.pages.push(p);
    u.frames.push(f);
    u.lastFrame = f;
  }
  if (units.size === 0) return { freed: 0, offered: 0 };
  const touched = new Set<string>();
  const dirty = new Set<string>();
  for (const [k, u] of units) {
    const t = dev.table(u.space);
    u.pages.forEach((p, j) => {
      const bits = t.bitsOf(p);
      if (bits & ACCESSED) {
        touched.add(k);
        dev.lastAccess[u.frames[j]!] = dev.launches;
      }
      if (bits & DIRTY) dirty.add(k);
    });
  }
  const keyOf = new Map<EvictionCandidate, string>();
  const candidates: EvictionCandidate[] = [];
  for (const [k, u] of units) {
    const c: EvictionCandidate = {
      page: Math.floor(u.pages[0]! / unit) * unit,
      pages: u.pages.length,
      owner: u.space,
      accessed: touched.has(k),
      dirty: dirty.has(k),
      arrived: Math.min(...u.frames.map((f) => dev.arrivedAt[f]!)),
      lastAccess: Math.max(...u.frames.map((f) => dev.lastAccess[f]!)),
      clock: candidates.length,
    };
    candidates.push(c);
    keyOf.set(c, k);
  }
  const picked = askEviction(policy, want, candidates, `${dev.name} eviction for ${why}`);
  const victims = picked.map((c) => keyOf.get(c)!);
  const freed = picked.reduce((sum, c) => sum + c.pages, 0);
  const chosen = new Set(victims);
  for (const k of touched) {
    // Stryker disable next-line ConditionalExpression: the test as false; a victim's second chance is moot, it is unmapped just below
    if (chosen.has(k)) continue;
    const u = units.get(k)!;
    const t = dev.table(u.space);
    t.clearAccessed(u.pages);
    t.flush();
  }
  // Equivalent mutant (not disabled: that would hide this line's killed ones): `b.clock >= a.clock`; no two candidates share a place on the clock
  if (picked.length > 0) dev.clockHand = (units.get(keyOf.get(picked.reduce((a, b) => (b.clock > a.clock ? b : a)))!)!.lastFrame + 1) % n;
  const bySpace = new Map<number, number[]>();
  for (const k of victims) {
    const u = units.get(k)!;
    const list = bySpace.get(u.space);
    if (list) list.push(...u.pages);
    else bySpace.set(u.space, [...u.pages]);
  }
  let pagesOut = 0;
  for (const [id, pages] of bySpace) {
    const space = m.space(id);
    // Stryker disable next-line ArrayDeclaration: an entry that is no page of this device is filtered out by migrateToSystem
    const priv: number[] = [];
    const held: number[] = [];
    const dup: number[] = [];
    for (const p of pages) (space.priv.has(p) ? priv : space.held.has(p) ? held : dup).push(p);
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the three tests below as true or `>=`; each call does nothing with no pages
    if (held.length > 0) revoke(m, dev, space, held);
    if (priv.length > 0) pagesOut += migrateToSystem(m, dev, space, priv);
    // Stryker disable next-line MethodExpression: no device holds the pages in dup (the test as true is equivalent too)
    const readOnly = dup.filter((p) => space.held.get(p) !== dev.id);
    if (readOnly.length > 0) dropRuns(dev, space, pageRuns(readOnly));
    pagesOut += held.length + readOnly.length;
  }
  m.metrics.evictions += pagesOut;
  return { freed, offered: candidates.length };
}
