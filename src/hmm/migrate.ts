// migrate: migrate_vma_setup / pages / finalize, both ways, for one address space and one
// device. The phases, and what each guarantees:
//   collect + isolate  select the pages that can move (others get a per-page reason), turn
//                      their CPU entries into Migrating (CPU accesses wait), and fire the
//                      notifier so every device drops its mapping of them;
//   allocate + copy    destination frames, then one batched copy for all pages;
//   commit             only after the copy has finished on the GPU: entries point at the
//                      new frames, old frames are freed. A failure before this point puts
//                      every page back where it was, source intact (invariant 3);
//   finalize           wake CPU accesses that waited on the pages.
// Policy (which pages, when) is the caller's; this file only moves what it is asked to.

import { PAGE_SIZE, PAGES_PER_HUGE, hex } from '../constants.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import { Kind, pte } from '../mm/cpuPageTable.ts';
import { canRead, canWrite } from '../mm/vmaList.ts';
import type { Stats } from '../trace/stats.ts';
import type { FaultContext, FaultPoint } from '../device/faultInjection.ts';
import { BLOCK_SIZE, popcount16, type StatusRead } from '../device/copyEngine.ts';
import { describeCause, type Cause } from '../trace/provenance.ts';

/** Why one page did not move. */
export type MigrateFailure =
  | 'hole' // no VMA, or no read permission
  | 'shared' // shared mappings stay in system RAM
  | 'pinned' // an in-flight CPU access holds it
  | 'remote' // it is another device's private page
  | 'busy' // already migrating, or held by a device
  | 'nomem' // no destination frame
  | 'raced' // unmapped while it was moving
  | 'lost'; // the device failed before the commit point

export type PageResult = 'moved' | 'already' | MigrateFailure;

export interface MigrateResult {
  /** One entry per page of the request. */
  pages: PageResult[];
  moved: number;
}

/** What migration needs from a device: frames, batched copies, and its page table. */
export interface MigrationDevice {
  readonly id: number;
  readonly name: string;
  /** @internal */
  readonly stats: Stats;
  /** @internal */
  allocFrames(n: number): number[];
  /**
   * A 2 MiB run of frames (first frame), or null.
   * @internal
   */
  allocHuge(): number | null;
  /** @internal */
  freeFrames(frames: readonly number[]): void;
  /** @internal */
  upload(frames: readonly number[], sources: readonly Uint8Array[]): void;
  /**
   * Read frames back; with `status`, their pages' dirty-block words in the same readback.
   * @internal
   */
  download(frames: readonly number[], status?: StatusRead): Promise<Uint8Array>;
  /**
   * Where these pages keep their dirty-block words on the device (read before they are
   * unmapped), for download's `status`: what kernels stored, for the bytesStored figure.
   * @internal
   */
  statusWords?(mm: AddressSpace, pages: readonly number[]): StatusRead | undefined;
  /**
   * Resolves once all submitted GPU work finished; rejects if the device failed.
   * @internal
   */
  settle(): Promise<void>;
  /**
   * A committed page: record ownership and map it in this device's table for mm.
   * @internal
   */
  adopt(mm: AddressSpace, pages: readonly number[], frames: readonly number[], writable: readonly boolean[], huge?: boolean): void;
  /**
   * The page left the device: forget ownership (its frame is freed by the caller).
   * @internal
   */
  disown(frames: readonly number[]): void;
  /**
   * Drop this device's own mappings and copies of pages it is migrating, given as sorted [start, end) runs (the notifier skips its own migrations).
   * @internal
   */
  unmapOwn(mm: AddressSpace, runs: readonly [number, number][]): void;
  /**
   * Test hook: a real failure may be caused here (src/device/faultInjection.ts).
   * @internal
   */
  inject?(point: FaultPoint, ctx: Partial<FaultContext>): void;
  /**
   * Frames in use (device-private pages and copies), for the trace's counter track.
   * @internal
   */
  residentPages(): number;
}

const EXPLICIT_TO_DEVICE: Cause = { kind: 'call', call: 'a migration to the device' };
const EXPLICIT_TO_SYSTEM: Cause = { kind: 'call', call: 'a migration to system RAM' };

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Isolate pages: Migrating entries plus an inflight promise CPU accesses can wait on. */
function isolate(mm: AddressSpace, pages: readonly number[], dev: MigrationDevice): { marks: number[]; done: () => void } {
  const { promise, resolve } = deferred();
  const marks = pages.map((p) => {
    const m = pte.migrating(mm.pageTable.get(p));
    mm.pageTable.set(p, m);
    mm.inflight.set(p, promise);
    return m;
  });
  // Every device drops its mapping of the pages before they move: others through the
  // notifier, this one directly (so its own sequence count is not disturbed). Scattered pages
  // make up to one run per page, so both take all the runs of the batch in one call.
  const pageRuns = runs(pages);
  dev.unmapOwn(mm, pageRuns);
  mm.notifier.invalidateMany(pageRuns, 'migrate', dev);
  mm.stats.add('invalidations', pageRuns.length);
  const done = (): void => {
    for (const p of pages) if (mm.inflight.get(p) === promise) mm.inflight.delete(p);
    resolve();
  };
  return { marks, done };
}

/** System RAM (or never-touched) -> device-private memory of `dev`. */
export async function migrateToDevice(
  mm: AddressSpace,
  dev: MigrationDevice,
  pages: readonly number[],
  opts: {
    /** One aligned 2 MiB block of a huge mapping: move it as one unit if a 2 MiB frame is free. */
    huge?: boolean;
    /** Pages another operation has the turn for (src/mm/deviceHolds.ts): reported 'busy', left alone. */
    othersTurn?: (page: number) => boolean;
    /** Why each page moves (provenance); an explicit migration when left out. */
    cause?: (page: number) => Cause;
  } = {},
): Promise<MigrateResult> {
  const t0 = performance.now();
  const stats = dev.stats;
  const result: PageResult[] = new Array(pages.length);
  const selected: number[] = [];
  const selIndex: number[] = [];
  const original: number[] = [];
  // ---- collect
  pages.forEach((p, i) => {
    const vma = mm.vmas.find(p);
    const e = mm.pageTable.get(p);
    let r: PageResult | null = null;
    if (!vma || !canRead(vma.prot)) r = 'hole';
    else if (pte.kind(e) === Kind.Device) r = pte.device(e) === dev.id ? 'already' : 'remote';
    else if (vma.shared) r = 'shared';
    // busy: moving, a device's copy, or another operation's turn (src/mm/deviceHolds.ts)
    else if (pte.kind(e) === Kind.Migrating || pte.isHeld(e) || opts.othersTurn?.(p)) r = 'busy';
    if (r) {
      result[i] = r;
      return;
    }
    selected.push(p);
    selIndex.push(i);
    original.push(e);
  });
  // ---- claim: a CPU thread pins a page, then reads its entry; we mark the entry, then read
  // the pin. Both sides use sequentially consistent atomics, so at least one sees the other:
  // either the thread finds Migrating and takes the slow path, or we find it pinned here and
  // leave the page alone (invariant 4).
  for (let k = 0; k < selected.length; k++) {
    const p = selected[k]!;
    mm.pageTable.set(p, pte.migrating(original[k]!));
    if (mm.isPinned(p)) {
      mm.pageTable.set(p, original[k]!);
      result[selIndex[k]!] = 'pinned';
      selected.splice(k, 1);
      selIndex.splice(k, 1);
      original.splice(k, 1);
      k--;
    }
  }
  if (selected.length === 0) {
    stats.endPhase('collect', t0, dev.id, mm.id);
    return finish(result, dev);
  }
  // ---- isolate
  const { marks, done } = isolate(mm, selected, dev);
  dev.inject?.('isolated', { direction: 'toDevice' });
  // (phases: collect up to here, copy-upload to the submit, gpu-wait for the copy, commit)
  let t = stats.endPhase('collect', t0, dev.id, mm.id);
  try {
    // ---- allocate (per-page failure when device memory runs short). A whole huge block gets
    // one 2 MiB frame if there is one; otherwise it falls back to 4 KiB frames.
    const wholeBlock = opts.huge === true && selected.length === PAGES_PER_HUGE && selected[0]! % PAGES_PER_HUGE === 0;
    let refused = false;
    if (wholeBlock) dev.inject?.('allocHuge', { direction: 'toDevice', refuse: () => (refused = true) });
    const hugeBase = wholeBlock && !refused ? dev.allocHuge() : null;
    const frames = hugeBase !== null ? Array.from({ length: PAGES_PER_HUGE }, (_, i) => hugeBase + i) : dev.allocFrames(selected.length);
    dev.inject?.('allocated', { direction: 'toDevice' });
    // ---- copy: RAM pages in one batch; never-touched and zero pages need nothing, since
    // free device frames are already zero.
    const upFrames: number[] = [];
    const upSources: Uint8Array[] = [];
    for (let k = 0; k < frames.length; k++) {
      if (pte.kind(original[k]!) === Kind.Ram) {
        upFrames.push(frames[k]!);
        upSources.push(mm.ram.frame(pte.frame(original[k]!)));
      }
    }
    if (upFrames.length > 0) dev.upload(upFrames, upSources);
    t = stats.endPhase('copy-upload', t, dev.id, mm.id);
    try {
      dev.inject?.('settling', { direction: 'toDevice' });
      await dev.settle(); // the copy has finished: only now may we commit
      t = stats.endPhase('gpu-wait', t, dev.id, mm.id);
    } catch (e) {
      // Nothing committed: every page goes back where it was, source intact.
      for (let k = 0; k < selected.length; k++) {
        if (mm.pageTable.get(selected[k]!) === marks[k]) mm.pageTable.set(selected[k]!, original[k]!);
        else releaseSource(mm, original[k]!);
        result[selIndex[k]!] = 'lost';
      }
      dev.freeFrames(frames);
      throw e;
    }
    // ---- commit (no await from here on: a loss not yet seen counts as a loss after the commit)
    dev.inject?.('beforeCommit', { direction: 'toDevice' });
    const adoptPages: number[] = [];
    const adoptFrames: number[] = [];
    const adoptWrite: boolean[] = [];
    const unused: number[] = [];
    let ramPages = 0;
    let zeroPages = 0;
    for (let k = 0; k < selected.length; k++) {
      const p = selected[k]!;
      const i = selIndex[k]!;
      const orig = original[k]!;
      if (k >= frames.length) {
        // no frame: the page stays where it was
        if (mm.pageTable.get(p) === marks[k]) mm.pageTable.set(p, orig);
        else releaseSource(mm, orig);
        result[i] = 'nomem';
        continue;
      }
      if (mm.pageTable.get(p) !== marks[k]) {
        // munmap'ed while moving: both frames are ours to free
        releaseSource(mm, orig);
        unused.push(frames[k]!);
        result[i] = 'raced';
        continue;
      }
      releaseSource(mm, orig);
      mm.splitRamHuge(p >>> 9); // (a huge page in RAM that left whole is not one in RAM any more)
      mm.pageTable.set(p, pte.onDevice(dev.id, frames[k]!));
      const vma = mm.vmas.find(p);
      adoptPages.push(p);
      adoptFrames.push(frames[k]!);
      adoptWrite.push(!!vma && canWrite(vma.prot));
      result[i] = 'moved';
      if (pte.kind(orig) === Kind.Ram) ramPages++;
      else zeroPages++;
    }
    if (ramPages > 0) dev.stats.add('bytesToDevice', ramPages * PAGE_SIZE);
    if (zeroPages > 0) dev.stats.add('zeroPagesToDevice', zeroPages);
    if (unused.length > 0) dev.freeFrames(unused);
    dev.adopt(mm, adoptPages, adoptFrames, adoptWrite, hugeBase !== null && adoptPages.length === PAGES_PER_HUGE);
    mm.noteMigration(adoptPages, 'toDevice');
    dev.stats.add('pagesToDevice', adoptPages.length);
    const causeOf = opts.cause ?? (() => EXPLICIT_TO_DEVICE);
    dev.stats.provenance.recordEach(mm.id, adoptPages, 'to-device', dev.id, causeOf);
    const first = adoptPages.length > 0 ? causeOf(adoptPages[0]!) : undefined;
    dev.stats.trace.record({
      kind: 'migrate-to-device',
      ts: t0,
      dur: performance.now() - t0,
      pages: adoptPages.length,
      bytes: upFrames.length * PAGE_SIZE,
      va: (adoptPages[0] ?? selected[0]!) * PAGE_SIZE,
      device: dev.id,
      mm: mm.id,
      detail: first && describeCause(first),
      flow: first && 'flow' in first ? first.flow : undefined,
      counters: { [`resident pages ${dev.name}`]: dev.residentPages(), 'bytes to devices': dev.stats.get('bytesToDevice') },
    });
    dev.inject?.('committed', { direction: 'toDevice' });
  } finally {
    done();
  }
  stats.endPhase('commit', t, dev.id, mm.id);
  dev.inject?.('finalized', { direction: 'toDevice' });
  return finish(result, dev);
}

/** Device-private pages of `dev` -> system RAM. Every selected page moves, or none does. */
export async function migrateToSystem(
  mm: AddressSpace,
  dev: MigrationDevice,
  pages: readonly number[],
  cause: Cause = EXPLICIT_TO_SYSTEM,
): Promise<MigrateResult> {
  const t0 = performance.now();
  const stats = dev.stats;
  const result: PageResult[] = pages.map(() => 'remote');
  const selected: number[] = [];
  const selIndex: number[] = [];
  pages.forEach((p, i) => {
    const e = mm.pageTable.get(p);
    if (pte.kind(e) === Kind.Device && pte.device(e) === dev.id) {
      selected.push(p);
      selIndex.push(i);
    } else if (pte.kind(e) === Kind.Migrating) result[i] = 'busy';
  });
  if (selected.length === 0) return finish(result, dev);
  const devFrames = selected.map((p) => pte.frame(mm.pageTable.get(p)));
  // Allocate before isolating: ENOMEM must leave everything as it was.
  const { frames: ramFrames, hugeBlocks } = ramFramesFor(mm, dev, selected);
  // What kernels stored on these pages comes back with their data (read before the isolation
  // unmaps them); a device-private page comes home whole all the same: RAM has no other copy.
  const status = dev.statusWords?.(mm, selected);
  const { marks, done } = isolate(mm, selected, dev);
  dev.inject?.('isolated', { direction: 'toSystem' });
  let t = stats.endPhase('collect', t0, dev.id, mm.id);
  try {
    let data: Uint8Array;
    try {
      data = await dev.download(devFrames, status);
      t = stats.endPhase('gpu-wait', t, dev.id, mm.id);
    } catch (e) {
      // Nothing came back: every page stays on the device, but one unmapped meanwhile has no
      // entry left to own its device frame, which is ours to give back (it leaked once).
      const orphaned: number[] = [];
      for (let k = 0; k < selected.length; k++) {
        if (mm.pageTable.get(selected[k]!) === marks[k]) mm.pageTable.set(selected[k]!, pte.onDevice(dev.id, devFrames[k]!));
        else orphaned.push(devFrames[k]!);
        mm.ram.free(ramFrames[k]!);
      }
      dev.disown(orphaned);
      dev.freeFrames(orphaned);
      throw e;
    }
    // ---- commit: the bytes are in hand, so a loss from here on loses nothing
    dev.inject?.('beforeCommit', { direction: 'toSystem' });
    // The bytes first, one copy per run of consecutive RAM frames (one for a huge page, not 512),
    // then the entries; a raced page's frame is written too, and freed below all the same.
    for (let k = 0; k < selected.length; ) {
      let n = 1;
      while (k + n < selected.length && ramFrames[k + n] === ramFrames[k]! + n) n++;
      mm.ram.bytes.set(data.subarray(k * PAGE_SIZE, (k + n) * PAGE_SIZE), ramFrames[k]! * PAGE_SIZE);
      k += n;
    }
    const freed: number[] = [];
    let storedBlocks = 0;
    for (let k = 0; k < selected.length; k++) {
      const p = selected[k]!;
      freed.push(devFrames[k]!);
      if (mm.pageTable.get(p) !== marks[k]) {
        mm.ram.free(ramFrames[k]!); // unmapped while moving
        result[selIndex[k]!] = 'raced';
        continue;
      }
      mm.pageTable.set(p, pte.ram(ramFrames[k]!));
      result[selIndex[k]!] = 'moved';
      storedBlocks += status ? popcount16(status.out[k]!) : PAGE_SIZE / BLOCK_SIZE;
    }
    dev.disown(freed);
    dev.freeFrames(freed);
    // a whole block that came home into one run of RAM is a huge page in RAM again
    for (const b of hugeBlocks) if (mm.pageTable.get(b * PAGES_PER_HUGE) === pte.ram(ramFrames[selected.indexOf(b * PAGES_PER_HUGE)]!)) mm.markRamHuge(b);
    mm.noteMigration(
      selected.filter((_, k) => result[selIndex[k]!] === 'moved'),
      'toSystem',
    );
    const moved = result.filter((r) => r === 'moved').length;
    dev.stats.add('pagesToSystem', moved);
    dev.stats.add('bytesToSystem', moved * PAGE_SIZE);
    dev.stats.add('bytesWrittenBack', moved * PAGE_SIZE);
    dev.stats.add('bytesStored', storedBlocks * BLOCK_SIZE);
    dev.stats.provenance.record(
      mm.id,
      selected.filter((_, k) => result[selIndex[k]!] === 'moved'),
      'to-system',
      dev.id,
      cause,
    );
    dev.stats.trace.record({
      kind: 'migrate-to-system',
      ts: t0,
      dur: performance.now() - t0,
      pages: moved,
      bytes: moved * PAGE_SIZE,
      va: selected[0]! * PAGE_SIZE,
      device: dev.id,
      mm: mm.id,
      detail: describeCause(cause),
      counters: { [`resident pages ${dev.name}`]: dev.residentPages(), 'bytes to system RAM': dev.stats.get('bytesToSystem') },
    });
    dev.inject?.('committed', { direction: 'toSystem' });
  } finally {
    done();
  }
  stats.endPhase('commit', t, dev.id, mm.id);
  dev.inject?.('finalized', { direction: 'toSystem' });
  return finish(result, dev);
}

/**
 * RAM frames for pages coming home, all or none. A whole 2 MiB block of a huge mapping gets an
 * aligned 2 MiB run of RAM when one is free, so it is a huge page in RAM again (a THP), and
 * 4 KiB frames when RAM is fragmented or the run is refused (fault injection, 'allocHuge').
 * They are not cleared: the commit writes every byte of each before an entry names it, and a
 * frame freed unwritten (a raced page, a failed copy) is cleared when it is handed out again.
 */
function ramFramesFor(mm: AddressSpace, dev: MigrationDevice, pages: readonly number[]): { frames: number[]; hugeBlocks: number[] } {
  const frames: number[] = new Array(pages.length);
  const runs: number[] = [];
  const small: number[] = [];
  for (let i = 0; i < pages.length; ) {
    const p = pages[i]!;
    const vma = p % PAGES_PER_HUGE === 0 ? mm.vmas.find(p) : undefined;
    const whole = vma?.huge === true && vma.end >= p + PAGES_PER_HUGE && pages[i + PAGES_PER_HUGE - 1] === p + PAGES_PER_HUGE - 1;
    if (whole) {
      let refused = false;
      dev.inject?.('allocHuge', { direction: 'toSystem', refuse: () => (refused = true) });
      const base = refused ? null : mm.ram.allocRun(PAGES_PER_HUGE, false);
      if (base !== null) {
        runs.push(base);
        for (let k = 0; k < PAGES_PER_HUGE; k++) frames[i + k] = base + k;
        i += PAGES_PER_HUGE;
        continue;
      }
    }
    small.push(i++);
  }
  try {
    const got = mm.ram.allocMany(small.length, `migrating ${pages.length} pages from ${dev.name} at ${hex(pages[0]! * PAGE_SIZE)}`, false);
    small.forEach((i, k) => (frames[i] = got[k]!));
  } catch (e) {
    for (const base of runs) for (let k = 0; k < PAGES_PER_HUGE; k++) mm.ram.free(base + k);
    throw e;
  }
  return { frames, hugeBlocks: runs.map((base) => pages[frames.indexOf(base)]! >>> 9) };
}

/** The source of a page that moved (or vanished): RAM frames go back to the pool. */
function releaseSource(mm: AddressSpace, orig: number): void {
  if (pte.kind(orig) === Kind.Ram) mm.ram.free(pte.frame(orig));
}

function finish(result: PageResult[], dev: MigrationDevice): MigrateResult {
  let moved = 0;
  let failed = 0;
  for (const r of result) {
    if (r === 'moved') moved++;
    else if (r !== 'already') failed++;
  }
  if (failed > 0) dev.stats.add('migrationFailures', failed);
  return { pages: result, moved };
}

/** Sorted pages as [start, end) runs. */
export function runs(pages: readonly number[]): [number, number][] {
  // Callers mostly pass sorted pages (a migration batch): copy and sort only when they are not.
  let sorted = pages;
  for (let i = 1; i < pages.length; i++) {
    if (pages[i]! < pages[i - 1]!) {
      sorted = [...pages].sort((a, b) => a - b);
      break;
    }
  }
  const out: [number, number][] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && p < last[1]) continue; // a repeated page
    if (last && last[1] === p) last[1]++;
    else out.push([p, p + 1]);
  }
  return out;
}
