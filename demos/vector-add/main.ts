// Vector add through one shared address space: the CPU writes a and b into mmap'ed memory,
// a validated kernel computes c = a + b by virtual address (the pages migrate to the GPU),
// and the CPU reads c back (its pages fault home). The page shows the result, the time of
// each step, the counters, and where every page lived before and after.

import { PAGE_SIZE, createSystem, type Mirror, type System } from '../../src/index.ts';
import {
  checkEnvironment,
  describeError,
  protName,
  reportUnhandledErrors,
  residence,
  setResult,
  showSource,
  summarize,
} from '../common.ts';
import kernelSource from './vector_add.wgsl?raw';

const WORKGROUP_SIZE = 64;
const DEFAULT_N = 64 * 1024;
const MAX_N = 1 << 20; // 3 arrays x 4 MiB fit the 16 MiB device
/** At most this many squares per array in a residency strip; beyond, one square stands for several pages. */
const MAX_SQUARES = 256; // up to 4 rows of 64

interface Arrays {
  a: number;
  b: number;
  c: number;
}

/** N from ?n=, validated; the default otherwise. */
function elementCount(): number {
  const raw = new URLSearchParams(location.search).get('n');
  if (raw === null) return DEFAULT_N;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_N) throw new Error(`?n=${raw}: N must be an integer in [1, ${MAX_N}]`);
  return n;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

/** The inputs: a[i] = i / 2, b[i] = 1000 - i / 4. Every sum is exact in f32. */
function inputs(n: number): { a: Float32Array; b: Float32Array; expected: Float32Array } {
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  const expected = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = i / 2;
    b[i] = 1000 - i / 4;
    expected[i] = a[i]! + b[i]!; // rounded to f32 on store, as the GPU rounds
  }
  return { a, b, expected };
}

const bytesOf = (f: Float32Array): Uint8Array => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);

// ---------------------------------------------------------------------------- display

const timings: [string, number][] = [];

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const v = await fn();
  timings.push([label, performance.now() - t0]);
  return v;
}

function showTimings(): void {
  const tbody = document.querySelector('#timing tbody')!;
  tbody.replaceChildren();
  let total = 0;
  for (const [label, ms] of timings) {
    total += ms;
    const tr = el('tr');
    tr.append(el('td', label), el('td', `${ms.toFixed(1)} ms`, 'num'));
    tbody.append(tr);
  }
  const tr = el('tr', undefined, 'total');
  tr.append(el('td', 'total'), el('td', `${total.toFixed(1)} ms`, 'num'));
  tbody.append(tr);
}

function showCounters(columns: [string, Record<string, number>][]): void {
  const table = document.getElementById('counters')!;
  const names = [...new Set(columns.flatMap(([, c]) => Object.keys(c)))].sort();
  const head = el('tr');
  head.append(el('th', 'counter'), ...columns.map(([label]) => el('th', label, 'num')));
  const rows = names.map((name) => {
    const tr = el('tr');
    tr.append(el('td', name), ...columns.map(([, c]) => el('td', String(c[name] ?? 0), 'num')));
    return tr;
  });
  table.querySelector('thead')!.replaceChildren(head);
  table.querySelector('tbody')!.replaceChildren(...rows);
}

/** One stage of the residency view: a strip of page squares and a summary per array. */
function showResidency(title: string, snaps: [string, Uint8Array][]): void {
  const section = el('section', undefined, 'stage');
  section.append(el('h3', title));
  for (const [name, snap] of snaps) {
    const row = el('div', undefined, 'stage-row');
    const per = Math.ceil(snap.length / MAX_SQUARES);
    const strip = el('div', undefined, 'strip');
    const squares = Math.ceil(snap.length / per);
    strip.style.setProperty('--cols', String(Math.min(64, squares)));
    strip.style.setProperty('--cols-narrow', String(Math.min(32, squares)));
    strip.setAttribute('role', 'img');
    strip.setAttribute('aria-label', `${name}: ${summarize(snap)}`);
    for (let i = 0; i < snap.length; i += per) {
      const v = snap[i]!;
      const sq = el('span', undefined, `page page-${residence(v)}`);
      sq.title = per === 1 ? `${name} page ${i}: ${protName(v)}` : `${name} pages ${i}..${Math.min(i + per, snap.length) - 1}: ${protName(v)} (first)`;
      strip.append(sq);
    }
    row.append(el('code', name, 'array-name'), strip, el('span', summarize(snap), 'summary'));
    section.append(row);
  }
  if (snaps.some(([, s]) => s.length > MAX_SQUARES)) {
    const per = Math.ceil(snaps[0]![1].length / MAX_SQUARES);
    section.append(el('p', `Each square stands for ${per} pages (its first page's state).`, 'note'));
  }
  document.getElementById('residency')!.append(section);
}

async function snapshots(m: Mirror, arrays: Arrays, npages: number): Promise<[string, Uint8Array][]> {
  return [
    ['a', await m.snapshot(arrays.a, npages)],
    ['b', await m.snapshot(arrays.b, npages)],
    ['c', await m.snapshot(arrays.c, npages)],
  ];
}

// ---------------------------------------------------------------------------- the demo

async function run(n: number): Promise<void> {
  const bytes = n * 4;
  const npages = Math.ceil(bytes / PAGE_SIZE);
  document.getElementById('n')!.textContent = `N = ${n} floats per array (${npages} pages of 4 KiB each)`;

  const sys: System = await timed('create system (adapter, device, memory pool)', () =>
    createSystem({ systemRamBytes: 64 << 20, devices: [{ memoryBytes: 16 << 20 }] }),
  );
  try {
    const dev = sys.devices[0]!;
    document.getElementById('adapter')!.textContent = `GPU adapter: ${dev.adapterName}`;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);

    // Three arrays in one virtual address space; nothing is backed until it is touched.
    const arrays: Arrays = { a: mm.mmap(bytes), b: mm.mmap(bytes), c: mm.mmap(bytes) };
    const { a, b, expected } = inputs(n);
    await timed('CPU writes a and b (mm.write)', async () => {
      await mm.write(arrays.a, bytesOf(a));
      await mm.write(arrays.b, bytesOf(b));
    });
    showResidency('1. Before the kernel: the CPU wrote a and b; c was never touched', await snapshots(m, arrays, npages));

    const kernel = await timed('compile kernel (prelude + vector_add.wgsl)', () =>
      dev.createKernel({ code: kernelSource, workgroupSize: WORKGROUP_SIZE, label: 'vector_add' }),
    );
    const dispatch = await timed('validated dispatch (fault-in, migrate to device, run)', () =>
      m.dispatch(kernel, {
        workgroups: Math.ceil(n / WORKGROUP_SIZE),
        uniforms: new Uint32Array([arrays.a, arrays.b, arrays.c, n]),
        mode: 'validated',
        ranges: [
          { va: arrays.a, bytes, access: 'r' },
          { va: arrays.b, bytes, access: 'r' },
          { va: arrays.c, bytes, access: 'rw' },
        ],
      }),
    );
    const afterKernel = sys.stats();
    showResidency('2. After the kernel: every page the kernel used lives in device memory', await snapshots(m, arrays, npages));

    // The CPU reads c: its pages are device-private, so each CPU fault migrates them home.
    const cBytes = await timed('CPU reads c (mm.read, pages fault home)', () => mm.read(arrays.c, bytes));
    const afterRead = sys.stats();
    showResidency('3. After the CPU read c: c came home to system RAM; a and b stay on the device', await snapshots(m, arrays, npages));

    const c = new Float32Array(cBytes.buffer, cBytes.byteOffset, n);
    let bad = -1;
    let mismatches = 0;
    for (let i = 0; i < n; i++) {
      if (c[i] !== expected[i]) {
        if (bad < 0) bad = i;
        mismatches++;
      }
    }
    showTimings();
    showCounters([
      ['after kernel', afterKernel],
      ['after CPU read', afterRead],
    ]);
    document.getElementById('detail')!.textContent =
      `The validated dispatch needed ${dispatch.faults} extra fault-in round(s); c[0] = ${c[0]}, c[${n - 1}] = ${c[n - 1]}.`;
    if (bad < 0) setResult(`result: correct (${n} elements)`, 'pass');
    else
      setResult(
        `result: wrong: c[${bad}] = ${c[bad]}, expected ${expected[bad]} (a = ${a[bad]}, b = ${b[bad]}); ${mismatches} of ${n} elements differ`,
        'fail',
      );
  } finally {
    sys.destroy();
  }
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  showSource('vector_add.wgsl', kernelSource);
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  setResult('running…', 'running');
  try {
    const n = elementCount();
    const select = document.querySelector<HTMLSelectElement>('select[name=n]');
    if (select && Array.from(select.options).some((o) => o.value === String(n))) select.value = String(n);
    await run(n);
  } catch (e) {
    console.error(e);
    showTimings();
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();
