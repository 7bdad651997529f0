// Linearizability checking for the concurrent fuzzer (tests/fuzz/concurrent.test.ts), in the
// manner of Knossos and Porcupine, against the plain model (model.ts). Pure: no GPU, no system,
// so tests/unit/linearize.test.ts runs it in milliseconds.
//
// What is checked. The fuzzer starts every operation of a batch in one synchronous turn and
// awaits them all, so every order of them is consistent with real time: the batch is correct if
// SOME order of its operations, run on the model, gives every observed result (bytes read, the
// old value of an atomic add, success, or the error code and, where the contract fixes it, the
// address). Two concurrent writes to the same bytes may leave either value, so the checker
// keeps the SET of model states ("worlds") consistent with everything observed so far,
// identical worlds merged by a hash, and checks the next batch from each of them.
//
// Per-page atomicity (DESIGN §5, invariant 7 is per page). An operation is cut into atoms, one
// per page it touches (a copy kernel's source and destination page together), plus one for its
// whole-operation checks (device lost, address space destroyed, a lost device's effect). Atoms
// of one operation may land at different points of the order: a multi-page read may see one
// page before a concurrent write and the next one after; a kernel's adds to different pages
// need not happen at one point. A failed operation must fail as the model says at the point
// each atom lands: the error the system reports is the least of its atoms' errors (by check
// order, then by address), and some atom must produce exactly it (its witness).
//
// Cheap where sound. Atoms on disjoint pages commute, so each connected group of atoms (sharing
// a page, or a device-lost / address-space-alive flag that the batch changes) is searched on
// its own, and the worlds are the products of the groups' results. Inside a group: depth-first
// over orders, memoised on (atoms done, witnesses found, world hash), and an atom that changes
// nothing (a read, a check) is taken as soon as it is consistent, which loses no order.
//
// What the fuzzer keeps out of batches so that the model is exact (it does not check them):
// - racing plain CPU accesses from different threads to the same bytes (a data race on a
//   SharedArrayBuffer: bytes may tear; the library does not serialise CPU threads);
// - a munmap / mprotect / mmap / destroy / device loss over the pages of an operation that
//   writes, in the same batch: a kernel or device write that fails part way has done some of
//   its stores and not others, which the model does not enumerate. So every writing operation
//   that fails here has changed nothing (its error is decided by the layout at batch start).
// - two layout changes of one address space on the same pages, fork beside a layout change of
//   its parent, and more than one fork per batch: the layout (which pages are mapped, how) is
//   then the same in every world, and the fuzzer generates the next batch from it. Layout
//   changes are mmap, munmap, mprotect, mremap (its footprint is its old range, any growth and
//   its target) and advise (it splits and merges VMAs, which decides mremap's EFAULT; writers
//   may share its pages).
// - madvise 'dontneed' and 'free' drop data: they follow the rules of a layout change (no writer,
//   no other layout change or data drop on their pages, no fork of their space beside them).
//   Each is one atom per page (the system changes a page in one turn after waiting for held
//   copies): 'dontneed' makes a private page demand-zero and leaves a shared one; 'free' is
//   TWO possible worlds per page, kept or dropped (a device-private page is dropped at the call,
//   one in RAM only when RAM runs short). The concurrent fuzzer's RAM never runs short (it checks
//   that no reclaim was ever asked for), so a page 'free' kept stays kept, and reads after the
//   batch pick the world. 'free' is kept off poisoned pages (dropped or still poisoned depends
//   on where the page was). 'willneed' changes nothing but brings pages home (EPOISON).
// - mremap is one atom over its whole footprint: it moves its entries in one turn (after its
//   waits), so a read of one of its pages sees the page before or after it, never between;
//   it is generated only where it stays inside the window (no MREMAP_MAYMOVE move that would
//   leave it, no argument errors: the sequential fuzzer covers those).
// - pin and unpin change no data: pins only refuse migration (toDevice's ENOENT, always
//   accepted) and keep frames for their holders after munmap (the accounting counts those).
//   A pin is checked per page (EFAULT for holes and prot none, EPOISON for a long-term pin).
// A device loss is modelled from what is observed after the batch: the pages that became
// EPOISON (the fuzzer checks that set against the page tables before the loss separately).
// EBUSY and ENOMEM are never expected: contention slows work down, it does not stop it.

import { BASE_VA, ModelSpace, PAGE, WINDOW_PAGES, sharedElsewhereIn, type MadviseKind, type Page, type PlacementAdvice, type Prot } from './model.ts';

export type Thread = 'main' | 'w0' | 'w1';

/** One operation of a batch, in model terms (window page indices, byte VAs for CPU accesses). */
export type Op =
  /** mm.read (main) or a worker's load. */
  | { kind: 'read'; s: number; va: number; len: number; thread: Thread }
  /** mm.write (main) or a worker's store. */
  | { kind: 'write'; s: number; va: number; data: Uint8Array; thread: Thread }
  /** A worker's atomicAddU32 at a 4-byte aligned va; returns the old value. */
  | { kind: 'atomicAdd'; s: number; va: number; value: number; thread: Thread }
  /** m.read of n pages. */
  | { kind: 'gpuRead'; s: number; d: number; first: number; n: number }
  /** m.write of whole pages (data.length / PAGE of them). */
  | { kind: 'gpuWrite'; s: number; d: number; first: number; data: Uint8Array }
  /** ADD_KERNEL over n pages. */
  | { kind: 'kernelAdd'; s: number; d: number; first: number; n: number; add: number; validated: boolean }
  /** COPY_KERNEL: n pages from src to dst (disjoint), each word plus add. */
  | { kind: 'kernelCopy'; s: number; d: number; src: number; dst: number; n: number; add: number; validated: boolean }
  | { kind: 'toDevice' | 'toSystem' | 'exclusive'; s: number; d: number; first: number; n: number }
  | { kind: 'release'; d: number }
  | { kind: 'mmap'; s: number; first: number; n: number; prot: Prot; shared: boolean }
  | { kind: 'munmap'; s: number; first: number; n: number }
  | { kind: 'mprotect'; s: number; first: number; n: number; prot: Prot }
  /**
   * mm.advise: changes no bytes, but splits and merges VMAs (which decides mremap's EFAULT), so
   * the model keeps its fields per page (Page.advice); `advice` names it in reports.
   */
  | { kind: 'advise'; s: number; first: number; n: number; advice: string; fields: PlacementAdvice }
  /** mm.mremap of [first, first+oldN) to newN pages: in place, or MREMAP_FIXED to `to` (always inside the window). */
  | { kind: 'mremap'; s: number; first: number; oldN: number; newN: number; to?: number; mayMove?: boolean; dontUnmap?: boolean }
  | { kind: 'madvise'; s: number; first: number; n: number; advice: MadviseKind }
  /** mm.pin of [va, va+len); changes no data. The handle is kept for a later unpin. */
  | { kind: 'pin'; s: number; va: number; len: number; longterm: boolean }
  /** unpin() of a pin handle taken in an earlier batch (`handle` numbers it in reports). */
  | { kind: 'unpin'; handle: number }
  /** mm.fork(); the child becomes space number (spaces before the batch). */
  | { kind: 'fork'; s: number }
  /** destroy() of a forked address space. */
  | { kind: 'destroy'; s: number }
  /** Real device loss (GPUDevice.destroy()). */
  | { kind: 'lose'; d: number };

export type Outcome = { ok: true; bytes?: Uint8Array; value?: number } | { ok: false; code: string; address?: number; message?: string };

export interface Observation {
  op: Op;
  outcome: Outcome;
  /** lose: the (space, window page) pairs that were not EPOISON before the batch and are after it. */
  poisoned?: readonly (readonly [number, number])[];
}

/** One model state: every address space of the run (by index), whether it is alive, and which devices are lost. */
export interface World {
  spaces: ModelSpace[];
  alive: boolean[];
  lost: boolean[];
}

export function initialWorld(devices: number): World {
  return { spaces: [new ModelSpace()], alive: [true], lost: new Array<boolean>(devices).fill(false) };
}

export function cloneWorld(w: World): World {
  return { spaces: ModelSpace.cloneAll(w.spaces), alive: [...w.alive], lost: [...w.lost] };
}

/** The world without space s (the fuzzer forgets destroyed address spaces after their batch). */
export function dropSpace(w: World, s: number): World {
  const c = cloneWorld(w);
  c.spaces.splice(s, 1);
  c.alive.splice(s, 1);
  return c;
}

// ------------------------------------------------------------------ hashing

const hashes = new WeakMap<Uint8Array, string>();

/** A 64-bit content hash of a page's bytes (two 32-bit hashes), cached per array. */
function bytesHash(b: Uint8Array): string {
  let h = hashes.get(b);
  if (h !== undefined) return h;
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  const words = new Uint32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
  for (let i = 0; i < words.length; i++) {
    const x = words[i]!;
    h1 = Math.imul(h1 ^ x, 0x01000193);
    h2 = Math.imul(h2 ^ ((x << 7) | (x >>> 25)), 0x5bd1e995) ^ (h2 >>> 13);
  }
  h = `${(h1 >>> 0).toString(36)}.${(h2 >>> 0).toString(36)}`;
  hashes.set(b, h);
  return h;
}

/**
 * A key equal for equal worlds, over `pages` (default all) and the flags. Which spaces share a
 * page's data object (a shared mapping across fork) is part of it.
 */
export function worldKey(w: World, pages?: Iterable<number>): string {
  const parts: string[] = [w.alive.map((a) => (a ? 'A' : 'd')).join('') + w.lost.map((l) => (l ? 'L' : 'l')).join('')];
  const list = pages ?? Array.from({ length: WINDOW_PAGES }, (_, i) => i);
  for (const i of list) {
    const seen: object[] = [];
    let row = `${i}:`;
    w.spaces.forEach((m) => {
      const p = m.pages[i];
      if (!p) return void (row += '-,');
      let ref = seen.indexOf(p.data);
      if (ref < 0) ref = seen.push(p.data) - 1;
      row += `${p.prot}${p.shared ? 's' : 'p'}${ref}${m.poisoned.has(i) ? '!' : ''}${p.advice ?? ''}${p.free ?? ''}${bytesHash(p.data.bytes)},`;
    });
    parts.push(row);
  }
  return parts.join('|');
}

/** What the fuzzer generates from: mapping, prot, shared and poison of each page, per space. */
export function layoutKey(w: World): string {
  return (
    w.spaces
      .map(
        (m, s) =>
          `${w.alive[s] ? '' : 'dead'}${m.pages.map((p, i) => (p ? `${p.prot}${p.shared ? 's' : ''}${m.poisoned.has(i) ? '!' : ''}${p.advice ?? ''}` : '-')).join(',')}`,
      )
      .join('/') + w.lost.map((l) => (l ? 'L' : 'l')).join('')
  );
}

// ------------------------------------------------------------------ errors and their order

/** Check order: the earlier check decides when several fail (then the lower address). */
const R_DEVLOST = 0; // device ops: the device is lost
const R_DEAD = 1; // the address space was destroyed
const R_ACCESS = 2; // a page unmapped, prot 'none', read-only for a write, a hole for mprotect/advise/madvise, mremap's EFAULT / ENOMEM
const R_SHARED = 3; // makeExclusive on a shared mapping, madvise 'free' on one
const R_POISON = 4; // the page's data went with a lost device
const R_NOTMOVED = 5; // migrateToDevice: a page that cannot be on this device afterwards (ENOENT)

interface Err {
  rank: number;
  code: string;
  /** Undefined where the contract fixes only the code. */
  address?: number;
}

const pageVa = (i: number): number => BASE_VA + i * PAGE;

/** Window pages an mremap reads or changes: its old range and any growth, and a fixed target. */
export function remapFootprint(op: Extract<Op, { kind: 'mremap' }>): number[] {
  const span = (first: number, n: number): number[] => Array.from({ length: Math.max(0, Math.min(n, WINDOW_PAGES - first)) }, (_, k) => first + k);
  const pages = op.to === undefined ? span(op.first, Math.max(op.oldN, op.newN)) : [...span(op.first, op.oldN), ...span(op.to, op.newN)];
  return [...new Set(pages)];
}
const isDeviceOp = (op: Op): op is Extract<Op, { d: number }> => 'd' in op && op.kind !== 'lose';
const isKernel = (op: Op): op is Extract<Op, { kind: 'kernelAdd' | 'kernelCopy' }> => op.kind === 'kernelAdd' || op.kind === 'kernelCopy';

/** The error the system reported, placed in the check order; null when no model state could produce it. */
function observedErr(op: Op, code: string, address: number | undefined): Err | null {
  if (code === 'EDEVLOST') return isDeviceOp(op) ? { rank: R_DEVLOST, code } : null;
  const kernel = isKernel(op);
  switch (code) {
    case 'EINVAL':
      if ((op.kind === 'toDevice' || op.kind === 'toSystem') && address !== undefined) return { rank: R_ACCESS, code, address };
      if ((op.kind === 'exclusive' || op.kind === 'madvise') && address !== undefined) return { rank: R_SHARED, code, address };
      // mremap: a shared page a fork relative also maps does not move (the model's mremap says when)
      if (op.kind === 'mremap' && address !== undefined) return { rank: R_ACCESS, code, address };
      return op.kind === 'release' || op.kind === 'lose' || op.kind === 'unpin' ? null : { rank: R_DEAD, code };
    case 'EFAULT':
    case 'EPERM':
      if (kernel) return { rank: R_ACCESS, code };
      if (['read', 'write', 'atomicAdd', 'gpuRead', 'gpuWrite', 'exclusive'].includes(op.kind)) return { rank: R_ACCESS, code, address };
      if (code === 'EFAULT' && (op.kind === 'mremap' || op.kind === 'pin')) return { rank: R_ACCESS, code, address };
      return null;
    case 'ESEGV':
      return kernel && !op.validated ? { rank: R_ACCESS, code } : null;
    case 'ENOMEM':
      return ['mprotect', 'advise', 'madvise', 'mremap'].includes(op.kind) ? { rank: R_ACCESS, code, address } : null;
    case 'EPOISON':
      if (kernel || op.kind === 'fork') return { rank: R_POISON, code };
      if (['read', 'write', 'atomicAdd', 'gpuRead', 'gpuWrite', 'exclusive', 'pin', 'madvise'].includes(op.kind)) return { rank: R_POISON, code, address };
      return null;
    case 'ENOENT':
      return op.kind === 'toDevice' ? { rank: R_NOTMOVED, code } : null;
    default:
      return null; // EBUSY, ENOMEM elsewhere, ...: never expected
  }
}

/**
 * How an atom whose own error is `e` fits an observed error `o`: 'reject' when the observed
 * error could not be the least one, else whether it is the witness (produces exactly `o`).
 */
function fitsError(e: Err | null, o: Err): 'reject' | 'witness' | 'accept' {
  if (!e || e.rank > o.rank) return 'accept';
  if (e.rank < o.rank) return 'reject';
  if (o.address === undefined || e.address === undefined) return e.code === o.code ? 'witness' : 'accept';
  if (e.address < o.address) return 'reject';
  if (e.address > o.address) return 'accept';
  return e.code === o.code ? 'witness' : 'reject';
}

// ------------------------------------------------------------------ atoms

interface Atom {
  /** Index of its operation in the batch. */
  op: number;
  /** Component keys: 'p<i>' for window page i, 'dev<d>' / 'alive<s>' for flags. */
  keys: string[];
  /** Never changes a world (reads and checks; every atom of a failed operation). */
  effectFree: boolean;
  /** null: inconsistent with the observation in world w. Else the world after it (w itself when unchanged). */
  run(w: World): { world: World; witness: boolean } | null;
  /** Where the contract allows several effects (madvise 'free'): every world it may leave; solve() tries each. */
  runAll?(w: World): { world: World; witness: boolean }[];
  /** For reports: what it is. */
  what: string;
}

/** One unit of an operation: the pages one atom covers (a copy kernel's src and dst page). */
interface Unit {
  pages: number[];
}

interface Spec {
  units: Unit[];
  /** Flags the whole-operation atom reads ('dev<d>', 'alive<s>'). */
  globals: string[];
  opErr(w: World): Err | null;
  unitErr(w: World, u: Unit): Err | null;
  /** Success: does the observed result match this unit in w? */
  unitCheck?(w: World, u: Unit): boolean;
  /** Success: the unit's effect, on a copy of the world. */
  unitEffect?(w: World, u: Unit): void;
  /** Success, where the contract allows several effects (madvise 'free'): each, on its own copy of the world. */
  unitBranches?: ((w: World, u: Unit) => void)[];
  opEffect?(w: World): void;
}

function accessErr(m: ModelSpace, i: number, write: boolean, at: number, code = 'EFAULT'): Err | null {
  const p = m.pages[i];
  if (!p || p.prot === 'none') return { rank: R_ACCESS, code, address: at };
  if (write && p.prot === 'r') return { rank: R_ACCESS, code: code === 'EFAULT' ? 'EPERM' : code, address: at };
  return null;
}

function poisonErr(m: ModelSpace, i: number, codeOnly = false): Err | null {
  return m.poisoned.has(i) ? { rank: R_POISON, code: 'EPOISON', address: codeOnly ? undefined : pageVa(i) } : null;
}

const range = (first: number, n: number): Unit[] => Array.from({ length: n }, (_, k) => ({ pages: [first + k] }));

/** The words of a page plus `add`, as new bytes. */
function plus(bytes: Uint8Array, add: number): Uint8Array {
  const out = bytes.slice();
  const w = new Uint32Array(out.buffer);
  for (let k = 0; k < w.length; k++) w[k] = (w[k]! + add) >>> 0;
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The part of [va, va+len) in window page i: byte offset into the access and length. */
function partIn(va: number, len: number, i: number): { at: number; from: number; n: number } {
  const from = Math.max(va, pageVa(i));
  const to = Math.min(va + len, pageVa(i) + PAGE);
  return { at: from - va, from, n: to - from };
}

const windowPages = (va: number, len: number): number[] => {
  const first = ModelSpace.index(va);
  const last = ModelSpace.index(va + len - 1);
  return Array.from({ length: last - first + 1 }, (_, k) => first + k);
};

function specOf(ob: Observation, batchIndexOfChild: number): Spec {
  const op = ob.op;
  const res = ob.outcome;
  const dead =
    (s: number) =>
    (w: World): Err | null =>
      w.alive[s] ? null : { rank: R_DEAD, code: 'EINVAL' };
  const device =
    (d: number, s?: number) =>
    (w: World): Err | null =>
      w.lost[d] ? { rank: R_DEVLOST, code: 'EDEVLOST' } : s === undefined ? null : dead(s)(w);
  const space = (w: World, s: number): ModelSpace => w.spaces[s]!;
  const liveSpaces = (w: World): (ModelSpace | null)[] => w.spaces.map((m, j) => (w.alive[j] ? m : null));
  switch (op.kind) {
    case 'read':
    case 'write':
    case 'atomicAdd': {
      const len = op.kind === 'read' ? op.len : op.kind === 'write' ? op.data.length : 4;
      const write = op.kind !== 'read';
      return {
        units: windowPages(op.va, len).map((i) => ({ pages: [i] })),
        globals: [`alive${op.s}`],
        opErr: dead(op.s),
        unitErr: (w, u) => {
          const m = space(w, op.s);
          const i = u.pages[0]!;
          return accessErr(m, i, write, Math.max(op.va, pageVa(i))) ?? poisonErr(m, i);
        },
        unitCheck: (w, u) => {
          const i = u.pages[0]!;
          const { at, from, n } = partIn(op.va, len, i);
          if (op.kind === 'read') return res.ok && !!res.bytes && sameBytes(res.bytes.subarray(at, at + n), space(w, op.s).read(from, n));
          if (op.kind === 'atomicAdd') return res.ok && res.value === new Uint32Array(space(w, op.s).read(op.va, 4).slice().buffer)[0];
          return true;
        },
        unitEffect:
          op.kind === 'read'
            ? undefined
            : (w, u) => {
                const m = space(w, op.s);
                if (op.kind === 'atomicAdd') {
                  m.addWords(op.va, 1, op.value);
                  return;
                }
                const { at, from, n } = partIn(op.va, len, u.pages[0]!);
                m.write(from, op.data.subarray(at, at + n));
              },
      };
    }
    case 'gpuRead':
    case 'gpuWrite': {
      const n = op.kind === 'gpuRead' ? op.n : op.data.length / PAGE;
      const write = op.kind === 'gpuWrite';
      return {
        units: range(op.first, n),
        globals: [`dev${op.d}`, `alive${op.s}`],
        opErr: device(op.d, op.s),
        unitErr: (w, u) => {
          const m = space(w, op.s);
          const i = u.pages[0]!;
          return accessErr(m, i, write, pageVa(i)) ?? poisonErr(m, i);
        },
        unitCheck: (w, u) => {
          if (write) return true;
          const k = u.pages[0]! - op.first;
          return res.ok && !!res.bytes && sameBytes(res.bytes.subarray(k * PAGE, (k + 1) * PAGE), space(w, op.s).read(pageVa(u.pages[0]!), PAGE));
        },
        unitEffect: write
          ? (w, u) => {
              const k = u.pages[0]! - op.first;
              space(w, op.s).write(pageVa(u.pages[0]!), op.data.subarray(k * PAGE, (k + 1) * PAGE));
            }
          : undefined,
      };
    }
    case 'kernelAdd':
    case 'kernelCopy': {
      const segv = op.validated ? 'EFAULT' : 'ESEGV';
      const kernelErr = (m: ModelSpace, i: number, write: boolean): Err | null => {
        const p = m.pages[i];
        if (!p || p.prot === 'none') return { rank: R_ACCESS, code: segv };
        if (write && p.prot === 'r') return { rank: R_ACCESS, code: 'EPERM' };
        return poisonErr(m, i, true);
      };
      const units = op.kind === 'kernelAdd' ? range(op.first, op.n) : Array.from({ length: op.n }, (_, k) => ({ pages: [op.src + k, op.dst + k] }));
      return {
        units,
        globals: [`dev${op.d}`, `alive${op.s}`],
        opErr: device(op.d, op.s),
        unitErr: (w, u) => {
          const m = space(w, op.s);
          if (op.kind === 'kernelAdd') return kernelErr(m, u.pages[0]!, true);
          const a = kernelErr(m, u.pages[0]!, false);
          const b = kernelErr(m, u.pages[1]!, true);
          return !a ? b : !b ? a : a.rank <= b.rank ? a : b;
        },
        unitEffect: (w, u) => {
          const m = space(w, op.s);
          if (op.kind === 'kernelAdd') return void m.addWords(pageVa(u.pages[0]!), PAGE / 4, op.add);
          m.write(pageVa(u.pages[1]!), plus(m.read(pageVa(u.pages[0]!), PAGE), op.add));
        },
      };
    }
    case 'toDevice':
    case 'toSystem':
    case 'exclusive':
      return {
        units: range(op.first, op.n),
        globals: [`dev${op.d}`, `alive${op.s}`],
        opErr: device(op.d, op.s),
        unitErr: (w, u) => {
          const m = space(w, op.s);
          const i = u.pages[0]!;
          const p = m.pages[i];
          if (op.kind === 'toSystem') return p ? null : { rank: R_ACCESS, code: 'EINVAL', address: pageVa(i) };
          if (op.kind === 'toDevice') {
            if (!p || p.prot === 'none') return { rank: R_ACCESS, code: 'EINVAL', address: pageVa(i) };
            return p.shared || m.poisoned.has(i) ? { rank: R_NOTMOVED, code: 'ENOENT' } : null;
          }
          const bad = accessErr(m, i, true, pageVa(i));
          if (bad) return bad;
          if (p!.shared) return { rank: R_SHARED, code: 'EINVAL', address: pageVa(i) };
          return poisonErr(m, i);
        },
      };
    case 'release':
      return { units: [], globals: [`dev${op.d}`], opErr: device(op.d), unitErr: () => null };
    case 'mmap':
    case 'munmap':
    case 'mprotect':
    case 'advise':
      return {
        units: range(op.first, op.n),
        globals: [`alive${op.s}`],
        opErr: dead(op.s),
        unitErr: (w, u) =>
          (op.kind === 'mprotect' || op.kind === 'advise') && !space(w, op.s).pages[u.pages[0]!]
            ? { rank: R_ACCESS, code: 'ENOMEM', address: pageVa(u.pages[0]!) }
            : null,
        unitEffect: (w, u) => {
          const m = space(w, op.s);
          const i = u.pages[0]!;
          if (op.kind === 'mmap') m.mmap(i, 1, op.prot, op.shared);
          else if (op.kind === 'munmap') m.munmap(i, 1);
          else if (op.kind === 'mprotect') m.mprotect(i, 1, op.prot);
          else m.advise(i, 1, op.fields);
        },
      };
    case 'mremap': {
      // one unit over the whole footprint: the move happens in one turn (see the header)
      const opts = { to: op.to, mayMove: op.mayMove, dontUnmap: op.dontUnmap };
      return {
        units: [{ pages: remapFootprint(op) }],
        globals: [`alive${op.s}`],
        opErr: dead(op.s),
        unitErr: (w) => {
          const e = ModelSpace.cloneAll([space(w, op.s)])[0]!.mremap(op.first, op.oldN, op.newN, {
            ...opts,
            sharedElsewhere: sharedElsewhereIn(liveSpaces(w), op.s),
          }).error;
          return e ? { rank: R_ACCESS, code: e.code, address: e.address } : null;
        },
        unitEffect: (w) => void space(w, op.s).mremap(op.first, op.oldN, op.newN, { ...opts, sharedElsewhere: sharedElsewhereIn(liveSpaces(w), op.s) }),
      };
    }
    case 'madvise': {
      const drop = (w: World, u: Unit): void => void space(w, op.s).madvise(u.pages[0]!, 1, 'dontneed');
      return {
        units: range(op.first, op.n),
        globals: [`alive${op.s}`],
        opErr: dead(op.s),
        unitErr: (w, u) => {
          const m = space(w, op.s);
          const i = u.pages[0]!;
          const p = m.pages[i];
          if (!p) return { rank: R_ACCESS, code: 'ENOMEM', address: pageVa(i) };
          if (op.advice === 'free' && p.shared) return { rank: R_SHARED, code: 'EINVAL', address: pageVa(i) };
          return op.advice === 'willneed' ? poisonErr(m, i) : null;
        },
        // 'dontneed': private pages demand-zero, shared ones kept; 'free': kept, or dropped as 'dontneed' would
        unitEffect: op.advice === 'dontneed' ? drop : undefined,
        unitBranches: op.advice === 'free' ? [() => undefined, drop] : undefined,
      };
    }
    case 'pin':
      return {
        units: windowPages(op.va, op.len).map((i) => ({ pages: [i] })),
        globals: [`alive${op.s}`],
        opErr: dead(op.s),
        unitErr: (w, u) => {
          const m = space(w, op.s);
          const i = u.pages[0]!;
          return accessErr(m, i, false, Math.max(op.va, pageVa(i))) ?? (op.longterm ? poisonErr(m, i) : null);
        },
      };
    case 'unpin':
      return { units: [], globals: [], opErr: () => null, unitErr: () => null };
    case 'fork':
      return {
        units: range(0, WINDOW_PAGES),
        globals: [`alive${op.s}`],
        opErr: dead(op.s),
        unitErr: (w, u) => poisonErr(space(w, op.s), u.pages[0]!, true),
        // the child's page is the parent's as it is when this atom lands (see prelude())
        unitEffect: (w, u) => {
          const i = u.pages[0]!;
          const p: Page | null = space(w, op.s).pages[i] ?? null;
          space(w, batchIndexOfChild).pages[i] = p ? { ...p, data: p.shared ? p.data : { bytes: p.data.bytes } } : null;
        },
      };
    case 'destroy':
      return {
        units: range(0, WINDOW_PAGES),
        globals: [`alive${op.s}`],
        opErr: () => null,
        unitErr: () => null,
        unitEffect: (w, u) => space(w, op.s).munmap(u.pages[0]!, 1),
        opEffect: (w) => void (w.alive[op.s] = false),
      };
    case 'lose':
      return { units: [], globals: [`dev${op.d}`], opErr: () => null, unitErr: () => null, opEffect: (w) => void (w.lost[op.d] = true) };
  }
}

/** The child of a successful fork exists from the batch's start, empty; the fork's atoms fill it page by page. */
function prelude(w: World, batch: readonly Observation[]): World {
  const fork = batch.find((b) => b.op.kind === 'fork' && b.outcome.ok);
  if (!fork) return w;
  const c = cloneWorld(w);
  c.spaces.push(new ModelSpace());
  c.alive.push(true);
  return c;
}

function atomsOf(batch: readonly Observation[], childIndex: number): { atoms: Atom[]; needsWitness: number; unexpected: string[] } {
  const atoms: Atom[] = [];
  let needsWitness = 0;
  const unexpected: string[] = [];
  batch.forEach((ob, index) => {
    const op = ob.op;
    const spec = specOf(ob, childIndex);
    const res = ob.outcome;
    const o = res.ok ? null : observedErr(op, res.code, res.address);
    if (!res.ok && !o) {
      unexpected.push(
        `op ${index} ${describeOp(op)}: ${res.code}${res.address !== undefined ? ` at ${hex(res.address)}` : ''} is never a correct outcome here`,
      );
      return;
    }
    if (o && o.rank !== R_NOTMOVED) needsWitness |= 1 << index;
    const judge = (e: Err | null): 'reject' | 'witness' | 'accept' => (o ? fitsError(e, o) : e ? 'reject' : 'accept');
    const opEffect = res.ok ? spec.opEffect : undefined;
    atoms.push({
      op: index,
      keys: spec.globals,
      effectFree: !opEffect,
      what: `op ${index} ${op.kind} (whole-operation checks)`,
      run: (w) => {
        const j = judge(spec.opErr(w));
        if (j === 'reject') return null;
        if (!opEffect) return { world: w, witness: j === 'witness' };
        const c = cloneWorld(w);
        opEffect(c);
        return { world: c, witness: j === 'witness' };
      },
    });
    const unitEffect = res.ok ? spec.unitEffect : undefined;
    const branches = res.ok ? spec.unitBranches : undefined;
    for (const u of spec.units) {
      const run = (w: World): { world: World; witness: boolean }[] => {
        const j = judge(spec.unitErr(w, u));
        if (j === 'reject') return [];
        if (res.ok && spec.unitCheck && !spec.unitCheck(w, u)) return [];
        const effects = branches ?? (unitEffect ? [unitEffect] : []);
        if (effects.length === 0) return [{ world: w, witness: j === 'witness' }];
        return effects.map((effect) => {
          const c = cloneWorld(w);
          effect(c, u);
          return { world: c, witness: j === 'witness' };
        });
      };
      atoms.push({
        op: index,
        keys: u.pages.map((i) => `p${i}`),
        effectFree: !unitEffect && !branches,
        what: `op ${index} ${op.kind} page ${u.pages.join(op.kind === 'mremap' ? ',' : '->')}`,
        run: (w) => run(w)[0] ?? null,
        runAll: branches ? run : undefined,
      });
    }
    // A lost device's pages: each poisoned at some point of the order. (Not tied to the loss
    // itself: that would put every poisoned page in one group, whose orders grow as 2^pages,
    // for a constraint no observation here depends on; leaving it out only accepts more.)
    if (op.kind === 'lose')
      for (const [s, i] of ob.poisoned ?? [])
        atoms.push({
          op: index,
          keys: [`p${i}`],
          effectFree: false,
          what: `op ${index} lose: mm${s} page ${i} poisoned`,
          run: (w) => {
            const c = cloneWorld(w);
            c.spaces[s]!.poisoned.add(i);
            return { world: c, witness: false };
          },
        });
  });
  return { atoms, needsWitness, unexpected };
}

// ------------------------------------------------------------------ search

interface Component {
  atoms: Atom[];
  pages: number[];
  globals: string[];
}

/** Connected groups of atoms: sharing a page, or a flag some atom of the batch changes. */
function components(atoms: readonly Atom[]): Component[] {
  const written = new Set<string>();
  for (const a of atoms) if (!a.effectFree) for (const k of a.keys) if (!k.startsWith('p')) written.add(k);
  const parent = new Map<string, string>();
  const find = (k: string): string => {
    let r = k;
    while (parent.get(r) !== r) r = parent.get(r)!;
    parent.set(k, r);
    return r;
  };
  const add = (k: string): void => void (parent.has(k) || parent.set(k, k));
  const relevant = (a: Atom): string[] => a.keys.filter((k) => k.startsWith('p') || written.has(k));
  atoms.forEach((a, n) => {
    const own = `atom${n}`;
    add(own);
    for (const k of relevant(a)) {
      add(k);
      parent.set(find(k), find(own));
    }
  });
  const groups = new Map<string, Component>();
  atoms.forEach((a, n) => {
    const root = find(`atom${n}`);
    let g = groups.get(root);
    if (!g) groups.set(root, (g = { atoms: [], pages: [], globals: [] }));
    g.atoms.push(a);
    for (const k of relevant(a)) {
      if (k.startsWith('p')) {
        const i = Number(k.slice(1));
        if (!g.pages.includes(i)) g.pages.push(i);
      } else if (!g.globals.includes(k)) g.globals.push(k);
    }
  });
  return [...groups.values()];
}

interface Reached {
  world: World;
  /** Bit per batch operation: an atom of it produced its observed error. */
  witness: number;
}

export interface SearchLimits {
  /** Search nodes over the whole batch before giving up (a test infrastructure failure, not a verdict). */
  maxNodes: number;
  /** Worlds kept after a batch before giving up. */
  maxWorlds: number;
}

const DEFAULT_LIMITS: SearchLimits = { maxNodes: 200_000, maxWorlds: 4096 };

class SearchBudget extends Error {}

/**
 * Every (world, witnesses) the atoms of one component can end in from w, in some order.
 * `needsWitness`: bit per operation whose observed error some atom must produce.
 */
function solve(w: World, comp: Component, needsWitness: number, limits: SearchLimits, budget: { nodes: number }): Reached[] {
  const atoms = comp.atoms;
  const all = (1n << BigInt(atoms.length)) - 1n;
  const seen = new Set<string>();
  const out = new Map<string, Reached>();
  const visit = (world: World, done: bigint, witness: number): void => {
    // Atoms that change nothing and fit now go at once: moving such an atom earlier changes
    // no other atom's view. One that could still be its operation's missing witness later
    // waits (both choices are searched).
    for (let again = true; again; ) {
      again = false;
      atoms.forEach((a, n) => {
        const bit = 1n << BigInt(n);
        if (done & bit || !a.effectFree) return;
        const r = a.run(world);
        if (!r) return;
        if (!r.witness && !(witness & (1 << a.op)) && needsWitness & (1 << a.op)) return;
        done |= bit;
        if (r.witness) witness |= 1 << a.op;
        again = true;
      });
    }
    if (done === all) {
      const key = `${witness}|${worldKey(world, comp.pages)}`;
      if (!out.has(key)) out.set(key, { world, witness });
      return;
    }
    const key = `${done.toString(36)}|${witness}|${worldKey(world, comp.pages)}`;
    if (seen.has(key)) return;
    seen.add(key);
    if (++budget.nodes > limits.maxNodes) throw new SearchBudget();
    atoms.forEach((a, n) => {
      const bit = 1n << BigInt(n);
      if (done & bit) return;
      for (const r of a.runAll ? a.runAll(world) : [a.run(world)]) if (r) visit(r.world, done | bit, r.witness ? witness | (1 << a.op) : witness);
    });
  };
  visit(w, 0n, 0);
  return [...out.values()];
}

/** Copy the component's pages and flags from `from` into `into` (which is a private copy). */
function mergeInto(into: World, from: World, comp: Component): void {
  for (const i of comp.pages) {
    const copies = new Map<object, { bytes: Uint8Array }>();
    from.spaces.forEach((m, s) => {
      const p = m.pages[i];
      const target = into.spaces[s]!;
      if (!p) target.pages[i] = null;
      else {
        let d = copies.get(p.data);
        if (!d) copies.set(p.data, (d = { bytes: p.data.bytes }));
        target.pages[i] = { ...p, data: d };
      }
      if (m.poisoned.has(i)) target.poisoned.add(i);
      else target.poisoned.delete(i);
    });
  }
  for (const g of comp.globals) {
    if (g.startsWith('dev')) into.lost[Number(g.slice(3))] = from.lost[Number(g.slice(3))]!;
    else if (g.startsWith('alive')) into.alive[Number(g.slice(5))] = from.alive[Number(g.slice(5))]!;
  }
}

export type LinearizeResult =
  | { ok: true; worlds: World[]; nodes: number }
  | {
      ok: false;
      report: string;
      nodes: number;
      /** Not a verdict: the search ran out of budget. */
      budget?: boolean;
      /**
       * The batch left too many model states to keep: window pages whose value is still open.
       * Read them (one page per read, after the batch) and pass the reads as `probes`.
       */
      ambiguous?: number[];
    };

export interface LinearizeOptions extends Partial<SearchLimits> {
  /**
   * Single-page reads made one after another after the batch finished: they pick among the
   * batch's results page by page, before the states of different pages are multiplied out.
   */
  probes?: readonly Observation[];
}

/** Does a single operation that changes nothing (a probe read) give its observation on w? */
function fits(w: World, ob: Observation): boolean {
  const { atoms, needsWitness, unexpected } = atomsOf([ob], w.spaces.length);
  if (unexpected.length > 0) return false;
  let witness = 0;
  for (const a of atoms) {
    const r = a.run(w);
    if (!r || r.world !== w) return false;
    if (r.witness) witness |= 1;
  }
  return (witness & needsWitness) === needsWitness;
}

const probePage = (ob: Observation): number => (ob.op.kind === 'read' ? ModelSpace.index(ob.op.va) : 'first' in ob.op ? ob.op.first : -1);

/**
 * The worlds reachable from `worlds` by some order of the batch's atoms that gives every
 * observation; not ok (with a report) when there is none.
 */
export function linearize(worlds: readonly World[], batch: readonly Observation[], options: LinearizeOptions = {}): LinearizeResult {
  const lim: SearchLimits = { ...DEFAULT_LIMITS, ...options };
  const probes = options.probes ?? [];
  const budget = { nodes: 0 };
  const out = new Map<string, World>();
  const failures: string[] = [];
  const ambiguous = new Set<number>();
  try {
    for (const start of worlds) {
      const w = prelude(start, batch);
      const { atoms, needsWitness, unexpected } = atomsOf(batch, start.spaces.length);
      if (unexpected.length > 0) return { ok: false, nodes: budget.nodes, report: `${unexpected.join('\n')}\n${describeBatch(start, batch)}` };
      const comps = components(atoms);
      const results: Reached[][] = [];
      let dead: Component | undefined;
      for (const c of comps) {
        let r = solve(w, c, needsWitness, lim, budget);
        for (const probe of probes) if (c.pages.includes(probePage(probe))) r = r.filter((x) => fits(x.world, probe));
        if (r.length === 0) {
          dead = c;
          break;
        }
        results.push(r);
      }
      if (dead) {
        failures.push(componentReport(dead) + (probes.length > 0 ? ' (with the reads made after the batch)' : ''));
        continue;
      }
      // Products of the components' results whose witnesses cover every failed operation.
      // Too many: say which pages are open, so the caller can read them and ask again.
      const count = results.reduce((n, r) => n * r.length, 1);
      if (count * worlds.length > lim.maxWorlds) {
        results.forEach((r, k) => r.length > 1 && comps[k]!.pages.forEach((i) => ambiguous.add(i)));
        continue;
      }
      let partial: { witness: number; picks: Reached[] }[] = [{ witness: 0, picks: [] }];
      for (const r of results) {
        const next: typeof partial = [];
        for (const p of partial) for (const x of r) next.push({ witness: p.witness | x.witness, picks: [...p.picks, x] });
        partial = next;
      }
      const untouched = probes.filter((probe) => !comps.some((c) => c.pages.includes(probePage(probe))));
      let any = false;
      for (const p of partial) {
        if ((p.witness & needsWitness) !== needsWitness) continue;
        const merged = cloneWorld(w);
        p.picks.forEach((x, k) => mergeInto(merged, x.world, comps[k]!));
        any = true;
        if (untouched.every((probe) => fits(merged, probe))) out.set(worldKey(merged), merged);
        else failures.push('a page no operation of the batch touched read differently after it');
      }
      if (!any) failures.push(`no order produces the errors observed (no witness for ${witnessless(needsWitness, results)})`);
      if (out.size > lim.maxWorlds) throw new SearchBudget();
    }
  } catch (e) {
    if (!(e instanceof SearchBudget)) throw e;
    return {
      ok: false,
      budget: true,
      nodes: budget.nodes,
      report: `search budget exceeded (${budget.nodes} nodes, ${out.size} worlds); not a verdict\n${describeBatch(worlds[0]!, batch)}`,
    };
  }
  if (ambiguous.size > 0)
    return {
      ok: false,
      budget: true,
      nodes: budget.nodes,
      ambiguous: [...ambiguous].sort((a, b) => a - b),
      report: `more than ${lim.maxWorlds} model states after the batch; pages ${[...ambiguous].join(', ')} are open\n${describeBatch(worlds[0]!, batch)}`,
    };
  if (out.size === 0) {
    const why = [...new Set(failures)].slice(0, 3).join('\n');
    return {
      ok: false,
      nodes: budget.nodes,
      report: `not linearizable from any of ${worlds.length} model state(s):\n${why}\n${describeBatch(worlds[0]!, batch)}`,
    };
  }
  return { ok: true, worlds: [...out.values()], nodes: budget.nodes };
}

function witnessless(needs: number, results: Reached[][]): string {
  let found = 0;
  for (const r of results) for (const x of r) found |= x.witness;
  const missing: number[] = [];
  for (let i = 0; i < 31; i++) if (needs & (1 << i) && !(found & (1 << i))) missing.push(i);
  return missing.length ? `op ${missing.join(', op ')}` : 'a combination of them';
}

function componentReport(c: Component): string {
  const ops = [...new Set(c.atoms.map((a) => a.op))].sort((a, b) => a - b);
  return `no order of the atoms of op ${ops.join(', ')} on window page(s) ${c.pages.sort((a, b) => a - b).join(', ') || '-'} fits their observations`;
}

// ------------------------------------------------------------------ reports

const hex = (n: number): string => `0x${n.toString(16)}`;

export function describeOp(op: Op): string {
  const pages = (first: number, n: number): string => (n === 1 ? `page ${first}` : `pages ${first}..${first + n - 1}`);
  const at = (va: number): string => `page ${ModelSpace.index(va)}+${(va - BASE_VA) % PAGE}`;
  switch (op.kind) {
    case 'read':
      return `${op.thread === 'main' ? 'mm.read' : `${op.thread}.load`} mm${op.s} ${at(op.va)} len ${op.len}`;
    case 'write':
      return `${op.thread === 'main' ? 'mm.write' : `${op.thread}.store`} mm${op.s} ${at(op.va)} len ${op.data.length} (first byte ${op.data[0]})`;
    case 'atomicAdd':
      return `${op.thread}.atomicAddU32 mm${op.s} ${at(op.va)} += ${op.value}`;
    case 'gpuRead':
      return `m.read gpu${op.d} mm${op.s} ${pages(op.first, op.n)}`;
    case 'gpuWrite':
      return `m.write gpu${op.d} mm${op.s} ${pages(op.first, op.data.length / PAGE)} (first byte ${op.data[0]})`;
    case 'kernelAdd':
      return `${op.validated ? 'validated' : 'replayable'} add kernel gpu${op.d} mm${op.s} ${pages(op.first, op.n)} += ${op.add}`;
    case 'kernelCopy':
      return `${op.validated ? 'validated' : 'replayable'} copy kernel gpu${op.d} mm${op.s} ${pages(op.src, op.n)} -> ${pages(op.dst, op.n)} + ${op.add}`;
    case 'toDevice':
    case 'toSystem':
    case 'exclusive':
      return `${op.kind === 'exclusive' ? 'makeExclusive' : `migrate${op.kind === 'toDevice' ? 'ToDevice' : 'ToSystem'}`} gpu${op.d} mm${op.s} ${pages(op.first, op.n)}`;
    case 'release':
      return `gpu${op.d}.release()`;
    case 'mmap':
      return `mmap FIXED mm${op.s} ${pages(op.first, op.n)} ${op.prot}${op.shared ? ' shared' : ''}`;
    case 'munmap':
      return `munmap mm${op.s} ${pages(op.first, op.n)}`;
    case 'mprotect':
      return `mprotect mm${op.s} ${pages(op.first, op.n)} ${op.prot}`;
    case 'advise':
      return `advise mm${op.s} ${pages(op.first, op.n)} ${op.advice}`;
    case 'mremap':
      return `mremap mm${op.s} ${pages(op.first, op.oldN)} -> ${op.to !== undefined ? `FIXED ${pages(op.to, op.newN)}` : `${op.newN} pages in place`}${op.mayMove ? ' MAYMOVE' : ''}${op.dontUnmap ? ' DONTUNMAP' : ''}`;
    case 'madvise':
      return `madvise mm${op.s} ${pages(op.first, op.n)} ${op.advice}`;
    case 'pin':
      return `pin${op.longterm ? ' longterm' : ''} mm${op.s} ${at(op.va)} len ${op.len}`;
    case 'unpin':
      return `unpin handle ${op.handle}`;
    case 'fork':
      return `fork mm${op.s}`;
    case 'destroy':
      return `destroy mm${op.s}`;
    case 'lose':
      return `lose gpu${op.d} (GPUDevice.destroy())`;
  }
}

export function describeOutcome(o: Outcome): string {
  if (!o.ok)
    return `${o.code}${o.address !== undefined ? ` at ${hex(o.address)} (page ${ModelSpace.index(o.address)})` : ''}${o.message ? ` "${o.message}"` : ''}`;
  if (o.value !== undefined) return `ok, old value ${o.value}`;
  if (o.bytes) return `ok, ${o.bytes.length} bytes, words ${wordsSummary(o.bytes)}`;
  return 'ok';
}

function wordsSummary(b: Uint8Array): string {
  const w = new Uint32Array(b.slice(0, Math.min(b.length, 4096 * 6)).buffer, 0, Math.floor(Math.min(b.length, 4096 * 6) / 4));
  const perPage: string[] = [];
  for (let k = 0; k * 1024 < w.length; k++) perPage.push(`[${Array.from(w.subarray(k * 1024, k * 1024 + 2)).join(',')}…]`);
  return perPage.join(' ');
}

/** What running `op` alone on `w` would give (for reports): its error or 'ok', and the bytes it would read. */
export function expectAlone(w: World, ob: Observation): string {
  const spec = specOf(ob, w.spaces.length);
  const errs = [spec.opErr(w), ...spec.units.map((u) => spec.unitErr(w, u))].filter((e): e is Err => e !== null);
  errs.sort((a, b) => a.rank - b.rank || (a.address ?? 0) - (b.address ?? 0));
  const e = errs[0];
  if (e) return `${e.code}${e.address !== undefined ? ` at ${hex(e.address)} (page ${ModelSpace.index(e.address)})` : ''}`;
  const op = ob.op;
  if (op.kind === 'read') return `ok, words ${wordsSummary(w.spaces[op.s]!.read(op.va, op.len))}`;
  if (op.kind === 'gpuRead') return `ok, words ${wordsSummary(w.spaces[op.s]!.read(pageVa(op.first), op.n * PAGE))}`;
  if (op.kind === 'atomicAdd') return `ok, old value ${new Uint32Array(w.spaces[op.s]!.read(op.va, 4).slice().buffer)[0]}`;
  return 'ok';
}

export function describeBatch(w: World, batch: readonly Observation[]): string {
  return batch
    .map(
      (b, i) =>
        `  op ${i}: ${describeOp(b.op)}\n      observed: ${describeOutcome(b.outcome)}${b.poisoned ? ` (poisoned ${b.poisoned.map(([s, p]) => `mm${s}:${p}`).join(' ')})` : ''}\n      alone on the model: ${expectAlone(w, b)}`,
    )
    .join('\n');
}
