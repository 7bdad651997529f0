// The Policy lab's workloads: each maps its data at BASE in a fresh address space, fills it (not
// timed), runs its GPU phase (timed: the fault-driven dispatches, and for the pointer chase the
// CPU's turn between its two passes), and checks every word afterwards *in place*: pages the
// device holds are read through the device's page table (the dmirror read), pages in RAM by the
// CPU, so the check moves no page and the residency map shows where the policies left them.

import { PAGE_SIZE, residency, residenceName, type AddressSpace, type HmmDevice, type HmmKernel, type Mirror } from 'webgpu-hmm';
import type { Region } from '../widgets/residencyMap.ts';
import chaseSource from './chase.wgsl?raw';
import streamSource from './stream.wgsl?raw';
import stridedSource from './strided.wgsl?raw';

export type WorkloadId = 'stream' | 'chase' | 'strided';

/** Device memory every run gets: 128 frames. */
export const DEVICE_BYTES = 512 * 1024;
export const SYSTEM_RAM_BYTES = 8 << 20;
/** Where each workload maps its data (2 MiB aligned). */
export const BASE = 0x0100_0000;
const WORDS = PAGE_SIZE / 4;
const WG = 64;

/** What a workload runs against: one fresh system's device, address space and mirror. */
export interface Target {
  dev: HmmDevice;
  mm: AddressSpace;
  m: Mirror;
}

/** A workload, ready to run once on one target. */
export interface Prepared {
  /** The timed GPU phase; returns the launches (replays included). */
  gpu(): Promise<number>;
  /** Check every word in place; null when right, else what is wrong. */
  check(): Promise<string | null>;
}

export interface LabWorkload {
  id: WorkloadId;
  title: string;
  /** What it does and what it shows, a sentence or two. */
  about: string;
  /** Its kernel, for the page's source section. */
  source: [string, string];
  /** The regions its residency map shows. */
  regions: Region[];
  /** Map and fill the data, compile the kernel (not timed). */
  prepare(t: Target): Promise<Prepared>;
}

/** Deterministic pseudo-random u32s (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * Read [va, va + pages) without moving a page: runs the device maps (device-private, or held
 * writable) through the device (dmirror read), the rest from RAM by the CPU.
 */
export async function readInPlace(t: Target, va: number, pages: number): Promise<Uint32Array> {
  const codes = residency(t.mm, va, pages);
  const onDevice = (i: number): boolean => {
    const s = residenceName(codes[i]!);
    return s === 'device' || s === 'exclusive';
  };
  const out = new Uint32Array(pages * WORDS);
  for (let i = 0; i < pages; ) {
    let j = i + 1;
    while (j < pages && onDevice(j) === onDevice(i)) j++;
    const at = va + i * PAGE_SIZE;
    const bytes = onDevice(i) ? (await t.m.read(at, j - i)).data : await t.mm.read(at, (j - i) * PAGE_SIZE);
    out.set(new Uint32Array(bytes.buffer, bytes.byteOffset, (j - i) * WORDS), i * WORDS);
    i = j;
  }
  return out;
}

/** The first word that differs, in words; null when all agree. */
function compare(name: string, got: Uint32Array, want: Uint32Array): string | null {
  let bad = -1;
  let count = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) {
      if (bad < 0) bad = i;
      count++;
    }
  }
  if (bad < 0) return null;
  return `${name} word ${bad} (page ${Math.floor(bad / WORDS)}) is ${got[bad]}, expected ${want[bad]}; ${count} of ${want.length} words differ`;
}

const kernel = (dev: HmmDevice, label: string, code: string): Promise<HmmKernel> => dev.createKernel({ label, code, workgroupSize: WG });

// ---------------------------------------------------------------------------- streaming, 2x oversubscribed

const HOT_PAGES = 8;
const STREAM_PAGES = 248;
const CHUNK_PAGES = 24;
const PASSES = 2;

function streamWorkload(): LabWorkload {
  const pages = HOT_PAGES + STREAM_PAGES;
  const chunks: { page: number; pages: number }[] = [];
  for (let pass = 0; pass < PASSES; pass++)
    for (let page = 0; page < STREAM_PAGES; page += CHUNK_PAGES) chunks.push({ page, pages: Math.min(CHUNK_PAGES, STREAM_PAGES - page) });
  return {
    id: 'stream',
    title: 'Streaming, 2x oversubscribed',
    about:
      `A ${pages * 4} KiB working set through ${DEVICE_BYTES >> 10} KiB of device memory: ${chunks.length} launches stream over ${STREAM_PAGES} pages ` +
      `in chunks of ${CHUNK_PAGES}, ${PASSES} passes, each launch also reading a ${HOT_PAGES}-page hot table. Eviction decides whether the hot table stays; prefetch how many rounds each chunk takes.`,
    source: ['stream.wgsl', streamSource],
    regions: [
      { name: 'hot', va: BASE, bytes: HOT_PAGES * PAGE_SIZE },
      { name: 'stream', va: BASE + HOT_PAGES * PAGE_SIZE, bytes: STREAM_PAGES * PAGE_SIZE },
    ],
    async prepare(t) {
      const va = t.mm.mmap(pages * PAGE_SIZE, { addr: BASE });
      const hot = va;
      const stream = va + HOT_PAGES * PAGE_SIZE;
      const initial = new Uint32Array(pages * WORDS);
      for (let i = 0; i < initial.length; i++) initial[i] = Math.imul(i, 2654435761) >>> 8;
      const expected = initial.slice();
      const hotWords = HOT_PAGES * WORDS;
      for (const c of chunks) {
        const first = (HOT_PAGES + c.page) * WORDS;
        for (let j = 0; j < c.pages * WORDS; j++) expected[first + j] = (expected[first + j]! + initial[j % hotWords]!) >>> 0;
      }
      await t.mm.write(va, new Uint8Array(initial.buffer));
      const k = await kernel(t.dev, 'stream', streamSource);
      await k.replayablePipeline();
      return {
        async gpu() {
          let launches = 0;
          for (const c of chunks) {
            const words = c.pages * WORDS;
            const r = await t.m.dispatch(k, {
              mode: 'replayable',
              workgroups: Math.ceil(words / WG),
              uniforms: new Uint32Array([stream + c.page * PAGE_SIZE, hot, words, hotWords]),
            });
            launches += r.rounds;
          }
          return launches;
        },
        check: async () => compare('the working set', await readInPlace(t, va, pages), expected),
      };
    },
  };
}

// ---------------------------------------------------------------------------- pointer chase

const CHAINS = 64;
const STEPS = 8;
const TABLE_PAGES = 64;

function chaseWorkload(): LabWorkload {
  const headsVa = BASE;
  const tableVa = BASE + PAGE_SIZE;
  const outVa = tableVa + TABLE_PAGES * PAGE_SIZE;
  const pages = TABLE_PAGES + 2;
  return {
    id: 'chase',
    title: 'Random pointer chase, two passes',
    about:
      `${CHAINS} linked lists of ${STEPS} nodes at random places in a ${TABLE_PAGES}-page table (it fits the device); each invocation walks one and stores its sum. ` +
      'Then the CPU reads the sums and adds 1 to every node, and the kernel walks again. One node per fault round unless prefetch guesses right; ' +
      'placement decides whether the table moves to the device (and back for the CPU) or is read through copies.',
    source: ['chase.wgsl', chaseSource],
    regions: [
      { name: 'heads', va: headsVa, bytes: PAGE_SIZE },
      { name: 'table', va: tableVa, bytes: TABLE_PAGES * PAGE_SIZE },
      { name: 'out', va: outVa, bytes: PAGE_SIZE },
    ],
    async prepare(t) {
      t.mm.mmap(pages * PAGE_SIZE, { addr: BASE });
      const next = rng(0xc4a5e);
      const table = new Uint32Array(TABLE_PAGES * WORDS);
      const heads = new Uint32Array(WORDS);
      const slots = table.length / 2;
      const used = new Set<number>();
      const nodes: number[] = []; // every node's slot
      for (let c = 0; c < CHAINS; c++) {
        let prev = -1;
        for (let s = 0; s < STEPS; s++) {
          let slot: number;
          do slot = next() % slots;
          while (used.has(slot));
          used.add(slot);
          nodes.push(slot);
          table[2 * slot] = c * STEPS + s + 1;
          const va = tableVa + slot * 8;
          if (prev < 0) heads[c] = va;
          else table[2 * prev + 1] = va;
          prev = slot;
        }
      }
      const sums = (extra: number): Uint32Array => {
        const out = new Uint32Array(WORDS);
        for (let c = 0; c < CHAINS; c++) {
          let sum = 0;
          for (let s = 0; s < STEPS; s++) sum += c * STEPS + s + 1 + extra;
          out[c] = sum;
        }
        return out;
      };
      await t.mm.write(headsVa, new Uint8Array(heads.buffer));
      await t.mm.write(tableVa, new Uint8Array(table.buffer));
      const k = await kernel(t.dev, 'chase', chaseSource);
      await k.replayablePipeline();
      const walk = async (): Promise<number> =>
        (await t.m.dispatch(k, { mode: 'replayable', workgroups: Math.ceil(CHAINS / WG), uniforms: new Uint32Array([headsVa, outVa, CHAINS, STEPS]) })).rounds;
      let firstPass: string | null = null;
      return {
        async gpu() {
          let launches = await walk();
          // The CPU's turn: read the sums, then add 1 to every node (the table comes home).
          firstPass = compare('the first pass sums', new Uint32Array((await t.mm.read(outVa, PAGE_SIZE)).buffer), sums(0));
          const now = new Uint32Array((await t.mm.read(tableVa, TABLE_PAGES * PAGE_SIZE)).buffer);
          for (const slot of nodes) now[2 * slot] = (now[2 * slot]! + 1) >>> 0;
          await t.mm.write(tableVa, new Uint8Array(now.buffer));
          launches += await walk();
          return launches;
        },
        check: async () => firstPass ?? compare('the second pass sums', await readInPlace(t, outVa, 1), sums(1)),
      };
    },
  };
}

// ---------------------------------------------------------------------------- strided walk

const STRIDE = 4;
const WALK_PAGES = 64;
const PER_LAUNCH = 8;

function stridedWorkload(): LabWorkload {
  const pages = WALK_PAGES * STRIDE;
  return {
    id: 'strided',
    title: 'Strided walk',
    about:
      `${WALK_PAGES / PER_LAUNCH} launches update ${PER_LAUNCH} pages each, one page in every ${STRIDE} of a ${pages}-page region: ` +
      'too sparse for the density prefetcher, the case a stride prefetcher is for (it brings the next launches\u2019 pages with this one\u2019s faults).',
    source: ['strided.wgsl', stridedSource],
    regions: [{ name: 'data', va: BASE, bytes: pages * PAGE_SIZE }],
    async prepare(t) {
      const va = t.mm.mmap(pages * PAGE_SIZE, { addr: BASE });
      const initial = new Uint32Array(pages * WORDS);
      for (let i = 0; i < initial.length; i++) initial[i] = (i * 7 + 3) & 0xffff;
      const expected = initial.slice();
      for (let k = 0; k < WALK_PAGES; k++)
        for (let w = 0; w < WORDS; w++) {
          const i = k * STRIDE * WORDS + w;
          expected[i] = (expected[i]! * 3 + 1) >>> 0;
        }
      await t.mm.write(va, new Uint8Array(initial.buffer));
      const k = await kernel(t.dev, 'strided', stridedSource);
      await k.replayablePipeline();
      return {
        async gpu() {
          let launches = 0;
          for (let first = 0; first < WALK_PAGES; first += PER_LAUNCH) {
            const r = await t.m.dispatch(k, {
              mode: 'replayable',
              workgroups: (PER_LAUNCH * WORDS) / WG,
              uniforms: new Uint32Array([va, first, PER_LAUNCH, STRIDE]),
            });
            launches += r.rounds;
          }
          return launches;
        },
        check: async () => compare('the region', await readInPlace(t, va, pages), expected),
      };
    },
  };
}

export const WORKLOADS: readonly LabWorkload[] = [streamWorkload(), chaseWorkload(), stridedWorkload()];
