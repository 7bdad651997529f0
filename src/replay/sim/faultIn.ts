// The simulator's device fault-in (src/device/faultIn.ts, one operation at a time): which pages
// migrate and which get device copies (the placement policy, through the guard, with the same
// context the mechanism gives it), room made by eviction, and the retry rounds with their one
// shortcut: a fault service returns as soon as one of its faulted pages is mapped, leaving the
// rest (prefetched company included) to fault again; a write to pages with read-only copies
// here, which become writable in place; and a read of a thrashing page, which gets a held
// (writable) copy. Huge mappings take the 4 KiB path here.

import { PAGE_SIZE, hex } from '../../constants.ts';
import { HmmError } from '../../errors.ts';
import { askPlacement } from '../../policy/guard.ts';
import type { Policies } from '../../policy/types.ts';
import type { SimDevice } from './device.ts';
import { evict } from './evict.ts';
import type { Machine } from './machine.ts';
import { dropCopies, dropRuns, hasCopies, migrateToDevice, migrateToSystem, pageRuns, revoke } from './moves.ts';
import type { SimSpace } from './space.ts';

/** Fault-in rounds before EBUSY (faultIn.ts MAX_ROUNDS). */
const MAX_ROUNDS = 32;

/** Who is faulting pages in, and under what. */
export interface FaultCtx {
  policies: Required<Policies>;
  /** Where the policies are asked (their errors name it). */
  where: string;
  /** Pages eviction must not take (default: the pages being faulted in). */
  keep?: ReadonlySet<number>;
  /** A fault service: return once one of these is mapped. */
  progress?: ReadonlySet<number>;
  /** Pages the operation holds (eviction spares them too): a fault round's faulted pages, a validated dispatch's declared ones. */
  held?: ReadonlySet<number>;
}

/** May a fault on p move it to `dev` (FaultIn.migratable)? The mechanism's rules, then the placement policy. */
export function migratable(m: Machine, dev: SimDevice, space: SimSpace, p: number, write: boolean, ctx: FaultCtx, asking: 'fault' | 'prefetch'): boolean {
  const vma = space.find(p);
  if (!vma || vma.shared || vma.prot === 'none') return false;
  if (space.priv.has(p) || space.held.has(p)) return false;
  const decision = askPlacement(
    ctx.policies.placement,
    {
      page: p,
      device: dev.id,
      write,
      advice: { preferred: vma.preferred, readMostly: vma.readMostly, accessedBy: vma.accessedBy },
      thrashing: space.thrash.isPinned(p, m.now),
      faults: space.faults(dev.id, p),
      prefetch: asking === 'prefetch',
    },
    ctx.where,
  );
  if (asking === 'fault' && decision === 'pin') space.thrash.pin(p, m.now);
  return decision === 'migrate';
}

function checkPermissions(dev: SimDevice, space: SimSpace, pages: readonly number[], write: boolean): void {
  for (const p of pages) {
    const vma = space.find(p);
    const at = p * PAGE_SIZE;
    if (!vma || vma.prot === 'none') throw new HmmError('EFAULT', `${dev.name}: address ${hex(at)} is ${vma ? "mapped with prot 'none'" : 'not mapped'}`, at);
    if (write && vma.prot !== 'rw') throw new HmmError('EPERM', `${dev.name}: write to read-only address ${hex(at)}`, at);
  }
}

/** Evict to free `need` frames, sparing what the operation keeps and holds. */
function makeRoom(m: Machine, dev: SimDevice, space: SimSpace, need: number, protect: ReadonlySet<number>, ctx: FaultCtx): 'freed' | 'none' {
  // Stryker disable next-line ConditionalExpression,StringLiteral: the test as false; makeRoom is called only with no frame free (the two tests below agree for the same reason: what eviction frees is free
  if (dev.freeFrames > 0) return 'freed';
  const keep = (s: number, p: number): boolean => s === space.id && (protect.has(p) || ctx.held?.has(p) === true);
  const { freed } = evict(m, dev, need, keep, ctx.policies.eviction, ctx.where);
  return freed > 0 || dev.freeFrames > 0 ? 'freed' : 'none';
}

/** The frame of page p's read-only copy on `dev` (a write may make it writable in place), or -1 (DeviceFaultIn.upgradable). */
function upgradable(dev: SimDevice, space: SimSpace, p: number): number {
  const e = dev.table(space.id).lookup(p);
  // Equivalent mutant (not disabled: that would hide this line's killed ones): the copy test as true; a read-only mapping here that is no copy is a device page in a read-only mapping, which a write never reaches (EPERM first)
  return e && !e.write && dev.rmapCopy[e.frame] === 1 ? e.frame : -1;
}

/** May a write make p's read-only copy on `dev` writable in place (DeviceFaultIn.upgradableInPlace; the replay has no fork relatives)? */
function upgradableInPlace(dev: SimDevice, space: SimSpace, p: number): boolean {
  // Equivalent mutant (not disabled: that would hide this line's killed ones): the first two tests as true or `||`; a device page or a held copy is never mapped read-only as a copy
  return !space.priv.has(p) && !space.held.has(p) && upgradable(dev, space, p) >= 0;
}

/**
 * Does a read fault on p map a held (writable) copy (DeviceFaultIn.heldForRead)? For a page the
 * thrashing detector keeps in RAM, in a private writable mapping not advised read-mostly, that
 * no device holds or has a read-only copy of: the store that usually follows needs no second round.
 */
function heldForRead(m: Machine, space: SimSpace, p: number): boolean {
  const vma = space.find(p);
  if (!vma || vma.shared || vma.readMostly || vma.prot !== 'rw' || !space.thrash.isPinned(p, m.now)) return false;
  return !space.priv.has(p) && !space.held.has(p) && !hasCopies(m, space, p);
}

/**
 * Device copies of pages that stay in RAM (read-only, or held for a write), evicting for
 * frames; a write to a page with a read-only copy here makes that copy writable in place (no
 * frame, no upload, not counted as a copy; other devices' copies of it go).
 */
export function mapCopies(
  m: Machine,
  dev: SimDevice,
  space: SimSpace,
  pages: readonly number[],
  write: boolean,
  protect: ReadonlySet<number>,
  ctx: FaultCtx,
): void {
  let want = pages.length;
  // Equivalent mutant (not disabled: that would hide this line's killed ones): `write` as true; a read's pages have no mapping here to upgrade
  if (write) for (const p of pages) if (upgradable(dev, space, p) >= 0) want--;
  const frames = dev.take(want);
  for (let sweep = 0; sweep < MAX_ROUNDS && frames.length < want; sweep++) {
    if (makeRoom(m, dev, space, want - frames.length, protect, ctx) === 'none') break;
    frames.push(...dev.take(want - frames.length));
  }
  if (frames.length < want) {
    dev.free(frames);
    throw new HmmError('ENOMEM', `${dev.name}: no device memory for ${pages.length} page copies at ${hex(pages[0]! * PAGE_SIZE)}`, pages[0]! * PAGE_SIZE);
  }
  // (a read-only copy the eviction above took needs a frame now; with none left the page faults again)
  const copied: number[] = [];
  const target: number[] = [];
  const upgraded: boolean[] = [];
  let fresh = 0;
  for (const p of pages) {
    const up = write ? upgradable(dev, space, p) : -1;
    if (up < 0 && fresh === frames.length) continue;
    copied.push(p);
    target.push(up >= 0 ? up : frames[fresh++]!);
    upgraded.push(up >= 0);
  }
  dev.free(frames.slice(fresh));
  if (write) for (const p of copied) space.held.set(p, dev.id);
  copied.forEach((p, i) => {
    if (upgraded[i]) for (const d of m.devices) if (d !== dev && d.table(space.id).lookup(p)) dropRuns(d, space, [[p, p + 1]]);
  });
  const t = dev.table(space.id);
  let upgrades = 0;
  copied.forEach((p, i) => {
    if (upgraded[i]) upgrades++;
    // Stryker disable next-line ArithmeticOperator,ArrayDeclaration,ConditionalExpression: the test as true or false; a page not upgraded has no mapping here by now
    else if (t.lookup(p)) dropRuns(dev, space, [[p, p + 1]]);
    t.map(p, target[i]!, write);
    dev.ownCopy(target[i]!, space.id, p);
  });
  m.metrics.deviceCopies += copied.length - upgrades;
}

/**
 * Make `pages` (sorted) valid in `dev`'s table for `space` (writable for `write`), as
 * DeviceFaultIn.faultInPages does for one operation alone.
 */
export function faultInPages(m: Machine, dev: SimDevice, space: SimSpace, pages: readonly number[], write: boolean, ctx: FaultCtx): void {
  // Stryker disable next-line ConditionalExpression: the test as false; with no pages nothing is missing and the loop returns at once
  if (pages.length === 0) return;
  const protect = ctx.keep ?? new Set(pages);
  const t = dev.table(space.id);
  const triedInPlace = new Set<number>();
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const missing = pages.filter((p) => {
      const e = t.lookup(p);
      return !e || (write && !e.write);
    });
    if (missing.length === 0) return;
    if (ctx.progress && round > 0 && missing.length < pages.length) {
      const still = new Set(missing);
      const required = pages.filter((p) => ctx.progress!.has(p));
      if (required.length === 0 || required.some((p) => !still.has(p))) return;
    }
    checkPermissions(dev, space, missing, write);
    const movable = missing.filter((p) => migratable(m, dev, space, p, write, ctx, 'fault'));
    if (movable.length > 0) {
      const res = migrateToDevice(m, dev, space, movable);
      if (res.nomem > 0 && makeRoom(m, dev, space, res.nomem, protect, ctx) === 'none' && res.moved === 0) {
        const at = movable[0]! * PAGE_SIZE;
        throw new HmmError('ENOMEM', `${dev.name}: device memory exhausted (${dev.frameCount} frames) faulting in ${hex(at)}`, at);
      }
      continue;
    }
    // A write to pages this device has read-only copies of: the copies become writable in place
    // (tried once per page; one that could not be takes the general path next round).
    // Stryker disable next-line ConditionalExpression: `write` as true; a read's missing pages have no mapping here to upgrade
    if (write) {
      const inPlace = missing.filter((p) => !triedInPlace.has(p) && upgradableInPlace(dev, space, p));
      if (inPlace.length > 0) {
        for (const p of inPlace) triedInPlace.add(p);
        mapCopies(m, dev, space, inPlace, true, protect, ctx);
        continue;
      }
    }
    // hmm_range_fault, run by run (FaultIn.mapByRangeFault): the CPU side first (other devices'
    // pages come home, held copies elsewhere are written back, a write breaks read-only
    // copies); an invalidation of the run on the way fails its read-retry check and the round
    // starts over, the runs before it done. Then this device's own pages are mapped and the
    // pages that may not move get copies.
    for (const [s, e] of pageRuns(missing)) {
      let invalidated = false;
      for (let p = s; p < e; p++) {
        const priv = space.priv.get(p);
        if (priv && priv.dev !== dev.id) {
          migrateToSystem(m, m.devices[priv.dev]!, space, [p]);
          invalidated = true;
        }
        const heldBy = space.held.get(p);
        // Equivalent mutant (not disabled: that would hide this line's killed ones): `heldBy !== dev.id` as true; this device's own held copy is mapped writable, never missing
        if (heldBy !== undefined && heldBy !== dev.id) revoke(m, m.devices[heldBy]!, space, [p]);
        if (write && hasCopies(m, space, p)) {
          dropCopies(m, space, p);
          invalidated = true;
        }
      }
      if (invalidated) break;
      const copies: number[] = [];
      for (let p = s; p < e; p++) {
        const priv = space.priv.get(p);
        if (priv) t.map(p, priv.frame, space.find(p)!.prot === 'rw');
        else if (!migratable(m, dev, space, p, write, ctx, 'fault')) copies.push(p);
        // (a page that may move migrates next round)
      }
      t.flush();
      // Equivalent mutant (not disabled: that would hide this line's killed ones): this test and the two below as true or `>=`; mapCopies of no pages makes nothing
      if (copies.length > 0) {
        // a read of a thrashing page gets a held copy: the store that follows needs no second round
        const held = write ? [] : copies.filter((p) => heldForRead(m, space, p));
        if (held.length > 0) mapCopies(m, dev, space, held, true, protect, ctx);
        const heldSet = new Set(held);
        const plain = copies.filter((p) => !heldSet.has(p));
        if (plain.length > 0) mapCopies(m, dev, space, plain, write, protect, ctx);
      }
      t.flush();
    }
  }
  throw new HmmError('EBUSY', `${dev.name}: fault-in of ${hex(pages[0]! * PAGE_SIZE)}.. did not settle after ${MAX_ROUNDS} rounds`, pages[0]! * PAGE_SIZE);
}
