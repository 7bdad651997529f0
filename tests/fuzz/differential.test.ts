// Differential fuzzing on the real adapter: random sequences of CPU reads and writes (main
// thread and a worker), device reads and writes, kernels, migrations both ways, eviction under
// a tiny device, munmap, mprotect, mremap (in place, MREMAP_FIXED inside the window, with and
// without DONTUNMAP, and the argument errors), madvise (dontneed, free, willneed), pins (plain
// and long-term, a few live at a time, unpinned later), RAM pressure that reclaims
// madvise('free') pages, fork, exclusive access, release and device loss, run against the plain
// model in model.ts. Every byte read and every error (code, and address where the contract
// fixes it) must match. After every operation, for every address space and live device, the
// dmirror snapshot and rangeFault's flags must agree on every page of the window
// (tests/fuzz/snapshotFlags.ts). A failure prints the seed and path; replay (and shrink) it with
//   FUZZ_SEED=<seed> FUZZ_PATH=<path> FUZZ_SHRINK=1 npm run fuzz
// or, faster for long sequences, save the counterexample and minimise it (see replay()):
//   FUZZ_REPLAY=case.json FUZZ_MINIMISE=1 npx vitest run --project fuzz tests/fuzz/differential.test.ts
// CI runs a bounded budget; `npm run fuzz` runs longer (FUZZ_RUNS, FUZZ_OPS to change it).
//
// What the model leaves out, on purpose:
// - mremap moves without a fixed address (MAYMOVE that has to move): they land outside the
//   window; MAYMOVE is given only where the range stays in place. The window cannot hold a
//   2 MiB block, so huge mappings (PMD, order 9) are not fuzzed: the correspondence test and
//   tests/gpu/fidelity.test.ts cover them.
// - madvise('free') on poisoned pages (dropped or still poisoned depending on where the page
//   was). The model of 'free' is looser than the system in places: a page stays "may be dropped"
//   across migrations, makeExclusive and plain pins (the system ends or suspends the mark there),
//   and a prot-'none' page cannot be read to decide it; a read always decides, a write after a
//   read of the page.
// - pins have no state in the model: it checks that they change no data and fail as the layout
//   says; a pinned page's refusal to migrate is toDevice's ENOENT, accepted as for any page.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSystem, type HmmError, type AddressSpace, type HmmDevice, type HmmKernel, type Mirror } from '../../src/index.ts';
import { spawnThread, threadHandle, type SpawnedThread } from '../../src/workers/threads.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { MemWorker } from '../workers/memWorker.ts';
import type { PinHandle } from '../../src/mm/pins.ts';
import { ADD_KERNEL, bytesOf, checkAccounting, checkSnapshotAgreement, deferredFrames, isLost, outcome, quiesce } from './harness.ts';
import { BASE_PAGE, BASE_VA, ModelSpace, PAGE, WINDOW_PAGES, sharedElsewhereIn, type MadviseKind, type ModelError, type Prot } from './model.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 6);
const OPS = Number(process.env.FUZZ_OPS ?? 60);
const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : undefined;
/** FUZZ_LOG=1: print every operation as it runs. */
const LOG = process.env.FUZZ_LOG !== undefined;
const MAX_SPACES = 3;
/** Pin handles kept live at once (a pin op beyond them is skipped). */
const MAX_PINS = 4;

// ------------------------------------------------------------------ operations

type Op =
  | { op: 'mmap'; s: number; first: number; n: number; prot: Prot; shared: boolean }
  | { op: 'munmap'; s: number; first: number; n: number }
  | { op: 'mprotect'; s: number; first: number; n: number; prot: Prot }
  | { op: 'read'; s: number; first: number; off: number; len: number; worker: boolean }
  | { op: 'write'; s: number; first: number; off: number; len: number; seed: number; worker: boolean }
  | { op: 'gpuRead'; s: number; d: number; first: number; n: number }
  | { op: 'gpuWrite'; s: number; d: number; first: number; n: number; seed: number }
  | { op: 'kernel'; s: number; d: number; first: number; n: number; add: number; validated: boolean }
  | { op: 'toDevice'; s: number; d: number; first: number; n: number }
  | { op: 'toSystem'; s: number; d: number; first: number; n: number }
  | { op: 'exclusive'; s: number; d: number; first: number; n: number }
  | { op: 'release'; d: number }
  | { op: 'fork'; s: number }
  /** Real device loss (GPUDevice.destroy()), acted on when roll is 0 (a third of the time). */
  | { op: 'lose'; d: number; roll: number }
  /**
   * mremap of [first, first+oldN) to newN pages. inPlace: no flags (ENOMEM without room);
   * mayMove: only where it stays in place (a move would leave the window); fixed: MREMAP_FIXED
   * to window page `to`; dontUnmap: fixed, same length, old range left demand-zero; badDontUnmap:
   * DONTUNMAP without a move or with another length (EINVAL).
   */
  | {
      op: 'mremap';
      s: number;
      first: number;
      oldN: number;
      newN: number;
      mode: 'inPlace' | 'mayMove' | 'fixed' | 'dontUnmap' | 'badDontUnmap';
      to: number;
      aim: boolean;
    }
  | { op: 'madvise'; s: number; first: number; n: number; advice: MadviseKind; aim: boolean }
  /** mm.pin of a byte range; the handle is kept (at most MAX_PINS) for a later unpin. */
  | { op: 'pin'; s: number; first: number; off: number; len: number; longterm: boolean; aim: boolean }
  | { op: 'unpin'; k: number }
  /** RAM pressure: fill system RAM from a scratch address space, then up to `pages` more frames (each reclaims madvise('free') pages). */
  | { op: 'squeeze'; pages: number };

const first = fc.integer({ min: 0, max: WINDOW_PAGES - 1 });
const pages = fc.integer({ min: 1, max: 6 });
const space = fc.nat(MAX_SPACES - 1);
const device = fc.nat(1);
const prot = fc.constantFrom<Prot>('rw', 'rw', 'rw', 'r', 'none');
/**
 * For the calls that want a mapped range (mremap, madvise, pin): most of the time (true) the
 * range is moved onto the next mapped page and clipped to its mapping, or they would mostly
 * fail on holes in a sparse window; the rest keep their errors coming.
 */
const aim = fc.constantFrom(true, true, true, false);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('mmap' as const), s: space, first, n: fc.integer({ min: 1, max: 12 }), prot, shared: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('munmap' as const), s: space, first, n: pages }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('mprotect' as const), s: space, first, n: pages, prot }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('read' as const),
      s: space,
      first,
      off: fc.nat(PAGE - 1),
      len: fc.integer({ min: 1, max: 3 * PAGE }),
      worker: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('write' as const),
      s: space,
      first,
      off: fc.nat(PAGE - 1),
      len: fc.integer({ min: 1, max: 3 * PAGE }),
      seed: fc.nat(255),
      worker: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('gpuRead' as const), s: space, d: device, first, n: pages }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('gpuWrite' as const), s: space, d: device, first, n: pages, seed: fc.nat(255) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('kernel' as const),
      s: space,
      d: device,
      first,
      n: fc.integer({ min: 1, max: 3 }),
      add: fc.integer({ min: 1, max: 1000 }),
      validated: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('toDevice' as const), s: space, d: device, first, n: pages }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('toSystem' as const), s: space, d: device, first, n: pages }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('exclusive' as const), s: space, d: device, first, n: pages }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), d: device }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fork' as const), s: space }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('lose' as const), d: device, roll: fc.nat(2) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('mremap' as const),
      s: space,
      first,
      oldN: fc.integer({ min: 1, max: 6 }),
      newN: fc.integer({ min: 1, max: 8 }),
      mode: fc.constantFrom('inPlace' as const, 'mayMove' as const, 'fixed' as const, 'fixed' as const, 'dontUnmap' as const, 'badDontUnmap' as const),
      to: first,
      aim,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('madvise' as const),
      s: space,
      first,
      n: pages,
      advice: fc.constantFrom<MadviseKind>('dontneed', 'free', 'free', 'willneed'),
      aim,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('pin' as const),
      s: space,
      first,
      off: fc.nat(PAGE - 1),
      len: fc.integer({ min: 1, max: 3 * PAGE }),
      longterm: fc.boolean(),
      aim,
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unpin' as const), k: fc.nat(MAX_PINS - 1) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('squeeze' as const), pages: fc.integer({ min: 1, max: 8 }) }) },
);

// ------------------------------------------------------------------ the system under test

interface Run {
  spaces: AddressSpace[];
  models: ModelSpace[];
  devices: HmmDevice[];
  kernels: HmmKernel[];
  /** Mirrors made while their device was alive, by `${device}:${space}`: after a loss the fuzzer
   * also calls them (as a program holding one would), not only dev.mirror(), which refuses. */
  mirrors: Map<string, Mirror>;
  /** Live pins (mm.pin handles), oldest first. */
  pins: PinHandle[];
  /** Makes the scratch address space a squeeze fills RAM from. */
  scratch: () => AddressSpace;
  ram: { readonly freeFrames: number };
  ops: number;
}

let worker: SpawnedThread<MemWorker>;
let totalOps = 0;
/** Devices lost, and pages that became EPOISON with them (the model then checked every touch). */
let losses = 0;
let poisonedPages = 0;
/** What the new operations did (a fuzzer whose calls all fail checks little): `op:outcome` -> count. */
const outcomes = new Map<string, number>();
/** Pages madvise('free') let go that a later read saw as zeros. */
let droppedSeen = 0;
const count = (key: string): void => void outcomes.set(key, (outcomes.get(key) ?? 0) + 1);

beforeAll(async () => {
  worker = await spawnThread<MemWorker>(new URL('../workers/memWorker.ts', import.meta.url));
}, 60_000);
afterAll(async () => {
  await worker.terminate();
  console.log(
    `[fuzz] ${totalOps} operations checked against the model; ${losses} devices lost, ${poisonedPages} pages poisoned with them; ${droppedSeen} madvise('free') pages seen dropped`,
  );
  console.log(
    `[fuzz] outcomes: ${[...outcomes]
      .sort()
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
  );
});

function sameError(what: string, got: HmmError | null, want: ModelError | null, codeOnly = false): void {
  const g = got ? { code: got.code, address: codeOnly ? undefined : got.address } : null;
  const w = want ? { code: want.code, address: codeOnly ? undefined : want.address } : null;
  if (w && w.address === undefined && g) delete g.address;
  expect(g, `${what}: ${got?.message ?? 'no error'}`).toEqual(w);
}

/** A read of [va, va+got.length) gave `got`: it must be the model's bytes, madvise('free') pages old or zeros (observeRead decides them). */
function sameRead(what: string, model: ModelSpace, va: number, got: Uint8Array): void {
  const undecided = model.undecided(va, got.length);
  const before = undecided.map((i) => model.pages[i]!.data);
  const want = model.read(va, got.length);
  const at = model.observeRead(va, got);
  expect(
    at,
    `${what}: first differing byte at +${at} (got ${got[at]}, want ${want[at]}${undecided.length > 0 ? ` or zeros on madvise('free') pages ${undecided.join(', ')}` : ''})`,
  ).toBe(-1);
  droppedSeen += undecided.filter((i, k) => model.pages[i]!.data !== before[k]).length;
}

/**
 * Before an operation that changes part of a page: read each madvise('free') page of `pages`
 * whose bytes the model does not know (old or zeros), so the change lands on known bytes.
 * Pages the CPU cannot read (prot none, poisoned) stay undecided; callers write only rw pages.
 */
async function decide(mm: AddressSpace, model: ModelSpace, pages: readonly number[], what: string): Promise<void> {
  for (const i of pages) {
    const p = model.pages[i];
    if (!p?.free || p.prot === 'none' || model.poisoned.has(i)) continue;
    const va = BASE_VA + i * PAGE;
    sameRead(`${what}: read of madvise('free') page ${i} first`, model, va, await mm.read(va, PAGE));
  }
}

/**
 * Lose device d for real. The CPU page tables before the loss say what the model must do: a
 * page that was private to the device is poisoned in every space that maps it; a page the
 * device held writable may be (a kernel may have written it: the contract lets a held copy no
 * launch followed go), and then it is EPOISON from here on; every other page is untouched.
 */
async function lose(run: Run, d: number): Promise<void> {
  const dev = run.devices[d]!;
  const before = run.spaces.map((mm) => Array.from({ length: WINDOW_PAGES }, (_, i) => mm.pageTable.get(BASE_PAGE + i)));
  dev.device.destroy();
  await dev.device.lost; // the system's handler (registered first) has run when this resolves here
  expect(isLost(dev), `${dev.name} not marked lost`).toBe(true);
  losses++;
  run.spaces.forEach((mm, s) => {
    for (let i = 0; i < WINDOW_PAGES; i++) {
      const e = before[s]![i]!;
      const poisoned = mm.poisoned(BASE_PAGE + i);
      const what = `mm${s} page ${i} after losing ${dev.name} (entry ${e.toString(16)})`;
      if (pte.kind(e) === Kind.Device && pte.device(e) === dev.id) expect(poisoned, `${what}: device-private, must be poisoned`).toBe(true);
      else if (!(pte.isHeld(e) && pte.heldBy(e) === dev.id)) expect(poisoned, `${what}: its data was in RAM`).toBe(run.models[s]!.poisoned.has(i));
      if (poisoned && !run.models[s]!.poisoned.has(i)) poisonedPages++;
      if (poisoned) run.models[s]!.poisoned.add(i);
    }
  });
}

/**
 * `aim` (see its arbitrary): the first mapped page at or after `first` (wrapping round the
 * window), and how many pages from there lie in its mapping (`wantN` at most); unchanged when
 * nothing is mapped.
 */
function aimAt(model: ModelSpace, first: number, wantN: number): { first: number; n: number } {
  for (let k = 0; k < WINDOW_PAGES; k++) {
    const i = (first + k) % WINDOW_PAGES;
    if (model.pages[i]) return { first: i, n: Math.min(wantN, model.mappingEnd(i) - i) };
  }
  return { first, n: wantN };
}

async function step(run: Run, o: Op): Promise<void> {
  run.ops++;
  if (o.op === 'lose') {
    if (o.roll === 0 && !isLost(run.devices[o.d]!)) await lose(run, o.d);
    return;
  }
  if (o.op === 'release') {
    const r = await outcome(() => run.devices[o.d]!.release());
    sameError('release', r.error, isLost(run.devices[o.d]!) ? { code: 'EDEVLOST' } : null, true);
    return;
  }
  if (o.op === 'unpin') {
    // pins change no data: nothing for the model to do
    if (run.pins.length > 0) run.pins.splice(o.k % run.pins.length, 1)[0]!.unpin();
    return;
  }
  if (o.op === 'squeeze') {
    if (run.models.some((m) => m.pages.some((p) => p?.free === 'marked'))) await squeeze(run, o.pages);
    return;
  }
  const s = o.s % run.spaces.length;
  const mm = run.spaces[s]!;
  const model = run.models[s]!;
  const clip = (f: number, n: number) => Math.min(n, WINDOW_PAGES - f);
  const mirror = (d: number): Mirror => {
    const key = `${d}:${s}`;
    const kept = run.mirrors.get(key);
    // after a loss: a mirror kept from before (even spaces), or a fresh dev.mirror() (EDEVLOST)
    if (isLost(run.devices[d]!) && kept && s % 2 === 0) return kept;
    const m = run.devices[d]!.mirror(mm);
    run.mirrors.set(key, m);
    return m;
  };
  // Every device operation on a lost device is EDEVLOST, whatever else is wrong with it.
  if ('d' in o && isLost(run.devices[o.d]!)) {
    const n = clip(o.first, o.n);
    const va = BASE_VA + o.first * PAGE;
    const call: Record<string, () => Promise<unknown>> = {
      gpuRead: () => mirror(o.d).read(va, n),
      gpuWrite: () => mirror(o.d).write(va, new Uint8Array(n * PAGE)),
      kernel: () => mirror(o.d).dispatch(run.kernels[o.d]!, { workgroups: 1, uniforms: new Uint32Array([va, 1, 1, 0]) }),
      toDevice: () => mirror(o.d).migrateToDevice(va, n),
      toSystem: () => mirror(o.d).migrateToSystem(va, n),
      exclusive: () => mirror(o.d).makeExclusive(va, n),
    };
    const r = await outcome(call[o.op]!);
    sameError(`${o.op} on a lost device`, r.error, { code: 'EDEVLOST' }, true);
    return;
  }
  switch (o.op) {
    case 'mmap': {
      const n = clip(o.first, o.n);
      const va = mm.mmap(n * PAGE, { addr: BASE_VA + o.first * PAGE, prot: o.prot, shared: o.shared });
      expect(va).toBe(BASE_VA + o.first * PAGE);
      model.mmap(o.first, n, o.prot, o.shared);
      return;
    }
    case 'munmap': {
      const n = clip(o.first, o.n);
      await mm.munmap(BASE_VA + o.first * PAGE, n * PAGE);
      model.munmap(o.first, n);
      return;
    }
    case 'mprotect': {
      const n = clip(o.first, o.n);
      const r = await outcome(() => mm.mprotect(BASE_VA + o.first * PAGE, n * PAGE, o.prot));
      sameError('mprotect', r.error, model.mprotect(o.first, n, o.prot));
      return;
    }
    case 'read': {
      const va = BASE_VA + o.first * PAGE + o.off;
      const len = Math.min(o.len, BASE_VA + WINDOW_PAGES * PAGE - va);
      await worker.api.attach(threadHandle(mm));
      const r = await outcome(() => (o.worker ? worker.api.load(va, len) : mm.read(va, len)));
      const want = model.accessError(va, len, false) ?? model.poisonError(va, len);
      sameError(`read ${o.worker ? 'worker' : 'main'}`, r.error, want);
      if (!want) sameRead('read', model, va, r.value!);
      return;
    }
    case 'write': {
      const va = BASE_VA + o.first * PAGE + o.off;
      const len = Math.min(o.len, BASE_VA + WINDOW_PAGES * PAGE - va);
      const data = bytesOf(len, o.seed);
      const want = model.accessError(va, len, true) ?? model.poisonError(va, len);
      // pages written in part keep the rest of their bytes: those must be known
      if (!want) await decide(mm, model, [ModelSpace.index(va), ModelSpace.index(va + len - 1)], 'write');
      await worker.api.attach(threadHandle(mm));
      const r = await outcome(() => (o.worker ? worker.api.store(va, data) : mm.write(va, data)));
      sameError(`write ${o.worker ? 'worker' : 'main'}`, r.error, want);
      if (!want) model.write(va, data);
      return;
    }
    case 'gpuRead': {
      const n = clip(o.first, o.n);
      const va = BASE_VA + o.first * PAGE;
      const r = await outcome(() => mirror(o.d).read(va, n));
      const want = model.accessError(va, n * PAGE, false) ?? model.poisonError(va, n * PAGE);
      sameError('gpuRead', r.error, want);
      if (!want) sameRead('gpuRead', model, va, r.value!.data);
      return;
    }
    case 'gpuWrite': {
      const n = clip(o.first, o.n);
      const va = BASE_VA + o.first * PAGE;
      // A range mixing writable and unwritable pages may be written in part before the error:
      // the contract fixes no order there, so the fuzzer only asks for all or none writable.
      const allRw = model.all(va, n * PAGE, (p) => p?.prot === 'rw');
      const noneRw = model.all(va, n * PAGE, (p) => p?.prot !== 'rw');
      if (!allRw && !noneRw) return;
      const data = bytesOf(n * PAGE, o.seed);
      const r = await outcome(() => mirror(o.d).write(va, data));
      const want = model.accessError(va, n * PAGE, true) ?? model.poisonError(va, n * PAGE);
      sameError('gpuWrite', r.error, want);
      if (!want) model.write(va, data);
      return;
    }
    case 'kernel': {
      const n = clip(o.first, o.n);
      const va = BASE_VA + o.first * PAGE;
      const allRw = model.all(va, n * PAGE, (p) => p?.prot === 'rw');
      const allHoles = model.all(va, n * PAGE, (p) => p === null);
      if (!allRw && !allHoles) return;
      if (allRw && !model.poisonError(va, n * PAGE))
        await decide(
          mm,
          model,
          Array.from({ length: n }, (_, k) => o.first + k),
          'kernel',
        );
      const words = (n * PAGE) / 4;
      const r = await outcome(() =>
        mirror(o.d).dispatch(run.kernels[o.d]!, {
          mode: o.validated ? 'validated' : 'replayable',
          workgroups: words / 64,
          uniforms: new Uint32Array([va, words, o.add, 0]),
          ranges: o.validated ? [{ va, bytes: n * PAGE, access: 'rw' }] : undefined,
        }),
      );
      // a declared range over a hole is refused before launch (EFAULT); a replayable kernel
      // that touches one segfaults (ESEGV)
      const want = allHoles ? { code: o.validated ? 'EFAULT' : 'ESEGV' } : model.poisonError(va, n * PAGE);
      sameError(`kernel ${o.validated ? 'validated' : 'replayable'}`, r.error, want, true);
      if (!want) model.addWords(va, words, o.add);
      return;
    }
    case 'toDevice': {
      const n = clip(o.first, o.n);
      const va = BASE_VA + o.first * PAGE;
      const r = await outcome(() => mirror(o.d).migrateToDevice(va, n));
      const bad = model.accessError(va, n * PAGE, false);
      if (bad) sameError('toDevice', r.error, { code: 'EINVAL', address: bad.address });
      else if (r.error) {
        // ENOENT: some pages stayed (shared, another device's, no room on a tiny device): data must not care
        expect(r.error.code, r.error.message).toBe('ENOENT');
      } else
        expect(
          model.all(va, n * PAGE, (p) => !p?.shared),
          'toDevice moved a shared page',
        ).toBe(true);
      return;
    }
    case 'toSystem': {
      const n = clip(o.first, o.n);
      const va = BASE_VA + o.first * PAGE;
      const r = await outcome(() => mirror(o.d).migrateToSystem(va, n));
      const hole = model.all(va, n * PAGE, (p) => p !== null) ? null : firstHole(model, o.first, n);
      sameError('toSystem', r.error, hole);
      return;
    }
    case 'exclusive': {
      const n = clip(o.first, o.n);
      const va = BASE_VA + o.first * PAGE;
      const r = await outcome(() => mirror(o.d).makeExclusive(va, n));
      let want = model.accessError(va, n * PAGE, true);
      if (!want && !model.all(va, n * PAGE, (p) => !p?.shared)) want = { code: 'EINVAL' };
      want ??= model.poisonError(va, n * PAGE);
      sameError('exclusive', r.error, want, want?.code === 'EINVAL');
      return;
    }
    case 'mremap': {
      const r = o.aim ? { ...o, ...((a) => ({ first: a.first, oldN: a.n }))(aimAt(model, o.first, o.oldN)) } : o;
      await remap(mm, model, r, sharedElsewhereIn(run.models, s));
      return;
    }
    case 'madvise': {
      const at = o.aim ? aimAt(model, o.first, o.n) : { first: o.first, n: o.n };
      const n = clip(at.first, at.n);
      const va = BASE_VA + at.first * PAGE;
      // 'free' on a poisoned page drops it or leaves it poisoned, depending on where it was
      // (device-private: dropped; a held copy: poisoned): the model does not know which
      if (o.advice === 'free' && model.poisonError(va, n * PAGE)) return;
      const r = await outcome(() => mm.madvise(va, n * PAGE, o.advice));
      sameError(`madvise ${o.advice}`, r.error, model.madvise(at.first, n, o.advice));
      count(`madvise ${o.advice}:${r.error?.code ?? 'ok'}`);
      return;
    }
    case 'pin': {
      let { first, off, len } = o;
      if (o.aim) {
        const a = aimAt(model, first, Math.ceil((off + len) / PAGE));
        first = a.first;
        if (off >= a.n * PAGE) off = 0;
        len = Math.min(len, a.n * PAGE - off);
      }
      const va = BASE_VA + first * PAGE + off;
      len = Math.min(len, BASE_VA + WINDOW_PAGES * PAGE - va);
      if (run.pins.length >= MAX_PINS) return;
      const r = await outcome(() => mm.pin(va, len, { longterm: o.longterm }));
      const want = model.accessError(va, len, false) ?? (o.longterm ? model.poisonError(va, len) : null);
      sameError(`pin${o.longterm ? ' longterm' : ''}`, r.error, want);
      count(`pin${o.longterm ? ' longterm' : ''}:${r.error?.code ?? 'ok'}`);
      if (r.value) run.pins.push(r.value);
      // a long-term pin gives every page a frame of its own (a write fault): that ends madvise('free')
      if (r.value && o.longterm) for (let i = ModelSpace.index(va); i <= ModelSpace.index(va + len - 1); i++) model.endMark(i);
      return;
    }
    case 'fork': {
      if (run.spaces.length >= MAX_SPACES) return;
      const r = await outcome(() => mm.fork());
      const want = model.poisonError(BASE_VA, WINDOW_PAGES * PAGE);
      sameError('fork', r.error, want, true);
      if (!want) {
        run.spaces.push(r.value!);
        run.models.push(model.fork());
      }
      return;
    }
  }
}

/** The mremap operation: its arguments kept inside the window (see the Op), then the call and the model. */
async function remap(mm: AddressSpace, model: ModelSpace, o: Extract<Op, { op: 'mremap' }>, sharedElsewhere: (i: number) => boolean): Promise<void> {
  const va = BASE_VA + o.first * PAGE;
  let oldN = o.oldN;
  let newN = o.newN;
  const opts: { addr?: number; mayMove?: boolean; dontUnmap?: boolean } = {};
  let to: number | undefined;
  switch (o.mode) {
    case 'inPlace':
    case 'mayMove':
      newN = Math.min(newN, WINDOW_PAGES - o.first); // growth stays in the window
      if (o.mode === 'mayMove' && model.remapsInPlace(o.first, oldN, newN)) opts.mayMove = true;
      break;
    case 'fixed':
    case 'dontUnmap':
      if (o.mode === 'dontUnmap') newN = oldN;
      newN = Math.min(newN, WINDOW_PAGES - o.to);
      if (o.mode === 'dontUnmap') oldN = newN;
      to = o.to;
      opts.addr = BASE_VA + to * PAGE;
      if (o.mode === 'dontUnmap') opts.dontUnmap = true;
      else if (o.oldN % 2 === 0) opts.mayMove = true; // FIXED implies it; say it half the time
      break;
    case 'badDontUnmap':
      opts.dontUnmap = true;
      if (o.oldN % 2 === 0) {
        // a move, but another length
        opts.addr = BASE_VA + o.to * PAGE;
        newN = oldN + 1;
      }
      break;
  }
  const r = await outcome(() => mm.mremap(va, oldN * PAGE, newN * PAGE, opts));
  const want = model.mremap(o.first, oldN, newN, { to, mayMove: opts.mayMove, dontUnmap: opts.dontUnmap, sharedElsewhere });
  const what = `mremap ${o.mode} mm${mm.id} pages ${o.first}+${oldN} -> ${to ?? o.first}+${newN}`;
  sameError(what, r.error, want.error);
  count(`mremap ${o.mode}:${r.error?.code ?? 'ok'}`);
  if (!want.error) expect(r.value, `${what}: the address it returned`).toBe(BASE_VA + want.to * PAGE);
}

/**
 * RAM pressure, from a scratch address space outside the model: take every free frame, then up
 * to `pages` more one at a time; each of those reclaims madvise('free') pages (the only frames
 * the system may take back) until none is left (ENOMEM). Then the scratch space goes.
 */
async function squeeze(run: Run, pages: number): Promise<void> {
  const scratch = run.scratch();
  try {
    const free = run.ram.freeFrames;
    const va = scratch.mmap((free + pages) * PAGE);
    if (free > 0) await scratch.write(va, new Uint8Array(free * PAGE).fill(0x5a));
    for (let k = 0; k < pages; k++) {
      const r = await outcome(() => scratch.write(va + (free + k) * PAGE, new Uint8Array([0xa5])));
      count(`squeeze:${r.error?.code ?? 'reclaimed'}`);
      if (r.error) {
        expect(r.error.code, r.error.message).toBe('ENOMEM');
        break;
      }
    }
  } finally {
    scratch.destroy();
  }
}

function firstHole(model: ModelSpace, first: number, n: number): ModelError {
  for (let i = first; i < first + n; i++) if (!model.pages[i]) return { code: 'EINVAL', address: (BASE_PAGE + i) * PAGE };
  throw new Error('no hole');
}

/** After a sequence: every readable page of every space holds exactly the model's bytes. */
async function sweep(run: Run): Promise<void> {
  for (let s = 0; s < run.spaces.length; s++) {
    const model = run.models[s]!;
    for (let i = 0; i < WINDOW_PAGES; i++) {
      const p = model.pages[i];
      if (!p || p.prot === 'none' || model.poisoned.has(i)) continue;
      const va = BASE_VA + i * PAGE;
      sameRead(`sweep mm${s} page ${i}`, model, va, await run.spaces[s]!.read(va, PAGE));
    }
  }
}

/** One sequence against a fresh system; throws at the first mismatch, naming the operation. */
async function runSequence(ops: readonly Op[]): Promise<void> {
  // a tiny first device (eviction all the time) and a roomier second one
  const sys = await createSystem({
    systemRamBytes: 2 << 20,
    devices: [{ memoryBytes: 12 * PAGE, evictionBytes: 4096, faultBufferPages: 2 }, { memoryBytes: 64 * PAGE }],
  });
  try {
    const run: Run = {
      spaces: [sys.createAddressSpace()],
      models: [new ModelSpace()],
      devices: sys.devices,
      kernels: [],
      mirrors: new Map(),
      pins: [],
      scratch: () => sys.createAddressSpace(),
      ram: sys.ram,
      ops: 0,
    };
    for (const d of sys.devices) run.kernels.push(await d.createKernel({ code: ADD_KERNEL, workgroupSize: 64, label: 'fuzz add' }));
    for (const [k, o] of ops.entries()) {
      const what = `op ${k} ${JSON.stringify(o)}`;
      if (LOG) console.log(`[fuzz] ${what}`);
      try {
        await step(run, o);
      } catch (e) {
        if (e instanceof Error) e.message = `${what}: ${e.message}`;
        throw e;
      }
      await quiesce(run.spaces); // write-backs an unmapping started hold their frames until they land
      checkAccounting(run.spaces, sys.ram, run.devices, what);
      for (const mm of run.spaces) for (const dev of run.devices) if (!isLost(dev)) await checkSnapshotAgreement(mm, dev, what);
    }
    await sweep(run);
    // every pin let go, the frames they kept for their pinners (unmapped since) are freed
    for (const h of run.pins.splice(0)) h.unpin();
    sys.ram.reap();
    expect(deferredFrames(sys.ram), 'RAM frames still deferred after every pin was let go').toEqual([]);
    checkAccounting(run.spaces, sys.ram, run.devices, 'the last unpin');
    totalOps += run.ops;
  } catch (e) {
    try {
      sys.destroy();
    } catch {
      // the first failure is the one to report; teardown after it may fail too
    }
    throw e;
  }
  sys.destroy();
}

/**
 * FUZZ_REPLAY=<file>: run the operations in a JSON file (a counterexample as fast-check prints
 * it, `{__proto__:null,` edited to `{`) once; with FUZZ_MINIMISE also drop operations one chunk
 * at a time while the failure stays the same kind (its message up to the first digit), and
 * print the shortest sequence found: faster than fast-check's shrinking for long sequences.
 */
async function replay(file: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  let ops = JSON.parse(readFileSync(file, 'utf8')) as Op[];
  const failureOf = async (list: readonly Op[]): Promise<string | null> => {
    try {
      await runSequence(list);
      return null;
    } catch (e) {
      return String((e as Error).message);
    }
  };
  const first = await failureOf(ops);
  if (!first || process.env.FUZZ_MINIMISE === undefined) {
    if (first) throw new Error(first);
    return;
  }
  const kind = (m: string): string => m.replace(/^op \d+ \{[^}]*\}: /, '').split(/[0-9]/)[0]!;
  const want = kind(first);
  for (let chunk = Math.ceil(ops.length / 2); chunk >= 1; chunk = Math.floor(chunk / 2))
    for (let at = 0; at < ops.length; ) {
      const shorter = [...ops.slice(0, at), ...ops.slice(at + chunk)];
      const f = await failureOf(shorter);
      if (f && kind(f) === want) ops = shorter;
      else at += chunk;
    }
  console.log(`[fuzz] minimised to ${ops.length} operations:\n${JSON.stringify(ops)}\n${await failureOf(ops)}`);
  throw new Error(`minimised: ${JSON.stringify(ops)}`);
}

describe('differential fuzzing against the model', () => {
  it(`${RUNS} random sequences of up to ${OPS} operations match the model byte for byte, error for error`, async () => {
    if (process.env.FUZZ_REPLAY) return replay(process.env.FUZZ_REPLAY);
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: Math.ceil(OPS / 2), maxLength: OPS }), (ops) => runSequence(ops)),
      { numRuns: RUNS, seed: SEED, path: process.env.FUZZ_PATH, endOnFailure: process.env.FUZZ_SHRINK === undefined, verbose: 1 },
    );
  });
});
