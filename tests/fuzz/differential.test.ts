// Differential fuzzing on the real adapter: random sequences of CPU reads and writes (main
// thread and a worker), device reads and writes, kernels, migrations both ways, eviction under
// a tiny device, munmap, mprotect, fork, exclusive access, release and device loss, run against
// the plain model in model.ts. Every byte read and every error (code, and address where the contract
// fixes it) must match. A failure prints the seed and path; replay (and shrink) it with
//   FUZZ_SEED=<seed> FUZZ_PATH=<path> FUZZ_SHRINK=1 npm run fuzz
// CI runs a bounded budget; `npm run fuzz` runs longer (FUZZ_RUNS, FUZZ_OPS to change it).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSystem, HmmError, type AddressSpace, type HmmDevice, type HmmKernel, type Mirror } from '../../src/index.ts';
import { spawnThread, threadHandle, type SpawnedThread } from '../../src/workers/threads.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import type { MemWorker } from '../workers/memWorker.ts';
import { ADD_KERNEL, bytesOf, checkAccounting, diffAt, isLost, outcome } from './harness.ts';
import { BASE_PAGE, BASE_VA, ModelSpace, PAGE, WINDOW_PAGES, type ModelError, type Prot } from './model.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 6);
const OPS = Number(process.env.FUZZ_OPS ?? 60);
const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : undefined;
const MAX_SPACES = 3;

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
  | { op: 'lose'; d: number; roll: number };

const first = fc.integer({ min: 0, max: WINDOW_PAGES - 1 });
const pages = fc.integer({ min: 1, max: 6 });
const space = fc.nat(MAX_SPACES - 1);
const device = fc.nat(1);
const prot = fc.constantFrom<Prot>('rw', 'rw', 'rw', 'r', 'none');

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('mmap' as const), s: space, first, n: fc.integer({ min: 1, max: 12 }), prot, shared: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('munmap' as const), s: space, first, n: pages }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('mprotect' as const), s: space, first, n: pages, prot }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('read' as const), s: space, first, off: fc.nat(PAGE - 1), len: fc.integer({ min: 1, max: 3 * PAGE }), worker: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('write' as const), s: space, first, off: fc.nat(PAGE - 1), len: fc.integer({ min: 1, max: 3 * PAGE }), seed: fc.nat(255), worker: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('gpuRead' as const), s: space, d: device, first, n: pages }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('gpuWrite' as const), s: space, d: device, first, n: pages, seed: fc.nat(255) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('kernel' as const), s: space, d: device, first, n: fc.integer({ min: 1, max: 3 }), add: fc.integer({ min: 1, max: 1000 }), validated: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('toDevice' as const), s: space, d: device, first, n: pages }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('toSystem' as const), s: space, d: device, first, n: pages }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('exclusive' as const), s: space, d: device, first, n: pages }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), d: device }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fork' as const), s: space }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('lose' as const), d: device, roll: fc.nat(2) }) },
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
  ops: number;
}

let worker: SpawnedThread<MemWorker>;
let totalOps = 0;
/** Devices lost, and pages that became EPOISON with them (the model then checked every touch). */
let losses = 0;
let poisonedPages = 0;

beforeAll(async () => {
  worker = await spawnThread<MemWorker>(new URL('../workers/memWorker.ts', import.meta.url));
}, 60_000);
afterAll(async () => {
  await worker.terminate();
  console.log(`[fuzz] ${totalOps} operations checked against the model; ${losses} devices lost, ${poisonedPages} pages poisoned with them`);
});

function sameError(what: string, got: HmmError | null, want: ModelError | null, codeOnly = false): void {
  const g = got ? { code: got.code, address: codeOnly ? undefined : got.address } : null;
  const w = want ? { code: want.code, address: codeOnly ? undefined : want.address } : null;
  if (w && w.address === undefined && g) delete g.address;
  expect(g, `${what}: ${got?.message ?? 'no error'}`).toEqual(w);
}

function sameBytes(what: string, got: Uint8Array, want: Uint8Array): void {
  const at = diffAt(got, want);
  expect(at, `${what}: first differing byte at +${at} (got ${got[at]}, want ${want[at]})`).toBe(-1);
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
      if (!want) sameBytes('read', r.value!, model.read(va, len));
      return;
    }
    case 'write': {
      const va = BASE_VA + o.first * PAGE + o.off;
      const len = Math.min(o.len, BASE_VA + WINDOW_PAGES * PAGE - va);
      const data = bytesOf(len, o.seed);
      await worker.api.attach(threadHandle(mm));
      const r = await outcome(() => (o.worker ? worker.api.store(va, data) : mm.write(va, data)));
      const want = model.accessError(va, len, true) ?? model.poisonError(va, len);
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
      if (!want) sameBytes('gpuRead', r.value!.data, model.read(va, n * PAGE));
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
      } else expect(model.all(va, n * PAGE, (p) => !p?.shared), 'toDevice moved a shared page').toBe(true);
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
      sameBytes(`sweep mm${s} page ${i}`, await run.spaces[s]!.read(va, PAGE), model.read(va, PAGE));
    }
  }
}

describe('differential fuzzing against the model', () => {
  it(`${RUNS} random sequences of up to ${OPS} operations match the model byte for byte, error for error`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: Math.ceil(OPS / 2), maxLength: OPS }), async (ops) => {
        // a tiny first device (eviction all the time) and a roomier second one
        const sys = await createSystem({ systemRamBytes: 2 << 20, devices: [{ memoryBytes: 12 * PAGE, evictionBytes: 4096 }, { memoryBytes: 64 * PAGE }] });
        try {
          const run: Run = { spaces: [sys.createAddressSpace()], models: [new ModelSpace()], devices: sys.devices, kernels: [], mirrors: new Map(), ops: 0 };
          for (const d of sys.devices) run.kernels.push(await d.createKernel({ code: ADD_KERNEL, workgroupSize: 64, label: 'fuzz add' }));
          for (const o of ops) {
            await step(run, o);
            checkAccounting(run.spaces, sys.ram, run.devices, JSON.stringify(o));
          }
          await sweep(run);
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
      }),
      { numRuns: RUNS, seed: SEED, path: process.env.FUZZ_PATH, endOnFailure: process.env.FUZZ_SHRINK === undefined, verbose: 1 },
    );
  });
});
