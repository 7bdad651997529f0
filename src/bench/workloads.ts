// Workloads of the comparison matrix: what each one computes, how its arrays are laid out in
// one region of the address space, the kernel launches of one GPU phase (cut into chunks when
// a strategy must stay within the device pool), what the CPU does between phases (ping-pong),
// and a CPU reference of the expected result, so every strategy's output is checked word for
// word. Strategies (strategies.ts) decide how the data gets to the GPU; workloads never do.
// Inputs come from a seeded generator: every run sees the same data.

import { PAGE_SIZE } from 'webgpu-hmm';
import type { KernelName } from './shaders.ts';
import { grid, WORKGROUP } from './shaders.ts';
import type { BenchSizes } from './sizes.ts';

export type Role = 'in' | 'out' | 'inout';

export interface ArraySpec {
  name: string;
  words: number;
  role: Role;
}

/** A byte range of one array. */
export interface Span {
  array: string;
  offset: number;
  bytes: number;
}

/** One kernel launch: its uniforms (addresses are VAs), its grid, and what it reads and writes. */
export interface Step {
  uniforms: Uint32Array;
  workgroups: [number, number];
  reads: Span[];
  writes: Span[];
}

/** Arrays laid out one after another, each starting on a page. */
export class Layout {
  readonly offsets = new Map<string, number>();
  readonly bytes: number;
  constructor(readonly arrays: readonly ArraySpec[]) {
    let at = 0;
    for (const a of arrays) {
      this.offsets.set(a.name, at);
      at += Math.ceil((a.words * 4) / PAGE_SIZE) * PAGE_SIZE;
    }
    this.bytes = at;
  }
  offset(name: string): number {
    const o = this.offsets.get(name);
    if (o === undefined) throw new Error(`no array '${name}' in this layout`);
    return o;
  }
  spec(name: string): ArraySpec {
    return this.arrays.find((a) => a.name === name)!;
  }
  /** The whole of one array as a span. */
  whole(name: string): Span {
    return { array: name, offset: 0, bytes: this.spec(name).words * 4 };
  }
}

/** The CPU's image of a region: one word array, with a view per array. */
export class Image {
  readonly words: Uint32Array;
  constructor(readonly layout: Layout) {
    this.words = new Uint32Array(layout.bytes / 4);
  }
  view(name: string): Uint32Array {
    return this.words.subarray(this.layout.offset(name) / 4, this.layout.offset(name) / 4 + this.layout.spec(name).words);
  }
  copy(): Image {
    const c = new Image(this.layout);
    c.words.set(this.words);
    return c;
  }
}

export interface Workload {
  /** Short id, e.g. 'triad', 'gather 1/8'. */
  name: string;
  title: string;
  kernel: KernelName;
  layout: Layout;
  /** 'small': runs against the small (oversubscribed) device pool. */
  device: 'main' | 'small';
  /** GPU phases; more than one only for the ping-pong, with a CPU phase after each. */
  iterations: number;
  /** Fill the inputs, for a region mapped at `base` (pointers in the data are VAs). */
  init(img: Image, base: number): void;
  /** The launches of one GPU phase for a region at `base`; chunks of at most `chunkBytes` of data each. */
  steps(base: number, chunkBytes: number): Step[];
  /** Ping-pong: what the CPU does to the image after each GPU phase. */
  cpuPhase?(img: Image): void;
  /** CPU reference: turn the initial image into the expected final one. */
  reference(img: Image): void;
}

/** Deterministic pseudo-random u32s (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const addr = (base: number, layout: Layout, name: string): number => base + layout.offset(name);

/** A 1-D launch over n invocations of `kernel`, with uniforms built from its row length. */
function oneStep(kernel: KernelName, n: number, uniforms: (row: number) => number[], reads: Span[], writes: Span[]): Step {
  const g = grid(n, WORKGROUP[kernel][0]);
  return { uniforms: new Uint32Array(uniforms(g.row)), workgroups: g.workgroups, reads, writes };
}

export function triad(words: number): Workload {
  const layout = new Layout([
    { name: 'a', words, role: 'out' },
    { name: 'b', words, role: 'in' },
    { name: 'c', words, role: 'in' },
  ]);
  return {
    name: 'triad',
    title: `stream triad a = b + 3c, ${words} words per array`,
    kernel: 'triad',
    layout,
    device: 'main',
    iterations: 1,
    init(img) {
      const b = img.view('b');
      const c = img.view('c');
      for (let i = 0; i < words; i++) {
        b[i] = i;
        c[i] = words - i;
      }
    },
    steps: (base) => [
      oneStep(
        'triad',
        words,
        (row) => [addr(base, layout, 'a'), addr(base, layout, 'b'), addr(base, layout, 'c'), words, row],
        [layout.whole('b'), layout.whole('c')],
        [layout.whole('a')],
      ),
    ],
    reference(img) {
      const [a, b, c] = [img.view('a'), img.view('b'), img.view('c')];
      for (let i = 0; i < words; i++) a[i] = (b[i]! + 3 * c[i]!) >>> 0;
    },
  };
}

/** out[i] = table[idx[i]], with the indices on `density` of the table's pages. */
export function gather(entries: number, tableBytes: number, density: number, label: string): Workload {
  const tableWords = tableBytes / 4;
  const layout = new Layout([
    { name: 'idx', words: entries, role: 'in' },
    { name: 'table', words: tableWords, role: 'in' },
    { name: 'out', words: entries, role: 'out' },
  ]);
  const tablePages = tableBytes / PAGE_SIZE;
  const touched = Math.max(1, Math.round(density * tablePages));
  return {
    name: `gather ${label}`,
    title: `random gather, ${entries} indices on ${touched} of ${tablePages} table pages (density ${label})`,
    kernel: 'gather',
    layout,
    device: 'main',
    iterations: 1,
    init(img) {
      const next = rng(0x9a7e + touched);
      // which pages: a random subset of the table
      const pages = Array.from({ length: tablePages }, (_, i) => i);
      for (let i = pages.length - 1; i > 0; i--) {
        const j = next() % (i + 1);
        [pages[i], pages[j]] = [pages[j]!, pages[i]!];
      }
      const idx = img.view('idx');
      for (let i = 0; i < entries; i++) idx[i] = pages[next() % touched]! * 1024 + (next() % 1024);
      const table = img.view('table');
      for (let i = 0; i < tableWords; i++) table[i] = (i * 2654435761) >>> 0;
    },
    steps: (base) => [
      oneStep(
        'gather',
        entries,
        (row) => [addr(base, layout, 'idx'), addr(base, layout, 'table'), addr(base, layout, 'out'), entries, row],
        [layout.whole('idx'), layout.whole('table')],
        [layout.whole('out')],
      ),
    ],
    reference(img) {
      const [idx, table, out] = [img.view('idx'), img.view('table'), img.view('out')];
      for (let i = 0; i < entries; i++) out[i] = table[idx[i]!]!;
    },
  };
}

/** Linked lists the CPU builds with VA pointers; every invocation walks one and stores its sum. */
export function pointerChase(chains: number, steps: number, tableBytes: number): Workload {
  const tableWords = tableBytes / 4;
  const layout = new Layout([
    { name: 'heads', words: chains, role: 'in' },
    { name: 'table', words: tableWords, role: 'in' },
    { name: 'out', words: chains, role: 'out' },
  ]);
  const slots = tableWords / 2; // a node is { value, next }: two words
  if (chains * steps > slots) throw new Error(`pointer chase: ${chains * steps} nodes do not fit ${slots} slots`);
  return {
    name: 'pointer chase',
    title: `pointer chase, ${chains} lists of ${steps} nodes scattered over ${tableBytes / PAGE_SIZE} pages`,
    kernel: 'chase',
    layout,
    device: 'main',
    iterations: 1,
    init(img, base) {
      const next = rng(0xc4a5e);
      const used = new Set<number>();
      const table = img.view('table');
      const heads = img.view('heads');
      const tableVa = base + layout.offset('table');
      for (let c = 0; c < chains; c++) {
        let prev = -1;
        for (let s = 0; s < steps; s++) {
          let slot: number;
          do slot = next() % slots;
          while (used.has(slot));
          used.add(slot);
          table[2 * slot] = (c * steps + s + 1) >>> 0; // value
          table[2 * slot + 1] = 0; // next: the end, until a successor links in
          const va = tableVa + slot * 8;
          if (prev < 0) heads[c] = va;
          else table[2 * prev + 1] = va;
          prev = slot;
        }
      }
    },
    steps: (base) => [
      oneStep(
        'chase',
        chains,
        (row) => [addr(base, layout, 'heads'), addr(base, layout, 'out'), chains, steps, row],
        [layout.whole('heads'), layout.whole('table')],
        [layout.whole('out')],
      ),
    ],
    reference(img) {
      const out = img.view('out');
      for (let c = 0; c < chains; c++) {
        let sum = 0;
        for (let s = 0; s < steps; s++) sum += c * steps + s + 1;
        out[c] = sum >>> 0;
      }
    },
  };
}

export function stencil(width: number, height: number): Workload {
  const words = width * height;
  const layout = new Layout([
    { name: 'src', words, role: 'in' },
    { name: 'dst', words, role: 'out' },
  ]);
  const at = (x: number, y: number): number => y * width + x;
  return {
    name: '2D stencil',
    title: `2-D five-point stencil, ${width} x ${height} cells`,
    kernel: 'stencil',
    layout,
    device: 'main',
    iterations: 1,
    init(img) {
      const src = img.view('src');
      for (let i = 0; i < words; i++) src[i] = (i * 7) & 0xffff;
    },
    steps: (base) => [
      {
        uniforms: new Uint32Array([addr(base, layout, 'src'), addr(base, layout, 'dst'), width, height]),
        workgroups: [Math.ceil(width / 8), Math.ceil(height / 8)],
        reads: [layout.whole('src')],
        writes: [layout.whole('dst')],
      },
    ],
    reference(img) {
      const [src, dst] = [img.view('src'), img.view('dst')];
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const l = Math.max(0, x - 1);
          const r = Math.min(width - 1, x + 1);
          const t = Math.max(0, y - 1);
          const b = Math.min(height - 1, y + 1);
          dst[at(x, y)] = (src[at(x, y)]! + src[at(l, y)]! + src[at(r, y)]! + src[at(x, t)]! + src[at(x, b)]!) >>> 0;
        }
      }
    },
  };
}

/** dst = 2 src + 1 over a working set (src + dst) of `factor` times the small device pool. */
export function oversubscribedStream(poolBytes: number, factor: number): Workload {
  const words = Math.floor((poolBytes * factor) / 8 / 1024) * 1024; // src and dst, whole pages
  const layout = new Layout([
    { name: 'src', words, role: 'in' },
    { name: 'dst', words, role: 'out' },
  ]);
  return {
    name: `oversub ${factor}x`,
    title: `stream dst = 2 src + 1, working set ${factor}x the ${poolBytes >> 20} MiB device pool`,
    kernel: 'scale',
    layout,
    device: 'small',
    iterations: 1,
    init(img) {
      const src = img.view('src');
      for (let i = 0; i < words; i++) src[i] = i ^ 0x5a5a;
    },
    steps(base, chunkBytes) {
      const per = Math.max(1024, Math.floor(chunkBytes / 8 / 1024) * 1024); // words per chunk (src + dst bytes)
      const out: Step[] = [];
      for (let from = 0; from < words; from += per) {
        const n = Math.min(per, words - from);
        out.push(
          oneStep(
            'scale',
            n,
            (row) => [addr(base, layout, 'src') + from * 4, addr(base, layout, 'dst') + from * 4, n, row],
            [{ array: 'src', offset: from * 4, bytes: n * 4 }],
            [{ array: 'dst', offset: from * 4, bytes: n * 4 }],
          ),
        );
      }
      return out;
    },
    reference(img) {
      const [src, dst] = [img.view('src'), img.view('dst')];
      for (let i = 0; i < words; i++) dst[i] = (2 * src[i]! + 1) >>> 0;
    },
  };
}

/** The GPU adds 1 to every word, then the CPU adds 1000, `iterations` times, on the same pages. */
export function pingPong(pages: number, iterations: number): Workload {
  const words = pages * 1024;
  const layout = new Layout([{ name: 'a', words, role: 'inout' }]);
  return {
    name: 'CPU/GPU ping-pong',
    title: `CPU/GPU ping-pong, ${pages} pages, ${iterations} GPU + CPU phases`,
    kernel: 'increment',
    layout,
    device: 'main',
    iterations,
    init(img) {
      const a = img.view('a');
      for (let i = 0; i < words; i++) a[i] = i;
    },
    steps: (base) => [oneStep('increment', words, (row) => [addr(base, layout, 'a'), words, row, 0], [layout.whole('a')], [layout.whole('a')])],
    cpuPhase(img) {
      const a = img.view('a');
      for (let i = 0; i < words; i++) a[i] = (a[i]! + 1000) >>> 0;
    },
    reference(img) {
      const a = img.view('a');
      for (let i = 0; i < words; i++) a[i] = (a[i]! + iterations * 1001) >>> 0;
    },
  };
}

/** Every workload of the matrix at these sizes, in report order. */
export function workloadMatrix(s: BenchSizes): Workload[] {
  const words = s.arrayBytes / 4;
  const fraction = (d: number): string => (d === 1 ? '1' : `1/${Math.round(1 / d)}`);
  return [
    triad(words),
    ...s.gatherDensities.map((d) => gather(words, s.gatherTableBytes, d, fraction(d))),
    pointerChase(s.chaseChains, s.chaseSteps, s.chaseTableBytes),
    stencil(1024, Math.max(8, words / 1024)),
    oversubscribedStream(s.smallPoolBytes, 1.25),
    oversubscribedStream(s.smallPoolBytes, 2),
    pingPong(s.pingPongPages, s.pingPongIterations),
  ];
}
