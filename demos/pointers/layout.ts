// What the builder worker, the page and the WGSL kernels agree on: the three structures, the
// layout of a node (32 bytes, eight u32 words, pointers are virtual addresses, 0 is null),
// the sizes a user may pick, and the seeded random numbers that scatter nodes over pages.
// The kernels (*.wgsl) use the same word offsets; each file's header repeats its layout.

export type Structure = 'list' | 'tree' | 'graph';
export const STRUCTURES: Structure[] = ['list', 'tree', 'graph'];

/** Bytes per node slot in the pool: 8 words. */
export const NODE_BYTES = 32;
/** The pool has this many slots per node, so nodes land scattered with gaps between them. */
export const SPREAD = 4;
export const NODE_COUNTS = [1024, 4096, 16384];
export const DEFAULT_NODES = 4096;

/** Byte offsets of the fields in each structure's node. */
export const LIST = { value: 0, next: 4, rank: [8, 16], jump: [12, 20] } as const; // two (rank, jump) slots: pass k reads one, writes the other
export const TREE = { value: 0, parent: 4, left: 8, right: 12, depth: 16, pathSum: 20 } as const;
export const GRAPH = { level: 0, degree: 4, neighbours: 8 } as const;
export const MAX_DEGREE = 6; // neighbour pointers fill the node's last six words
/** A graph node's level before BFS reaches it. */
export const UNREACHED = 0xffffffff;

/** What the builder made: where the structure starts, and what it took. */
export interface Built {
  /** The list's head, the tree's root, the BFS source. */
  root: number;
  /** Pages of the pool that hold at least one node. */
  pagesUsed: number;
  ms: number;
}

/** The CPU's check of the GPU's answer, made by traversing the structure again in the worker. */
export interface Checked {
  /** The answer in one line, from the fields the GPU wrote. */
  gpuAnswer: string;
  /** The same line from the CPU's own traversal. */
  cpuAnswer: string;
  /** Nodes whose GPU-written field differs from the CPU's. */
  mismatches: number;
  firstMismatch: string;
  ms: number;
}

export interface Job {
  structure: Structure;
  nodes: number;
  seed: number;
  /** First byte of the node pool, and its size. */
  pool: number;
  poolBytes: number;
  /** The node table: index[i] is node i's address (how invocation i finds its node). */
  index: number;
}

/** mulberry32: small, fast, seeded; the same seed builds the same structure. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A random integer in [0, n). */
export const below = (rand: () => number, n: number): number => Math.floor(rand() * n);
