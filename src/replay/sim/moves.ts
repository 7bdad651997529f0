// The simulator's page moves, each as the mechanism makes it (src/hmm/migrate.ts,
// src/device/hmmDevice.ts, src/device/faultIn.ts), down to the order frames are freed and taken,
// since that order decides where pages sit on the eviction clock: migration to a device (the
// pages' mappings dropped everywhere first, frames for as many as there are, the rest 'nomem'),
// migration home, write-back of held copies, and dropped mappings (copies freed, device pages
// only unmapped). Each counts what it moved in the machine's current metrics.

import type { SimDevice } from './device.ts';
import type { Machine } from './machine.ts';
import type { SimSpace } from './space.ts';

/** Sorted pages as [start, end) runs (src/hmm/migrate.ts runs()). */
export function pageRuns(pages: readonly number[]): [number, number][] {
  const sorted = [...pages].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && last[1] === p) last[1]++;
    // Stryker disable next-line EqualityOperator: `<=`; the equal case is the branch above
    else if (!last || last[1] < p) out.push([p, p + 1]);
  }
  return out;
}

/** Unmap [start, end) runs from `dev` (faultIn.dropRuns): copies are freed, device pages stay. */
export function dropRuns(dev: SimDevice, space: SimSpace, runs: readonly (readonly [number, number])[]): void {
  const t = dev.table(space.id);
  const copies: number[] = [];
  for (const [s, e] of runs)
    t.unmapRange(s, e, (_p, f) => {
      if (dev.rmapCopy[f]) copies.push(f);
    });
  t.flush();
  // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as true or `>=`; disown and free of no frames do nothing
  if (copies.length > 0) {
    dev.disown(copies);
    dev.free(copies);
  }
}

/** Every device drops its mappings of `pages` (a migration isolates them: this device directly, the others through the notifier). */
function isolate(m: Machine, dev: SimDevice, space: SimSpace, pages: readonly number[]): void {
  const runs = pageRuns(pages);
  dropRuns(dev, space, runs);
  // Stryker disable next-line ConditionalExpression: the test as true; this device's runs are unmapped already, dropping them again finds nothing
  for (const d of m.devices) if (d !== dev) dropRuns(d, space, runs);
}

/** RAM (or never-touched) pages to `dev` (migrateToDevice): frames for the first ones, 'nomem' for the rest. */
export function migrateToDevice(m: Machine, dev: SimDevice, space: SimSpace, pages: readonly number[]): { moved: number; nomem: number } {
  const selected = pages.filter((p) => {
    const vma = space.find(p);
    return vma !== undefined && vma.prot !== 'none' && !space.priv.has(p) && !vma.shared && !space.held.has(p);
  });
  // Stryker disable next-line ConditionalExpression: the test as false; with nothing selected the rest moves and counts nothing
  if (selected.length === 0) return { moved: 0, nomem: 0 };
  isolate(m, dev, space, selected);
  const frames = dev.take(selected.length);
  const moved = selected.slice(0, frames.length);
  moved.forEach((p, i) => space.priv.set(p, { dev: dev.id, frame: frames[i]! }));
  dev.adopt(
    space.id,
    moved,
    frames,
    moved.map((p) => space.find(p)!.prot === 'rw'),
  );
  // Stryker disable next-line StringLiteral: the thrashing detector only compares a page's directions with each other
  for (const p of moved) space.thrash.record(p, 'toDevice', m.now);
  m.metrics.pagesToDevice += moved.length;
  return { moved: moved.length, nomem: selected.length - moved.length };
}

/** `dev`'s pages among `pages` go home (migrateToSystem), their frames freed in this order. */
export function migrateToSystem(m: Machine, dev: SimDevice, space: SimSpace, pages: readonly number[]): number {
  const selected = pages.filter((p) => space.priv.get(p)?.dev === dev.id);
  // Stryker disable next-line ConditionalExpression: the test as false; with nothing selected the rest moves and counts nothing
  if (selected.length === 0) return 0;
  const frames = selected.map((p) => space.priv.get(p)!.frame);
  isolate(m, dev, space, selected);
  for (const p of selected) space.priv.delete(p);
  dev.disown(frames);
  dev.free(frames);
  // Stryker disable next-line StringLiteral: the thrashing detector only compares a page's directions with each other
  for (const p of selected) space.thrash.record(p, 'toSystem', m.now);
  m.metrics.pagesToSystem += selected.length;
  return selected.length;
}

/** `dev`'s held copies among `pages` are written back and let go (HmmDevice.revoke). */
export function revoke(m: Machine, dev: SimDevice, space: SimSpace, pages: readonly number[]): number {
  const mine = pages.filter((p) => space.held.get(p) === dev.id);
  // Stryker disable next-line ConditionalExpression: the test as false; with no held copy here the rest writes back and counts nothing
  if (mine.length === 0) return 0;
  const t = dev.table(space.id);
  const frames = mine.map((p) => t.unmap(p));
  t.flush();
  for (const p of mine) space.held.delete(p);
  // Stryker disable next-line MethodExpression: a held copy is always mapped on its device, so unmap never answers -1 here (the test as true is equivalent too)
  const used = frames.filter((f) => f >= 0);
  dev.disown(used);
  dev.free(used);
  m.metrics.writeBacks += mine.length;
  return mine.length;
}

/** Does any device hold a read-only copy of RAM page p? */
export function hasCopies(m: Machine, space: SimSpace, p: number): boolean {
  if (space.priv.has(p) || space.held.has(p)) return false;
  return m.devices.some((d) => d.table(space.id).lookup(p) !== undefined);
}

/** Every device's read-only copies of page p go (a write to it, by the CPU or a device). */
export function dropCopies(m: Machine, space: SimSpace, p: number): void {
  if (space.priv.has(p) || space.held.has(p)) return;
  // Stryker disable next-line ConditionalExpression: the test as true; dropping a page a device does not map finds nothing
  for (const d of m.devices) if (d.table(space.id).lookup(p)) dropRuns(d, space, [[p, p + 1]]);
}
